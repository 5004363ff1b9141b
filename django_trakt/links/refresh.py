"""Refreshing one Trakt token: the function the command, the admin and the client share.

Trakt's refresh tokens are single-use: the first refresh kills the old one. So a
refresh locks the row (:mod:`django_trakt.links.locks`: ``SELECT ... FOR UPDATE``, or SQLite's
writer lock) before it reads the refresh token and keeps it until the new pair is
written, and looks at the row again once it has the lock: another process may have
refreshed it meanwhile, in which case there is nothing left to do. Once Trakt has
answered, :mod:`django_trakt.links.durability` makes sure nothing the caller does (a rollback
of its transaction, a failed commit) can lose the new pair.

Outcomes are distinct: refreshed, not due, needs re-authorization (Trakt rejected
the refresh token: the stored token is kept, the link is flagged and not retried until
the user signs in again), failed (transient: nothing stored changes, try again later).
A fault of the site's configuration (a wrong client secret, a redirect URI Trakt does not
accept, a disabled Trakt app, no Site to build the redirect URI) is none of these: it is
raised as :class:`~django_trakt.exceptions.TraktSiteMisconfigured` and flags no link.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, connections, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from django_trakt import signals
from django_trakt.api import oauth
from django_trakt.api.tokens import TokenGrant
from django_trakt.conf import get_trakt_app, trakt_settings
from django_trakt.core import clock
from django_trakt.exceptions import (
    TokenDecryptionError,
    TraktError,
    TraktForbidden,
    TraktInvalidGrant,
    TraktRateLimited,
    TraktServerError,
    TraktSiteMisconfigured,
    TraktTimeout,
    TraktTransportError,
    TraktUnauthorized,
)
from django_trakt.links import durability
from django_trakt.links.locks import database_alias, has_row_locks, lock_token
from django_trakt.links.redirect_uri import refresh_redirect_uri
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
) -> RefreshResult:
    """Refresh one link if it is due (or ``force``), safely under concurrency.

    ``unless_access_token_changed_from``: refresh only if the stored access token is
    still this one; the client passes the token Trakt just rejected with a 401, so
    that when another process has refreshed in the meantime, we use its new token
    instead of spending another refresh. ``app``: the Trakt app, to save a query per
    token in a batch. ``skip_locked``: a batch passes over a row another process is
    refreshing right now (PostgreSQL) instead of queueing behind it; on demand we wait.

    Trakt is always given the full ``TIMEOUT``. Raises
    :class:`~django_trakt.exceptions.TraktSiteMisconfigured` (and flags nothing) when the
    site's configuration is at fault, before any refresh token is spent where that can be
    told in advance.
    """
    pk = token.pk if isinstance(token, TraktToken) else token
    margin = DEFAULT_MARGIN if within is None else within
    app = app or get_trakt_app()
    redirect_uri = refresh_redirect_uri()
    attempt = functools.partial(
        _refresh,
        pk,
        app=app,
        redirect_uri=redirect_uri,
        force=force,
        margin=margin,
        unless_access_token_changed_from=unless_access_token_changed_from,
        skip_locked=skip_locked,
    )
    if durability.in_callers_transaction() and has_row_locks():
        result = _on_own_connection(pk, attempt)
        if result is not None:
            return result
    return attempt()


def on_own_connection(pk: int, work: Callable[[], RefreshResult], *, wait: float | None) -> RefreshResult | None:
    """Run ``work`` (a refresh of link ``pk``) on a thread with a database connection of its own.

    Waits at most ``wait`` seconds (None: until it is done); None when it is still running,
    which it goes on doing (not a daemon: an exiting process lets it store its pair).
    A :class:`TraktError` it raises is raised here.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except TraktError as err:  # handed to the caller's thread below
            outcome["error"] = err
        except Exception:
            logger.exception("Refreshing Trakt link %s failed unexpectedly", pk)
        finally:
            connections[database_alias()].close()

    thread = threading.Thread(target=run, name=f"trakt-refresh-{pk}")
    thread.start()
    thread.join(wait)
    if thread.is_alive():
        return None
    if "error" in outcome:
        raise outcome["error"]
    if "result" not in outcome:
        return RefreshResult(Outcome.FAILED, None, "the refresh failed unexpectedly (see the logs)")
    result: RefreshResult = outcome["result"]
    return result


def _on_own_connection(pk: int, attempt: Callable[..., RefreshResult]) -> RefreshResult | None:
    """Inside a caller's transaction: refresh on a connection of its own, whose commit is final.

    Then the caller's transaction never holds the row lock nor the new pair, so neither its
    rollback nor another process waiting for the lock can meet the spent refresh token.
    None when that connection cannot see or lock the row the caller sees (created in the
    caller's uncommitted transaction, a ``TestCase`` included, or locked by it): then the
    link lives and dies with the caller's transaction, and the refresh runs there, guarded.
    """
    # Bounded, so a caller can never hang on it: the lock wait, Trakt's answer and the save.
    result = on_own_connection(
        pk, functools.partial(attempt, lock_wait=trakt_settings.TIMEOUT + 5), wait=3 * trakt_settings.TIMEOUT + 15
    )
    if result is None:
        return RefreshResult(Outcome.FAILED, None, "the refresh is taking too long; it goes on and stores its pair")
    unseen = result.token is None and result.outcome in (Outcome.NOT_DUE, Outcome.FAILED)
    if unseen and TraktToken.objects.filter(pk=pk).exists():
        return None
    return result


@sensitive_variables()
def _refresh(
    pk: int,
    *,
    app: Any,
    redirect_uri: str,
    force: bool,
    margin: dt.timedelta,
    unless_access_token_changed_from: str | None,
    skip_locked: bool,
    lock_wait: float | None = None,
) -> RefreshResult:
    if not durability.settle_rescue(pk):
        return RefreshResult(Outcome.FAILED, None, "the previous refresh's pair is still being stored", retryable=True)
    rejected: TraktError | None = None
    guard: durability.PairGuard | None = None
    try:
        with transaction.atomic(using=database_alias()):
            locked = lock_token(pk, skip_locked=skip_locked, wait=lock_wait)
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
            except TokenDecryptionError as err:
                # A damaged ciphertext needs the user; a wrong key heals once the key is back.
                outcome = Outcome.NEEDS_REAUTH if err.corrupted else Outcome.FAILED
                return RefreshResult(outcome, locked, str(err))
            previous = locked.refresh_token_encrypted
            if not refresh_value:
                rejected = TraktInvalidGrant(400, "", "no refresh token is stored")
            else:
                try:
                    grant = _spend(app, refresh_value, redirect_uri)
                except TraktInvalidGrant as err:
                    rejected = err
                except TraktSiteMisconfigured:
                    raise
                except TraktError as err:
                    return _transient_failure(locked, err)
                else:
                    # From here on the pair exists only in memory until committed: the guard keeps it.
                    guard = durability.guard_refreshed(locked, previous, grant)
                    durability.store_refreshed(locked, guard)
            if rejected is not None:
                locked.status = TraktToken.Status.NEEDS_REAUTH
                locked.last_error = _describe(rejected)
                TraktToken.objects.filter(pk=pk).update(status=locked.status, last_error=locked.last_error)
    except DatabaseError as err:
        return _after_database_error(pk, guard, err)
    if guard is not None and not durability.in_callers_transaction():
        # Committed (or, in a TestCase, as committed as a test allows).
        guard.settle()
    if rejected is not None:
        logger.warning("Trakt rejected the refresh token of account %s: %s", locked.account_id, _describe(rejected))
        signals.token_needs_reauthorization.send(sender=TraktToken, token=locked, reason=_describe(rejected))
        return RefreshResult(Outcome.NEEDS_REAUTH, locked, _describe(rejected))
    logger.info("Refreshed the Trakt token of account %s", locked.account_id)
    signals.token_refreshed.send(sender=TraktToken, token=locked)
    return RefreshResult(Outcome.REFRESHED, locked, "refreshed")


@sensitive_variables()
def _spend(app: Any, refresh_value: str, redirect_uri: str) -> TokenGrant:
    """Trade the single-use refresh token at Trakt for a new pair.

    Raises :class:`TraktInvalidGrant` when the user's grant is dead,
    :class:`TraktSiteMisconfigured` when the site is at fault, and any other
    :class:`TraktError` for a transient failure.
    """
    try:
        return oauth.refresh_grant(
            client_id=app.client_id, client_secret=app.secret, refresh_token=refresh_value, redirect_uri=redirect_uri
        )
    except (TraktUnauthorized, TraktForbidden) as err:
        # A bare 401 or a 403 does not say whose fault it is: ask with the app alone.
        app_accepted = oauth.credentials_accepted(client_id=app.client_id, client_secret=app.secret)
        if app_accepted is False:
            raise oauth.app_refused(err.status_code) from err
        if app_accepted and isinstance(err, TraktUnauthorized):
            raise TraktInvalidGrant(err.status_code, err.excerpt, "Trakt refused the refresh token") from err
        raise


def _after_database_error(pk: int, guard: durability.PairGuard | None, err: DatabaseError) -> RefreshResult:
    if guard is None:
        # Nothing was sent to Trakt, or Trakt refused: no token was spent.
        logger.warning("Refreshing Trakt link %s failed on the database: %s", pk, err)
        return RefreshResult(Outcome.FAILED, None, f"database error: {err}", retryable=True)
    # Trakt answered but the pair did not commit with the refresh: the guard has stored it
    # again (or is doing so on its rescue thread).
    durability.settle_rescue(pk)
    stored = TraktToken.objects.filter(pk=pk).first()
    if stored is not None and stored.refresh_token_encrypted == guard.columns["refresh_token_encrypted"]:
        signals.token_refreshed.send(sender=TraktToken, token=stored)
        return RefreshResult(Outcome.REFRESHED, stored, "refreshed (stored after a database error)")
    return RefreshResult(Outcome.FAILED, stored, f"the new pair is being stored after a database error: {err}")


def _transient_failure(token: TraktToken, err: TraktError) -> RefreshResult:
    # Only the diagnosis is written: the stored pair stays exactly as it was.
    token.last_error = _describe(err)
    TraktToken.objects.filter(pk=token.pk).update(last_error=token.last_error)
    logger.warning("Refreshing the Trakt token of account %s failed: %s", token.account_id, token.last_error)
    if isinstance(err, TraktRateLimited):
        return RefreshResult(Outcome.FAILED, token, token.last_error, retry_after=err.retry_after)
    # Retried at once only where Trakt cannot have acted on the request: a read timeout or
    # a garbled 200 may mean Trakt rotated the token already, and the old one would be
    # rejected; the next run (or page) tries again with whatever pair is stored by then.
    retryable = isinstance(err, (TraktServerError, TraktTransportError)) and not isinstance(err, TraktTimeout)
    return RefreshResult(Outcome.FAILED, token, token.last_error, retryable=retryable)


def _describe(err: TraktError) -> str:
    return str(err)[:500]


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
    sleep = sleep or clock.sleep
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
