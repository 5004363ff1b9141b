"""A link whose refresh was sent and never stored: checked, its refresh token never sent again.

A refresh claims the link before it sends the single-use refresh token
(:mod:`django_trakt.internal.links.durability`). A claim that lapses without Trakt's answer
stored leaves it unknown whether Trakt rotated the pair: the next refresh asks Trakt whether
the stored access token still works instead.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from django.db import DatabaseError
from django.utils import timezone

from django_trakt import signals
from django_trakt.exceptions import TokenDecryptionError, TraktError, TraktUnauthorized
from django_trakt.internal.api import http
from django_trakt.internal.links import durability
from django_trakt.internal.links.locks import database_alias
from django_trakt.internal.links.outcomes import Outcome, RefreshResult
from django_trakt.models import TraktToken

logger = logging.getLogger(__name__)

#: A lapsed claim whose access token works but whose expiry is unknown is looked at again after this.
LAPSED_CHECK_AGAIN = dt.timedelta(hours=1)


def check_lapsed_claim(token: TraktToken, app: Any) -> RefreshResult:
    """A refresh sent this link's token and never stored an answer: check, never send it again.

    Trakt may have accepted it (the new pair is then lost) or never seen it. The stored
    access token decides what the link can still do: refused, the link is flagged for the
    user to sign in again; accepted, the link goes on working until that token expires, its
    claim extended until then (the refresh token's fate is unknown, so it is not sent), and
    is flagged then.
    """
    alias, now = database_alias(), timezone.now()
    sender = token.refresh_claimed_by.rsplit(" ", 1)[0]  # without its unique suffix
    where = f"a refresh sent by {sender} at {token.refresh_claimed_at:%Y-%m-%d %H:%M:%S} UTC"
    try:
        http.get_user_settings(app.client_id, token.access_token)
    except TraktUnauthorized:
        reason = f"{where} never stored Trakt's answer, and Trakt no longer accepts the link's token"
        columns: dict[str, Any] = {
            "status": TraktToken.Status.NEEDS_REAUTH,
            "last_error": reason,
            **durability.NO_CLAIM,
        }
        verdict = RefreshResult(Outcome.NEEDS_REAUTH, token, reason)
    except (TraktError, TokenDecryptionError) as err:
        # Not known yet: the claim stays lapsed, and the link is checked again next time.
        return RefreshResult(Outcome.FAILED, token, f"checking the link after an unfinished refresh failed: {err}")
    else:
        expires = token.expires_at if token.expires_at is not None and token.expires_at > now else None
        until = expires or now + LAPSED_CHECK_AGAIN
        reason = (
            f"{where} never stored Trakt's answer; the access token still works and is used until "
            f"{until:%Y-%m-%d %H:%M} UTC, the refresh token is not sent again"
        )
        columns = {"refresh_claim_until": until, "last_error": reason}
        verdict = RefreshResult(Outcome.NOT_DUE, token, reason)
    lapsed = TraktToken.objects.filter(
        pk=token.pk,
        refresh_claimed_by=token.refresh_claimed_by,
        refresh_token_encrypted=token.refresh_token_encrypted,
    )
    try:
        changed = durability.retrying(
            alias,
            lambda: lapsed.update(**columns) == 1,
            deadline=time.monotonic() + durability.STORE_DEADLINE,
            what=f"Recording the check of Trakt link {token.pk}",
        )
    except DatabaseError as err:
        return RefreshResult(Outcome.FAILED, token, f"database error: {err}", retryable=True)
    if not changed:
        return RefreshResult(Outcome.NOT_DUE, None, "stored or signed in again meanwhile")
    for name, value in columns.items():
        setattr(token, name, value)
    logger.warning("Trakt link %s: %s", token.pk, reason)
    if verdict.outcome is Outcome.NEEDS_REAUTH:
        signals.token_needs_reauthorization.send(sender=TraktToken, token=token, reason=reason)
    return verdict
