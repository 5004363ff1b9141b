"""Linking by code at its edges: what Trakt's device-code answer may look like, a missing or
database-configured Trakt app, a session holding someone else's code, and a concurrent link."""

from __future__ import annotations

import json
import re
import time

import pytest
from allauth.socialaccount.models import SocialAccount, SocialApp, SocialToken
from allauth.socialaccount.signals import pre_social_login
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sites.models import Site
from django.urls import reverse

from django_trakt import device_views
from django_trakt.api import device
from django_trakt.api.device import DeviceAuthorization, DeviceStatus
from django_trakt.exceptions import TraktMalformedResponse
from django_trakt.models import TraktToken

User = get_user_model()

START = reverse("django_trakt:device_start")
PENDING = reverse("django_trakt:device_pending")
POLL = reverse("django_trakt:device_poll")
JSON = {"Accept": "application/json"}
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


def start_linking(client) -> str:
    response = client.post(START)
    assert response.status_code == 302 and response["Location"] == PENDING
    html = client.get(PENDING).content.decode()
    return re.search(r'id="trakt-device-user-code">([^<]+)</code>', html).group(1)


def poll(client) -> dict:
    response = client.post(POLL, headers=JSON)
    assert response.status_code == 200
    return response.json()


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
    user_code = start_linking(client)
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

    user_code = start_linking(client)
    fast.approve_device(user_code, "Watcher")
    pre_social_login.connect(concurrent_link, dispatch_uid="test_device_edges_race")
    try:
        answer = poll(client)
    finally:
        pre_social_login.disconnect(dispatch_uid="test_device_edges_race")

    assert (answer["status"], answer["final"]) == ("other_user", True)
    assert answer["message"] == "This Trakt account is already linked to another user of this site."
    assert not SocialAccount.objects.filter(user=member).exists()
    assert TraktToken.objects.count() == 0
    assert poll(client)["status"] == "none"
