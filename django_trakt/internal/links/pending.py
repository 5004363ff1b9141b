"""Grants Trakt issued that no link holds yet: a signup in progress, a refused connect.

A new user's tokens wait in allauth's pending signup (in the session, sealed) until the
email form is sent. A visitor who leaves at that form would leave a live grant at Trakt
that nobody can revoke. So every grant a sign-in obtains is noted as a :class:`PendingGrant`
until a link stores it, and revoked at Trakt as soon as the site can tell it was abandoned:

- the same session starts another Trakt sign-in (allauth drops the pending signup then);
- it is older than ``PENDING_SIGNUP_MAX_AGE`` (``refresh_trakt_tokens`` sweeps them).

A signup finished after its grant was revoked still creates the link, flagged *needs
re-authorization* with the reason, rather than storing a token that no longer works.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from typing import Any

from django.db import DatabaseError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from django_trakt.conf import get_trakt_app
from django_trakt.exceptions import TraktConfigurationError, TraktError
from django_trakt.internal.api import oauth
from django_trakt.internal.links import crypto
from django_trakt.models import PendingGrant

logger = logging.getLogger(__name__)

#: The session's own list of the grants its sign-ins obtained (digests only).
SESSION_KEY = "django_trakt_pending_grants"
#: How long a revoked grant is remembered, to flag a signup finished later.
REVOKED_KEPT = dt.timedelta(days=7)
#: Seconds the grant of an unfinished sign-in (a signup form never sent) waits before the
#: scheduled sweep revokes it: an hour is far longer than anyone takes over the form, and
#: short enough that an abandoned grant does not linger (was TRAKT_PENDING_SIGNUP_MAX_AGE).
PENDING_SIGNUP_MAX_AGE = 3600.0

ABANDONED = "The sign-in was left unfinished, so Trakt's grant was revoked: sign in with Trakt again."


@sensitive_variables()
def digest(access_token: str) -> str:
    return hashlib.sha256(access_token.encode()).hexdigest()


@sensitive_variables()
def note(request: Any, access_token: str) -> None:
    """A sign-in obtained ``access_token``: note it until a link stores it.

    Grants earlier sign-ins of the same session left pending are abandoned now.
    """
    session = getattr(request, "session", None)
    earlier = list(session.get(SESSION_KEY, [])) if session is not None else []
    key = digest(access_token)
    try:
        PendingGrant.objects.get_or_create(
            digest=key, defaults={"access_token_encrypted": crypto.encrypt(access_token)}
        )
    except DatabaseError:
        logger.exception("Could not note a pending Trakt grant")
        return
    if session is not None:
        session[SESSION_KEY] = [key]
    for old in earlier:
        if old != key:
            revoke(PendingGrant.objects.filter(digest=old, revoked_at__isnull=True))


@sensitive_variables()
def settle(access_token: str) -> bool:
    """A link stores ``access_token`` now. False when its grant was revoked as abandoned."""
    rows = PendingGrant.objects.filter(digest=digest(access_token))
    revoked = rows.filter(revoked_at__isnull=False).exists()
    rows.delete()
    return not revoked


def hold(ciphertext: str, *, using: str = "default") -> int | None:
    """Keep a removed link's grant (its encrypted access token) until a task worker revokes it.

    Written in the transaction that deletes the link, so a rolled-back delete keeps
    nothing; the task gets only the row's id, never the token. A grant the task never
    revokes (a queue that lost the job) is revoked by the scheduled sweep
    (:func:`revoke_abandoned`) like an abandoned sign-in. None when the token cannot be
    read (nothing could revoke it) or the row cannot be written: revoke in process then.
    """
    try:
        key = digest(crypto.decrypt(ciphertext))
        grant, _created = PendingGrant.objects.using(using).get_or_create(
            digest=key, defaults={"access_token_encrypted": ciphertext}
        )
    except Exception:
        logger.warning("Could not keep a removed Trakt link's grant for its revoke task", exc_info=True)
        return None
    return grant.pk


def revoke_held(grant_id: int) -> bool | None:
    """Revoke the grant :func:`hold` kept, then forget it; True if Trakt confirmed.

    Safe twice and at once: the row is locked, and a grant already revoked is gone (None).
    A revoke Trakt did not confirm (False) keeps the row for the sweep to try again.
    """
    with transaction.atomic():
        grant = PendingGrant.objects.select_for_update().filter(pk=grant_id, revoked_at__isnull=True).first()
        if grant is None:
            return None
        confirmed = revoke([grant]) == 1
        if confirmed:
            PendingGrant.objects.filter(pk=grant_id).delete()
    return confirmed


def revoke(grants: Any) -> int:
    """Revoke ``grants`` (a queryset of :class:`PendingGrant`) at Trakt; how many Trakt confirmed.

    A grant Trakt could not be told about stays pending for the next sweep.
    """
    try:
        app = get_trakt_app()
    except TraktConfigurationError as err:
        logger.warning("Cannot revoke abandoned Trakt grants: %s", err)
        return 0
    confirmed = 0
    for grant in grants:
        try:
            oauth.revoke_token(
                client_id=app.client_id, client_secret=app.secret, token=crypto.decrypt(grant.access_token_encrypted)
            )
        except (TraktError, TraktConfigurationError) as err:
            logger.warning("Trakt did not revoke abandoned grant %s: %s", grant.pk, type(err).__name__)
            continue
        PendingGrant.objects.filter(pk=grant.pk).update(revoked_at=timezone.now(), access_token_encrypted="")
        confirmed += 1
    return confirmed


def revoke_abandoned(now: dt.datetime | None = None) -> int:
    """Revoke every grant pending for longer than ``PENDING_SIGNUP_MAX_AGE``; forget old ones."""
    now = now or timezone.now()
    PendingGrant.objects.filter(revoked_at__lt=now - REVOKED_KEPT).delete()
    cutoff = now - dt.timedelta(seconds=PENDING_SIGNUP_MAX_AGE)
    return revoke(PendingGrant.objects.filter(revoked_at__isnull=True, created_at__lt=cutoff).order_by("pk"))
