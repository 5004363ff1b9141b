"""The redirect URI to register at Trakt, exactly as the sign-in sends it.

``trakt_callback_url(request)`` builds it for the request's host,
``trakt_callback_url_for_host(host, secure=...)`` for a host (``manage.py trakt_redirect_uri``
prints it for a host or the current ``Site``).
"""

from __future__ import annotations

from django_trakt.internal.links.redirect_uri import trakt_callback_url, trakt_callback_url_for_host

__all__ = ["trakt_callback_url", "trakt_callback_url_for_host"]
