"""The local Trakt follows Trakt's published contracts: one test per rule, named after it.

Each rule cites its source: a path in the ``trakt/trakt-api`` repository
(``projects/api/src/contracts/...``) or an issue of that repository where a maintainer
answered. The remaining differences are listed in docs/local-trakt.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from django_trakt.testing import TraktEmulator
from tests.test_emulator_refusals import (
    AUTH,
    CLIENT_ID,
    CLIENT_SECRET,
    OTHER_ID,
    OTHER_SECRET,
    REDIRECT_URI,
    authorize_url,
    code_from,
    credentials,
    get,
    headers,
    pkce,
    post,
    refresh_body,
)
from tests.trakt_shapes import (
    assert_shape,
    device_code_problems,
    last_activities_problems,
    settings_problems,
    token_problems,
    watchlist_problems,
)


@pytest.fixture
def mocked() -> Iterator[TraktEmulator]:
    """The local Trakt of test_emulator_refusals: two apps, alice and bob, answering in-process."""
    emulator = TraktEmulator()
    emulator.add_app(CLIENT_ID, CLIENT_SECRET, name="Strict Cinema", redirect_uris=[REDIRECT_URI])
    emulator.add_app(OTHER_ID, OTHER_SECRET, name="Other app", redirect_uris=[REDIRECT_URI])
    emulator.add_user("alice", name="Alice Liddell")
    emulator.add_user("bob")
    emulator.device_interval = 0
    with emulator.mock():
        yield emulator


@pytest.fixture
def tokens(mocked: TraktEmulator) -> dict[str, Any]:
    return mocked.issue_tokens("alice", CLIENT_ID)


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def exchange(code: str, verifier: str | None) -> requests.Response:
    body = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, **credentials()}
    if verifier is not None:
        body["code_verifier"] = verifier
    return post("/oauth/token", body)


# -- the token endpoint --------------------------------------------------------------------------


def test_basic_client_authentication_at_the_token_endpoint_is_400(mocked: TraktEmulator) -> None:
    """trakt/trakt-api#903: auth.trakt.tv does not accept HTTP Basic client authentication ("the
    code-for-token exchange 400s"): a 400, not the 401 invalid_client of a wrong secret."""
    verifier, challenge = pkce()
    code = code_from(mocked.authorize(authorize_url(challenge)))
    response = requests.post(
        f"{AUTH}/oauth/token",
        json={
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "grant_type": "authorization_code",
            "code_verifier": verifier,
        },
        headers=headers(),
        auth=(CLIENT_ID, CLIENT_SECRET),
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert mocked.active_tokens() == []
    # The same code, credentials in the body: exchanged (it was not spent by the refusal).
    assert exchange(code, verifier).status_code == 200


def test_legacy_refresh_token_from_before_the_migration_gets_an_empty_400(mocked: TraktEmulator) -> None:
    """trakt/trakt-api#888: a refresh token from before Trakt's July 2026 auth migration gets
    "HTTP 400, no further detail in the response body"; it can never be exchanged."""
    legacy = mocked.issue_tokens("alice", CLIENT_ID, legacy=True)
    response = post("/oauth/token", refresh_body(legacy["refresh_token"]))
    assert response.status_code == 400 and response.content == b""
    assert not mocked.is_access_token_valid(legacy["access_token"])
    assert mocked.refresh_count(legacy["refresh_token"], accepted=False) == 1
    # Asked again: the same empty 400 (nothing about it heals).
    assert post("/oauth/token", refresh_body(legacy["refresh_token"])).content == b""
    # A token issued after the migration refreshes as usual.
    current = mocked.issue_tokens("alice", CLIENT_ID)
    assert post("/oauth/token", refresh_body(current["refresh_token"])).status_code == 200


def test_token_answer_has_the_contracts_shape(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    """``oauth/schema/response/tokenResponseSchema.ts``."""
    assert_shape(token_problems(tokens))
    refreshed = post("/oauth/token", refresh_body(tokens["refresh_token"])).json()
    assert_shape(token_problems(refreshed))


# -- rate limits ----------------------------------------------------------------------------------


def test_get_rate_limit_is_500_per_5_minutes_per_user(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    """trakt/trakt-api#909, a maintainer: "The GET limit is currently 500 requests per 5
    minutes, not 1000". Over it: the API's 429 with Retry-After and X-Ratelimit."""
    assert mocked.get_limit == 500 and mocked.rate_limit_period == 300
    # Start at a window's beginning, so the 500 calls cannot straddle two windows.
    mocked.advance(300 - mocked.now() % 300)
    statuses = [get("/users/settings", tokens["access_token"]).status_code for _ in range(500)]
    assert statuses == [200] * 500
    refused = get("/users/settings", tokens["access_token"])
    assert refused.status_code == 429
    assert refused.headers["Content-Type"] == "application/json"
    assert 0 < int(refused.headers["Retry-After"]) <= 300
    assert refused.json()["error"] == "rate_limit_exceeded"
    ratelimit = json.loads(refused.headers["X-Ratelimit"])
    assert ratelimit["name"] == "AUTHED_API_GET_LIMIT"
    assert (ratelimit["limit"], ratelimit["period"], ratelimit["remaining"]) == (500, 300, 0)
    # Per user: another user of the same app is not limited by alice's calls.
    bob = mocked.issue_tokens("bob", CLIENT_ID)
    assert get("/users/settings", bob["access_token"]).status_code == 200
    # The next window opens after five minutes.
    mocked.advance(int(refused.headers["Retry-After"]))
    assert get("/users/settings", tokens["access_token"]).status_code == 200


def test_cloudflare_burst_is_an_html_429_with_retry_after_300_and_no_ratelimit_header(
    mocked: TraktEmulator, tokens: dict[str, Any]
) -> None:
    """trakt/trakt-api#909: the refusal "came back Content-Type: text/html with Server:
    cloudflare, Retry-After: 300 and no X-Ratelimit header" (also #922)."""
    mocked.get_limit = 2
    mocked.cloudflare_burst = True
    mocked.advance(300 - mocked.now() % 300)
    assert [get("/users/settings", tokens["access_token"]).status_code for _ in range(2)] == [200, 200]
    refused = get("/users/settings", tokens["access_token"])
    assert refused.status_code == 429
    assert refused.headers["Content-Type"].startswith("text/html")
    assert refused.headers["Server"] == "cloudflare"
    assert refused.headers["Retry-After"] == "300"
    assert "X-Ratelimit" not in refused.headers
    assert "banned you temporarily" in refused.text
    # The injected form of the same answer, for a test that needs it once.
    mocked.cloudflare_next("/sync/last_activities", status=429)
    injected = get("/sync/last_activities", tokens["access_token"])
    assert (injected.status_code, injected.headers["Retry-After"]) == (429, "300")
    assert "X-Ratelimit" not in injected.headers and injected.headers["Content-Type"].startswith("text/html")


# -- authorize: PKCE and scope --------------------------------------------------------------------


def test_pkce_missing_challenge_is_invalid_request_on_the_redirect(mocked: TraktEmulator) -> None:
    """trakt/trakt-api#887 (and its curl traces): without a challenge Trakt redirects back with
    ``error=invalid_request&error_description=pkce is required when requesting offline_access
    scope``; not an HTML 400 page."""
    response = requests.get(authorize_url(None), allow_redirects=False, timeout=5)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI)
    assert query_of(location) == {
        "error": ["invalid_request"],
        "error_description": ["pkce is required when requesting offline_access scope"],
        "state": ["s"],
    }


def test_pkce_plain_method_is_refused(mocked: TraktEmulator) -> None:
    """Only S256: Trakt's own chain adds ``code_challenge_method=S256`` (#887), and plain would
    send the verifier through the browser."""
    verifier, _ = pkce()
    response = requests.get(
        authorize_url(code_challenge=verifier, code_challenge_method="plain"), allow_redirects=False, timeout=5
    )
    assert response.status_code == 302
    refused = query_of(response.headers["Location"])
    assert refused["error"] == ["invalid_request"] and "S256" in refused["error_description"][0]
    assert "code" not in refused


def test_pkce_challenge_without_method_is_refused(mocked: TraktEmulator) -> None:
    """A challenge without a method is not taken as ``plain`` (RFC 7636's default): refused."""
    _, challenge = pkce()
    url = authorize_url(code_challenge=challenge)
    response = requests.get(url, allow_redirects=False, timeout=5)
    assert response.status_code == 302
    assert query_of(response.headers["Location"])["error"] == ["invalid_request"]
    assert "code" not in query_of(mocked.authorize(url))


def test_pkce_s256_challenge_is_accepted_and_checked(mocked: TraktEmulator) -> None:
    verifier, challenge = pkce()
    code = code_from(mocked.authorize(authorize_url(challenge)))
    assert exchange(code, verifier + "x").json()["error"] == "invalid_grant"
    assert exchange(code, verifier).status_code == 200


def test_scope_without_one_trakt_adds_public_offline_access(mocked: TraktEmulator) -> None:
    """trakt/trakt-api#887: Trakt's redirect chain adds ``scope=public+offline_access`` to a request
    that names none; the token answer carries that scope."""
    verifier, challenge = pkce()
    code = code_from(mocked.authorize(authorize_url(challenge)))
    granted = exchange(code, verifier).json()
    assert granted["scope"] == "public offline_access"
    # A refresh keeps the scope.
    assert post("/oauth/token", refresh_body(granted["refresh_token"])).json()["scope"] == "public offline_access"
    # A scope asked for is the scope granted.
    verifier, challenge = pkce()
    code = code_from(mocked.authorize(authorize_url(challenge, scope="public")))
    assert exchange(code, verifier).json()["scope"] == "public"


# -- the API ---------------------------------------------------------------------------------------


def test_watchlist_sorts_are_the_contracts_and_an_unknown_sort_is_a_400(
    mocked: TraktEmulator, tokens: dict[str, Any]
) -> None:
    """``users/schema/request/sortParamsSchema.ts``: rank, added, title, released, runtime,
    popularity, percentage, votes. Anything else is refused, never silently rank."""
    mocked.add_watchlist_item("alice", "movie", title="Zodiac", year=2007)
    mocked.add_watchlist_item("alice", "movie", title="Alien", year=1979)
    for sort in ("rank", "added", "title", "released", "runtime", "popularity", "percentage", "votes"):
        response = get(f"/sync/watchlist/movies/{sort}/asc", tokens["access_token"])
        assert response.status_code == 200, sort
        assert_shape(watchlist_problems(response.json()))
    for sort in ("my_rating", "random", "nonsense"):
        refused = get(f"/sync/watchlist/movies/{sort}/asc", tokens["access_token"])
        assert refused.status_code == 400, sort
        assert (
            refused.json()["error"] == "invalid_request" and "rank, added, title" in refused.json()["error_description"]
        )
    assert get("/users/alice/watchlist/movies/random/asc").status_code == 400


def test_users_settings_has_every_key_the_contract_requires(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    """``users/schema/response/settingsResponseSchema.ts`` requires ``user.images.avatar.full``,
    ``user.vip_og``, ``user.vip_years``, ``user.director``, ``permissions`` and ``account``."""
    document = get("/users/settings", tokens["access_token"]).json()
    assert_shape(settings_problems(document))
    user = document["user"]
    assert set(user["ids"]) == {"slug", "trakt", "uuid"}
    assert isinstance(user["director"], bool) and isinstance(user["vip_og"], bool) and user["vip_years"] == 0
    assert document["permissions"] == {"commenting": True, "liking": True, "following": True}
    assert {"timezone", "date_format", "time_24hr"} <= set(document["account"])
    assert "browsing" not in document  # only with extended=browsing


def test_extended_images_urls_come_without_a_scheme(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    """Trakt's ``extended=images`` URLs have no scheme (``walter-r2.trakt.tv/images/...``,
    observed; shared/trakt-api.md): a client must add https itself."""
    mocked.add_watchlist_item("alice", "movie", title="Alien", year=1979)
    mocked.add_watchlist_item("alice", "episode", title="Pilot", show="Lost", season=1, episode=1)
    items = get("/sync/watchlist", tokens["access_token"], extended="images").json()
    assert_shape(watchlist_problems(items))
    urls = [items[0]["movie"]["images"]["poster"][0], items[1]["episode"]["images"]["screenshot"][0]]
    urls.append(items[1]["show"]["images"]["poster"][0])
    for url in urls:
        assert "://" not in url and url.startswith("trakt.tv/images/posters/")
        assert requests.get("https://" + url, timeout=5).headers["Content-Type"] == "image/png"


def test_last_activities_has_the_contracts_keys(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    """``sync/schema/response/lastActivitiesResponseSchema.ts``: exactly its groups and keys."""
    document = get("/sync/last_activities", tokens["access_token"]).json()
    assert_shape(last_activities_problems(document))
    assert set(document) == {
        "all",
        "movies",
        "episodes",
        "shows",
        "seasons",
        "comments",
        "lists",
        "watchlist",
        "favorites",
        "collaborations",
        "account",
        "saved_filters",
        "notes",
    }
    assert set(document["comments"]) == {"liked_at", "reacted_at", "blocked_at"}
    assert set(document["lists"]) == {"liked_at", "reacted_at", "updated_at", "commented_at"}


# -- the device flow -------------------------------------------------------------------------------


def test_device_code_answer_carries_the_contracts_verification_url(mocked: TraktEmulator) -> None:
    """``oauth/schema/response/codeResponseSchema.ts`` and ``oauth/index.ts``: "The QR code should use
    https://auth.trakt.tv/activate"; the user code can be appended (#867, the playground's
    ``createDeviceTokenPoller.ts``), which opens the page with the code filled in."""
    answer = post("/oauth/device/code", {"client_id": CLIENT_ID}).json()
    assert_shape(device_code_problems(answer))
    assert answer["verification_url"] == "https://auth.trakt.tv/activate"
    page = requests.get(f"{answer['verification_url']}/{answer['user_code']}", timeout=5)
    assert page.status_code == 200
    assert f'name="code" type="text" value="{answer["user_code"]}"' in page.text


def test_deleted_or_disabled_app_answers_403_to_every_call(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    """trakt/trakt-api#691: Trakt deletes apps without OAuth sessions; from then on every call of
    the app is refused with a 403 (a switch of the emulator, like its failure switches)."""
    device = post("/oauth/device/code", {"client_id": CLIENT_ID}).json()
    mocked.disable_app(CLIENT_ID)
    _, challenge = pkce()
    calls = {
        "authorize": requests.get(authorize_url(challenge), allow_redirects=False, timeout=5),
        "device code": post("/oauth/device/code", {"client_id": CLIENT_ID}),
        "device poll": post("/oauth/device/token", {"code": device["device_code"], **credentials()}),
        "refresh": post("/oauth/token", refresh_body(tokens["refresh_token"])),
        "revoke": post("/oauth/revoke", {"token": tokens["access_token"], **credentials()}),
        "settings": get("/users/settings", tokens["access_token"]),
        "watchlist": get("/sync/watchlist", tokens["access_token"]),
        "public watchlist": get("/users/alice/watchlist"),
    }
    assert {name: response.status_code for name, response in calls.items()} == dict.fromkeys(calls, 403)
    assert mocked.refresh_events == []  # nothing was spent
    mocked.enable_app(CLIENT_ID)
    assert get("/users/settings", tokens["access_token"]).status_code == 200
