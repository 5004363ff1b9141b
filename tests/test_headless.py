"""Sign in with Trakt from a single-page app: allauth's headless API, browser client.

The site runs ``allauth.headless`` with ``HEADLESS_ONLY = True`` (tests/headless_urls.py);
the frontend lives at ``https://app.example.com``. The flow is the one docs/headless.md
describes: the SPA posts a form to ``/_allauth/browser/v1/auth/provider/redirect``, the
browser goes to Trakt and back to the provider callback, which redirects to the SPA's
``callback_url``; the SPA then reads ``/auth/session`` and, for a new user, completes
``/auth/provider/signup`` with an email address.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from allauth.socialaccount.models import SocialAccount
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client, override_settings

from django_trakt.models import TraktToken

pytestmark = pytest.mark.django_db

User = get_user_model()

API = "/_allauth/browser/v1"
FRONTEND = "https://app.example.com"
CALLBACK_URL = f"{FRONTEND}/account/provider/callback"


@pytest.fixture(autouse=True)
def headless_site():
    with override_settings(
        INSTALLED_APPS=[*settings.INSTALLED_APPS, "allauth.headless"],
        ROOT_URLCONF="tests.headless_urls",
        HEADLESS_ONLY=True,
        HEADLESS_FRONTEND_URLS={
            "account_confirm_email": f"{FRONTEND}/account/verify-email/{{key}}",
            "account_reset_password_from_key": f"{FRONTEND}/account/password/reset/key/{{key}}",
            "account_signup": f"{FRONTEND}/account/signup",
            "socialaccount_login_error": f"{FRONTEND}/account/provider/callback",
        },
        # allauth accepts a callback_url on the site's own hosts or on a trusted origin.
        CSRF_TRUSTED_ORIGINS=[FRONTEND],
    ):
        yield


def redirect_to_trakt(client, process="login"):
    """What the SPA's form post does: -> the authorize URL at Trakt."""
    response = client.post(
        f"{API}/auth/provider/redirect",
        {"provider": "trakt", "callback_url": CALLBACK_URL, "process": process},
    )
    assert response.status_code == 302, response.content
    return response["Location"]


def back_from_trakt(client, trakt, *, decision="approve", process="login"):
    """Trakt's consent page, then the provider callback: -> the redirect it answers."""
    callback = trakt.authorize(redirect_to_trakt(client, process), decision=decision)
    assert urlsplit(callback).path == "/accounts/trakt/login/callback/"
    return client.get(callback)


def session(client):
    response = client.get(f"{API}/auth/session")
    return response.status_code, response.json()


def sign_up(client, trakt, email="wanda@example.com"):
    response = back_from_trakt(client, trakt)
    assert response.status_code == 302 and response["Location"] == CALLBACK_URL
    username = client.get(f"{API}/auth/provider/signup").json()["data"]["user"]["username"]
    return client.post(
        f"{API}/auth/provider/signup",
        {"email": email, "username": username},
        content_type="application/json",
    )


def test_headless_config_offers_trakt_by_redirect(client):
    providers = client.get(f"{API}/config").json()["data"]["socialaccount"]["providers"]
    (trakt,) = providers
    assert trakt["id"] == "trakt" and trakt["name"] == "Trakt"
    assert trakt["flows"] == ["provider_redirect", "provider_token"]
    assert trakt["client_id"] == "test-client-id"  # public; the secret never leaves the server


def test_headless_redirect_goes_to_trakt_with_pkce_and_the_site_callback(client, trakt):
    url = urlsplit(redirect_to_trakt(client))
    query = parse_qs(url.query)
    assert f"{url.scheme}://{url.netloc}{url.path}" == "https://auth.trakt.test/oauth/authorize"
    # Trakt is given the site's own callback; the SPA's callback_url stays in allauth's state.
    assert query["redirect_uri"] == ["http://testserver/accounts/trakt/login/callback/"]
    assert query["code_challenge_method"] == ["S256"] and query["state"][0]


def test_headless_new_user_is_pending_signup_then_signs_up_with_email(client, trakt):
    response = back_from_trakt(client, trakt)
    assert response.status_code == 302 and response["Location"] == CALLBACK_URL
    assert TraktToken.objects.count() == 0 and SocialAccount.objects.count() == 0

    status, body = session(client)
    assert status == 401 and body["meta"]["is_authenticated"] is False
    (pending,) = [flow for flow in body["data"]["flows"] if flow.get("is_pending")]
    assert pending["id"] == "provider_signup" and pending["provider"]["id"] == "trakt"

    pending_signup = client.get(f"{API}/auth/provider/signup").json()["data"]
    assert pending_signup["user"]["username"] == "Watcher"  # Trakt's username is offered
    assert pending_signup["account"]["display"] == "Watcher"
    assert pending_signup["email"] == []  # Trakt gives none: the SPA must ask

    missing_email = client.post(f"{API}/auth/provider/signup", {"username": "Watcher"}, content_type="application/json")
    assert missing_email.status_code == 400
    assert {error["param"] for error in missing_email.json()["errors"]} == {"email"}
    assert TraktToken.objects.count() == 0

    done = client.post(
        f"{API}/auth/provider/signup",
        {"email": "wanda@example.com", "username": "Watcher"},
        content_type="application/json",
    )
    assert done.status_code == 200, done.content
    assert done.json()["data"]["user"]["username"] == "Watcher"
    assert session(client)[0] == 200

    account = SocialAccount.objects.get()
    assert (account.user.username, account.user.email) == ("Watcher", "wanda@example.com")
    assert account.uid == trakt.get_user("Watcher").uuid
    token = TraktToken.objects.get()
    assert token.account == account and token.status == TraktToken.Status.ACTIVE
    assert trakt.is_access_token_valid(token.access_token)


def test_headless_returning_user_is_signed_in_at_the_callback_and_tokens_replaced(client, trakt):
    assert sign_up(client, trakt).status_code == 200
    first = TraktToken.objects.get()
    first_access = first.access_token
    assert client.delete(f"{API}/auth/session").status_code == 401  # the SPA's logout
    TraktToken.objects.update(status=TraktToken.Status.NEEDS_REAUTH)

    response = back_from_trakt(client, trakt)
    assert response.status_code == 302 and response["Location"] == CALLBACK_URL
    status, body = session(client)
    assert status == 200 and body["data"]["user"]["username"] == "Watcher"
    token = TraktToken.objects.get()
    assert token.pk == first.pk and token.status == TraktToken.Status.ACTIVE
    assert token.access_token != first_access and trakt.is_access_token_valid(token.access_token)
    assert User.objects.count() == 1


def test_headless_signed_in_user_connects_trakt(client, trakt):
    user = User.objects.create_user("existing", "existing@example.com", "pw")
    client.force_login(user)
    response = back_from_trakt(client, trakt, process="connect")
    assert response.status_code == 302 and response["Location"] == CALLBACK_URL
    account = SocialAccount.objects.get()
    assert account.user == user and TraktToken.objects.get().account == account
    listed = client.get(f"{API}/account/providers").json()["data"]
    assert [(item["provider"]["id"], item["uid"]) for item in listed] == [("trakt", account.uid)]


def test_headless_disconnect_removes_the_link_and_revokes_at_trakt(client, trakt, django_capture_on_commit_callbacks):
    user = User.objects.create_user("existing", "existing@example.com", "pw")
    client.force_login(user)
    back_from_trakt(client, trakt, process="connect")
    access_token = TraktToken.objects.get().access_token

    with django_capture_on_commit_callbacks(execute=True):
        response = client.delete(
            f"{API}/account/providers",
            {"provider": "trakt", "account": SocialAccount.objects.get().uid},
            content_type="application/json",
        )
    assert response.status_code == 200 and response.json()["data"] == []
    assert SocialAccount.objects.count() == 0 and TraktToken.objects.count() == 0
    assert not trakt.is_access_token_valid(access_token)


def test_headless_denied_consent_returns_to_the_app_with_an_error(client, trakt):
    response = back_from_trakt(client, trakt, decision="deny")
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK_URL
    assert parse_qs(location.query) == {"error": ["cancelled"], "error_process": ["login"]}
    assert SocialAccount.objects.count() == 0 and TraktToken.objects.count() == 0
    assert trakt.requests_to("/oauth/token") == []


def test_headless_trakt_outage_returns_to_the_app_with_an_error(client, trakt):
    trakt.fail_next("/oauth/token", status=503)
    response = back_from_trakt(client, trakt)
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK_URL
    assert parse_qs(location.query)["error"] == ["unknown"]
    assert session(client)[0] == 401
    assert SocialAccount.objects.count() == 0 and TraktToken.objects.count() == 0


def test_headless_callback_url_on_a_foreign_host_is_refused(client, trakt):
    response = client.post(
        f"{API}/auth/provider/redirect",
        {"provider": "trakt", "callback_url": "https://evil.example.net/cb", "process": "login"},
    )
    # Not to Trakt: to the app's own login-error page (HEADLESS_FRONTEND_URLS).
    assert response.status_code == 302
    assert response["Location"] == f"{CALLBACK_URL}?error=unknown&error_process=login"
    assert trakt.requests == []


def test_headless_redirect_form_needs_the_csrf_token_the_api_sets(trakt):
    browser = Client(enforce_csrf_checks=True)
    form = {"provider": "trakt", "callback_url": CALLBACK_URL, "process": "login"}
    assert browser.post(f"{API}/auth/provider/redirect", form).status_code == 403

    browser.get(f"{API}/config")  # any browser-API answer sets the csrftoken cookie
    token = browser.cookies[settings.CSRF_COOKIE_NAME].value
    response = browser.post(f"{API}/auth/provider/redirect", {**form, "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"].startswith("https://auth.trakt.test/oauth/authorize?")
