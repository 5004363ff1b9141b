"""What a refresh does with a link before it sends anything: the decision and the claim.

The claim rules are :mod:`django_trakt.internal.links.durability`'s: a refresh token is sent
only by whoever committed a claim on its link first. :func:`claim_as_seen` claims in one
statement a link that is still as the caller read it (the common case: a batch's stream, the
admin's or a client's row); :func:`claim_locked` looks at the link under its row lock and says
what to do with it (send, check a lapsed claim, nothing, or flag it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from django_trakt.conf import trakt_settings
from django_trakt.exceptions import TokenDecryptionError, TraktError, TraktInvalidGrant
from django_trakt.internal.links import crypto, durability
from django_trakt.internal.links.locks import lock_token
from django_trakt.internal.links.outcomes import Outcome, RefreshResult, describe, is_due
from django_trakt.models import TraktToken

_FLAGGED = (TraktToken.Status.NEEDS_REAUTH, TraktToken.Status.REVOKED)


def as_seen(token: TraktToken | int, unless_access_token_changed_from: str | None) -> TraktToken | None:
    """The row as the caller read it, when a claim in one statement can go by it (see
    ``durability.claim_if_unchanged``); None: the link is looked at under its row lock."""
    if not isinstance(token, TraktToken) or unless_access_token_changed_from is not None:
        return None
    if "refresh_token_encrypted" in token.get_deferred_fields() or not token.refresh_token_encrypted:
        return None
    return token


@dataclass(frozen=True)
class Spend:
    """The claim is committed: send this refresh token."""

    token: TraktToken
    refresh_value: str = field(repr=False)


@dataclass(frozen=True)
class Check:
    """A claim lapsed: its refresh may have been accepted. Check the link, send nothing."""

    token: TraktToken


@dataclass(frozen=True)
class Rejected:
    """The link was flagged in the claim's transaction: announce it once committed."""

    token: TraktToken
    error: TraktError


@sensitive_variables()
def claim_as_seen(seen: TraktToken, owner: str, *, force: bool, margin: dt.timedelta) -> Spend | None:
    """The common case in one statement: claim the link if it is still as ``seen`` shows it.

    None when it is not (or its refresh token does not decrypt): :func:`claim_locked` then looks at
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
    return Spend(seen, refresh_value) if claimed else None


def claim_locked(
    pk: int,
    owner: str,
    *,
    force: bool,
    margin: dt.timedelta,
    unless_access_token_changed_from: str | None,
    skip_locked: bool,
) -> RefreshResult | Spend | Check | Rejected:
    """Under the row lock: what to do with link ``pk``; when it is a refresh, claim it first.

    Inside ``durability.own_transaction``: the lock and the claim end with it, before anything
    is sent."""
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
        return Check(locked)
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
    return Spend(locked, refresh_value)


def _flag(token: TraktToken, err: TraktError) -> Rejected:
    """Inside the claim's transaction: the link has no refresh token to send (announced after the commit)."""
    TraktToken.objects.filter(pk=token.pk).update(status=TraktToken.Status.NEEDS_REAUTH, last_error=describe(err))
    return Rejected(token, err)
