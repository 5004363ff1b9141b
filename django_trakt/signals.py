"""Signals about the life of a Trakt link. Each is sent with ``sender=TraktToken``.

- ``token_refreshed(token)``: a refresh stored a new token pair.
- ``token_needs_reauthorization(token, reason)``: Trakt rejected the refresh token
  (``invalid_grant``, an empty 400, a 401); the user must sign in with Trakt again.
- ``link_revoked(account, revoked_at_trakt)``: a link was removed (disconnect, admin
  action, user deletion); ``revoked_at_trakt`` says whether Trakt confirmed the revoke.
"""

from django.dispatch import Signal

token_refreshed = Signal()
token_needs_reauthorization = Signal()
link_revoked = Signal()

__all__ = ["link_revoked", "token_needs_reauthorization", "token_refreshed"]
