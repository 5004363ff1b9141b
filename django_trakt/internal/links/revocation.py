"""Revoking a Trakt link at Trakt when it is removed here.

However a Trakt ``SocialAccount`` goes away - allauth's connections page, the admin's
delete, deleting the user (cascade), the "Revoke and unlink" admin action - its access
token is revoked at Trakt (``POST {AUTH_URL}/oauth/revoke``), and the stored
:class:`~django_trakt.models.TraktToken` goes with the account (``CASCADE``).

One ``pre_delete`` receiver on allauth's ``SocialAccount`` covers every path: it reads
the encrypted access token before the cascade deletes the row and revokes it with
``transaction.on_commit``, so a rolled-back delete revokes nothing and no HTTP call
runs inside the database transaction. Revoking the access token is enough: Trakt
revokes the authorization, so its refresh token dies with it.

A revoke that fails (Trakt down, a timeout, a token no key can decrypt, no Trakt app
configured) is logged - without the token - and never stops the unlinking: the link
is gone on this site either way, and the token expires at Trakt by itself.

:data:`~django_trakt.signals.link_revoked` is sent once per removed link, after the
commit, with the deleted ``SocialAccount`` (its ``pk`` is already ``None``; ``uid``,
``user_id`` and ``extra_data`` are still there) and ``revoked_at_trakt``.

With a task backend (``TRAKT_TASK_BACKEND``) the request that removed the link does not
wait for Trakt: the grant is kept encrypted in a ``PendingGrant`` row written in the
delete's transaction, and after the commit a task is enqueued with that row's id (never
the token); the worker revokes it and sends ``link_revoked`` with an account rebuilt from
``uid``, ``user_id`` and ``extra_data``. :func:`unlink` (the admin's action, which reports
Trakt's answer) always revokes in process.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from allauth.socialaccount.models import SocialAccount
from django.core.exceptions import MultipleObjectsReturned
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models.signals import pre_delete
from django.dispatch import receiver

from django_trakt.conf import PROVIDER_ID, get_trakt_app
from django_trakt.exceptions import TokenDecryptionError, TraktConfigurationError, TraktError
from django_trakt.internal.api import oauth
from django_trakt.internal.core import dispatch
from django_trakt.internal.links import crypto, pending
from django_trakt.internal.links.locks import lock_token
from django_trakt.models import TraktToken
from django_trakt.signals import link_revoked

logger = logging.getLogger(__name__)

#: Set on a ``SocialAccount`` instance whose token was already revoked (or deliberately
#: not), so that deleting it does not revoke a second time. See :func:`unlink`.
_HANDLED = "_django_trakt_revocation_handled"


def revoke_at_trakt(token: TraktToken) -> bool:
    """Revoke ``token``'s authorization at Trakt; ``True`` if Trakt confirmed it.

    Never raises for a Trakt error, a timeout, an undecryptable token or a missing
    Trakt app: those are logged (never the token) and give ``False``. The row itself
    is neither changed nor deleted.
    """
    return _revoke_ciphertext(token.access_token_encrypted, token.account_id)


def unlink(account: SocialAccount) -> bool:
    """Remove a Trakt link now: delete ``account`` (and its token), revoke at Trakt.

    The revoke is attempted exactly once and its result returned (``True`` if Trakt
    confirmed), for callers that report it, such as the admin action. The account is
    deleted first, in its own transaction, so a failed delete revokes nothing; a
    failed revoke still unlinks. Sends :data:`~django_trakt.signals.link_revoked`.
    """
    if account.provider != PROVIDER_ID:
        raise ValueError(f"Not a Trakt account: provider {account.provider!r}")
    account_id = account.pk
    setattr(account, _HANDLED, True)
    with transaction.atomic():
        ciphertext = _stored_ciphertext(account_id, DEFAULT_DB_ALIAS)
        account.delete()
    revoked = _revoke_ciphertext(ciphertext, account_id)
    _announce(account, account_id, revoked)
    return revoked


def _stored_ciphertext(account_id: Any, using: str) -> str:
    """The access token to revoke, read under the row lock (inside the delete's transaction).

    A refresh in flight holds that lock until its new pair is written, so waiting for it
    gives the pair that is live at Trakt, not the one the refresh just spent.
    """
    pk = TraktToken.objects.using(using).filter(account_id=account_id).values_list("pk", flat=True).first()
    if pk is None:
        return ""
    locked = lock_token(pk, using=using) if not transaction.get_autocommit(using=using) else None
    if locked is None:
        locked = TraktToken.objects.using(using).filter(pk=pk).first()
    return locked.access_token_encrypted if locked is not None else ""


def _revoke_ciphertext(ciphertext: str, account_id: Any) -> bool:
    if not ciphertext:
        logger.info("Trakt account %s has no access token to revoke", account_id)
        return False
    try:
        access_token = crypto.decrypt(ciphertext)
    except (TokenDecryptionError, TraktConfigurationError) as err:
        logger.warning(
            "Cannot revoke the Trakt token of account %s: it cannot be decrypted with TRAKT_TOKEN_KEYS (%s)",
            account_id,
            type(err).__name__,
        )
        return False
    try:
        app = get_trakt_app()
    except (TraktConfigurationError, MultipleObjectsReturned) as err:
        logger.warning("Cannot revoke the Trakt token of account %s: %s", account_id, type(err).__name__)
        return False
    try:
        oauth.revoke_token(client_id=app.client_id, client_secret=app.secret, token=access_token)
    except TraktError as err:
        # TraktError messages carry a status and an excerpt of Trakt's answer, never a token.
        logger.warning("Trakt did not revoke the token of account %s: %s", account_id, err)
        return False
    logger.info("Revoked the Trakt token of account %s at Trakt", account_id)
    return True


def _announce(account: SocialAccount, account_id: Any, revoked: bool) -> None:
    # A site's receiver that fails must not turn a finished unlink into an error page.
    for receiver_, response in link_revoked.send_robust(sender=TraktToken, account=account, revoked_at_trakt=revoked):
        if isinstance(response, Exception):
            logger.error("A link_revoked receiver (%r) failed for account %s", receiver_, account_id, exc_info=response)


def _revoke_after_commit(account: SocialAccount, account_id: Any, ciphertext: str) -> None:
    # Runs after the commit, still in the user's request: it must never raise.
    try:
        revoked = _revoke_ciphertext(ciphertext, account_id)
    except Exception:
        logger.exception("Revoking the Trakt token of account %s failed unexpectedly", account_id)
        revoked = False
    _announce(account, account_id, revoked)


@receiver(pre_delete, sender=SocialAccount, dispatch_uid="django_trakt.revoke_on_unlink")
def _revoke_on_unlink(sender: Any, instance: SocialAccount, using: str, **kwargs: Any) -> None:
    if instance.provider != PROVIDER_ID or getattr(instance, _HANDLED, False):
        return
    # Read now: the cascade deletes the TraktToken row right after the pre_delete signals.
    ciphertext = _stored_ciphertext(instance.pk, using)
    grant_id = pending.hold(ciphertext, using=using) if ciphertext and dispatch.active() else None
    if grant_id is not None:
        transaction.on_commit(partial(_enqueue_revoke, instance, instance.pk, grant_id), using=using)
        return
    transaction.on_commit(partial(_revoke_after_commit, instance, instance.pk, ciphertext), using=using)


def _enqueue_revoke(account: SocialAccount, account_id: Any, grant_id: int) -> None:
    # After the commit, still in the user's request: never raises, never waits for Trakt.
    args = (grant_id, account_id, account.user_id, account.uid, account.extra_data)
    if not dispatch.enqueue(dispatch.REVOKE_GRANT, *args):
        revoke_held(grant_id, account, account_id)


def revoke_held(grant_id: int, account: SocialAccount, account_id: Any) -> bool:
    """Revoke a removed link's grant kept by :func:`pending.hold`, and announce it (the task's work)."""
    try:
        outcome = pending.revoke_held(grant_id)
    except Exception:
        logger.exception("Revoking the Trakt token of account %s failed unexpectedly", account_id)
        outcome = False
    if outcome is None:
        return False  # revoked already (a task run twice): announced then
    revoked = outcome
    if revoked:
        logger.info("Revoked the Trakt token of account %s at Trakt", account_id)
    _announce(account, account_id, revoked)
    return revoked
