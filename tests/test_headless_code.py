"""Sign in by code through the headless API (django_trakt.device.headless_urls) against the local Trakt.

The app asks ``/_allauth/app/v1/auth/provider/trakt/code`` for a code, shows the person
``user_code``, polls ``.../code/poll`` (with the ``X-Session-Token`` it was given) while the
person approves at the local Trakt, and ends with allauth's own session: signed in for a
returning Trakt user, allauth's pending provider signup for a new one.
"""

from __future__ import annotations

import pytest
from allauth.headless.adapter import DefaultHeadlessAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialAccount
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client, override_settings

from django_trakt.device import flow
from django_trakt.models import PendingGrant, TraktToken
from tests.test_device import moving_clock, without_settings_app
from tests.test_headless import API as BROWSER_API
from tests.test_headless import headless_site  # noqa: F401  (the headless site, autouse)

pytestmark = pytest.mark.django_db

User = get_user_model()

APP_API = "/_allauth/app/v1"
START = f"{APP_API}/auth/provider/trakt/code"
POLL = f"{APP_API}/auth/provider/trakt/code/poll"


@pytest.fixture
def clock(trakt, monkeypatch):
    """The site's clock and the local Trakt's, moved together by hand."""
    return moving_clock(trakt, monkeypatch)


class App:
    """The app's side: Django's test client, holding the session token it was given."""

    def __init__(self) -> None:
        self.client = Client()
        self.session_token: str | None = None

    def post(self, url, **data):
        headers = {"HTTP_X_SESSION_TOKEN": self.session_token} if self.session_token else {}
        response = self.client.post(url, data, content_type="application/json", **headers)
        meta = response.json().get("meta") or {}
        if meta.get("session_token"):
            self.session_token = meta["session_token"]
        return response

    def get(self, url):
        headers = {"HTTP_X_SESSION_TOKEN": self.session_token} if self.session_token else {}
        return self.client.get(url, **headers)

    def start(self):
        response = self.post(START)
        assert response.status_code == 200, response.content
        return response.json()

    def poll(self):
        return self.post(POLL)


def assert_pending(response, status="pending"):
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == 202 and body["data"]["status"] == status
    return body["data"]


def test_whole_code_sign_in_of_a_new_user_then_the_same_account_again(trakt, clock):
    app = App()
    started = app.start()
    data = started["data"]
    assert set(data) == {"user_code", "verification_url", "verification_link", "expires_in", "interval"}
    assert data["verification_url"] == "https://auth.trakt.test/activate"
    assert data["verification_link"] == f"https://auth.trakt.test/activate/{data['user_code']}"
    assert app.session_token  # the app client's session, which holds the code
    (asked,) = trakt.requests_to("/oauth/device/code")
    assert asked.json == {"client_id": settings.TRAKT_CLIENT_ID}
    # The device code is a bearer for polling: never handed to the app.
    assert "device_code" not in str(started)

    # Too early: answered from the session, Trakt is not asked.
    assert assert_pending(app.poll())["retry_in"] > 0
    assert trakt.requests_to("/oauth/device/token") == []
    clock.advance(data["interval"])
    assert assert_pending(app.poll())["status"] == "pending"
    (polled,) = trakt.requests_to("/oauth/device/token")
    # The site polls with its own secret; the app never had it.
    assert polled.json["client_id"] == settings.TRAKT_CLIENT_ID
    assert polled.json["client_secret"] == settings.TRAKT_CLIENT_SECRET

    trakt.approve_device(data["user_code"], "Watcher")
    clock.advance(data["interval"])
    approved = app.poll()
    assert approved.status_code == 401, approved.content  # allauth: a new user, signup pending
    body = approved.json()
    (flow,) = [flow for flow in body["data"]["flows"] if flow.get("is_pending")]
    assert flow["id"] == "provider_signup" and flow["provider"]["id"] == "trakt"
    assert TraktToken.objects.count() == 0 and SocialAccount.objects.count() == 0
    assert PendingGrant.objects.count() == 1  # revoked at Trakt if the signup is abandoned

    # The same signup a browser gets: the email asked through allauth's endpoint.
    signup = app.get(f"{APP_API}/auth/provider/signup").json()["data"]
    assert signup["user"]["username"] == "Watcher"
    done = app.post(f"{APP_API}/auth/provider/signup", email="wanda@example.com", username="Watcher")
    assert done.status_code == 200, done.content
    assert done.json()["meta"]["is_authenticated"] is True
    account = SocialAccount.objects.get()
    assert account.uid == trakt.get_user("Watcher").uuid and account.user.email == "wanda@example.com"
    token = TraktToken.objects.get()
    assert token.account == account and trakt.is_access_token_valid(token.access_token)
    assert PendingGrant.objects.count() == 0
    assert app.get(f"{APP_API}/auth/session").status_code == 200

    # A second app (a TV) signs the same Trakt user in: the same account, no new signup.
    tv = App()
    code = tv.start()["data"]["user_code"]
    trakt.approve_device(code, "Watcher")
    clock.advance(5)
    signed_in = tv.poll()
    assert signed_in.status_code == 200, signed_in.content
    body = signed_in.json()
    assert body["meta"]["is_authenticated"] is True and body["meta"]["session_token"]
    assert body["data"]["user"]["id"] == account.user_id
    assert User.objects.count() == 1 and SocialAccount.objects.get() == account
    assert TraktToken.objects.get().access_token != token.access_token  # the new grant is stored
    assert tv.get(f"{APP_API}/auth/session").status_code == 200


def test_the_browser_client_signs_in_by_code_too(trakt, clock, client):
    user = User.objects.create_user("wanda", "wanda@example.com", "pw")
    SocialAccount.objects.create(user=user, provider="trakt", uid=trakt.get_user("Watcher").uuid)
    started = client.post(f"{BROWSER_API}/auth/provider/trakt/code", content_type="application/json")
    assert started.status_code == 200 and "meta" not in started.json()  # the cookie holds the session
    trakt.approve_device(started.json()["data"]["user_code"], "Watcher")
    clock.advance(5)
    signed_in = client.post(f"{BROWSER_API}/auth/provider/trakt/code/poll", content_type="application/json")
    assert signed_in.status_code == 200, signed_in.content
    assert client.get(f"{BROWSER_API}/auth/session").json()["data"]["user"]["id"] == user.pk
    assert TraktToken.objects.get().account.user == user


def refused(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["status"] == status
    (error,) = body["errors"]
    assert error["code"] == code and error["message"]
    return error


def test_a_denied_code_ends_cleanly(trakt, clock):
    app = App()
    code = app.start()["data"]["user_code"]
    trakt.deny_device(code)
    clock.advance(5)
    refused(app.poll(), 400, "denied")
    assert SocialAccount.objects.count() == 0 and TraktToken.objects.count() == 0 and User.objects.count() == 0
    # The code is gone: the next poll asks Trakt nothing.
    trakt.reset_requests()
    refused(app.poll(), 400, "none")
    assert trakt.requests == []
    assert app.get(f"{APP_API}/auth/session").status_code == 401


def test_an_expired_code_ends_cleanly_without_asking_trakt(trakt, clock):
    app = App()
    data = app.start()["data"]
    clock.advance(data["expires_in"] + 1)
    trakt.reset_requests()
    refused(app.poll(), 400, "expired")
    assert trakt.requests == []
    assert SocialAccount.objects.count() == 0 and TraktToken.objects.count() == 0


def test_a_code_trakt_expired_ends_cleanly(trakt, clock):
    app = App()
    code = app.start()["data"]["user_code"]
    trakt.expire_device(code)
    clock.advance(5)
    refused(app.poll(), 400, "expired")
    assert PendingGrant.objects.count() == 0 and TraktToken.objects.count() == 0


def test_slow_down_doubles_the_interval(trakt, clock):
    app = App()
    data = app.start()["data"]
    clock.advance(data["interval"])
    trakt.fail_next("/oauth/device/token", status=429, json={"error": "slow_down"})
    slowed = assert_pending(app.poll(), "slow_down")
    assert slowed["interval"] == data["interval"] * 2 and slowed["retry_in"] >= data["interval"] * 2


def test_trakt_down_keeps_the_code_and_says_unavailable(trakt, clock):
    app = App()
    data = app.start()["data"]
    clock.advance(data["interval"])
    trakt.fail_next("/oauth/device/token", status=503)
    assert_pending(app.poll(), "unavailable")
    trakt.approve_device(data["user_code"], "Watcher")
    clock.advance(data["interval"])
    assert app.poll().status_code == 401  # then the approval goes through (signup pending)


def test_starts_are_budgeted_per_client_address(trakt, clock, monkeypatch):
    monkeypatch.setattr(flow, "DEVICE_START_LIMIT", 2)
    for _ in range(2):
        App().start()
    over = App().post(START)
    error = refused(over, 429, "too_many_requests")
    assert int(over["Retry-After"]) > 0 and "wait" in error["message"]
    assert len(trakt.requests_to("/oauth/device/code")) == 2


def test_a_refused_app_is_a_503_and_nothing_is_asked_again(trakt, clock):
    trakt.disable_app(settings.TRAKT_CLIENT_ID)
    refused(App().post(START), 503, "app_refused")


def test_without_a_trakt_app_the_site_says_so(trakt, clock, settings):
    without_settings_app(settings)
    refused(App().post(START), 503, "not_configured")
    assert trakt.requests == []


class ClosedAdapter(DefaultSocialAccountAdapter):
    def is_open_for_signup(self, request, sociallogin):
        return False


def test_signup_closed_refuses_the_account_and_revokes_the_grant(trakt, clock):
    app = App()
    code = app.start()["data"]["user_code"]
    trakt.approve_device(code, "Watcher")
    clock.advance(5)
    with override_settings(SOCIALACCOUNT_ADAPTER=f"{__name__}.ClosedAdapter"):
        error = refused(app.poll(), 400, "refused")
    assert "closed" in error["message"]
    assert SocialAccount.objects.count() == 0 and PendingGrant.objects.count() == 0
    assert trakt.active_tokens("Watcher") == []  # nobody keeps it: revoked at Trakt


def test_a_signed_in_session_cannot_start_a_code(trakt, clock, client):
    user = User.objects.create_user("wanda", "wanda@example.com", "pw")
    client.force_login(user)
    response = client.post(f"{BROWSER_API}/auth/provider/trakt/code", content_type="application/json")
    assert response.status_code == 409 and response.json()["status"] == 409
    assert trakt.requests_to("/oauth/device/code") == []


class MetaAdapter(DefaultHeadlessAdapter):
    """A site's headless adapter adding to ``meta``, as allauth documents."""

    def populate_response_meta(self, request, meta):
        meta["site_release"] = "2024.1"


def test_the_site_headless_adapter_adds_to_every_answer_s_meta(trakt, clock):
    with override_settings(HEADLESS_ADAPTER=f"{__name__}.MetaAdapter"):
        app = App()
        started = app.start()
        assert started["meta"]["site_release"] == "2024.1" and started["meta"]["session_token"]
        pending = app.poll().json()
        assert pending["meta"] == {"site_release": "2024.1"}  # the session token was given already
        nothing = App().post(POLL)  # an error answer: no code was asked for
        refused(nothing, 400, "none")
        assert nothing.json()["meta"] == {"site_release": "2024.1"}
    # Without the site's adapter, allauth's default adds nothing.
    assert "site_release" not in App().start().get("meta", {})
