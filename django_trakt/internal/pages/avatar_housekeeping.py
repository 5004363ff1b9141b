"""Avatars follow their account: deleted from the image storage when no profile shows them.

When a Trakt link is removed, after the commit, the account's avatar is deleted from the image storage
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
from django.db import transaction
from django.db.models.signals import post_save, pre_delete, pre_save
from django.dispatch import receiver

from django_trakt.conf import PROVIDER_ID
from django_trakt.internal.links.profile import AVATAR_LOOKUP, TraktProfile
from django_trakt.internal.pages import images
from django_trakt.internal.pages.image_sources import normalize_source

logger = logging.getLogger(__name__)

#: Set by ``pre_save`` on a ``SocialAccount`` instance: the avatar URL its stored row had.
_PREVIOUS_AVATAR = "_django_trakt_previous_avatar"


def _avatar_of(extra_data: Any) -> str | None:
    """The avatar URL as the profile stores it, un-normalized."""
    return TraktProfile.of_document(extra_data).avatar_source


def _spellings(avatar: str, source: str) -> list[str]:
    """Every way a profile may write the URL stored as ``source`` (Trakt sends some without a scheme)."""
    found = {avatar, source}
    if source.startswith("https://"):
        found |= {source.removeprefix("https:"), source.removeprefix("https://")}
    return sorted(found)


def _forget_avatar(account_id: Any, avatar: str, using: str) -> None:
    # Runs after the commit, still in the user's request: it must never raise.
    try:
        source = normalize_source(avatar)
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
    # Every removal, revoke_and_unlink included (revocation.unlink only handles the revoke).
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
    if current is not None and normalize_source(current) == normalize_source(previous):
        return
    # After the save is committed (at once in autocommit): a rolled-back save still shows the old avatar.
    transaction.on_commit(partial(_forget_avatar, instance.pk, previous, using), using=using, robust=True)
