"""Sign in with a Trakt token: allauth's headless ``POST /auth/provider/token``.

An app that runs its own Trakt sign-in with the site's client id hands the site the
access token it got; the provider (``TraktProvider.verify_token``) asks the local Trakt
who it belongs to, with the site's client id, and allauth signs the app in (the app
client: ``/_allauth/app/v1``, answering with ``meta.session_token``). A token Trakt does
not accept for the site's app is refused with allauth's 400 envelope, and nothing is kept.
"""

from __future__ import annotations

import json

import pytest
from allauth.socialaccount.models import SocialAccount
from django.conf import settings
from django.contrib.auth import get_user_model

from django_trakt.internal.links.outcomes import Outcome
from django_trakt.internal.links.refresh import refresh_token
from django_trakt.models import PendingGrant, TraktToken
from tests.test_headless import headless_site  # noqa: F401  (the headless site, autouse)

pytestmark = pytest.mark.django_db

User = get_user_model()

APP_API = "/_allauth/app/v1"


def provider_token(client, token, *, process="login", session_token=None):
    headers = {"HTTP_X_SESSION_TOKEN": session_token} if session_token else {}
    return client.post(
        f"{APP_API}/auth/provider/token",
        {"provider": "trakt", "process": process, "token": token},
        content_type="application/json",
        **headers,
    )


def issued(trakt, username="Watcher", client_id=None):
    """A token pair the local Trakt issued, as the app would send it (client id included)."""
    body = trakt.issue_tokens(username, client_id or settings.TRAKT_CLIENT_ID)
    return {
        "client_id": settings.TRAKT_CLIENT_ID,
        "access_token": body["access_token"],
        "refresh_token": body["refresh_token"],
        "expires_in": body["expires_in"],
        "created_at": body["created_at"],
    }


def sign_up_with_token(client, trakt, token, email="wanda@example.com"):
    pending = provider_token(client, token)
    assert pending.status_code == 401, pending.content
    session_token = pending.json()["meta"]["session_token"]
    username = client.get(f"{APP_API}/auth/provider/signup", HTTP_X_SESSION_TOKEN=session_token).json()["data"]
    done = client.post(
        f"{APP_API}/auth/provider/signup",
        {"email": email, "username": username["user"]["username"]},
        content_type="application/json",
        HTTP_X_SESSION_TOKEN=session_token,
    )
    return done


def assert_nothing_stored():
    assert SocialAccount.objects.count() == 0
    assert TraktToken.objects.count() == 0
    assert PendingGrant.objects.count() == 0
    assert User.objects.count() == 0


def test_config_offers_trakt_by_token(client):
    (trakt,) = client.get(f"{APP_API}/config").json()["data"]["socialaccount"]["providers"]
    assert trakt["id"] == "trakt" and "provider_token" in trakt["flows"]


def test_a_valid_token_of_a_new_user_starts_the_signup_then_signs_in(client, trakt):
    token = issued(trakt)
    pending = provider_token(client, token)
    assert pending.status_code == 401, pending.content
    body = pending.json()
    (flow,) = [flow for flow in body["data"]["flows"] if flow.get("is_pending")]
    assert flow["id"] == "provider_signup" and flow["provider"]["id"] == "trakt"
    assert token["access_token"] not in pending.content.decode()
    # Trakt was asked who the token is, with the site's client id and the token as Bearer.
    (asked,) = trakt.requests_to("/users/settings")
    assert asked.headers["trakt-api-key"] == settings.TRAKT_CLIENT_ID
    assert asked.headers["Authorization"] == f"Bearer {token['access_token']}"
    assert SocialAccount.objects.count() == 0 and TraktToken.objects.count() == 0
    # The app's own grant is not noted as pending: revoking it as abandoned would sign the app out.
    assert PendingGrant.objects.count() == 0

    session_token = body["meta"]["session_token"]
    done = client.post(
        f"{APP_API}/auth/provider/signup",
        {"email": "wanda@example.com", "username": "Watcher"},
        content_type="application/json",
        HTTP_X_SESSION_TOKEN=session_token,
    )
    assert done.status_code == 200, done.content
    assert done.json()["meta"]["is_authenticated"] is True
    account = SocialAccount.objects.get()
    assert account.uid == trakt.get_user("Watcher").uuid
    assert (account.user.username, account.user.email) == ("Watcher", "wanda@example.com")
    stored = TraktToken.objects.get(account=account)
    assert stored.access_token == token["access_token"] and stored.refresh_token == token["refresh_token"]
    # Encrypted like any other link: the columns hold ciphertext, not the token.
    row = TraktToken.objects.filter(pk=stored.pk).values().get()
    assert token["access_token"] not in json.dumps(row, default=str)
    assert int(stored.expires_at.timestamp()) == token["created_at"] + token["expires_in"]


def test_a_returning_user_signs_in_with_a_token_into_the_same_account(client, trakt):
    assert sign_up_with_token(client, trakt, issued(trakt)).status_code == 200
    account = SocialAccount.objects.get()

    second = issued(trakt)
    signed_in = provider_token(client, second)
    assert signed_in.status_code == 200, signed_in.content
    body = signed_in.json()
    assert body["meta"]["is_authenticated"] is True and body["meta"]["session_token"]
    assert body["data"]["user"]["id"] == account.user_id
    assert SocialAccount.objects.get() == account
    assert TraktToken.objects.get().access_token == second["access_token"]


def test_a_token_without_a_refresh_token_is_stored_without_one_and_never_refreshed(client, trakt):
    token = issued(trakt)
    del token["refresh_token"]
    assert sign_up_with_token(client, trakt, token).status_code == 200
    stored = TraktToken.objects.get()
    assert stored.access_token == token["access_token"] and stored.refresh_token == ""

    trakt.reset_requests()
    result = refresh_token(stored, force=True)
    assert result.outcome is Outcome.NEEDS_REAUTH
    assert trakt.requests_to("/oauth/token") == []  # no refresh token: Trakt is not asked
    stored.refresh_from_db()
    assert stored.status == TraktToken.Status.NEEDS_REAUTH


def refused(response):
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["status"] == 400
    (error,) = body["errors"]
    assert error["param"] == "token"
    return error


def test_a_token_of_another_trakt_app_is_refused_and_nothing_stored(client, trakt):
    trakt.add_app("another-app", "another-secret", name="Another app")
    token = issued(trakt, client_id="another-app")  # a real token, of another app
    error = refused(provider_token(client, token))
    assert error["code"] == "invalid_token"
    assert "issued to another Trakt app" in error["message"]
    (asked,) = trakt.requests_to("/users/settings")
    assert asked.headers["trakt-api-key"] == settings.TRAKT_CLIENT_ID and asked.status == 401
    assert token["access_token"] not in json.dumps(error)
    assert_nothing_stored()


def test_a_revoked_token_is_refused_and_nothing_stored(client, trakt):
    token = issued(trakt)
    trakt.revoke_tokens("Watcher")
    error = refused(provider_token(client, token))
    assert error["code"] == "invalid_token"
    assert_nothing_stored()


@pytest.mark.parametrize(
    "token",
    [
        {"client_id": "test-client-id", "access_token": "garbage"},
        {"client_id": "test-client-id", "access_token": "   "},
        {"client_id": "test-client-id", "access_token": "x", "refresh_token": 42},
        {"client_id": "test-client-id"},
        {"access_token": "garbage"},  # allauth: the client id is required
        {"client_id": "another-app", "access_token": "garbage"},  # allauth: not this site's app
        "garbage",
    ],
)
def test_garbage_is_refused_with_allauths_envelope_and_nothing_stored(client, trakt, token):
    refused(provider_token(client, token))
    assert_nothing_stored()


def test_trakt_down_is_refused_without_a_500(client, trakt):
    trakt.fail_next("/users/settings", status=503)
    error = refused(provider_token(client, issued(trakt)))
    assert error["code"] == "trakt_unavailable"
    assert_nothing_stored()
