"""allauth's ``SocialToken`` of a Trakt login: sealed everywhere except in allauth's own table.

The adapter (``views.TraktOAuth2Adapter.parse_token``) hands allauth a ``SocialToken`` whose
``token`` and ``token_secret`` are sealed (``crypto.seal``): allauth serializes that object
into the session for a pending signup (``SocialLogin.serialize``) and for a login waiting in
a stage (``account.models.Login.serialize``, e.g. until an email address is verified), and
error pages print the frames that hold it. Our ``TraktToken`` (encrypted) is the copy the
app reads.

With ``SOCIALACCOUNT_STORE_TOKENS = True`` allauth also saves that object in its
``socialaccount_socialtoken`` table, where allauth documents ``token`` as the access token
and ``token_secret`` as the refresh token, and where a site's code reads them. So the sealed
values are opened on the way into that table and only there (``pre_save``), and sealed again
in memory once written (``post_save``): the same object may still go into the session
afterwards. Check ``django_trakt.W002`` recommends leaving allauth's copy off.

Why model signals: allauth has no public hook between a login's token and its table.
``SocialLogin.save`` and its lookup's token update call ``SocialToken.save`` themselves, and
``SocialLogin.deserialize`` (the pending signup coming back from the session) builds a plain
``SocialLogin``, so no subclass of ours would be the one saving. Django's documented
``pre_save``/``post_save`` signals see every write to the table.
"""

from __future__ import annotations

from typing import Any

from allauth.socialaccount.models import SocialToken
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver
from django.views.decorators.debug import sensitive_variables

from django_trakt.internal.links import crypto

#: The token fields allauth documents: ``token`` the access token, ``token_secret`` the refresh token.
TOKEN_FIELDS = ("token", "token_secret")
#: Set on a ``SocialToken`` whose sealed values were opened for the table, until sealed again.
_OPENED = "django_trakt_opened_for_table"


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(crypto.SEALED_PREFIX)


@receiver(pre_save, sender=SocialToken, dispatch_uid="django_trakt.social_token_plain_in_table")
@sensitive_variables()
def _open_for_table(sender: Any, instance: SocialToken, raw: bool = False, **kwargs: Any) -> None:
    # raw: loaddata writes a fixture as it is.
    if raw or not any(is_sealed(getattr(instance, name)) for name in TOKEN_FIELDS):
        return
    for name in TOKEN_FIELDS:
        setattr(instance, name, crypto.unseal(getattr(instance, name)))
    setattr(instance, _OPENED, True)


@receiver(post_save, sender=SocialToken, dispatch_uid="django_trakt.social_token_sealed_in_memory")
@sensitive_variables()
def _seal_again(sender: Any, instance: SocialToken, raw: bool = False, **kwargs: Any) -> None:
    # Only the login's own token object (opened above): a site saving a SocialToken of its
    # own keeps its values as it set them.
    if not getattr(instance, _OPENED, False):
        return
    delattr(instance, _OPENED)
    for name in TOKEN_FIELDS:
        # A refresh token allauth kept from the table (an answer without one) is sealed too.
        value = getattr(instance, name)
        if value and not is_sealed(value):
            setattr(instance, name, crypto.seal(value))
