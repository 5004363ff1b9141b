"""What Trakt's approval of a code turns into: allauth's login, or a revoke of an unkept grant."""

from __future__ import annotations

import logging
from typing import Any

from allauth.socialaccount.adapter import get_adapter
from allauth.socialaccount.models import SocialLogin
from allauth.socialaccount.providers.base import ProviderException
from django.http import HttpRequest
from django.views.decorators.debug import sensitive_variables

from django_trakt import sign_in_budgets
from django_trakt.conf import PROVIDER_ID
from django_trakt.exceptions import TraktError, TraktForbidden
from django_trakt.internal.api import http, oauth
from django_trakt.internal.api.tokens import TokenAnswer, TokenGrant
from django_trakt.views import TraktOAuth2Adapter

logger = logging.getLogger(__name__)


def app_refused(app: Any, err: TraktForbidden) -> bool:
    """Whether a 403 means Trakt refuses the site's app itself (deleted or disabled), not Cloudflare.

    Trakt deletes apps without OAuth sessions (trakt/trakt-api#691) and then answers every
    call with a 403; a Cloudflare block is a 403 too. Asking once with the app's credentials
    alone (:func:`sign_in_budgets.app_refused_by_trakt`, at most once a minute) tells them
    apart. The operator gets an ERROR
    naming the cause; no secret or code is in it.
    """
    if not sign_in_budgets.app_refused_by_trakt(app):
        return False
    logger.error(
        "Sign-in or linking by code stopped: %s %s", oauth.app_refused(err.status_code), "No link was changed."
    )
    return True


def revoke_unkept(app: Any, grant: Any) -> None:
    """Revoke at Trakt the token of an approval this site does not keep.

    Nothing here stores it, so nothing could revoke it later: left alone, it would stay a
    live grant to the person's Trakt account, in no one's hands but listed as this app's.
    Never raises; a failure is logged without the token (the token expires by itself).
    """
    try:
        oauth.revoke_token(client_id=app.client_id, client_secret=app.secret, token=grant.access_token)
    except TraktError as err:
        logger.warning(
            "Trakt did not revoke the token of a device link that was not kept: %s (HTTP %s)",
            type(err).__name__,
            getattr(err, "status_code", "-"),
        )
        return
    logger.info("Revoked at Trakt the token of a device link that was not kept")


@sensitive_variables()
def approved_login(
    request: HttpRequest, app: Any, answer: TokenAnswer, grant: TokenGrant, *, state: dict[str, Any]
) -> SocialLogin | None:
    """The allauth login of an approved code, built as the redirect flow builds one; None if it cannot be.

    The profile is read with the new token (``/users/settings``), the token is sealed by the
    sign-in's adapter (``TraktOAuth2Adapter.parse_token``). When the profile fails, the
    grant is revoked at Trakt (nothing will hold it) and None comes back, logged.
    """
    try:
        profile = http.get_user_settings(app.client_id, grant.access_token)
        provider = get_adapter(request).get_provider(request, PROVIDER_ID)
        sociallogin = provider.sociallogin_from_response(request, profile)
    except (TraktError, ProviderException) as err:
        logger.warning("Trakt approved a code, but the profile failed: %s", type(err).__name__)
        revoke_unkept(app, grant)
        return None
    token = TraktOAuth2Adapter(request).parse_token(answer)
    if app.pk:
        token.app = app
    sociallogin.token = token
    sociallogin.state = state
    return sociallogin
