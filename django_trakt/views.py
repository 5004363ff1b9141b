"""allauth's OAuth2 adapter for Trakt: the authorization-code flow with PKCE."""

from __future__ import annotations

import logging
from typing import Any

from allauth.socialaccount.models import SocialApp, SocialLogin, SocialToken
from allauth.socialaccount.providers.oauth2.client import OAuth2Client, OAuth2Error
from allauth.socialaccount.providers.oauth2.views import OAuth2CallbackView, OAuth2LoginView
from django.http import HttpRequest
from django.views.decorators.debug import sensitive_variables

from django_trakt import crypto, http, oauth, pending
from django_trakt.conf import trakt_settings
from django_trakt.exceptions import TraktConfigurationError, TraktError, TraktSiteMisconfigured
from django_trakt.redirect_uri import TraktCallbackAdapter
from django_trakt.tokens import TokenGrant

logger = logging.getLogger(__name__)


class TraktOAuth2Client(OAuth2Client):
    """allauth's client, with Trakt's token exchange (JSON body, no Basic auth)."""

    def get_redirect_url(self, authorization_url: str, scope: Any, extra_params: dict[str, Any]) -> str:
        url = super().get_redirect_url(authorization_url, scope, extra_params)
        # Trakt has no scopes to ask for; an empty "scope=" only adds noise.
        return url.replace("&scope=&", "&").replace("?scope=&", "?")

    @sensitive_variables()
    def get_access_token(self, code: str, pkce_code_verifier: str | None = None, extra_data: Any = None) -> TokenGrant:
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
    def parse_token(self, data: TokenGrant) -> SocialToken:
        # Sealed: allauth keeps this object in the session while a new user fills in the
        # signup form (and in its SocialToken table with SOCIALACCOUNT_STORE_TOKENS).
        token = SocialToken(
            token=crypto.seal(data.access_token),
            token_secret=crypto.seal(data.refresh_token),
            expires_at=data.expires_at,
        )
        # Not model fields of allauth's SocialToken; kept on the instance for the
        # receivers that store our TraktToken (see django_trakt.receivers).
        token.trakt_token_type = data.token_type
        token.trakt_scope = data.scope
        return token

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


oauth2_login = OAuth2LoginView.adapter_view(TraktOAuth2Adapter)
oauth2_callback = OAuth2CallbackView.adapter_view(TraktOAuth2Adapter)
