"""Calls to Trakt's OAuth endpoints on ``AUTH_URL`` (never the API host).

Bodies are JSON and client credentials travel in the body: auth.trakt.tv rejects
form bodies and HTTP Basic client authentication.
"""

from __future__ import annotations

from typing import Any

from django_trakt.conf import trakt_settings
from django_trakt.exceptions import TraktAPIError, TraktInvalidGrant
from django_trakt.http import decode_json, error_for_response, send
from django_trakt.tokens import TokenGrant, grant_from_response


def _is_rejected_grant(status: int, body: Any) -> bool:
    """``invalid_grant`` in a 400/401, or an empty 400 (seen for pre-2026 tokens)."""
    if status not in (400, 401):
        return False
    if isinstance(body, dict):
        return body.get("error") == "invalid_grant"
    return status == 400 and body is None


def _post_token(client_id: str, payload: dict[str, Any], timeout: float | None = None) -> TokenGrant:
    response = send(
        "POST",
        f"{trakt_settings.AUTH_URL}/oauth/token",
        client_id=client_id,
        json=payload,
        raise_for_status=False,
        timeout=timeout,
    )
    if response.status_code >= 400:
        try:
            body = response.json() if response.content.strip() else None
        except ValueError:
            body = "unparseable"
        if _is_rejected_grant(response.status_code, body):
            description = body.get("error_description", "") if isinstance(body, dict) else ""
            raise TraktInvalidGrant(response.status_code, str(description), "Trakt rejected the grant")
        raise error_for_response(response)
    return grant_from_response(decode_json(response))


def exchange_code(
    *, client_id: str, client_secret: str, code: str, redirect_uri: str, code_verifier: str | None = None
) -> TokenGrant:
    """Trade an authorization code for a token pair."""
    payload = {
        "code": code,
        "client_id": client_id,
        "client_secret": client_secret,
        "redirect_uri": redirect_uri,
        "grant_type": "authorization_code",
    }
    if code_verifier:
        payload["code_verifier"] = code_verifier
    return _post_token(client_id, payload)


def refresh_grant(
    *, client_id: str, client_secret: str, refresh_token: str, redirect_uri: str, timeout: float | None = None
) -> TokenGrant:
    """Trade a (single-use) refresh token for a new pair; the old one dies.

    ``timeout`` overrides the ``TIMEOUT`` setting (a page render passes its shorter budget).
    """
    payload = {
        "refresh_token": refresh_token,
        "client_id": client_id,
        "client_secret": client_secret,
        "redirect_uri": redirect_uri,
        "grant_type": "refresh_token",
    }
    return _post_token(client_id, payload, timeout)


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
