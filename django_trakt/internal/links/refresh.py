"""Refreshing one Trakt token: the function the command, the admin and the client share.

Trakt's refresh tokens are single-use: the first refresh kills the old one. So a
refresh locks the row (:mod:`django_trakt.internal.links.locks`: ``SELECT ... FOR UPDATE``, or SQLite's
writer lock) before it reads the refresh token and keeps it until the new pair is
written, and looks at the row again once it has the lock: another process may have
refreshed it meanwhile, in which case there is nothing left to do. Once Trakt has
answered, :mod:`django_trakt.internal.links.durability` makes sure nothing the caller does (a rollback
of its transaction, a failed commit) can lose the new pair.

The outcomes are :mod:`django_trakt.internal.links.outcomes`'s; a lapsed claim is checked by
:mod:`~django_trakt.internal.links.lapsed_claim`, a refresh inside a caller's transaction
runs on :mod:`~django_trakt.internal.links.own_connection`, and batch work retries with
:mod:`~django_trakt.internal.links.retries`. A fault of the site's configuration (a wrong
client secret, a redirect URI Trakt does not accept, a disabled Trakt app, no Site to build the
redirect URI) is no outcome: it is raised as
:class:`~django_trakt.exceptions.TraktSiteMisconfigured` and flags no link.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from django_trakt import signals
from django_trakt.conf import get_trakt_app, trakt_settings
from django_trakt.exceptions import (
    TokenDecryptionError,
    TraktError,
    TraktForbidden,
    TraktInvalidGrant,
    TraktMalformedResponse,
    TraktRateLimited,
    TraktServerError,
    TraktSiteMisconfigured,
    TraktTimeout,
    TraktTransportError,
    TraktUnauthorized,
)
from django_trakt.internal.api import oauth
from django_trakt.internal.api.tokens import TokenGrant
from django_trakt.internal.links import crypto, durability
from django_trakt.internal.links.lapsed_claim import check_lapsed_claim
from django_trakt.internal.links.locks import database_alias, lock_token, skips_locked_rows
from django_trakt.internal.links.outcomes import Outcome, RefreshResult, describe, is_due
from django_trakt.internal.links.own_connection import outside_callers_transaction
from django_trakt.internal.links.redirect_uri import refresh_redirect_uri
from django_trakt.models import TraktToken

logger = logging.getLogger(__name__)

#: The command's default margin. Trakt's access tokens live 24 hours to 7 days; with
#: the command run hourly, 6 hours refreshes each token once, a few hours before it
#: expires, and never on every run (a margin longer than the lifetime would).
DEFAULT_MARGIN = dt.timedelta(hours=6)

#: On demand (a page, a task) a token is refreshed only when it is about to expire.
ON_DEMAND_MARGIN = dt.timedelta(minutes=5)

_FLAGGED = (TraktToken.Status.NEEDS_REAUTH, TraktToken.Status.REVOKED)


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
    claiming right now (PostgreSQL) instead of queueing behind it; on demand we wait.

    Inside a caller's transaction the refresh runs on a connection of its own (PostgreSQL),
    or declines before anything is sent where it cannot have one (SQLite, whose writer lock
    the caller's transaction may hold; a link the caller's transaction created or locked).

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
        seen=_as_seen(token, unless_access_token_changed_from),
        app=app,
        redirect_uri=redirect_uri,
        force=force,
        margin=margin,
        unless_access_token_changed_from=unless_access_token_changed_from,
        skip_locked=skip_locked,
    )
    if durability.in_callers_transaction(database_alias()):
        return outside_callers_transaction(pk, attempt)
    return attempt()


def _as_seen(token: TraktToken | int, unless_access_token_changed_from: str | None) -> TraktToken | None:
    """The row as the caller read it, when a claim in one statement can go by it (see
    ``durability.claim_if_unchanged``); None: the link is looked at under its row lock."""
    if not isinstance(token, TraktToken) or unless_access_token_changed_from is not None:
        return None
    if "refresh_token_encrypted" in token.get_deferred_fields() or not token.refresh_token_encrypted:
        return None
    return token


@dataclass(frozen=True)
class _Spend:
    """The claim is committed: send this refresh token."""

    token: TraktToken
    refresh_value: str = field(repr=False)


@dataclass(frozen=True)
class _Check:
    """A claim lapsed: its refresh may have been accepted. Check the link, send nothing."""

    token: TraktToken


@dataclass(frozen=True)
class _Rejected:
    """The link was flagged in the claim's transaction: announce it once committed."""

    token: TraktToken
    error: TraktError


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
    seen: TraktToken | None = None,
    lock_wait: float | None = None,
) -> RefreshResult:
    alias = database_alias()
    owner = durability.claimant()
    # A skip-locked claim never waits for a lock, so it needs no lock timeout: one statement less.
    may_wait = not (skip_locked and skips_locked_rows(alias))
    wait = (durability.LOCK_TIMEOUT if lock_wait is None else lock_wait) if may_wait else None
    step: RefreshResult | _Spend | _Check | _Rejected | None = None
    try:
        if seen is not None:
            step = _claim_as_seen(seen, owner, force=force, margin=margin)
        if step is None:
            with durability.own_transaction(alias, lock_wait=wait):
                step = _claim(
                    pk,
                    owner,
                    force=force,
                    margin=margin,
                    unless_access_token_changed_from=unless_access_token_changed_from,
                    skip_locked=skip_locked,
                )
    except DatabaseError as err:
        # Nothing was sent. The commit may have gone through before the error, though: drop
        # a claim of ours on a new connection, so the link is not held for nothing.
        durability.reconnect_next_time(alias)
        durability.release(alias, pk, owner)
        logger.warning("Refreshing Trakt link %s failed on the database: %s", pk, err)
        return RefreshResult(Outcome.FAILED, None, f"database error: {err}", retryable=True)
    if isinstance(step, RefreshResult):
        return step
    if isinstance(step, _Rejected):
        return _flagged(step.token, step.error)
    if isinstance(step, _Check):
        return check_lapsed_claim(step.token, app)
    return _send_and_store(step, owner, app, redirect_uri)


@sensitive_variables()
def _claim_as_seen(seen: TraktToken, owner: str, *, force: bool, margin: dt.timedelta) -> _Spend | None:
    """The common case in one statement: claim the link if it is still as ``seen`` shows it.

    None when it is not (or its refresh token does not decrypt): :func:`_claim` then looks at
    the link under its row lock and says why. The token sent is the one ``seen`` holds, and
    the claim is made only while the row holds that very ciphertext.
    """
    ciphertext = seen.refresh_token_encrypted
    try:
        refresh_value = crypto.decrypt(ciphertext)
    except TokenDecryptionError:
        return None
    due_by = None if force else timezone.now() + margin
    claimed = durability.claim_if_unchanged(
        seen.pk, owner, ciphertext, due_by=due_by, request_deadline=trakt_settings.TIMEOUT
    )
    return _Spend(seen, refresh_value) if claimed else None


def _claim(
    pk: int,
    owner: str,
    *,
    force: bool,
    margin: dt.timedelta,
    unless_access_token_changed_from: str | None,
    skip_locked: bool,
) -> RefreshResult | _Spend | _Check | _Rejected:
    """Under the row lock: what to do with link ``pk``; when it is a refresh, claim it first."""
    locked = lock_token(pk, skip_locked=skip_locked)
    if locked is None:
        return RefreshResult(Outcome.NOT_DUE, None, "being refreshed elsewhere, or unlinked")
    if locked.status in _FLAGGED:
        return RefreshResult(Outcome.NEEDS_REAUTH, locked, "the user must sign in with Trakt again")
    if durability.claim_stands(locked):
        return RefreshResult(
            Outcome.NOT_DUE, locked, f"its refresh token is claimed until {locked.refresh_claim_until:%Y-%m-%d %H:%M}"
        )
    if durability.claim_lapsed(locked):
        return _Check(locked)
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
    if not refresh_value:
        return _flag(locked, TraktInvalidGrant(400, "", "no refresh token is stored"))
    durability.claim(pk, owner, request_deadline=trakt_settings.TIMEOUT)
    return _Spend(locked, refresh_value)


@sensitive_variables()
def _send_and_store(step: _Spend, owner: str, app: Any, redirect_uri: str) -> RefreshResult:
    """The claim is committed: send the refresh token once, and store what Trakt answers."""
    token, alias = step.token, database_alias()
    try:
        grant = _spend(app, step.refresh_value, redirect_uri)
    except TraktInvalidGrant as err:
        durability.release(alias, token.pk, owner, status=TraktToken.Status.NEEDS_REAUTH, last_error=describe(err))
        return _flagged(token, err)
    except TraktSiteMisconfigured:
        durability.release(alias, token.pk, owner)  # refused before the token was looked at
        raise
    except TraktError as err:
        return _transient_failure(token, owner, err)
    except BaseException:
        # Unknown whether Trakt acted (an interrupt, a bug): the claim stands and lapses.
        logger.exception("Refreshing Trakt link %s stopped after its refresh token was sent", token.pk)
        raise
    return _store(token, owner, grant)


@sensitive_variables()
def pair_columns(grant: TokenGrant, previous_refresh_ciphertext: str) -> dict[str, Any]:
    """The column values that store ``grant`` (encrypted) as an active link, its claim cleared."""
    holder = TraktToken(refresh_token_encrypted=previous_refresh_ciphertext)
    holder.apply_grant(grant)
    now = timezone.now()
    return {
        "access_token_encrypted": holder.access_token_encrypted,
        "refresh_token_encrypted": holder.refresh_token_encrypted,
        "token_type": holder.token_type,
        "scope": holder.scope,
        "expires_at": holder.expires_at,
        "status": TraktToken.Status.ACTIVE,
        "last_error": "",
        "last_refreshed_at": now,
        "updated_at": now,
        **durability.NO_CLAIM,
    }


@sensitive_variables()
def _store(token: TraktToken, owner: str, grant: TokenGrant) -> RefreshResult:
    """Write the pair Trakt gave, over the refresh token it spent (compare-and-set).

    Retried on a new connection until the store deadline. Over the spent token only, so it
    never overwrites a newer sign-in; a link removed or signed in again meanwhile gets no
    pair, and the new one is revoked at Trakt (nobody holds it).
    """
    alias = database_alias()
    previous = token.refresh_token_encrypted
    columns = pair_columns(grant, previous)

    def write() -> bool:
        return TraktToken.objects.filter(pk=token.pk, refresh_token_encrypted=previous).update(**columns) == 1

    deadline = time.monotonic() + durability.STORE_DEADLINE
    try:
        what = f"Storing the pair of Trakt link {token.pk}"
        written = durability.retrying(alias, write, deadline=deadline, what=what)
        # A commit that reported an error may still have gone through: then the row holds our pair.
        written = written or TraktToken.objects.filter(pk=token.pk, **{k: columns[k] for k in _PAIR}).exists()
    except DatabaseError as err:
        durability.reconnect_next_time(alias)
        logger.error(
            "The refreshed Trakt token of link %s could not be stored (%s); its claim stands, "
            "and the link is checked once it lapses",
            token.pk,
            err,
        )
        return RefreshResult(Outcome.FAILED, token, f"the new pair could not be stored: {err}")
    if not written:
        logger.warning("Trakt link %s was removed or signed in again while it was refreshed", token.pk)
        _revoke_orphan(grant)
        return RefreshResult(Outcome.NOT_DUE, None, "unlinked or signed in again meanwhile; the new pair was revoked")
    for name, value in columns.items():
        setattr(token, name, value)
    logger.info("Refreshed the Trakt token of account %s", token.account_id)
    signals.token_refreshed.send(sender=TraktToken, token=token)
    return RefreshResult(Outcome.REFRESHED, token, "refreshed")


_PAIR = ("access_token_encrypted", "refresh_token_encrypted")


@sensitive_variables()
def _revoke_orphan(grant: TokenGrant) -> None:
    # A live pair no link holds is a grant at Trakt the user cannot see from the site.
    try:
        app = get_trakt_app()
        oauth.revoke_token(client_id=app.client_id, client_secret=app.secret, token=grant.access_token)
    except TraktError as err:
        logger.warning("Could not revoke a refreshed Trakt pair nobody holds: %s", err)


def _flag(token: TraktToken, err: TraktError) -> _Rejected:
    """Inside the claim's transaction: the link has no refresh token to send (announced after the commit)."""
    TraktToken.objects.filter(pk=token.pk).update(status=TraktToken.Status.NEEDS_REAUTH, last_error=describe(err))
    return _Rejected(token, err)


def _flagged(token: TraktToken, err: TraktError) -> RefreshResult:
    token.status = TraktToken.Status.NEEDS_REAUTH
    token.last_error = describe(err)
    logger.warning("Trakt rejected the refresh token of account %s: %s", token.account_id, token.last_error)
    signals.token_needs_reauthorization.send(sender=TraktToken, token=token, reason=token.last_error)
    return RefreshResult(Outcome.NEEDS_REAUTH, token, token.last_error)


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


def _transient_failure(token: TraktToken, owner: str, err: TraktError) -> RefreshResult:
    """Trakt did not refresh, or may have: the stored pair stays exactly as it was.

    Where Trakt cannot have acted (a 5xx, a 429, nothing sent) the claim is released and the
    failure may be retried at once. After a timeout or a garbled 200, Trakt may have rotated
    the token already: the claim stands until it lapses, and the link is then checked.
    """
    token.last_error = describe(err)
    logger.warning("Refreshing the Trakt token of account %s failed: %s", token.account_id, token.last_error)
    if isinstance(err, (TraktTimeout, TraktMalformedResponse)):
        try:
            TraktToken.objects.filter(pk=token.pk, refresh_claimed_by=owner).update(last_error=token.last_error)
        except DatabaseError:
            durability.reconnect_next_time(database_alias())  # only the diagnosis is lost
        return RefreshResult(Outcome.FAILED, token, token.last_error)
    durability.release(database_alias(), token.pk, owner, last_error=token.last_error)
    if isinstance(err, TraktRateLimited):
        return RefreshResult(Outcome.FAILED, token, token.last_error, retry_after=err.retry_after)
    retryable = isinstance(err, (TraktServerError, TraktTransportError))
    return RefreshResult(Outcome.FAILED, token, token.last_error, retryable=retryable)


__all__ = ["DEFAULT_MARGIN", "ON_DEMAND_MARGIN", "refresh_token"]
