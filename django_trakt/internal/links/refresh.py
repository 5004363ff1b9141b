"""Refreshing one Trakt token: the function the command, the admin and the client share.

Trakt's refresh tokens are single-use: the first refresh kills the old one, and a token sent
twice may cost the whole grant. So a refresh first commits a claim on the link
(:mod:`django_trakt.internal.links.durability`): in one statement while the row is still as the
caller read it, or else under the row's lock after looking at it again (another process may
have refreshed it meanwhile: then there is nothing left to do). Only then is the token sent,
and the new pair is written over the spent token only (compare-and-set). Once Trakt has
answered, nothing the caller does (a rollback of its transaction, a failed commit) can lose
the new pair.

What to do with a link, and its claim, are :mod:`~django_trakt.internal.links.claims`'s; the
outcomes are :mod:`django_trakt.internal.links.outcomes`'s; a lapsed claim is checked by
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
from typing import Any

from django.db import DatabaseError
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from django_trakt import signals
from django_trakt.conf import get_trakt_app
from django_trakt.exceptions import (
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
from django_trakt.internal.links import claims, durability, statements
from django_trakt.internal.links.lapsed_claim import check_lapsed_claim
from django_trakt.internal.links.locks import database_alias, skips_locked_rows
from django_trakt.internal.links.outcomes import Outcome, RefreshResult, describe
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
        seen=claims.as_seen(token, unless_access_token_changed_from),
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
    step: RefreshResult | claims.Spend | claims.Check | claims.Rejected | None = None
    try:
        if seen is not None:
            step = claims.claim_as_seen(seen, owner, force=force, margin=margin)
        if step is None:
            with durability.own_transaction(alias, lock_wait=wait):
                step = claims.claim_locked(
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
    if isinstance(step, claims.Rejected):
        return _flagged(step.token, step.error)
    if isinstance(step, claims.Check):
        return check_lapsed_claim(step.token, app)
    return _send_and_store(step, owner, app, redirect_uri)


@sensitive_variables()
def _send_and_store(step: claims.Spend, owner: str, app: Any, redirect_uri: str) -> RefreshResult:
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
        over_spent = [("refresh_token_encrypted", "equals", previous)]
        return statements.update_row(alias, token.pk, columns, over_spent) == 1

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
