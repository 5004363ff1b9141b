"""allauth's provider contract for Trakt (allauth imports this module by name)."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

from allauth.core.exceptions import ImmediateHttpResponse
from allauth.core.ratelimit import respond_429
from allauth.socialaccount.models import SocialLogin
from allauth.socialaccount.providers.base import ProviderException
from allauth.socialaccount.providers.oauth2.provider import OAuth2Provider
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from django_trakt import sign_in_budgets
from django_trakt.conf import PROVIDER_ID
from django_trakt.exceptions import (
    TraktConfigurationError,
    TraktError,
    TraktForbidden,
    TraktInvalidGrant,
    TraktUnauthorized,
)
from django_trakt.internal.api import http, oauth
from django_trakt.internal.api.tokens import TokenAnswer
from django_trakt.internal.links import crypto
from django_trakt.internal.links.profile import TraktProfile, trim_extra_data
from django_trakt.internal.pages.images import avatar_url
from django_trakt.views import TraktOAuth2Adapter, TraktSocialLogin

logger = logging.getLogger(__name__)

#: What allauth's provider-token endpoint answers (``errors[].message``, ``param: "token"``).
TOKEN_REFUSED = _(
    "Trakt did not accept this access token for this site's Trakt app: it is revoked, expired, "
    "or was issued to another Trakt app (a token must come from a sign-in with this site's client id)."
)
TOKEN_UNCHECKED = _("Trakt could not be asked who this access token belongs to. Please try again in a moment.")
TOKEN_NOT_CONFIGURED = _("Signing in with a Trakt token is not configured on this site.")
TOKEN_FAILED = _("This site could not check the token. Please try again later.")
TOKEN_MALFORMED = _("The token must have a non-empty access_token and, if any, a refresh_token that is a string.")


def failure_place(err: BaseException) -> str:
    """An unexpected exception for a log line: its type and the innermost place it came from.

    Never its message nor any frame's variables: either may hold the token being checked.
    """
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return type(err).__name__
    innermost = frames[-1]
    return f"{type(err).__name__} in {innermost.name} ({Path(innermost.filename).name}:{innermost.lineno})"


def _spend_token_check(request: HttpRequest) -> None:
    """Count a token check against its budgets; when spent, allauth's 429 and no call to Trakt."""
    verdict = sign_in_budgets.spend(sign_in_budgets.TOKEN_CHECKS, sign_in_budgets.client_of(request))
    if verdict.allowed:
        return
    if verdict.refused_by == "cache":
        # Nothing can be counted (the cache is down, logged): Trakt is not asked.
        raise ValidationError(TOKEN_UNCHECKED, code="trakt_unavailable")
    logger.info("Trakt token sign-in: over the %s budget of token checks, not asking Trakt", verdict.refused_by)
    response = respond_429(request)
    response["Retry-After"] = str(verdict.wait)
    raise ImmediateHttpResponse(response)


class TraktAccount(TraktProfile):
    """allauth's account class for Trakt: the profile, plus the avatar as this site serves it."""

    def get_avatar_url(self) -> str | None:
        # Trakt forbids hotlinking its images, the avatar included: never hand out
        # the profile's image URL, only this site's copy (django_trakt.internal.pages.image_views);
        # None when the profile has no avatar we would fetch.
        return avatar_url(self.account)


class TraktProvider(OAuth2Provider):
    id = PROVIDER_ID
    name = "Trakt"
    account_class = TraktAccount
    oauth2_adapter_class = TraktOAuth2Adapter
    # Trakt requires PKCE since its 2026 auth migration; a site can still turn it
    # off with SOCIALACCOUNT_PROVIDERS["trakt"]["OAUTH_PKCE_ENABLED"] = False.
    pkce_enabled_default = True
    # allauth's headless POST /auth/provider/token: see verify_token.
    supports_token_authentication = True

    def sociallogin_from_response(self, request: HttpRequest, response: Any) -> SocialLogin:
        plain = super().sociallogin_from_response(request, response)
        # allauth builds a plain SocialLogin (its class is not configurable); ours only adds a
        # guard to lookup (see views.TraktSocialLogin: why, and what it refuses). It is built
        # with SocialLogin's public constructor from what allauth's method filled in, the
        # attributes that constructor takes (and the state, set afterwards by allauth too).
        guarded = TraktSocialLogin(
            user=plain.user,
            account=plain.account,
            token=plain.token,
            email_addresses=plain.email_addresses,
            provider=plain.provider,
            phone=plain.phone,
            phone_verified=plain.phone_verified,
        )
        guarded.state = plain.state
        guarded.trakt_request = request
        return guarded

    @sensitive_variables()
    def verify_token(self, request: HttpRequest, token: dict[str, Any]) -> SocialLogin:
        """allauth's provider-token sign-in: who does this Trakt access token belong to?

        allauth's input has checked that ``token`` is a dict whose ``client_id`` is this
        site's (``client_id_mismatch`` otherwise) with a string ``access_token``; that only
        proves what the app claims. Trakt is the one to say whose token it is, and for which
        app: ``/users/settings`` is asked with the site's client id as ``trakt-api-key``, and
        a token Trakt does not take with it (revoked, expired, another app's) is refused.
        Every refusal is a ``ValidationError``, which allauth answers with its 400 envelope
        (``param: "token"``); nothing is stored before allauth completes the login.

        Nothing else leaves: allauth's frames above this one hold the app's token in plain
        (its input's ``token``), and any other exception would show them on the ``DEBUG`` page
        and in error reports, where ``sensitive_variables`` covers only our own frames. An
        unexpected failure is logged (its type and where, never its message or variables)
        and refused like the others. The one exception is the budget of token checks
        (:mod:`django_trakt.sign_in_budgets`): once spent, allauth's 429 answers (allauth's
        ``ImmediateHttpResponse``, which its middleware turns into that response) and Trakt
        is not asked.

        The answer is read like a token endpoint's (``TraktOAuth2Adapter.parse_token``): sealed,
        expiry from ``created_at + expires_in`` when sent, and a refresh token only if the app
        sent one (without it the link cannot be refreshed: ``links.refresh`` flags it
        needs-reauth at expiry instead of asking Trakt).
        The grant is not noted as pending (``links.pending``): it is the app's own sign-in,
        which a revocation of an abandoned signup would end under the app's feet.
        """
        try:
            return self._verified_login(request, token)
        except (ValidationError, ImmediateHttpResponse):
            raise
        except Exception as err:
            logger.error("Trakt token sign-in failed unexpectedly: %s", failure_place(err))
            # "from None": the failure's frames (a token among their variables) are not kept
            # on the error that allauth's input holds.
            raise ValidationError(TOKEN_FAILED, code="token_check_failed") from None

    @sensitive_variables()
    def _verified_login(self, request: HttpRequest, token: dict[str, Any]) -> SocialLogin:
        access_token = token.get("access_token")
        refresh_token = token.get("refresh_token")
        if (
            not isinstance(access_token, str)
            or not access_token.strip()
            or not (refresh_token is None or isinstance(refresh_token, str))
        ):
            raise ValidationError(TOKEN_MALFORMED, code="invalid_token")
        app = self.app
        try:
            # Keys that cannot encrypt would fail only when the link is stored, deep in allauth.
            crypto.configured_keys()
        except TraktConfigurationError as err:
            logger.error("Trakt token sign-in refused: %s", err)
            raise ValidationError(TOKEN_NOT_CONFIGURED, code="not_configured") from err
        _spend_token_check(request)
        try:
            profile = http.get_user_settings(app.client_id, access_token.strip())
        except (TraktUnauthorized, TraktInvalidGrant) as err:
            logger.info("Trakt token sign-in refused: Trakt did not accept the token (HTTP %s)", err.status_code)
            raise ValidationError(TOKEN_REFUSED, code="invalid_token") from err
        except TraktForbidden as err:
            # A 403 is Cloudflare or Trakt refusing the site's app itself (#691): ask (once a minute).
            if sign_in_budgets.app_refused_by_trakt(app):
                logger.error("Trakt token sign-in refused: %s", oauth.app_refused(err.status_code))
                raise ValidationError(TOKEN_NOT_CONFIGURED, code="not_configured") from err
            logger.warning("Trakt token sign-in: Trakt did not answer (HTTP %s)", err.status_code)
            raise ValidationError(TOKEN_UNCHECKED, code="trakt_unavailable") from err
        except TraktError as err:
            logger.warning("Trakt token sign-in: Trakt did not answer: %s", type(err).__name__)
            raise ValidationError(TOKEN_UNCHECKED, code="trakt_unavailable") from err
        try:
            sociallogin = self.sociallogin_from_response(request, profile)
        except ProviderException as err:
            raise ValidationError(TOKEN_REFUSED, code="invalid_token") from err
        answer = TokenAnswer(
            {key: token[key] for key in ("expires_in", "created_at") if key in token},
            access_token=access_token.strip(),
            refresh_token=(refresh_token or "").strip(),
        )
        social_token = TraktOAuth2Adapter(request).parse_token(answer)
        if app.pk:
            social_token.app = app
        sociallogin.token = social_token
        return sociallogin

    def extract_uid(self, data: dict[str, Any]) -> str:
        # The uuid never changes; the slug (and username) change when a user renames.
        # Falling back to the slug would make a renamed user a stranger (or worse,
        # hand their account to whoever takes the old name).
        uuid = TraktAccount.of_document(data).uuid.strip()
        if not uuid:
            raise ProviderException("Trakt's profile has no user.ids.uuid; refusing to identify the user by name.")
        return uuid

    def extract_common_fields(self, data: dict[str, Any]) -> dict[str, Any]:
        # The Trakt username, not the display name, is what the signup form offers.
        username = TraktAccount.of_document(data).username
        return {"username": username} if username else {}

    def extract_email_addresses(self, data: dict[str, Any]) -> list[Any]:
        # Trakt gives no email address; allauth's signup form asks for one.
        return []

    def extract_extra_data(self, data: dict[str, Any]) -> dict[str, Any]:
        # allauth stores this on every sign-in (replacing what was there), so trimming
        # here keeps every link to the allow-list; migration 0003 trimmed older rows.
        return trim_extra_data(data)


provider_classes = [TraktProvider]
