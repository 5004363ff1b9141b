"""Calls to Trakt's OAuth endpoints on ``AUTH_URL`` (never the API host).

Bodies are JSON and client credentials travel in the body: auth.trakt.tv rejects
form bodies and HTTP Basic client authentication.
"""

from __future__ import annotations

from typing import Any

from django.views.decorators.debug import sensitive_variables

from django_trakt.conf import trakt_settings
from django_trakt.exceptions import TraktAPIError, TraktError, TraktInvalidGrant, TraktSiteMisconfigured
from django_trakt.internal.api.http import decode_json, error_document, error_for_response, send
from django_trakt.internal.api.tokens import TokenAnswer, TokenGrant, grant_from_response

#: OAuth errors that describe the site's request or credentials, never the user's token.
_SITE_ERRORS = frozenset({"invalid_client", "unauthorized_client", "unsupported_grant_type", "invalid_request"})

_APP_SETTING = 'SOCIALACCOUNT_PROVIDERS["trakt"]["APP"]'
_REDIRECT_SETTING = 'the Site\'s domain or SOCIALACCOUNT_PROVIDERS["trakt"]["REDIRECT_URI"]'


def _token_error(status: int, body: Any) -> TraktError | None:
    """The error a token endpoint answer means, or None for the generic mapping.

    The distinction that matters: ``invalid_grant`` (or an empty 400, seen for tokens
    from before Trakt's 2026 migration) says *this user's* grant is dead; everything that
    speaks of the client, the request or the redirect URI is the site's fault and must not
    cost any user their link (see :class:`TraktSiteMisconfigured`). A bare 401 or a 403
    says neither: the refresh asks :func:`credentials_accepted`.
    """
    error = body.get("error") if isinstance(body, dict) else None
    description = str(body.get("error_description") or "") if isinstance(body, dict) else ""
    if error == "invalid_grant" and status in (400, 401):
        if "redirect" in description.lower():
            return TraktSiteMisconfigured(
                f"Trakt does not accept the redirect URI the site sends ({description[:120]}): it must be one "
                f"registered with the Trakt app; fix {_REDIRECT_SETTING} (manage.py trakt_redirect_uri).",
                setting=_REDIRECT_SETTING,
            )
        return TraktInvalidGrant(status, description, "Trakt rejected the grant")
    if error == "invalid_client":
        return TraktSiteMisconfigured(
            f"Trakt refused the site's client credentials (HTTP {status} invalid_client): the client secret is "
            f"wrong or was rotated at Trakt; fix the client_id/secret in {_APP_SETTING} (or the SocialApp).",
            setting=_APP_SETTING,
        )
    if error in _SITE_ERRORS:
        return TraktSiteMisconfigured(
            f"Trakt refused the site's token request (HTTP {status} {error}: {description[:120]}).",
            setting=_APP_SETTING,
        )
    if status == 400 and body is None:
        # trakt/trakt-api#888: a refresh token from before the July 2026 migration gets "HTTP 400,
        # no further detail"; it can never be exchanged, the user authorizes once more.
        return TraktInvalidGrant(
            status, "", "Trakt rejected the grant with an empty answer (a token from before Trakt's 2026 migration)"
        )
    return None


def app_refused(status: int) -> TraktSiteMisconfigured:
    """The error for a Trakt that refuses the site's app itself (see :func:`credentials_accepted`)."""
    if status == 403:
        return TraktSiteMisconfigured(
            "Trakt refused the site's app (HTTP 403): the Trakt app may be disabled or deleted (Trakt deletes "
            f"apps without OAuth sessions), or blocked; check it at trakt.tv and {_APP_SETTING}.",
            setting=_APP_SETTING,
        )
    return TraktSiteMisconfigured(
        f"Trakt refused the site's client credentials (HTTP {status}): the client secret is wrong or was "
        f"rotated at Trakt; fix the client_id/secret in {_APP_SETTING} (or the SocialApp).",
        setting=_APP_SETTING,
    )


#: The token sent by :func:`credentials_accepted`: not a token of anyone's.
_PROBE_TOKEN = "django-trakt-credentials-check"  # noqa: S105 - a marker, not a secret


@sensitive_variables()
def credentials_accepted(*, client_id: str, client_secret: str) -> bool | None:
    """Ask Trakt whether it accepts the site's app, with no user's token involved.

    For an answer that does not say whose fault it is (a bare 401 or a 403 to a
    refresh): revoking a token that is nobody's needs only valid client credentials and
    answers ``200`` (RFC 7009), so a refusal means the app, a 200 means the user's grant.
    ``None`` when Trakt's answer tells neither (down, rate-limited).
    """
    try:
        response = send(
            "POST",
            f"{trakt_settings.AUTH_URL}/oauth/revoke",
            client_id=client_id,
            json={"token": _PROBE_TOKEN, "client_id": client_id, "client_secret": client_secret},
            raise_for_status=False,
        )
    except TraktError:
        return None
    if response.status_code == 200:
        return True
    if response.status_code in (400, 401, 403):
        return False
    return None


@sensitive_variables()
def _token_answer(client_id: str, payload: dict[str, Any]) -> TokenAnswer:
    """The token endpoint's answer to ``payload``, checked to be a usable grant."""
    response = send(
        "POST",
        f"{trakt_settings.AUTH_URL}/oauth/token",
        client_id=client_id,
        json=payload,
        raise_for_status=False,
    )
    if response.status_code >= 400:
        # An HTML 429 from Cloudflare is "unparseable" here, so it maps to TraktRateLimited
        # with its Retry-After (the refresh defers or waits; no token was spent).
        raise _token_error(response.status_code, error_document(response)) or error_for_response(response)
    document = decode_json(response)
    # Checked here, so a malformed answer is a TraktMalformedResponse of the exchange (which
    # allauth's views turn into an error page), not a crash further on.
    grant_from_response(document)
    return TokenAnswer(document)


@sensitive_variables()
def exchange_code(
    *, client_id: str, client_secret: str, code: str, redirect_uri: str, code_verifier: str | None = None
) -> TokenAnswer:
    """Trade an authorization code for a token pair: Trakt's answer, as allauth's adapter reads it."""
    payload = {
        "code": code,
        "client_id": client_id,
        "client_secret": client_secret,
        "redirect_uri": redirect_uri,
        "grant_type": "authorization_code",
    }
    if code_verifier:
        payload["code_verifier"] = code_verifier
    return _token_answer(client_id, payload)


@sensitive_variables()
def refresh_grant(*, client_id: str, client_secret: str, refresh_token: str, redirect_uri: str) -> TokenGrant:
    """Trade a (single-use) refresh token for a new pair; the old one dies.

    Always with the full ``TIMEOUT``: a shorter budget would give up on an answer Trakt
    may already have acted on, and the new pair would be lost with the old token spent.
    """
    payload = {
        "refresh_token": refresh_token,
        "client_id": client_id,
        "client_secret": client_secret,
        "redirect_uri": redirect_uri,
        "grant_type": "refresh_token",
    }
    return grant_from_response(_token_answer(client_id, payload))


@sensitive_variables()
def revoke_token(*, client_id: str, client_secret: str, token: str) -> None:
    """Revoke an access token at Trakt (``200 {}``)."""
    response = send(
        "POST",
        f"{trakt_settings.AUTH_URL}/oauth/revoke",
        client_id=client_id,
        json={"token": token, "client_id": client_id, "client_secret": client_secret},
    )
    if response.status_code != 200:
        raise TraktAPIError(response.status_code, "", "Trakt did not confirm the revocation")
