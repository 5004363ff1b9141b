"""Signal receivers that keep :class:`~django_trakt.models.TraktToken` in step with allauth.

allauth hands us the tokens of a completed Trakt authorization on ``SocialLogin.token``.
The row is written once the ``SocialAccount`` exists in the database, on each of the
three ways it comes to exist or be used again:

- a returning user signs in (``social_account_updated``, sent by allauth's lookup);
- a signed-in user connects Trakt (``social_account_added``);
- a new user finishes signing up, by form or automatically (``user_signed_up``).

A signed-in user connecting another user's Trakt account never reaches these: the
connect is refused before allauth's lookup (``views.TraktSocialLogin``), so allauth
announces nothing and the other user's link stays as it was.
"""

from __future__ import annotations

import logging
from typing import Any

from allauth.account.signals import user_signed_up
from allauth.socialaccount.models import SocialLogin
from allauth.socialaccount.signals import social_account_added, social_account_updated
from django.dispatch import receiver
from django.views.decorators.debug import sensitive_variables

from django_trakt.conf import PROVIDER_ID
from django_trakt.internal.api.tokens import TRAKT_SCOPE, TRAKT_TOKEN_TYPE, TokenGrant
from django_trakt.internal.links import crypto, pending
from django_trakt.models import TraktToken

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
        # allauth's SocialToken has fields for the tokens and the expiry only, and only
        # fields survive its pending-signup session: Trakt's token type and scope are the
        # values it issues every grant (the next refresh records what Trakt answers then).
        token_type=TRAKT_TOKEN_TYPE,
        scope=TRAKT_SCOPE,
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


@receiver(social_account_updated, dispatch_uid="django_trakt.store_on_update")
def _store_on_login(sender: Any, sociallogin: SocialLogin, **kwargs: Any) -> None:
    store_token_for_login(sociallogin)


@receiver(social_account_added, dispatch_uid="django_trakt.store_on_connect")
def _store_on_connect(sender: Any, sociallogin: SocialLogin, **kwargs: Any) -> None:
    store_token_for_login(sociallogin)


@receiver(user_signed_up, dispatch_uid="django_trakt.store_on_signup")
def _store_on_signup(sender: Any, sociallogin: SocialLogin | None = None, **kwargs: Any) -> None:
    # Whether the new account trusts this link is django_trakt.internal.links.trust's, on the same signal.
    store_token_for_login(sociallogin)
