"""No visitor can spend the site's Trakt budget (issue 21, item 4).

Three endpoints make Trakt calls before anyone is signed in: allauth's headless provider-token
sign-in (``GET /users/settings`` per token), and the sign-in by code's start
(``POST /oauth/device/code``) and poll (``POST /oauth/device/token``). 300 requests on each,
from one IPv6 /64 (a new address every time) or from 300 IPv4 addresses, reach the local
Trakt at most as often as the budgets of ``django_trakt.sign_in_budgets`` allow; the rest are
answered with a 429 and its ``Retry-After``, and Trakt is not asked.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client

from django_trakt.device.flow import DEVICE_START_LIMIT
from django_trakt.sign_in_budgets import CODE_POLLS, CODE_STARTS, TOKEN_CHECKS
from tests.test_device import moving_clock
from tests.test_headless import headless_site  # noqa: F401  (the headless site, autouse)

pytestmark = pytest.mark.django_db

APP_API = "/_allauth/app/v1"
TOKEN = f"{APP_API}/auth/provider/token"
START = f"{APP_API}/auth/provider/trakt/code"
POLL = f"{APP_API}/auth/provider/trakt/code/poll"
REQUESTS = 300


def ipv6_in_one_64(i: int) -> str:
    """A new address each time, all in 2001:db8:7:7::/64 (one host's usual allocation)."""
    return f"2001:db8:7:7:{i:x}:{i * 7 % 65536:x}:{i * 13 % 65536:x}:{i + 1:x}"


def ipv4(i: int) -> str:
    return f"198.51.{i // 250}.{i % 250 + 1}"


ADDRESSES = {"one IPv6 /64": ipv6_in_one_64, "300 IPv4 addresses": ipv4}


@pytest.fixture
def clock(trakt, monkeypatch):
    """Frozen unless moved: every request of a test falls in one budget window."""
    return moving_clock(trakt, monkeypatch)


def check_token(address: str, i: int):
    token = {"client_id": settings.TRAKT_CLIENT_ID, "access_token": f"garbage-{i}"}
    return Client().post(
        TOKEN,
        {"provider": "trakt", "process": "login", "token": token},
        content_type="application/json",
        REMOTE_ADDR=address,
    )


def assert_too_many(response) -> int:
    assert response.status_code == 429, response.content
    assert response.json()["status"] == 429
    wait = int(response["Retry-After"])
    assert wait > 0
    return wait


# -- provider-token checks -----------------------------------------------------------------------


@pytest.mark.parametrize("addresses", ADDRESSES.values(), ids=ADDRESSES.keys())
def test_300_token_checks_cost_at_most_the_budget_at_trakt(trakt, clock, addresses):
    statuses = [check_token(addresses(i), i).status_code for i in range(REQUESTS)]
    calls = len(trakt.requests_to("/users/settings"))
    # One client (the /64) gets its own budget; 300 clients together the site's.
    budget = TOKEN_CHECKS.per_client if addresses is ipv6_in_one_64 else TOKEN_CHECKS.site_wide
    assert calls == budget
    assert statuses == [400] * budget + [429] * (REQUESTS - budget)  # refused by Trakt, then by the budget
    assert_too_many(check_token(addresses(REQUESTS), REQUESTS))
    assert len(trakt.requests_to("/users/settings")) == budget


def test_the_token_budget_refills_in_the_next_window_and_other_networks_have_their_own(trakt, clock):
    for i in range(TOKEN_CHECKS.per_client):
        assert check_token(ipv6_in_one_64(i), i).status_code == 400
    wait = assert_too_many(check_token(ipv6_in_one_64(99), 99))
    # Another /64 is another client.
    assert check_token("2001:db8:7:8::1", 100).status_code == 400
    assert len(trakt.requests_to("/users/settings")) == TOKEN_CHECKS.per_client + 1
    clock.advance(wait)
    assert check_token(ipv6_in_one_64(101), 101).status_code == 400
    assert len(trakt.requests_to("/users/settings")) == TOKEN_CHECKS.per_client + 2


def test_the_ipv6_grouping_follows_allauths_prefix_setting(trakt, clock, settings):
    settings.ALLAUTH_RATE_LIMIT_IPV6_PREFIX = 48  # 2001:db8:7:7:: and 2001:db8:7:8:: are one client now
    for i in range(TOKEN_CHECKS.per_client):
        assert check_token(f"2001:db8:7:{i}::1", i).status_code == 400
    assert_too_many(check_token("2001:db8:7:ffff::1", 99))
    assert len(trakt.requests_to("/users/settings")) == TOKEN_CHECKS.per_client


def test_a_valid_token_still_signs_in_while_the_budget_lasts(trakt, clock):
    body = trakt.issue_tokens("Watcher", settings.TRAKT_CLIENT_ID)
    token = {"client_id": settings.TRAKT_CLIENT_ID, "access_token": body["access_token"]}
    response = Client().post(
        TOKEN, {"provider": "trakt", "process": "login", "token": token}, content_type="application/json"
    )
    assert response.status_code == 401  # allauth's pending signup of a new Trakt user
    assert [flow["id"] for flow in response.json()["data"]["flows"] if flow.get("is_pending")] == ["provider_signup"]


def test_a_cache_that_cannot_count_asks_trakt_nothing(trakt, clock, settings):
    settings.CACHES = {**settings.CACHES, "broken": {"BACKEND": "tests.conftest.BrokenCache"}}
    settings.TRAKT_CACHE = "broken"
    response = check_token("198.51.100.1", 1)
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "trakt_unavailable"
    assert trakt.requests_to("/users/settings") == []


# -- code starts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("addresses", ADDRESSES.values(), ids=ADDRESSES.keys())
def test_300_code_starts_cost_at_most_the_budget_at_trakt(trakt, clock, addresses):
    answers = [Client().post(START, REMOTE_ADDR=addresses(i)) for i in range(REQUESTS)]
    calls = len(trakt.requests_to("/oauth/device/code"))
    budget = DEVICE_START_LIMIT if addresses is ipv6_in_one_64 else CODE_STARTS.site_wide
    assert calls == budget
    assert [answer.status_code for answer in answers] == [200] * budget + [429] * (REQUESTS - budget)
    refused = answers[-1].json()
    assert refused["errors"][0]["code"] == "too_many_requests" and int(answers[-1]["Retry-After"]) > 0
    if addresses is ipv4:
        assert "on this site" in refused["errors"][0]["message"]


# -- code polls ----------------------------------------------------------------------------------


class App:
    """An app with a code pending in its session (``X-Session-Token``), polling from any address."""

    def __init__(self, address: str) -> None:
        self.client = Client()
        started = self.client.post(START, REMOTE_ADDR=address)
        assert started.status_code == 200, started.content
        self.session_token = started.json()["meta"]["session_token"]

    def poll(self, address: str):
        return self.client.post(POLL, HTTP_X_SESSION_TOKEN=self.session_token, REMOTE_ADDR=address)


def test_300_polls_from_one_ipv6_64_cost_at_most_its_budget_at_trakt(fast, clock):
    app = App(ipv6_in_one_64(0))
    answers = [app.poll(ipv6_in_one_64(i)) for i in range(REQUESTS)]
    assert len(fast.requests_to("/oauth/device/token")) == CODE_POLLS.per_client
    statuses = [answer.status_code for answer in answers]
    assert statuses == [202] * CODE_POLLS.per_client + [429] * (REQUESTS - CODE_POLLS.per_client)
    refused = answers[-1].json()
    assert refused["errors"][0]["code"] == "too_many_requests" and int(answers[-1]["Retry-After"]) > 0
    # The code is kept: once the budget refills, the poll asks Trakt again.
    clock.advance(CODE_POLLS.period)
    assert app.poll(ipv6_in_one_64(REQUESTS)).status_code == 202
    assert len(fast.requests_to("/oauth/device/token")) == CODE_POLLS.per_client + 1


def test_300_polls_from_300_ipv4_addresses_cost_at_most_the_site_budget_at_trakt(fast, clock):
    # Ten codes, each polled from ever new addresses (the session holds the code, not the address).
    apps = [App(ipv4(1000 + n)) for n in range(10)]
    answers = [apps[i % len(apps)].poll(ipv4(i)) for i in range(REQUESTS)]
    assert len(fast.requests_to("/oauth/device/token")) == CODE_POLLS.site_wide
    statuses = [answer.status_code for answer in answers]
    assert statuses == [202] * CODE_POLLS.site_wide + [429] * (REQUESTS - CODE_POLLS.site_wide)


# -- the app-refused check ----------------------------------------------------------------------


def test_many_403s_ask_trakt_about_the_app_once_a_minute(trakt, clock):
    for i in range(5):
        trakt.fail_next("/users/settings", status=403)
        response = check_token(ipv4(i), i)
        assert response.json()["errors"][0]["code"] == "trakt_unavailable"  # a Cloudflare block, not the app
    assert len(trakt.requests_to("/oauth/revoke")) == 1  # oauth.credentials_accepted's one question
