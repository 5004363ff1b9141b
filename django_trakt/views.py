"""allauth's OAuth2 adapter for Trakt: the authorization-code flow with PKCE.

Also the one refusal of our own in allauth's flows (:func:`account_of_another_user`): a
signed-in user connecting a Trakt account that is linked to another user of the site.
"""

from __future__ import annotations

import logging
from typing import Any

from allauth.socialaccount.models import SocialAccount, SocialApp, SocialLogin, SocialToken
from allauth.socialaccount.providers.base import AuthProcess
from allauth.socialaccount.providers.oauth2.client import OAuth2Client, OAuth2Error
from allauth.socialaccount.providers.oauth2.views import OAuth2CallbackView, OAuth2LoginView
from django.http import HttpRequest
from django.views.decorators.debug import sensitive_variables

from django_trakt.conf import trakt_settings
from django_trakt.exceptions import TraktConfigurationError, TraktError, TraktSiteMisconfigured
from django_trakt.internal.api import http, oauth
from django_trakt.internal.api.tokens import TokenAnswer, grant_from_response
from django_trakt.internal.links import crypto, pending
from django_trakt.internal.links.redirect_uri import TraktCallbackAdapter
from django_trakt.models import PendingGrant

logger = logging.getLogger(__name__)


class TraktOAuth2Client(OAuth2Client):
    """allauth's client, with Trakt's token exchange (JSON body, no Basic auth)."""

    def get_redirect_url(self, authorization_url: str, scope: Any, extra_params: dict[str, Any]) -> str:
        url = super().get_redirect_url(authorization_url, scope, extra_params)
        # Trakt has no scopes to ask for; an empty "scope=" only adds noise.
        return url.replace("&scope=&", "&").replace("?scope=&", "?")

    @sensitive_variables()
    def get_access_token(self, code: str, pkce_code_verifier: str | None = None, extra_data: Any = None) -> TokenAnswer:
        # allauth's contract: the token endpoint's answer as a dict, read by parse_token. A
        # TokenAnswer is a dict whose repr hides the tokens (allauth's callback view holds it
        # in a local variable, which error pages and reports print).
        try:
            # Keys that cannot encrypt would only fail once Trakt has issued a token, deep in
            # allauth's flow (a 500 with the token in its frames): refuse before the exchange.
            crypto.configured_keys()
        except TraktConfigurationError as err:
            logger.error("Trakt sign-in refused before the token exchange: %s", err)
            raise OAuth2Error(f"Trakt sign-in is not configured on this site: {err}") from err
        try:
            return oauth.exchange_code(
                client_id=self.consumer_key,
                client_secret=self.consumer_secret,
                code=code,
                redirect_uri=self.callback_url,
                code_verifier=pkce_code_verifier,
            )
        except TraktSiteMisconfigured as err:
            # The visitor sees allauth's generic error page; the operator is told what to fix.
            logger.warning("Trakt refused the sign-in because of the site's configuration: %s", err)
            raise OAuth2Error(f"Trakt token exchange failed: {err}") from err
        except TraktError as err:
            # allauth shows OAuth2Error as an authentication error page; our messages
            # carry a status and an excerpt of Trakt's answer, never a token.
            raise OAuth2Error(f"Trakt token exchange failed: {err}") from err


class TraktOAuth2Adapter(TraktCallbackAdapter):
    client_class = TraktOAuth2Client

    # Hosts are read at run time, so a site (or a test) can point at staging or at
    # the local Trakt of django_trakt.testing without re-importing anything.
    @property
    def access_token_url(self) -> str:
        return f"{trakt_settings.AUTH_URL}/oauth/token"

    @property
    def authorize_url(self) -> str:
        return f"{trakt_settings.AUTH_URL}/oauth/authorize"

    @sensitive_variables()
    def parse_token(self, data: dict[str, Any]) -> SocialToken:
        # Expiry by our rule (created_at + expires_in of the answer, tokens.grant_from_response),
        # not allauth's (now + expires_in).
        grant = grant_from_response(data)
        # Sealed: allauth keeps this object in the session while a new user fills in the
        # signup form (or a login waits for an email address to be verified). Its own
        # SocialToken table (SOCIALACCOUNT_STORE_TOKENS) gets the plain values, as allauth
        # documents them (links/social_tokens.py).
        # Only model fields: they are all that survives that session, so Trakt's token_type
        # and scope are not carried (the receivers record Trakt's constant values).
        return SocialToken(
            token=crypto.seal(grant.access_token),
            token_secret=crypto.seal(grant.refresh_token),
            expires_at=grant.expires_at,
        )

    @sensitive_variables()
    def complete_login(self, request: HttpRequest, app: SocialApp, token: SocialToken, **kwargs: Any) -> SocialLogin:
        try:
            access_token = crypto.unseal(token.token)
            profile = http.get_user_settings(app.client_id, access_token)
        except TraktError as err:
            raise OAuth2Error(f"Trakt profile request failed: {err}") from err
        # Until a link stores it (now, or when a new user sends the signup form), the grant
        # is pending: revoked at Trakt if the sign-in is abandoned.
        pending.note(request, access_token)
        return self.get_provider().sociallogin_from_response(request, profile)


def account_of_another_user(request: HttpRequest, sociallogin: SocialLogin) -> SocialAccount | None:
    """The link of this Trakt account, when a signed-in user connects it and it is another user's.

    The one place that decides it, for both ways of connecting: the device pages ask before
    completing (and answer "linked to another user"), :class:`TraktSocialLogin` asks in the
    redirect flow before allauth's lookup writes anything.
    """
    user = getattr(request, "user", None)
    if sociallogin.state.get("process") != AuthProcess.CONNECT or user is None or not user.is_authenticated:
        return None
    return (
        SocialAccount.objects.filter(provider=sociallogin.account.provider, uid=sociallogin.account.uid)
        .exclude(user_id=user.pk)
        .select_related("user")
        .first()
    )


class TraktSocialLogin(SocialLogin):
    """allauth's ``SocialLogin`` whose lookup leaves another user's link alone on a connect.

    allauth's ``lookup`` (run by ``complete_social_login`` before any hook of the site or
    ours) finds the existing account, overwrites its ``extra_data``, sends
    ``social_account_updated`` (on which the receivers would store the new tokens) and
    updates its ``SocialToken``; only afterwards does the connect step refuse an account of
    another user. In the redirect flow nothing public runs between allauth learning the
    process (the state, set after ``complete_login``) and that lookup, so the refusal is
    made here, in the one public method allauth calls at that point: for such a connect,
    the lookup only points the login at the existing account, without writing, and allauth's
    connect step refuses it as always (its "connected to another account" message and
    redirect, or headless's ``connected_other`` error). The grant Trakt issued for it is
    nobody's: it is revoked at once.

    ``TraktProvider.sociallogin_from_response`` makes every Trakt login one of these; a
    login allauth rebuilds from the session (``SocialLogin.deserialize``, after a
    reauthentication) is a plain one, but its lookup has run already by then.
    """

    #: The request of the flow: ``lookup`` takes none (allauth reads a context variable).
    trakt_request: HttpRequest | None = None

    @sensitive_variables()
    def lookup(self) -> None:
        other = account_of_another_user(self.trakt_request, self) if self.trakt_request is not None else None
        if other is None:
            super().lookup()
            return
        logger.info("Trakt account %s belongs to another user; connect refused, link unchanged", other.pk)
        # What allauth's lookup would point the login at, minus its writes.
        self.account = other
        self.user = other.user
        if self.token is not None and self.token.token:
            access_token = crypto.unseal(self.token.token)
            pending.revoke(PendingGrant.objects.filter(digest=pending.digest(access_token)))


oauth2_login = OAuth2LoginView.adapter_view(TraktOAuth2Adapter)
oauth2_callback = OAuth2CallbackView.adapter_view(TraktOAuth2Adapter)
