"""Linking by code never turns into a burst at Trakt: the per-user start budget, one poll per
code at a time (and per interval) whatever the number of concurrent requests, and no live
token left behind by an approval the site refuses."""

from __future__ import annotations

import logging
import re
import threading

import pytest
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialAccount
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connections
from django.http import HttpResponseForbidden
from django.test import Client, override_settings
from django.urls import reverse

from django_trakt.device import flow
from django_trakt.device import views as device_views
from django_trakt.device.pending import PendingCode
from django_trakt.internal.api.tokens import grant_from_response
from django_trakt.models import TraktToken
from tests.test_device import moving_clock, poll
from tests.test_device import start_linking as start_linking_with_page

User = get_user_model()

START = reverse("django_trakt:device_start")
PENDING = reverse("django_trakt:device_pending")
POLL = reverse("django_trakt:device_poll")
JSON = {"Accept": "application/json"}
CODE_CALLS = "/oauth/device/code"
TOKEN_CALLS = "/oauth/device/token"
THREADS = 10


@pytest.fixture
def clock(trakt, monkeypatch):
    return moving_clock(trakt, monkeypatch)


def signed_in(username: str) -> Client:
    user = User.objects.create_user(username, f"{username}@example.com", "pw")
    browser = Client()
    browser.force_login(user)
    return browser


def start_linking(client) -> str:
    """Press "Link with a code"; the user code (tests.test_device's helper, without the page)."""
    user_code, _html = start_linking_with_page(client)
    return user_code


def wait_message(response) -> str:
    assert response.status_code == 429
    match = re.search(r'id="trakt-device-error" role="alert">([^<]+)</p>', response.content.decode())
    assert match, response.content.decode()
    return match.group(1)


def link_to_watcher(trakt, user) -> TraktToken:
    watcher = trakt.get_user("Watcher")
    account = SocialAccount.objects.create(
        user=user, provider="trakt", uid=watcher.uuid, extra_data={"user": {"username": "Watcher"}}
    )
    grant = grant_from_response(trakt.issue_tokens("Watcher", django_settings.TRAKT_CLIENT_ID))
    return TraktToken.objects.store_grant(account, grant)


# -- the start budget ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_thirty_starts_by_one_user_ask_trakt_only_the_budget(client, member, trakt, clock):
    responses = [client.post(START) for _ in range(30)]

    assert len(trakt.requests_to(CODE_CALLS)) == 5  # DEVICE_START_LIMIT
    assert [response.status_code for response in responses] == [302] * 5 + [429] * 25
    for response in responses[5:]:
        assert wait_message(response) == (
            "You have asked for several codes in a short time. Please wait 600 seconds and try again."
        )
        assert response["Retry-After"] == "600"
        assert 'id="trakt-device-start"' in response.content.decode()  # the button is still there
    # The code of the last start that asked Trakt is still the one pending.
    assert client.get(PENDING).status_code == 200


@pytest.mark.django_db
def test_start_budget_of_one_user_leaves_other_users_alone(client, member, trakt):
    for _ in range(8):
        client.post(START)
    assert len(trakt.requests_to(CODE_CALLS)) == 5

    other = signed_in("other")
    assert other.post(START).status_code == 302
    assert len(trakt.requests_to(CODE_CALLS)) == 6
    assert client.post(START).status_code == 429  # the first one is still waiting


@pytest.mark.django_db
def test_start_budget_refills_as_the_period_passes(client, member, trakt, clock):
    for _ in range(5):
        assert client.post(START).status_code == 302
        clock.advance(60)
    # The first start was 300 s ago: it leaves the ten-minute window in 300 s.
    assert wait_message(client.post(START)).endswith("Please wait 300 seconds and try again.")
    clock.advance(299)
    assert wait_message(client.post(START)).endswith("Please wait 1 second and try again.")
    clock.advance(1)
    assert client.post(START).status_code == 302  # one start has left the window, one may go
    assert client.post(START).status_code == 429
    clock.advance(600)
    assert [client.post(START).status_code for _ in range(6)] == [302] * 5 + [429]
    assert len(trakt.requests_to(CODE_CALLS)) == 11


@pytest.mark.django_db
def test_start_budget_follows_the_settings(client, member, trakt, clock, settings, monkeypatch):
    monkeypatch.setattr(flow, "DEVICE_START_LIMIT", 2)
    monkeypatch.setattr(flow, "DEVICE_START_PERIOD", 30)
    assert [client.post(START).status_code for _ in range(4)] == [302, 302, 429, 429]
    assert len(trakt.requests_to(CODE_CALLS)) == 2
    clock.advance(30)
    assert client.post(START).status_code == 302


@pytest.mark.django_db
def test_starts_that_trakt_failed_count_too(client, member, trakt):
    # The budget is about calls to Trakt, and a failing Trakt is the last one to hammer.
    trakt.fail_next(CODE_CALLS, status=503, times=5)
    for _ in range(5):
        response = client.post(START)
        assert response.status_code == 200
        assert "Trakt is temporarily unavailable. Please try again in a moment." in response.content.decode()
    assert client.post(START).status_code == 429
    assert len(trakt.requests_to(CODE_CALLS)) == 5


@pytest.mark.django_db
def test_start_while_another_start_of_the_user_is_asking_trakt_waits(client, member, trakt):
    cache.add(f"django_trakt:device:starts:{member.pk}:lock", "another request", 30)
    response = client.post(START)
    assert wait_message(response) == "A code is already being requested for you. Please wait 5 seconds and try again."
    assert response["Retry-After"] == "5"
    assert trakt.requests_to(CODE_CALLS) == []


@pytest.mark.django_db
def test_cache_down_asks_trakt_nothing(client, member, trakt, settings, caplog):
    trakt.device_interval = 0
    assert client.post(START).status_code == 302  # a code pending from before the outage
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "broken": {"BACKEND": "tests.conftest.BrokenCache"},
    }
    settings.TRAKT_CACHE = "broken"

    response = client.post(START)
    assert response.status_code == 503
    assert "Trakt is temporarily unavailable. Please try again in a moment." in response.content.decode()
    answer = poll(client)
    assert (answer["status"], answer["final"], answer["retry_in"]) == ("pending", False, 1)
    assert len(trakt.requests_to(CODE_CALLS)) == 1 and trakt.requests_to(TOKEN_CALLS) == []
    assert "The Trakt cache 'broken' failed on add" in caplog.text


# -- one poll per code, shared through the cache -----------------------------------------------------------


def pending_code(client) -> dict:
    return dict(client.session[device_views.SESSION_KEY])


@pytest.mark.django_db
def test_poll_while_another_poll_of_the_code_is_at_trakt_answers_pending(client, member, trakt, clock):
    trakt.device_interval = 5
    start_linking(client)
    clock.advance(5)
    cache.add(PendingCode.from_session(pending_code(client), str(member.pk)).cache_key("lock"), "another request", 30)

    answer = poll(client)
    assert (answer["status"], answer["final"], answer["message"]) == (
        "pending",
        False,
        "Waiting for you to approve on Trakt…",
    )
    assert answer["retry_in"] >= 1
    assert trakt.requests_to(TOKEN_CALLS) == []


@pytest.mark.django_db
def test_last_poll_time_is_shared_through_the_cache_not_only_the_session(client, member, trakt, clock):
    trakt.device_interval = 5
    start_linking(client)
    stale = pending_code(client)  # what a concurrent request read before this poll wrote back
    clock.advance(5)
    assert poll(client)["status"] == "pending"
    assert len(trakt.requests_to(TOKEN_CALLS)) == 1

    session = client.session
    session[device_views.SESSION_KEY] = stale
    session.save()
    answer = poll(client)
    assert (answer["status"], answer["retry_in"]) == ("pending", 5)
    assert len(trakt.requests_to(TOKEN_CALLS)) == 1  # the cache knew Trakt was asked just now
    clock.advance(5)
    assert poll(client)["status"] == "pending"
    assert len(trakt.requests_to(TOKEN_CALLS)) == 2
    assert all(request.status == 400 for request in trakt.requests_to(TOKEN_CALLS))  # never a 429


@pytest.mark.django_db
def test_final_answer_is_shared_so_a_spent_code_is_not_polled_again(client, member, trakt, clock):
    trakt.device_interval = 0
    user_code = start_linking(client)
    stale = pending_code(client)
    trakt.deny_device(user_code)
    assert poll(client)["status"] == "denied"

    session = client.session
    session[device_views.SESSION_KEY] = stale
    session.save()
    clock.advance(1)
    answer = poll(client)
    assert (answer["status"], answer["final"]) == ("denied", True)
    assert answer["message"] == "The request was denied on Trakt. Nothing was linked."
    assert len(trakt.requests_to(TOKEN_CALLS)) == 1
    assert poll(client)["status"] == "none"


def poll_all_at_once(clients: list[Client]) -> list[tuple[int, dict]]:
    """Every client polls at the same moment, each in its own thread (and database connection)."""
    barrier = threading.Barrier(len(clients))
    answers: list[tuple[int, dict] | None] = [None] * len(clients)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            response = clients[index].post(POLL, headers=JSON)
            answers[index] = (response.status_code, response.json())
        except BaseException as err:  # reported below, in the test's thread
            errors.append(err)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert all(answer is not None for answer in answers)
    return [answer for answer in answers if answer is not None]


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_polls_of_one_code_make_one_token_call_per_interval(trakt, clock, settings):
    # Sessions in the (process-wide) locmem cache: SQLite's shared in-memory test database
    # answers "table is locked" to a session write racing reads, which is not what is tested.
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    trakt.device_interval = 5
    trakt.latency = 0.05  # each poll stays at Trakt a while: the others arrive meanwhile
    browser = signed_in("member")
    member = User.objects.get(username="member")
    user_code = start_linking(browser)
    cookie = browser.cookies[settings.SESSION_COOKIE_NAME].value
    tabs = []
    for _ in range(THREADS):
        tab = Client()
        tab.cookies[settings.SESSION_COOKIE_NAME] = cookie
        tabs.append(tab)

    early = poll_all_at_once(tabs)
    assert {(status, answer["status"]) for status, answer in early} == {(200, "pending")}
    assert trakt.requests_to(TOKEN_CALLS) == []  # the interval has not passed

    clock.advance(5)
    first = poll_all_at_once(tabs)
    assert {(status, answer["status"]) for status, answer in first} == {(200, "pending")}
    assert len(trakt.requests_to(TOKEN_CALLS)) == 1

    again = poll_all_at_once(tabs)
    assert {answer["status"] for _status, answer in again} == {"pending"}
    assert len(trakt.requests_to(TOKEN_CALLS)) == 1  # same interval: nobody asks again

    clock.advance(5)
    trakt.approve_device(user_code, "Watcher")
    last = poll_all_at_once(tabs)
    assert {status for status, _answer in last} == {200}
    assert {answer["status"] for _status, answer in last} <= {"pending", "linked"}
    assert [answer["status"] for _status, answer in last].count("linked") >= 1
    assert len(trakt.requests_to(TOKEN_CALLS)) == 2
    assert all(request.status in (400, 200) for request in trakt.requests_to(TOKEN_CALLS))  # never a 429

    account = SocialAccount.objects.get()
    assert account.user == member and TraktToken.objects.get().account == account
    assert poll(tabs[0])["status"] in ("linked", "none")
    assert len(trakt.requests_to(TOKEN_CALLS)) == 2


# -- an approval that is not kept is revoked -------------------------------------------------------------


@pytest.mark.django_db
def test_refused_link_to_another_users_trakt_account_revokes_the_issued_token(client, member, fast, caplog):
    caplog.set_level(logging.DEBUG)
    other = User.objects.create_user("other", "other@example.com", "pw")
    theirs = link_to_watcher(fast, other)

    user_code = start_linking(client)
    fast.approve_device(user_code, "Watcher")
    answer = poll(client)

    assert answer["status"] == "other_user" and answer["final"] is True
    (revoke,) = fast.requests_to("/oauth/revoke")
    issued = revoke.json["token"]
    assert issued != theirs.access_token
    assert issued in fast.revoked_tokens and not fast.is_access_token_valid(issued)
    # The other user's link is untouched, at Trakt too.
    assert fast.is_access_token_valid(TraktToken.objects.get().access_token)
    assert SocialAccount.objects.get().user == other
    assert issued not in caplog.text
    assert "Revoked at Trakt the token of a device link that was not kept" in caplog.text


class VetoAdapter(DefaultSocialAccountAdapter):
    def pre_social_login(self, request, sociallogin):
        raise ImmediateHttpResponse(HttpResponseForbidden("not here"))


@pytest.mark.django_db
@override_settings(SOCIALACCOUNT_ADAPTER=f"{__name__}.VetoAdapter")
def test_link_vetoed_by_the_site_revokes_the_issued_token(client, member, fast):
    user_code = start_linking(client)
    fast.approve_device(user_code)
    assert poll(client)["status"] == "refused"
    (revoke,) = fast.requests_to("/oauth/revoke")
    assert not fast.is_access_token_valid(revoke.json["token"])
    assert fast.active_tokens() == []


@pytest.mark.django_db
def test_refused_link_when_the_revoke_fails_still_answers_cleanly(client, member, fast):
    link_to_watcher(fast, User.objects.create_user("other", "other@example.com", "pw"))
    user_code = start_linking(client)
    fast.approve_device(user_code, "Watcher")
    fast.fail_next("/oauth/revoke", status=503)
    answer = poll(client)
    assert (answer["status"], answer["final"]) == ("other_user", True)
    assert len(fast.requests_to("/oauth/revoke")) == 1


def test_the_pages_say_to_wait_when_the_poll_budget_is_spent(fast, clock, member, client):
    """Polls are budgeted per user too (``sign_in_budgets.CODE_POLLS``): the page waits, the code is kept."""
    from django_trakt.sign_in_budgets import CODE_POLLS

    start_linking(client)
    for _ in range(CODE_POLLS.per_client):
        assert poll(client)["status"] == "pending"
    answer = poll(client)
    assert answer["status"] == "too_many_requests" and not answer["final"]
    assert answer["retry_in"] > 0 and "checking again in" in answer["message"]
    assert len(fast.requests_to(TOKEN_CALLS)) == CODE_POLLS.per_client
    assert pending_code(client)["device_code"]  # kept: polled again once the budget refills
    clock.advance(CODE_POLLS.period)
    assert poll(client)["status"] == "pending"
    assert len(fast.requests_to(TOKEN_CALLS)) == CODE_POLLS.per_client + 1
