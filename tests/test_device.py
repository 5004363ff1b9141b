"""Linking by code (Trakt's device flow) end to end: Django's test client against the local Trakt."""

from __future__ import annotations

import json
import logging
import re
import time

import pytest
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialAccount, SocialApp, SocialToken
from allauth.socialaccount.signals import pre_social_login
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sites.models import Site
from django.http import HttpResponseForbidden, HttpResponseRedirect
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from django_trakt import __version__
from django_trakt.device import views as device_views
from django_trakt.exceptions import TraktMalformedResponse
from django_trakt.internal.api import device
from django_trakt.internal.api.device import DeviceAuthorization, DeviceStatus
from django_trakt.internal.api.tokens import grant_from_response
from django_trakt.internal.core import clock as app_clock
from django_trakt.models import PendingGrant, TraktToken

pytestmark = pytest.mark.django_db

User = get_user_model()

START = reverse("django_trakt:device_start")
PENDING = reverse("django_trakt:device_pending")
POLL = reverse("django_trakt:device_poll")
CONNECTIONS = reverse("socialaccount_connections")
JSON = {"Accept": "application/json"}


class Clock:
    """Moves the site's clock and the local Trakt's together, without sleeping."""

    def __init__(self, trakt):
        self.trakt = trakt
        self.now = time.time()

    def advance(self, seconds):
        self.now += seconds
        self.trakt.advance(seconds)


def moving_clock(trakt, monkeypatch) -> Clock:
    """The device pages' clock, moved by hand together with the local Trakt's."""
    moving = Clock(trakt)
    monkeypatch.setattr(app_clock, "now", lambda: moving.now)
    return moving


@pytest.fixture
def clock(trakt, monkeypatch):
    return moving_clock(trakt, monkeypatch)


def start_linking(client, **data):
    """Press "Link with a code"; return the user code and the pending page's HTML."""
    response = client.post(START, data)
    assert response.status_code == 302 and response["Location"] == PENDING
    page = client.get(PENDING)
    assert page.status_code == 200
    html = page.content.decode()
    match = re.search(r'id="trakt-device-user-code">([^<]+)</code>', html)
    assert match, html
    return match.group(1), html


def poll(client):
    response = client.post(POLL, headers=JSON)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    return response.json()


def token_polls(trakt):
    return trakt.requests_to("/oauth/device/token")


def link_to_watcher(trakt, user):
    """``user`` already linked to Trakt's "Watcher", with tokens Trakt really issued."""
    watcher = trakt.get_user("Watcher")
    account = SocialAccount.objects.create(
        user=user, provider="trakt", uid=watcher.uuid, extra_data={"user": {"username": "Watcher"}}
    )
    grant = grant_from_response(trakt.issue_tokens("Watcher", settings.TRAKT_CLIENT_ID))
    return TraktToken.objects.store_grant(account, grant)


# -- starting ----------------------------------------------------------------------------------


def test_device_pages_require_sign_in(client, trakt):
    for response in (client.get(START), client.get(PENDING), client.post(POLL, headers=JSON)):
        assert response.status_code == 302 and response["Location"].startswith(reverse("account_login"))
    assert trakt.requests == []


def test_device_start_page_offers_link_with_a_code_button(client, member, trakt):
    html = client.get(START).content.decode()
    assert f'<form method="post" action="{START}"' in html
    assert "Link with a code" in html
    assert trakt.requests == []  # showing the page asks Trakt nothing


def test_device_start_asks_auth_host_for_code_with_trakt_headers(client, member, trakt):
    user_code, html = start_linking(client)

    (request,) = trakt.requests_to("/oauth/device/code")
    assert request.method == "POST" and request.url == "https://auth.trakt.test/oauth/device/code"
    assert request.json == {"client_id": "test-client-id"}
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["trakt-api-version"] == "2"
    assert request.headers["trakt-api-key"] == "test-client-id"
    assert request.headers["User-Agent"] == f"django-trakt/{__version__}"
    # What the user needs: the code and where to enter it.
    assert re.fullmatch(r"[A-Z0-9]{8}", user_code)
    # Trakt's verification_url (on the auth host, as the contract names it), and the one-tap
    # link with the code filled in (verification_url + "/" + user_code).
    assert '<a href="https://auth.trakt.test/activate" id="trakt-device-verification-url"' in html
    assert f'<a href="https://auth.trakt.test/activate/{user_code}" id="trakt-device-verification-link"' in html
    assert "Waiting for you to approve on Trakt" in html
    assert f'action="{POLL}"' in html


def test_device_start_asks_for_reauthentication_when_allauth_requires_it_for_connecting(client, member, trakt):
    with override_settings(SOCIALACCOUNT_REAUTHENTICATION_REQUIRED=True):
        assert client.get(START).status_code == 200  # the page itself is fine
        response = client.post(START)
    assert response.status_code == 302 and response["Location"].startswith(reverse("account_reauthenticate"))
    assert trakt.requests_to("/oauth/device/code") == []


def test_device_start_when_trakt_is_down_shows_error_and_keeps_nothing(client, member, trakt):
    trakt.fail_next("/oauth/device/code", status=503)
    response = client.post(START)
    assert response.status_code == 200
    assert "Trakt is temporarily unavailable. Please try again in a moment." in response.content.decode()
    assert device_views.SESSION_KEY not in client.session
    assert client.get(PENDING)["Location"] == START


# -- approve -----------------------------------------------------------------------------------


def test_device_approve_links_account_and_stores_one_token(client, member, fast):
    user_code, _html = start_linking(client)
    assert poll(client)["status"] == "pending"
    fast.approve_device(user_code, "Watcher")

    answer = poll(client)
    assert answer == {
        "status": "linked",
        "message": "Your Trakt account Watcher is linked.",
        "final": True,
        "redirect": CONNECTIONS,
        "retry_in": 0,
        "interval": 0.0,
    }
    poll_request = token_polls(fast)[-1]
    assert set(poll_request.json) == {"code", "client_id", "client_secret"}
    assert poll_request.json["client_id"] == "test-client-id"
    assert poll_request.json["client_secret"] == "test-client-secret"
    assert poll_request.headers["trakt-api-key"] == "test-client-id"

    account = SocialAccount.objects.get()
    assert account.user == member and account.uid == fast.get_user("Watcher").uuid
    assert account.extra_data["user"]["username"] == "Watcher"
    token = TraktToken.objects.get()
    assert token.account == account and token.status == TraktToken.Status.ACTIVE
    assert fast.is_access_token_valid(token.access_token) and token.refresh_token
    # The connections page says so, with allauth's own message.
    page = client.get(CONNECTIONS).content.decode()
    assert "The third-party account has been connected." in page
    # The code is spent: the session forgets it.
    assert poll(client)["status"] == "none"


def test_device_link_equals_redirect_connect(client, member, fast):
    def snapshot():
        account = SocialAccount.objects.get()
        token = TraktToken.objects.get()
        return {
            "user": account.user_id,
            "provider": account.provider,
            "uid": account.uid,
            "extra_data": account.extra_data,
            "token_account": token.account_id == account.pk,
            "status": token.status,
            "token_type": token.token_type,
            "scope": token.scope,
            "last_error": token.last_error,
            "lifetime_hours": round((token.expires_at - timezone.now()).total_seconds() / 3600),
            "access_valid": fast.is_access_token_valid(token.access_token),
            "refresh_valid": bool(token.refresh_token),
            "allauth_tokens": SocialToken.objects.count(),
        }

    user_code, _html = start_linking(client)
    fast.approve_device(user_code, "Watcher")
    assert poll(client)["status"] == "linked"
    by_code = snapshot()
    SocialAccount.objects.all().delete()

    authorize = client.post(reverse("trakt_login"), {"process": "connect"})["Location"]
    callback = client.get(fast.authorize(authorize, username="Watcher"))
    assert callback.status_code == 302
    by_redirect = snapshot()

    assert by_code == by_redirect
    assert by_code["status"] == TraktToken.Status.ACTIVE and by_code["access_valid"]
    assert by_code["allauth_tokens"] == 0


def test_device_relink_by_same_user_replaces_token_in_same_row(client, member, fast):
    before = link_to_watcher(fast, member)
    old_access = before.access_token
    TraktToken.objects.filter(pk=before.pk).update(status=TraktToken.Status.NEEDS_REAUTH, last_error="invalid_grant")

    user_code, _html = start_linking(client)
    fast.approve_device(user_code, "Watcher")
    assert poll(client)["status"] == "linked"

    token = TraktToken.objects.get()
    assert token.pk == before.pk and SocialAccount.objects.count() == 1
    assert token.access_token != old_access and fast.is_access_token_valid(token.access_token)
    assert token.status == TraktToken.Status.ACTIVE and token.last_error == ""
    # allauth refreshed the profile it keeps.
    assert SocialAccount.objects.get().extra_data["user"]["ids"]["uuid"] == fast.get_user("Watcher").uuid


def test_device_trakt_account_of_another_user_is_refused_and_untouched(client, member, fast):
    other = User.objects.create_user("other", "other@example.com", "pw")
    theirs = link_to_watcher(fast, other)
    access, refresh = theirs.access_token, theirs.refresh_token

    user_code, _html = start_linking(client)
    fast.approve_device(user_code, "Watcher")
    answer = poll(client)

    assert answer["status"] == "other_user" and answer["final"] is True
    assert answer["message"] == "This Trakt account is already linked to another user of this site."
    account = SocialAccount.objects.get()
    assert account.user == other and account.extra_data == {"user": {"username": "Watcher"}}
    token = TraktToken.objects.get()
    assert (token.access_token, token.refresh_token) == (access, refresh)


class VetoAdapter(DefaultSocialAccountAdapter):
    """A site policy in allauth's hook: no Trakt accounts for this site."""

    def pre_social_login(self, request, sociallogin):
        raise ImmediateHttpResponse(HttpResponseForbidden("not here"))


@override_settings(SOCIALACCOUNT_ADAPTER=f"{__name__}.VetoAdapter")
def test_device_link_honours_the_sites_pre_social_login_veto(client, member, fast):
    user_code, _html = start_linking(client)
    fast.approve_device(user_code)
    answer = poll(client)
    assert (answer["status"], answer["final"]) == ("refused", True)
    assert answer["message"] == "This site did not accept that Trakt account."
    assert SocialAccount.objects.count() == 0 and TraktToken.objects.count() == 0


class RedirectingVetoAdapter(DefaultSocialAccountAdapter):
    """A site policy that sends the user to a page of its own instead."""

    def pre_social_login(self, request, sociallogin):
        raise ImmediateHttpResponse(HttpResponseRedirect("/no-trakt-here/"))


@override_settings(SOCIALACCOUNT_ADAPTER=f"{__name__}.RedirectingVetoAdapter")
def test_device_link_vetoed_with_a_redirect_follows_it_and_revokes_the_grant(client, member, fast):
    user_code, _html = start_linking(client)
    fast.approve_device(user_code)
    answer = poll(client)
    assert (answer["status"], answer["final"], answer["redirect"]) == ("refused", True, "/no-trakt-here/")
    assert answer["message"] == "This site did not accept that Trakt account."
    assert SocialAccount.objects.count() == 0 and TraktToken.objects.count() == 0
    (revoke,) = fast.requests_to("/oauth/revoke")
    assert not fast.is_access_token_valid(revoke.json["token"])
    assert fast.active_tokens() == []


def test_device_link_waits_for_reauthentication_then_allauth_completes_it(client, member, fast, settings):
    user_code, _html = start_linking(client)
    fast.approve_device(user_code, "Watcher")
    # The code was asked for within the reauthentication window; the approval comes after it.
    settings.SOCIALACCOUNT_REAUTHENTICATION_REQUIRED = True

    answer = poll(client)

    assert (answer["status"], answer["final"]) == ("reauthenticate", True)
    assert answer["message"] == "Please confirm it is you to finish linking your Trakt account."
    assert answer["redirect"] == reverse("account_reauthenticate")
    assert SocialAccount.objects.count() == 0 and TraktToken.objects.count() == 0
    assert fast.requests_to("/oauth/revoke") == []  # allauth keeps the login until the user confirms
    (issued,) = fast.active_tokens()
    session_text = json.dumps(dict(client.session.items()), default=str)
    assert issued.access_token not in session_text and issued.refresh_token not in session_text
    assert PendingGrant.objects.count() == 1  # revoked if the user never confirms

    response = client.post(answer["redirect"], {"password": "pw"})

    assert response.status_code == 302 and response["Location"] == CONNECTIONS
    account = SocialAccount.objects.get()
    assert account.user == member and account.uid == fast.get_user("Watcher").uuid
    token = TraktToken.objects.get()
    assert token.access_token == issued.access_token and token.status == TraktToken.Status.ACTIVE
    assert PendingGrant.objects.count() == 0
    assert "The third-party account has been connected." in client.get(CONNECTIONS).content.decode()


def test_device_next_url_is_followed_when_safe(client, member, fast):
    user_code, _html = start_linking(client, next="/after/")
    fast.approve_device(user_code)
    assert poll(client)["redirect"] == "/after/"

    SocialAccount.objects.all().delete()
    user_code, _html = start_linking(client, next="https://evil.example/")
    fast.approve_device(user_code)
    assert poll(client)["redirect"] == CONNECTIONS


# -- waiting: the interval, slow down, outages ----------------------------------------------------


def test_device_poll_before_interval_answers_pending_without_calling_trakt(client, member, trakt, clock):
    trakt.device_interval = 5
    start_linking(client)

    answer = poll(client)
    assert answer["status"] == "pending" and answer["final"] is False
    assert answer["retry_in"] == 5 and answer["interval"] == 5
    assert token_polls(trakt) == []

    clock.advance(5)
    answer = poll(client)
    assert answer["status"] == "pending" and answer["retry_in"] == 5
    (request,) = token_polls(trakt)
    assert request.status == 400  # Trakt's "pending"

    assert poll(client)["status"] == "pending"
    assert len(token_polls(trakt)) == 1  # too early again


def test_device_slow_down_doubles_interval(client, member, trakt, clock):
    trakt.device_interval = 2
    user_code, _html = start_linking(client)
    clock.advance(2)
    trakt.fail_next("/oauth/device/token", status=429)

    answer = poll(client)
    assert answer["status"] == "slow_down" and answer["final"] is False
    assert answer["message"] == "Trakt asked us to slow down; checking less often."
    assert answer["interval"] == 4 and answer["retry_in"] == 4

    clock.advance(3)
    assert poll(client)["status"] == "slow_down"  # still waiting out the longer interval
    assert len(token_polls(trakt)) == 1

    clock.advance(1)
    trakt.approve_device(user_code)
    assert poll(client)["status"] == "linked"
    assert len(token_polls(trakt)) == 2


def test_device_slow_down_waits_retry_after(client, member, trakt, clock):
    trakt.device_interval = 1
    start_linking(client)
    clock.advance(1)
    trakt.rate_limit_next("/oauth/device/token", retry_after=30)
    answer = poll(client)
    assert answer["status"] == "slow_down" and answer["interval"] == 2 and answer["retry_in"] == 30


@pytest.mark.parametrize(
    "inject",
    [
        pytest.param(lambda t: t.fail_next("/oauth/device/token", status=503), id="5xx"),
        pytest.param(lambda t: t.timeout_next("/oauth/device/token"), id="timeout"),
        pytest.param(lambda t: t.cloudflare_next("/oauth/device/token"), id="cloudflare-403"),
    ],
)
def test_device_trakt_outage_while_polling_keeps_trying(client, member, fast, inject):
    start_linking(client)
    inject(fast)
    answer = poll(client)
    assert answer["status"] == "unavailable" and answer["final"] is False
    assert answer["message"] == "Trakt is temporarily unavailable; still trying."
    assert answer["retry_in"] >= 1
    assert SocialAccount.objects.count() == 0


def test_device_trakt_outage_then_approval_links(client, member, trakt, clock):
    trakt.device_interval = 0
    user_code, _html = start_linking(client)
    trakt.fail_next("/oauth/device/token", status=502)
    assert poll(client)["status"] == "unavailable"
    trakt.approve_device(user_code)
    clock.advance(1)
    assert poll(client)["status"] == "linked"
    assert TraktToken.objects.count() == 1


# -- final answers: deny, expire, bad codes ---------------------------------------------------------


def test_device_denied_is_final_and_keeps_existing_link(client, member, fast):
    existing = link_to_watcher(fast, member)
    access, refresh = existing.access_token, existing.refresh_token
    user_code, _html = start_linking(client)
    fast.deny_device(user_code)

    answer = poll(client)
    assert answer["status"] == "denied" and answer["final"] is True and answer["redirect"] is None
    assert answer["message"] == "The request was denied on Trakt. Nothing was linked."
    (request,) = token_polls(fast)
    assert request.status == 418
    token = TraktToken.objects.get()
    assert (token.access_token, token.refresh_token, token.status) == (access, refresh, TraktToken.Status.ACTIVE)
    assert poll(client)["status"] == "none"
    assert len(token_polls(fast)) == 1


def test_device_expired_at_trakt_is_final_and_keeps_existing_link(client, member, fast):
    existing = link_to_watcher(fast, member)
    access = existing.access_token
    user_code, _html = start_linking(client)
    fast.expire_device(user_code)

    answer = poll(client)
    assert answer["status"] == "expired" and answer["final"] is True
    assert answer["message"] == "The code has expired. Please start again."
    assert token_polls(fast)[-1].status == 410
    assert TraktToken.objects.get().access_token == access


def test_device_expired_locally_does_not_call_trakt(client, member, fast, clock):
    start_linking(client)
    clock.advance(fast.device_expires_in + 1)
    answer = poll(client)
    assert answer["status"] == "expired" and answer["final"] is True
    assert token_polls(fast) == []


@pytest.mark.parametrize(
    ("status", "name", "message"),
    [
        (404, "invalid", "Trakt does not know this code. Please start again."),
        (409, "used", "This code has already been used. Please start again."),
        (410, "expired", "The code has expired. Please start again."),
        (418, "denied", "The request was denied on Trakt. Nothing was linked."),
    ],
)
def test_device_final_status_codes_give_clear_messages(client, member, fast, status, name, message):
    start_linking(client)
    fast.fail_next("/oauth/device/token", status=status)
    answer = poll(client)
    assert (answer["status"], answer["message"], answer["final"]) == (name, message, True)
    assert SocialAccount.objects.count() == 0 and TraktToken.objects.count() == 0


def test_device_rejected_client_credentials_are_final(client, member, fast):
    start_linking(client)
    fast.fail_next("/oauth/device/token", status=401, json={"error": "invalid_client"})
    answer = poll(client)
    assert answer["status"] == "error" and answer["final"] is True
    assert SocialAccount.objects.count() == 0


def test_device_profile_failure_after_approval_links_nothing(client, member, fast):
    user_code, _html = start_linking(client)
    fast.approve_device(user_code)
    fast.fail_next("/users/settings", status=500)
    answer = poll(client)
    assert answer["status"] == "error" and answer["final"] is True
    assert answer["message"] == "Trakt approved, but the link could not be completed. Please start again."
    assert SocialAccount.objects.count() == 0 and TraktToken.objects.count() == 0


def test_device_poll_without_pending_code_is_final(client, member, trakt):
    assert poll(client) == {
        "status": "none",
        "message": "No linking by code is in progress.",
        "final": True,
        "redirect": None,
        "retry_in": 0,
        "interval": 0.0,
    }
    assert trakt.requests == []


def test_device_poll_accepts_only_post(client, member, trakt):
    assert client.get(POLL).status_code == 405


# -- without script: the "Check now" button -----------------------------------------------------------


def test_device_check_now_without_script_follows_each_answer(client, member, fast, clock):
    user_code, _html = start_linking(client)
    fast.fail_next("/oauth/device/token", status=503)

    response = client.post(POLL)  # a plain form post, as a browser without script sends it
    assert response.status_code == 302 and response["Location"] == PENDING
    assert "Trakt is temporarily unavailable; still trying." in client.get(PENDING).content.decode()

    fast.approve_device(user_code)
    clock.advance(1)  # after an outage, the next call to Trakt waits at least a second
    response = client.post(POLL)
    assert response.status_code == 302 and response["Location"] == CONNECTIONS
    assert TraktToken.objects.count() == 1


def test_device_check_now_without_script_shows_final_message_with_restart(client, member, fast):
    user_code, _html = start_linking(client)
    fast.deny_device(user_code)
    response = client.post(POLL)
    html = response.content.decode()
    assert response.status_code == 200
    assert "The request was denied on Trakt. Nothing was linked." in html
    assert "Link with a code" in html


# -- secrets stay secret ----------------------------------------------------------------------------------


def test_device_code_and_tokens_never_in_pages_answers_or_logs(client, member, trakt, clock, caplog):
    caplog.set_level(logging.DEBUG)
    trakt.device_interval = 0
    bodies = [client.get(START).content.decode()]
    response = client.post(START)
    bodies.append(response["Location"])
    bodies.append(client.get(PENDING).content.decode())
    bodies.append(client.post(POLL, headers=JSON).content.decode())
    bodies.append(client.post(POLL)["Location"])
    user_code = re.search(r'id="trakt-device-user-code">([^<]+)<', bodies[2]).group(1)
    trakt.approve_device(user_code)
    clock.advance(1)
    linked = client.post(POLL, headers=JSON)
    bodies.append(linked.content.decode())
    bodies.append(client.get(CONNECTIONS).content.decode())

    (device_code,) = {request.json["code"] for request in token_polls(trakt)}
    token = TraktToken.objects.get()
    secrets = {device_code, token.access_token, token.refresh_token, "test-client-secret"}
    assert all(secrets)
    everything = "\n".join(bodies)
    for secret in secrets:
        assert secret not in everything
        assert secret not in caplog.text
    assert "Linked Trakt account" in caplog.text  # the log did capture the flow


CODE_ANSWER = {
    "device_code": "d" * 64,
    "user_code": "ABCD1234",
    "verification_url": "https://trakt.test/activate",
    "expires_in": 600,
    "interval": 5,
}
NOT_CONFIGURED = "Linking with Trakt is not configured on this site."


def answer_code_with(trakt, document=None, *, body: bytes | None = None) -> None:
    """The next ``/oauth/device/code`` answer is this 200 JSON document (or raw JSON body)."""
    if body is not None:
        trakt.fail_next("/oauth/device/code", status=200, body=body, headers={"Content-Type": "application/json"})
    else:
        trakt.fail_next("/oauth/device/code", status=200, json=document)


def request_code() -> DeviceAuthorization:
    return device.request_device_code(client_id=settings.TRAKT_CLIENT_ID)


def without_settings_app(settings) -> None:
    trakt = {key: value for key, value in settings.SOCIALACCOUNT_PROVIDERS["trakt"].items() if key != "APP"}
    settings.SOCIALACCOUNT_PROVIDERS = {"trakt": trakt}


# -- device.py: reading Trakt's answers ------------------------------------------------------------


def test_device_authorization_repr_shows_user_code_but_hides_device_code(trakt):
    authorization = request_code()
    text = repr(authorization)
    assert authorization.user_code in text and "https://auth.trakt.test/activate" in text
    assert re.fullmatch(r"[0-9a-f]{64}", authorization.device_code) and authorization.device_code not in text


def test_device_status_only_pending_and_slow_down_are_worth_polling_again():
    assert {status for status in DeviceStatus if not status.is_final} == {DeviceStatus.PENDING, DeviceStatus.SLOW_DOWN}
    assert DeviceStatus.APPROVED.is_final and DeviceStatus.DENIED.is_final and DeviceStatus.EXPIRED.is_final


@pytest.mark.parametrize(
    ("numbers", "expires_in", "interval"),
    [
        ({"interval": "2.5"}, 600, 2.5),
        ({"interval": True, "expires_in": "900"}, 900, 5.0),
        ({"interval": "soon", "expires_in": -1}, 600, 5.0),
        ({"interval": None, "expires_in": 0}, 600, 5.0),
        ({"interval": [1], "expires_in": 1.9}, 1, 5.0),
        ({"interval": "nan", "expires_in": {"seconds": 60}}, 600, 5.0),
    ],
    ids=["numeric-text", "boolean", "words-and-negative", "null-and-zero", "list-and-fraction", "nan-and-object"],
)
def test_device_code_answer_odd_numbers_fall_back_to_trakts_defaults(trakt, numbers, expires_in, interval):
    document = {key: value for key, value in CODE_ANSWER.items() if key not in ("expires_in", "interval")}
    answer_code_with(trakt, {**document, **numbers})
    authorization = request_code()
    assert (authorization.expires_in, authorization.interval) == (expires_in, interval)
    assert authorization.user_code == "ABCD1234"


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ([CODE_ANSWER], "not a JSON object"),
        ({**CODE_ANSWER, "device_code": None}, "has no device_code"),
        ({**CODE_ANSWER, "user_code": "   "}, "has no user_code"),
        ({k: v for k, v in CODE_ANSWER.items() if k != "verification_url"}, "has no verification_url"),
        ({**CODE_ANSWER, "verification_url": "trakt.tv/activate"}, "not a web address"),
        ({**CODE_ANSWER, "verification_url": "javascript:alert(1)"}, "not a web address"),
    ],
    ids=["list", "null-device-code", "blank-user-code", "no-url", "schemeless-url", "script-url"],
)
def test_device_code_answer_unusable_is_a_typed_error(trakt, document, reason):
    answer_code_with(trakt, document)
    with pytest.raises(TraktMalformedResponse, match=reason):
        request_code()


def test_device_code_answer_fields_are_trimmed(trakt):
    answer_code_with(trakt, {**CODE_ANSWER, "user_code": " ABCD1234\n", "verification_url": " https://trakt.test/a "})
    authorization = request_code()
    assert (authorization.user_code, authorization.verification_url) == ("ABCD1234", "https://trakt.test/a")


def test_unusable_device_code_answer_shows_start_error_and_keeps_nothing(client, member, trakt):
    answer_code_with(trakt, {**CODE_ANSWER, "verification_url": "javascript:alert(1)"})
    response = client.post(START)
    html = response.content.decode()
    assert response.status_code == 200
    assert "Trakt is temporarily unavailable. Please try again in a moment." in html
    assert "javascript:" not in html
    assert device_views.SESSION_KEY not in client.session


@pytest.mark.parametrize("field", ["expires_in", "interval"])
def test_device_code_answer_with_infinite_number_does_not_crash_the_pages(client, member, trakt, field):
    body = json.dumps(CODE_ANSWER).replace(f'"{field}": {CODE_ANSWER[field]}', f'"{field}": 1e999').encode()
    answer_code_with(trakt, body=body)
    started = client.post(START)
    assert started.status_code in (200, 302)
    assert client.get(PENDING).status_code in (200, 302)


# -- device_views.py: which app, whose code ------------------------------------------------------------


def test_device_start_without_trakt_app_says_not_configured_and_asks_nothing(client, member, trakt, settings):
    without_settings_app(settings)
    response = client.post(START, {"next": "/after/"})
    html = response.content.decode()
    assert response.status_code == 200
    assert NOT_CONFIGURED in html and 'name="next" value="/after/"' in html
    assert trakt.requests == []
    assert device_views.SESSION_KEY not in client.session


def test_device_poll_after_trakt_app_was_removed_ends_the_attempt(client, member, fast, settings):
    start_linking(client)
    without_settings_app(settings)
    assert poll(client) == {
        "status": "error",
        "message": NOT_CONFIGURED,
        "final": True,
        "redirect": None,
        "retry_in": 0,
        "interval": 0.0,
    }
    assert fast.requests_to("/oauth/device/token") == []
    assert poll(client)["status"] == "none"  # the code was forgotten


def test_device_link_with_trakt_app_from_the_database(client, member, fast, settings):
    without_settings_app(settings)
    app = SocialApp.objects.create(
        provider="trakt", name="Trakt", client_id=settings.TRAKT_CLIENT_ID, secret=settings.TRAKT_CLIENT_SECRET
    )
    app.sites.add(Site.objects.get_current())
    user_code, _page = start_linking(client)
    fast.approve_device(user_code, "Watcher")

    assert poll(client)["status"] == "linked"

    (request,) = fast.requests_to("/oauth/device/token")
    assert request.json["client_secret"] == app.secret
    token = TraktToken.objects.get()
    assert token.account.user == member and fast.is_access_token_valid(token.access_token)
    assert SocialToken.objects.count() == 0  # still no plain-text copy in allauth's table


def _pending_of(user_pk, **changes):
    now = time.time()
    pending = {
        "user": str(user_pk),
        "device_code": "e" * 64,
        "user_code": "WXYZ9876",
        "verification_url": "https://trakt.test/activate",
        "expires_at": now + 600,
        "interval": 0.0,
        "next_poll_at": now,
        "next": "",
        "message": "Waiting",
    }
    pending.update(changes)
    return pending


@pytest.mark.parametrize(
    "pending",
    [
        lambda member, other: _pending_of(other.pk),
        lambda member, other: _pending_of(member.pk, device_code=None),
        lambda member, other: "not a dict",
    ],
    ids=["another-users-code", "code-missing", "not-a-dict"],
)
def test_device_code_in_session_that_is_not_the_users_is_never_used(client, member, trakt, pending):
    other = User.objects.create_user("other", "other@example.com", "pw")
    session = client.session
    session[device_views.SESSION_KEY] = pending(member, other)
    session.save()

    assert client.get(PENDING)["Location"] == START
    assert poll(client)["status"] == "none"
    assert trakt.requests == []  # the device code was not polled with
    assert not isinstance(client.session.get(device_views.SESSION_KEY), dict)


def test_device_link_racing_a_concurrent_link_is_refused_cleanly(client, member, fast):
    other = User.objects.create_user("other", "other@example.com", "pw")
    watcher_uuid = fast.get_user("Watcher").uuid

    def concurrent_link(sender, request, sociallogin, **kwargs):
        # Another request links the same Trakt account to another user right now.
        SocialAccount.objects.create(user=other, provider="trakt", uid=watcher_uuid, extra_data={})

    user_code, _page = start_linking(client)
    fast.approve_device(user_code, "Watcher")
    pre_social_login.connect(concurrent_link, dispatch_uid="test_device_link_race")
    try:
        answer = poll(client)
    finally:
        pre_social_login.disconnect(dispatch_uid="test_device_link_race")

    assert (answer["status"], answer["final"]) == ("other_user", True)
    assert answer["message"] == "This Trakt account is already linked to another user of this site."
    assert not SocialAccount.objects.filter(user=member).exists()
    assert TraktToken.objects.count() == 0
    assert poll(client)["status"] == "none"
