"""Refreshing one Trakt token: the function the command, the admin and the client share.

Trakt's refresh tokens are single-use: the first refresh kills the old one. So a
refresh holds a row lock (``SELECT ... FOR UPDATE`` on PostgreSQL) from before it reads
the refresh token until the new pair is saved, and looks at the row again once it has
the lock: another process may have refreshed it meanwhile, in which case there is
nothing left to do. On SQLite the lock is a no-op; run concurrent refreshes on
PostgreSQL (see README, "Running at scale").

Outcomes are distinct: refreshed, not due, needs re-authorization (Trakt rejected
the refresh token: the stored token is kept, the link is flagged and not retried until
the user signs in again), failed (transient: nothing stored changes, try again later).
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from django_trakt import oauth, signals
from django_trakt.conf import get_trakt_app
from django_trakt.exceptions import (
    TokenDecryptionError,
    TraktConfigurationError,
    TraktError,
    TraktInvalidGrant,
    TraktMalformedResponse,
    TraktRateLimited,
    TraktServerError,
    TraktTransportError,
    TraktUnauthorized,
)
from django_trakt.models import TraktToken

logger = logging.getLogger(__name__)

#: The command's default margin. Trakt's access tokens live 24 hours to 7 days; with
#: the command run hourly, 6 hours refreshes each token once, a few hours before it
#: expires, and never on every run (a margin longer than the lifetime would).
DEFAULT_MARGIN = dt.timedelta(hours=6)

#: On demand (a page, a task) a token is refreshed only when it is about to expire.
ON_DEMAND_MARGIN = dt.timedelta(minutes=5)

_FLAGGED = (TraktToken.Status.NEEDS_REAUTH, TraktToken.Status.REVOKED)


class Outcome(enum.StrEnum):
    REFRESHED = "refreshed"
    NOT_DUE = "not_due"
    NEEDS_REAUTH = "needs_reauth"
    FAILED = "failed"


@dataclass(frozen=True)
class RefreshResult:
    outcome: Outcome
    token: TraktToken | None
    detail: str = ""
    #: Seconds Trakt asked us to wait (429), when it said.
    retry_after: float | None = None
    #: A failure worth retrying at once with backoff (5xx, timeout, garbled answer).
    retryable: bool = False

    @property
    def transient(self) -> bool:
        return self.outcome is Outcome.FAILED


def is_due(token: TraktToken, margin: dt.timedelta, now: dt.datetime | None = None) -> bool:
    """Whether ``token`` expires within ``margin``. An unknown expiry is never due."""
    if token.expires_at is None:
        return False
    return token.expires_at <= (now or timezone.now()) + margin


def refresh_token(
    token: TraktToken | int,
    *,
    force: bool = False,
    within: dt.timedelta | None = None,
    unless_access_token_changed_from: str | None = None,
    app: Any = None,
    skip_locked: bool = False,
    timeout: float | None = None,
) -> RefreshResult:
    """Refresh one link if it is due (or ``force``), safely under concurrency.

    ``unless_access_token_changed_from``: refresh only if the stored access token is
    still this one; the client passes the token Trakt just rejected with a 401, so
    that when another process has refreshed in the meantime, we use its new token
    instead of spending another refresh. ``app``: the Trakt app, to save a query per
    token in a batch. ``skip_locked``: a batch passes over a row another process is
    refreshing right now (PostgreSQL) instead of queueing behind it; on demand we wait.
    ``timeout``: seconds for Trakt's answer (default: the ``TIMEOUT`` setting).
    """
    pk = token.pk if isinstance(token, TraktToken) else token
    margin = DEFAULT_MARGIN if within is None else within
    app = app or get_trakt_app()
    rejected: TraktError | None = None
    with transaction.atomic():
        locked = TraktToken.objects.select_for_update(skip_locked=skip_locked).filter(pk=pk).first()
        if locked is None:
            return RefreshResult(Outcome.NOT_DUE, None, "being refreshed elsewhere, or unlinked")
        if locked.status in _FLAGGED:
            return RefreshResult(Outcome.NEEDS_REAUTH, locked, "the user must sign in with Trakt again")
        try:
            if unless_access_token_changed_from is not None:
                if locked.access_token != unless_access_token_changed_from:
                    return RefreshResult(Outcome.NOT_DUE, locked, "already refreshed by another process")
            elif not force and not is_due(locked, margin):
                return RefreshResult(Outcome.NOT_DUE, locked, "not due")
            refresh_value = locked.refresh_token
        except TokenDecryptionError:
            return RefreshResult(Outcome.FAILED, locked, "the stored token cannot be decrypted (TRAKT_TOKEN_KEYS)")
        if not refresh_value:
            rejected = TraktInvalidGrant(400, "", "no refresh token is stored")
        else:
            try:
                grant = oauth.refresh_grant(
                    client_id=app.client_id,
                    client_secret=app.secret,
                    refresh_token=refresh_value,
                    redirect_uri=_redirect_uri(),
                    timeout=timeout,
                )
            except (TraktInvalidGrant, TraktUnauthorized) as err:
                rejected = err
            except TraktError as err:
                return _transient_failure(locked, err)
            else:
                locked.apply_grant(grant)
                locked.status = TraktToken.Status.ACTIVE
                locked.last_error = ""
                locked.last_refreshed_at = timezone.now()
                locked.save()
        if rejected is not None:
            locked.status = TraktToken.Status.NEEDS_REAUTH
            locked.last_error = _describe(rejected)
            locked.save(update_fields=["status", "last_error", "updated_at"])
    if rejected is not None:
        logger.warning("Trakt rejected the refresh token of account %s: %s", locked.account_id, _describe(rejected))
        signals.token_needs_reauthorization.send(sender=TraktToken, token=locked, reason=_describe(rejected))
        return RefreshResult(Outcome.NEEDS_REAUTH, locked, _describe(rejected))
    logger.info("Refreshed the Trakt token of account %s", locked.account_id)
    signals.token_refreshed.send(sender=TraktToken, token=locked)
    return RefreshResult(Outcome.REFRESHED, locked, "refreshed")


def _transient_failure(token: TraktToken, err: TraktError) -> RefreshResult:
    # Only the diagnosis is written: the stored pair stays exactly as it was.
    token.last_error = _describe(err)
    TraktToken.objects.filter(pk=token.pk).update(last_error=token.last_error)
    logger.warning("Refreshing the Trakt token of account %s failed: %s", token.account_id, token.last_error)
    if isinstance(err, TraktRateLimited):
        return RefreshResult(Outcome.FAILED, token, token.last_error, retry_after=err.retry_after)
    retryable = isinstance(err, (TraktServerError, TraktTransportError, TraktMalformedResponse))
    return RefreshResult(Outcome.FAILED, token, token.last_error, retryable=retryable)


def _describe(err: TraktError) -> str:
    return str(err)[:500]


def _redirect_uri() -> str:
    # Trakt's refresh grant wants the redirect URI the app is registered with: the
    # callback URL the login sends. Outside a request allauth builds it with the
    # sites framework (see the trakt_redirect_uri command).
    from django.core.exceptions import ImproperlyConfigured

    from django_trakt.redirect_uri import trakt_callback_url

    try:
        return trakt_callback_url()
    except ImproperlyConfigured as err:
        raise TraktConfigurationError(
            "Refreshing outside a request needs django.contrib.sites (SITE_ID) to build the redirect URI."
        ) from err


def refresh_with_retries(
    token: TraktToken | int,
    *,
    force: bool = False,
    within: dt.timedelta | None = None,
    app: Any = None,
    server_error_retries: int = 2,
    backoff: float = 1.0,
    max_retry_after: float = 30.0,
    sleep: Callable[[float], None] | None = None,
    skip_locked: bool = True,
) -> RefreshResult:
    """:func:`refresh_token` for batch work: retry what is worth retrying.

    A 5xx or timeout is retried ``server_error_retries`` times with exponential
    backoff; a 429 is waited out when its ``Retry-After`` is at most
    ``max_retry_after`` seconds, else left for the next run. The row lock is not held
    while waiting.
    """
    sleep = sleep or time.sleep
    attempt = 0
    while True:
        result = refresh_token(token, force=force, within=within, app=app, skip_locked=skip_locked)
        if result.outcome is not Outcome.FAILED or result.token is None:
            return result
        if result.retry_after is not None:
            if result.retry_after > max_retry_after or attempt >= server_error_retries:
                return result
            sleep(result.retry_after)
        elif attempt < server_error_retries and result.retryable:
            sleep(backoff * (2**attempt))
        else:
            return result
        attempt += 1


__all__ = [
    "DEFAULT_MARGIN",
    "ON_DEMAND_MARGIN",
    "Outcome",
    "RefreshResult",
    "is_due",
    "refresh_token",
    "refresh_with_retries",
]
