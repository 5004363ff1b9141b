"""Signal receivers that keep :class:`~django_trakt.models.TraktToken` in step with allauth.

allauth hands us the tokens of a completed Trakt authorization on ``SocialLogin.token``.
The row is written once the ``SocialAccount`` exists in the database, on each of the
three ways it comes to exist or be used again:

- a returning user signs in (``social_account_updated``, sent by allauth's lookup);
- a signed-in user connects Trakt (``social_account_added``);
- a new user finishes signing up, by form or automatically (``user_signed_up``).
"""

from __future__ import annotations

import logging
from typing import Any

from allauth.account.signals import user_signed_up
from allauth.socialaccount.models import SocialLogin
from allauth.socialaccount.signals import social_account_added, social_account_updated
from django.dispatch import receiver
from django.views.decorators.debug import sensitive_variables

from django_trakt import claims, crypto, pending
from django_trakt.conf import PROVIDER_ID
from django_trakt.models import PendingGrant, TraktToken
from django_trakt.tokens import TokenGrant

logger = logging.getLogger(__name__)


@sensitive_variables()
def _grant_from_sociallogin(sociallogin: SocialLogin) -> TokenGrant | None:
    token = sociallogin.token
    if token is None or not token.token:
        return None
    return TokenGrant(
        # Sealed by the adapter (views.TraktOAuth2Adapter.parse_token).
        access_token=crypto.unseal(token.token),
        refresh_token=crypto.unseal(token.token_secret or ""),
        # The extra attributes do not survive allauth's pending-signup session
        # (only model fields are serialized); Trakt's values are these defaults.
        token_type=getattr(token, "trakt_token_type", "bearer"),
        scope=getattr(token, "trakt_scope", "public"),
        expires_at=token.expires_at,
    )


@sensitive_variables()
def store_token_for_login(sociallogin: SocialLogin | None) -> TraktToken | None:
    """Store the tokens of a Trakt login whose account is saved; else do nothing."""
    if sociallogin is None or sociallogin.account.provider != PROVIDER_ID or sociallogin.account.pk is None:
        return None
    grant = _grant_from_sociallogin(sociallogin)
    if grant is None:
        return None
    token = TraktToken.objects.store_grant(sociallogin.account, grant)
    if not pending.settle(grant.access_token):
        # The signup was finished after its grant had been revoked as abandoned.
        token.status = TraktToken.Status.NEEDS_REAUTH
        token.last_error = pending.ABANDONED
        TraktToken.objects.filter(pk=token.pk).update(status=token.status, last_error=token.last_error)
    logger.info("Stored Trakt token for account %s", sociallogin.account.pk)
    return token


def _is_refused_connect(request: Any, sociallogin: SocialLogin) -> bool:
    """A signed-in user connecting a Trakt account that belongs to someone else.

    allauth's lookup announces the existing account (``social_account_updated``) before
    it refuses such a connect; the other user's stored link must not change because of it.
    """
    user = getattr(request, "user", None)
    return (
        sociallogin.state.get("process") == "connect"
        and user is not None
        and user.is_authenticated
        and sociallogin.account.user_id != user.pk
    )


@receiver(social_account_updated, dispatch_uid="django_trakt.store_on_update")
def _store_on_login(sender: Any, sociallogin: SocialLogin, request: Any = None, **kwargs: Any) -> None:
    if _is_refused_connect(request, sociallogin):
        logger.info("Trakt account %s belongs to another user; connect refused, link unchanged", sociallogin.account.pk)
        grant = _grant_from_sociallogin(sociallogin)
        if grant is not None:
            # Nobody will hold this grant: revoke it now rather than at the next sweep.
            pending.revoke(PendingGrant.objects.filter(digest=pending.digest(grant.access_token)))
        return
    store_token_for_login(sociallogin)


@receiver(social_account_added, dispatch_uid="django_trakt.store_on_connect")
def _store_on_connect(sender: Any, sociallogin: SocialLogin, **kwargs: Any) -> None:
    store_token_for_login(sociallogin)


@receiver(user_signed_up, dispatch_uid="django_trakt.store_on_signup")
def _store_on_signup(sender: Any, sociallogin: SocialLogin | None = None, user: Any = None, **kwargs: Any) -> None:
    token = store_token_for_login(sociallogin)
    if token is not None and user is not None:
        claims.mark_unproven_signup(user, token)
