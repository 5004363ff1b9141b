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

The same way, after the commit, the account's avatar is deleted from the image storage
(``TRAKT_IMAGE_STORAGE``): the site stops holding a picture of someone who left. So is
the previous avatar when a sign-in brings a new one (its old URL already serves the
default). A stored image is named by the digest of its source URL, so one file is
shared by every profile with that URL: it is kept while another Trakt account still
names it (a Trakt default picture). Posters are never deleted here: they are catalogue
art, stored once per source URL and shared by every watchlist that shows them, so no
poster is any one account's. A failed delete is logged and never blocks the unlinking.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from allauth.socialaccount.models import SocialAccount
from django.core.exceptions import MultipleObjectsReturned
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models.signals import post_save, pre_delete, pre_save
from django.dispatch import receiver

from django_trakt import crypto, images, oauth
from django_trakt.conf import PROVIDER_ID, get_trakt_app
from django_trakt.exceptions import TokenDecryptionError, TraktConfigurationError, TraktError
from django_trakt.locks import lock_token
from django_trakt.models import TraktToken
from django_trakt.profile import AVATAR_LOOKUP, TraktAccount
from django_trakt.signals import link_revoked

logger = logging.getLogger(__name__)

#: Set on a ``SocialAccount`` instance whose token was already revoked (or deliberately
#: not), so that deleting it does not revoke a second time. See :func:`unlink`.
_HANDLED = "_django_trakt_revocation_handled"
#: Set by ``pre_save`` on a ``SocialAccount`` instance: the avatar URL its stored row had.
_PREVIOUS_AVATAR = "_django_trakt_previous_avatar"


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
    locked = lock_token(pk, using=using) if connections[using].in_atomic_block else None
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
    transaction.on_commit(partial(_revoke_after_commit, instance, instance.pk, ciphertext), using=using)


# -- the account's images ------------------------------------------------------------------------


def _avatar_of(extra_data: Any) -> str | None:
    """The avatar URL as the profile stores it, un-normalized."""
    return TraktAccount.of_document(extra_data).avatar_source


def _spellings(avatar: str, source: str) -> list[str]:
    """Every way a profile may write the URL stored as ``source`` (Trakt sends some without a scheme)."""
    found = {avatar, source}
    if source.startswith("https://"):
        found |= {source.removeprefix("https:"), source.removeprefix("https://")}
    return sorted(found)


def _forget_avatar(account_id: Any, avatar: str, using: str) -> None:
    # Runs after the commit, still in the user's request: it must never raise.
    try:
        source = images.normalize_source(avatar)
        if source is None:
            return
        shared = (
            SocialAccount.objects.using(using)
            .filter(provider=PROVIDER_ID, **{f"{AVATAR_LOOKUP}__in": _spellings(avatar, source)})
            .exclude(pk=account_id)
            .exists()
        )
        if shared:
            logger.info("Kept the stored avatar of Trakt account %s: another Trakt account shows it", account_id)
            return
        images.delete_stored(source, images.AVATAR)
    except Exception:
        logger.exception("Deleting the stored avatar of Trakt account %s failed", account_id)


@receiver(pre_delete, sender=SocialAccount, dispatch_uid="django_trakt.forget_avatar_on_unlink")
def _forget_avatar_on_unlink(sender: Any, instance: SocialAccount, using: str, **kwargs: Any) -> None:
    # Not skipped for unlink() (_HANDLED): only the revoke is done there, the images are left to this.
    avatar = _avatar_of(instance.extra_data) if instance.provider == PROVIDER_ID else None
    if avatar is not None:
        # After the commit: a rolled-back delete keeps the link, and so its avatar.
        transaction.on_commit(partial(_forget_avatar, instance.pk, avatar, using), using=using, robust=True)


@receiver(pre_save, sender=SocialAccount, dispatch_uid="django_trakt.remember_previous_avatar")
def _remember_previous_avatar(
    sender: Any, instance: SocialAccount, raw: bool, using: str, update_fields: Any = None, **kwargs: Any
) -> None:
    if raw or instance.provider != PROVIDER_ID or instance.pk is None:
        return
    if update_fields is not None and "extra_data" not in update_fields:
        return
    # One query per save of a Trakt account; allauth saves one at each sign-in.
    stored = SocialAccount.objects.using(using).filter(pk=instance.pk).values_list("extra_data", flat=True).first()
    setattr(instance, _PREVIOUS_AVATAR, _avatar_of(stored))


@receiver(post_save, sender=SocialAccount, dispatch_uid="django_trakt.forget_replaced_avatar")
def _forget_replaced_avatar(sender: Any, instance: SocialAccount, using: str, **kwargs: Any) -> None:
    previous = instance.__dict__.pop(_PREVIOUS_AVATAR, None)
    if previous is None:
        return
    current = _avatar_of(instance.extra_data)
    if current is not None and images.normalize_source(current) == images.normalize_source(previous):
        return
    # After the save is committed (at once in autocommit): a rolled-back save still shows the old avatar.
    transaction.on_commit(partial(_forget_avatar, instance.pk, previous, using), using=using, robust=True)
