"""The Trakt emulator (``django_trakt.testing``), proved through its public surface.

Most tests drive it in-process with real ``requests`` calls under ``emulator.mock()``;
a few run the loopback HTTP server and the CLI. No Django is needed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
import responses

from django_trakt.testing import EmulatedUser, RecordedRequest, TraktEmulator, serve

CLIENT_ID = "test-client-id"
CLIENT_SECRET = "test-client-secret"
REDIRECT_URI = "https://site.example/accounts/trakt/login/callback/"
AUTH = "https://auth.trakt.tv"
API = "https://api.trakt.tv"
WEB = "https://trakt.tv"
UA = "django-trakt-tests/1.0"


def trakt_headers(token: str | None = None, **extra: str) -> dict[str, str]:
    headers = {"trakt-api-version": "2", "trakt-api-key": CLIENT_ID, "User-Agent": UA}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    headers.update(extra)
    return headers


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_url(base: str, challenge: str | None, state: str | None = "st4te", **overrides: str) -> str:
    params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI}
    if state is not None:
        params["state"] = state
    if challenge is not None:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    params.update(overrides)
    return f"{base}/oauth/authorize?{urlencode(params)}"


def callback_params(url: str) -> dict[str, str]:
    assert url.startswith(REDIRECT_URI)
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def post_json(url: str, body: dict[str, object], **kwargs: object) -> requests.Response:
    headers = trakt_headers()
    headers.update(kwargs.pop("headers", {}))  # type: ignore[arg-type]
    return requests.post(url, json=body, headers=headers, timeout=5, **kwargs)  # type: ignore[arg-type]


def exchange(base: str, code: str, verifier: str | None, redirect_uri: str = REDIRECT_URI) -> requests.Response:
    body: dict[str, object] = {
        "code": code,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": redirect_uri,
        "grant_type": "authorization_code",
    }
    if verifier is not None:
        body["code_verifier"] = verifier
    return post_json(f"{base}/oauth/token", body)


def refresh(base: str, refresh_token: str) -> requests.Response:
    return post_json(
        f"{base}/oauth/token",
        {
            "refresh_token": refresh_token,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uri": REDIRECT_URI,
            "grant_type": "refresh_token",
        },
    )


def settings_user(token: str) -> dict[str, Any]:
    return requests.get(f"{API}/users/settings", headers=trakt_headers(token), timeout=5).json()["user"]


def settings_status(base: str, token: str) -> int:
    return requests.get(f"{base}/users/settings", headers=trakt_headers(token), timeout=5).status_code


def assert_png(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    ihdr = data[16:29]
    assert struct.unpack(">I", data[29:33])[0] == zlib.crc32(b"IHDR" + ihdr)
    width, height = struct.unpack(">II", ihdr[:8])
    assert data.endswith(b"IEND\xaeB`\x82")
    return width, height


@pytest.fixture
def emulator() -> TraktEmulator:
    emulator = TraktEmulator()
    emulator.add_app(CLIENT_ID, CLIENT_SECRET, name="Cinema Club", redirect_uris=[REDIRECT_URI])
    emulator.add_user("alice", name="Alice Liddell")
    emulator.add_user("bob")
    emulator.device_interval = 0
    return emulator


@pytest.fixture
def mocked(emulator: TraktEmulator) -> Iterator[TraktEmulator]:
    with emulator.mock():
        yield emulator


@pytest.fixture
def tokens(mocked: TraktEmulator) -> dict[str, Any]:
    return mocked.issue_tokens("alice", CLIENT_ID)


# -- authorization code flow ---------------------------------------------------------------


def test_code_flow_with_pkce_issues_working_tokens(mocked: TraktEmulator) -> None:
    verifier, challenge = pkce()
    callback = mocked.authorize(authorize_url(AUTH, challenge), username="bob")
    params = callback_params(callback)
    assert params["state"] == "st4te"

    response = exchange(AUTH, params["code"], verifier)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "scope", "created_at"}
    assert re.fullmatch(r"[0-9a-f]{64}", body["access_token"])
    assert body["token_type"] == "bearer" and body["expires_in"] == 604800
    # No scope was asked for: Trakt grants "public offline_access" itself (trakt/trakt-api#887).
    assert body["scope"] == "public offline_access"
    assert abs(body["created_at"] - time.time()) < 5
    me = requests.get(f"{API}/users/settings", headers=trakt_headers(body["access_token"]), timeout=5).json()
    assert me["user"]["username"] == "bob"


def test_authorize_page_shows_app_users_and_buttons(mocked: TraktEmulator) -> None:
    _, challenge = pkce()
    response = requests.get(authorize_url(AUTH, challenge), timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    page = response.text
    assert "Cinema Club" in page
    assert '<option value="alice" selected>' in page and '<option value="bob">' in page
    assert '<button type="submit" name="decision" value="approve">Approve</button>' in page
    assert '<button type="submit" name="decision" value="deny">Deny</button>' in page
    assert f'name="code_challenge" value="{challenge}"' in page


def hidden_fields(page: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page))


def test_authorize_form_approve_redirects_with_code(mocked: TraktEmulator) -> None:
    verifier, challenge = pkce()
    page = requests.get(authorize_url(AUTH, challenge), timeout=5).text
    form = {**hidden_fields(page), "username": "alice", "decision": "approve"}

    response = requests.post(f"{AUTH}/oauth/authorize", data=form, allow_redirects=False, timeout=5)

    assert response.status_code == 302
    params = callback_params(response.headers["Location"])
    assert params["state"] == "st4te"
    assert exchange(AUTH, params["code"], verifier).status_code == 200


def test_authorize_form_deny_redirects_with_access_denied(mocked: TraktEmulator) -> None:
    _, challenge = pkce()
    form = {**hidden_fields(requests.get(authorize_url(AUTH, challenge), timeout=5).text), "decision": "deny"}
    response = requests.post(f"{AUTH}/oauth/authorize", data=form, allow_redirects=False, timeout=5)
    assert response.status_code == 302
    assert callback_params(response.headers["Location"]) == {"error": "access_denied", "state": "st4te"}


def test_authorize_deny_without_state_omits_state(emulator: TraktEmulator) -> None:
    _, challenge = pkce()
    callback = emulator.authorize(authorize_url(AUTH, challenge, state=None), decision="deny")
    assert callback_params(callback) == {"error": "access_denied"}


@pytest.mark.parametrize("redirect_uri", [REDIRECT_URI.rstrip("/"), REDIRECT_URI + "?x=1", "https://evil.example/cb/"])
def test_authorize_unregistered_redirect_uri_is_rejected_without_redirect(
    mocked: TraktEmulator, redirect_uri: str
) -> None:
    _, challenge = pkce()
    url = authorize_url(AUTH, challenge, redirect_uri=redirect_uri)
    response = requests.get(url, allow_redirects=False, timeout=5)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "not registered" in response.text
    with pytest.raises(ValueError, match="not registered"):
        mocked.authorize(url)


def test_authorize_unknown_client_is_400_page(mocked: TraktEmulator) -> None:
    _, challenge = pkce()
    response = requests.get(authorize_url(AUTH, challenge, client_id="nope"), timeout=5)
    assert response.status_code == 400 and "Unknown client_id" in response.text


def test_authorize_missing_pkce_is_refused_on_the_redirect(mocked: TraktEmulator) -> None:
    response = requests.get(authorize_url(AUTH, None), allow_redirects=False, timeout=5)
    assert response.status_code == 302
    refused = callback_params(response.headers["Location"])
    assert refused["error"] == "invalid_request"
    assert refused["error_description"] == "pkce is required when requesting offline_access scope"
    assert callback_params(mocked.authorize(authorize_url(AUTH, None)))["error"] == "invalid_request"


def test_authorize_without_pkce_allowed_when_not_required(mocked: TraktEmulator) -> None:
    mocked.require_pkce = False
    code = callback_params(mocked.authorize(authorize_url(AUTH, None)))["code"]
    assert exchange(AUTH, code, None).status_code == 200


def test_token_wrong_verifier_is_invalid_grant(mocked: TraktEmulator) -> None:
    _, challenge = pkce()
    code = callback_params(mocked.authorize(authorize_url(AUTH, challenge)))["code"]
    response = exchange(AUTH, code, "not-the-verifier-" + "x" * 40)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert exchange(AUTH, code, None).json()["error"] == "invalid_grant"


def test_token_replayed_code_is_invalid_grant(mocked: TraktEmulator) -> None:
    verifier, challenge = pkce()
    code = callback_params(mocked.authorize(authorize_url(AUTH, challenge)))["code"]
    assert exchange(AUTH, code, verifier).status_code == 200
    replay = exchange(AUTH, code, verifier)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert "already been used" in replay.json()["error_description"]


def test_token_code_older_than_ten_minutes_is_invalid_grant(mocked: TraktEmulator) -> None:
    verifier, challenge = pkce()
    code = callback_params(mocked.authorize(authorize_url(AUTH, challenge)))["code"]
    mocked.advance(601)
    response = exchange(AUTH, code, verifier)
    assert response.status_code == 400 and "expired" in response.json()["error_description"]


def test_token_redirect_uri_mismatch_is_invalid_grant(mocked: TraktEmulator) -> None:
    verifier, challenge = pkce()
    code = callback_params(mocked.authorize(authorize_url(AUTH, challenge)))["code"]
    response = exchange(AUTH, code, verifier, redirect_uri="https://site.example/other/")
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_token_wrong_secret_is_400_invalid_client(mocked: TraktEmulator) -> None:
    response = post_json(
        f"{AUTH}/oauth/token",
        {
            "grant_type": "authorization_code",
            "code": "x",
            "client_id": CLIENT_ID,
            "client_secret": "wrong",
            "redirect_uri": REDIRECT_URI,
            "code_verifier": "v",
        },
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_client"


def test_token_unsupported_grant_type_is_400(mocked: TraktEmulator) -> None:
    response = post_json(f"{AUTH}/oauth/token", {"grant_type": "password", "client_id": CLIENT_ID})
    assert response.status_code == 400 and response.json()["error"] == "unsupported_grant_type"


def test_token_basic_auth_is_rejected(mocked: TraktEmulator) -> None:
    verifier, challenge = pkce()
    code = callback_params(mocked.authorize(authorize_url(AUTH, challenge)))["code"]
    response = requests.post(
        f"{AUTH}/oauth/token",
        json={
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "grant_type": "authorization_code",
            "code_verifier": verifier,
        },
        headers=trakt_headers(),
        auth=(CLIENT_ID, CLIENT_SECRET),
        timeout=5,
    )
    # auth.trakt.tv answers HTTP Basic client authentication with a 400 (trakt/trakt-api#903).
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert mocked.active_tokens() == []  # the code was not exchanged


def test_token_form_body_is_412(mocked: TraktEmulator) -> None:
    response = requests.post(
        f"{AUTH}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": "x",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
        headers=trakt_headers(),
        timeout=5,
    )
    assert response.status_code == 412
    recorded = mocked.requests_to("/oauth/token")[-1]
    assert recorded.form is not None and recorded.form["grant_type"] == "refresh_token"
    assert recorded.status == 412


# -- refresh and revoke ---------------------------------------------------------------------


def test_refresh_rotates_pair_and_rejects_reuse(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    first = refresh(AUTH, tokens["refresh_token"])
    assert first.status_code == 200
    new = first.json()
    assert new["refresh_token"] != tokens["refresh_token"] and new["access_token"] != tokens["access_token"]

    reuse = refresh(AUTH, tokens["refresh_token"])

    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"
    assert settings_status(API, tokens["access_token"]) == 401
    assert settings_status(API, new["access_token"]) == 200
    assert mocked.refresh_count(tokens["refresh_token"]) == 1
    assert mocked.refresh_count(tokens["refresh_token"], accepted=False) == 1
    assert [event.reason for event in mocked.refresh_events] == ["", "reused"]
    assert mocked.refresh_events[0].new_refresh_token == new["refresh_token"]


def test_refresh_expired_refresh_token_is_invalid_grant(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    mocked.advance(mocked.refresh_token_lifetime + 1)
    response = refresh(AUTH, tokens["refresh_token"])
    assert response.status_code == 400 and "expired" in response.json()["error_description"]


def test_access_token_expires_after_its_lifetime(mocked: TraktEmulator) -> None:
    mocked.access_token_lifetime = 60
    pair = mocked.issue_tokens("alice", CLIENT_ID)
    assert pair["expires_in"] == 60 and mocked.is_access_token_valid(pair["access_token"])
    mocked.advance(61)
    assert not mocked.is_access_token_valid(pair["access_token"])
    assert settings_status(API, pair["access_token"]) == 401
    assert refresh(AUTH, pair["refresh_token"]).status_code == 200


def test_revoke_kills_access_and_refresh_tokens(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    response = post_json(
        f"{AUTH}/oauth/revoke",
        {"token": tokens["access_token"], "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
    )
    assert response.status_code == 200 and response.json() == {}
    assert tokens["access_token"] in mocked.revoked_tokens
    assert not mocked.is_access_token_valid(tokens["access_token"])
    unauthorized = requests.get(f"{API}/users/settings", headers=trakt_headers(tokens["access_token"]), timeout=5)
    assert unauthorized.status_code == 401 and unauthorized.json()["error"] == "invalid_token"
    assert refresh(AUTH, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_revoke_tokens_helper_disconnects_user(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    assert mocked.revoke_tokens("alice") == 1
    assert settings_status(API, tokens["access_token"]) == 401
    assert mocked.active_tokens("alice") == []


def test_a_token_is_refused_with_another_apps_api_key(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    # OAuth binds a token to its client (RFC 6749, 10.3): docs/local-trakt.md, "Differences".
    mocked.add_app("other-app", "other-secret", name="Other app")
    headers = {**trakt_headers(tokens["access_token"]), "trakt-api-key": "other-app"}
    response = requests.get(f"{API}/users/settings", headers=headers, timeout=5)
    assert response.status_code == 401 and response.json()["error"] == "invalid_token"
    assert settings_status(API, tokens["access_token"]) == 200  # with its own app's key it works
    assert mocked.user_for_token(tokens["access_token"], "other-app") is None
    assert mocked.user_for_token(tokens["access_token"], CLIENT_ID) is mocked.user_for_token(tokens["access_token"])


# -- required headers ------------------------------------------------------------------------


def test_api_missing_user_agent_gets_cloudflare_html_403(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    headers: dict[str, str | None] = {**trakt_headers(tokens["access_token"]), "User-Agent": None}
    response = requests.get(f"{API}/users/settings", headers=headers, timeout=5)
    assert response.status_code == 403
    assert response.headers["Content-Type"].startswith("text/html")
    assert "Cloudflare" in response.text
    assert "User-Agent" not in mocked.requests[-1].headers


def test_api_unknown_api_key_is_403(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    headers = trakt_headers(tokens["access_token"], **{"trakt-api-key": "someone-else"})
    response = requests.get(f"{API}/users/settings", headers=headers, timeout=5)
    assert response.status_code == 403 and response.json()["error"] == "invalid_api_key"


def test_api_wrong_version_is_400(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    headers = trakt_headers(tokens["access_token"], **{"trakt-api-version": "3"})
    response = requests.get(f"{API}/users/settings", headers=headers, timeout=5)
    assert response.status_code == 400 and response.json()["error"] == "invalid_api_version"


def test_oauth_endpoint_requires_trakt_headers(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    response = requests.post(f"{AUTH}/oauth/revoke", json={"token": "x"}, headers={"User-Agent": UA}, timeout=5)
    assert response.status_code == 400


def test_api_missing_token_is_401(mocked: TraktEmulator) -> None:
    response = requests.get(f"{API}/users/settings", headers=trakt_headers(), timeout=5)
    assert response.status_code == 401 and response.json()["error"] == "invalid_token"


def test_unknown_path_is_404_json(mocked: TraktEmulator) -> None:
    response = requests.get(f"{API}/no/such/thing", headers=trakt_headers(), timeout=5)
    assert response.status_code == 404 and response.json()["error"] == "not_found"


def test_requests_recorded_with_case_insensitive_headers(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    mocked.reset_requests()
    requests.get(f"{API}/sync/watchlist?page=2", headers=trakt_headers(tokens["access_token"]), timeout=5)
    (recorded,) = mocked.requests_to(re.compile(r"^/sync/watchlist"))
    assert isinstance(recorded, RecordedRequest)
    assert recorded.method == "GET" and recorded.query == {"page": "2"}
    assert recorded.headers["TRAKT-API-KEY"] == CLIENT_ID
    assert recorded.url == f"{API}/sync/watchlist?page=2" and recorded.status == 200


def test_mock_does_not_intercept_other_hosts(mocked: TraktEmulator) -> None:
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get("https://example.org/", timeout=5)


def test_mock_adds_callbacks_to_existing_requests_mock(emulator: TraktEmulator) -> None:
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, "https://example.org/", body="other")
        with emulator.mock(rsps=rsps):
            assert requests.get(f"{API}/users/settings", headers=trakt_headers(), timeout=5).status_code == 401
        assert requests.get("https://example.org/", timeout=5).text == "other"
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"{API}/users/settings", timeout=5)


# -- profile ---------------------------------------------------------------------------------


def test_settings_has_trakt_shape(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    alice = mocked.get_user("alice")
    document = requests.get(f"{API}/users/settings", headers=trakt_headers(tokens["access_token"]), timeout=5).json()
    user = document["user"]
    assert user["username"] == "alice" and user["name"] == "Alice Liddell"
    assert user["ids"]["slug"] == "alice" and user["ids"]["uuid"] == alice.uuid
    assert re.fullmatch(r"[0-9a-f]{40}", alice.uuid)
    assert isinstance(user["ids"]["trakt"], int)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", user["joined_at"])
    assert user["images"]["avatar"]["full"] == f"{WEB}/images/avatars/alice.png"
    assert document["account"]["timezone"] == "UTC"
    assert {"connections", "sharing_text", "limits"} <= set(document)


def test_settings_omit_uuid_and_custom_avatar(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    alice: EmulatedUser = mocked.get_user("alice")
    alice.omit_uuid = True
    alice.avatar_url = "https://walter-r2.trakt.tv/images/users/alice.jpg"
    user = settings_user(tokens["access_token"])
    assert "uuid" not in user["ids"]
    assert user["images"]["avatar"]["full"] == "https://walter-r2.trakt.tv/images/users/alice.jpg"
    alice.avatar_url = None
    user = settings_user(tokens["access_token"])
    assert "images" not in user


def test_rename_user_changes_slug_keeps_uuid(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    uuid = mocked.get_user("alice").uuid
    mocked.rename_user("alice", "Alice Cooper")
    user = settings_user(tokens["access_token"])
    assert user["username"] == "Alice Cooper" and user["ids"]["slug"] == "alice-cooper"
    assert user["ids"]["uuid"] == uuid


def test_profile_page_is_html(mocked: TraktEmulator) -> None:
    response = requests.get(f"{WEB}/users/alice", timeout=5)
    assert response.status_code == 200 and "Alice Liddell" in response.text
    assert requests.get(f"{WEB}/users/nobody", timeout=5).status_code == 404


def test_title_pages_answer_so_watchlist_links_lead_somewhere(mocked: TraktEmulator) -> None:
    movie = mocked.add_watchlist_item("alice", "movie", title="Heat", year=1995)
    episode = mocked.add_watchlist_item("alice", "episode", show="Dark")
    movie_slug = movie.media["ids"]["slug"]
    show_slug = episode.show["ids"]["slug"]
    page = requests.get(f"{WEB}/movies/{movie_slug}", timeout=5)
    assert page.status_code == 200 and "Heat (1995)" in page.text
    assert requests.get(f"{WEB}/shows/{show_slug}/seasons/1/episodes/1", timeout=5).status_code == 200
    assert requests.get(f"{WEB}/movies/no-such-movie", timeout=5).status_code == 404


# -- watchlist -------------------------------------------------------------------------------


def test_watchlist_without_paging_has_sort_headers_only(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    mocked.fill_watchlist("alice", 3)
    response = requests.get(f"{API}/sync/watchlist", headers=trakt_headers(tokens["access_token"]), timeout=5)
    assert response.status_code == 200
    assert [item["rank"] for item in response.json()] == [1, 2, 3]
    assert response.headers["X-Sort-By"] == "rank" and response.headers["X-Sort-How"] == "asc"
    assert "X-Pagination-Page" not in response.headers


def test_watchlist_pagination_headers(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    mocked.fill_watchlist("alice", 25)
    response = requests.get(
        f"{API}/sync/watchlist/movies/rank/asc",
        params={"page": 3, "limit": 10},
        headers=trakt_headers(tokens["access_token"]),
        timeout=5,
    )
    assert [item["rank"] for item in response.json()] == [21, 22, 23, 24, 25]
    assert response.headers["X-Pagination-Page"] == "3"
    assert response.headers["X-Pagination-Limit"] == "10"
    assert response.headers["X-Pagination-Page-Count"] == "3"
    assert response.headers["X-Pagination-Item-Count"] == "25"
    assert response.headers["X-Sort-By"] == "rank"


def test_watchlist_type_filter_and_sort(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    mocked.add_watchlist_item("alice", "movie", title="Alien", year=1979)
    mocked.add_watchlist_item("alice", "show", title="Columbo", year=1971)
    mocked.add_watchlist_item("alice", "movie", title="Brazil", year=1985, notes="Gilliam")
    url = f"{API}/sync/watchlist/movies/title/desc"
    items = requests.get(url, headers=trakt_headers(tokens["access_token"]), timeout=5).json()
    assert [item["movie"]["title"] for item in items] == ["Brazil", "Alien"]
    assert {item["type"] for item in items} == {"movie"}
    assert items[0]["notes"] == "Gilliam" and set(items[0]) == {"rank", "id", "listed_at", "notes", "type", "movie"}
    shows = requests.get(f"{API}/sync/watchlist/shows", headers=trakt_headers(tokens["access_token"]), timeout=5)
    assert [item["show"]["title"] for item in shows.json()] == ["Columbo"]


def test_watchlist_sort_by_runtime_uses_extended_fields(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    mocked.add_watchlist_items(
        "alice",
        [
            {"kind": "movie", "title": "Long", "extra": {"runtime": 180}},
            {"kind": "movie", "title": "Short", "extra": {"runtime": 80}},
        ],
    )
    url = f"{API}/sync/watchlist/movies/runtime/asc"
    plain = requests.get(url, headers=trakt_headers(tokens["access_token"]), timeout=5).json()
    assert [item["movie"]["title"] for item in plain] == ["Short", "Long"]
    assert "runtime" not in plain[0]["movie"]
    full = requests.get(url, params={"extended": "full"}, headers=trakt_headers(tokens["access_token"]), timeout=5)
    assert full.json()[0]["movie"]["runtime"] == 80


def test_watchlist_episode_carries_show(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    mocked.add_watchlist_item("alice", "episode", show="Andor", season=1, episode=8, title="Narkina 5")
    mocked.add_watchlist_item("alice", "season", show="Andor", season=2)
    items = requests.get(f"{API}/sync/watchlist", headers=trakt_headers(tokens["access_token"]), timeout=5).json()
    episode, season = items
    assert episode["type"] == "episode" and episode["episode"]["title"] == "Narkina 5"
    assert episode["episode"]["season"] == 1 and episode["episode"]["number"] == 8
    assert episode["show"]["title"] == "Andor" and season["show"]["ids"] == episode["show"]["ids"]
    assert season["season"]["number"] == 2


def test_user_watchlist_public_and_private(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    mocked.add_watchlist_item("alice", "movie", title="Alien", year=1979)
    url = f"{API}/users/alice/watchlist/movies"
    assert requests.get(url, headers=trakt_headers(), timeout=5).json()[0]["movie"]["title"] == "Alien"
    mocked.get_user("alice").private = True
    assert requests.get(url, headers=trakt_headers(), timeout=5).status_code == 401
    bob_token = mocked.issue_tokens("bob", CLIENT_ID)["access_token"]
    assert requests.get(url, headers=trakt_headers(bob_token), timeout=5).status_code == 403
    assert requests.get(url, headers=trakt_headers(tokens["access_token"]), timeout=5).status_code == 200


def test_watchlist_extended_images_are_served_pngs(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    mocked.add_watchlist_item("alice", "movie", title="Alien", year=1979)
    items = requests.get(
        f"{API}/sync/watchlist", params={"extended": "images"}, headers=trakt_headers(tokens["access_token"]), timeout=5
    ).json()
    poster_url = items[0]["movie"]["images"]["poster"][0]
    # Without a scheme, as the real Trakt sends extended=images URLs.
    assert poster_url.startswith(WEB.split("://", 1)[1] + "/images/posters/")
    poster = requests.get("https://" + poster_url, timeout=5)
    assert poster.headers["Content-Type"] == "image/png"
    width, height = assert_png(poster.content)
    assert height > width


def test_last_activities_bump_on_watchlist_add(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    url = f"{API}/sync/last_activities"
    before = requests.get(url, headers=trakt_headers(tokens["access_token"]), timeout=5).json()
    mocked.add_watchlist_item("alice", "show", title="Columbo")
    after = requests.get(url, headers=trakt_headers(tokens["access_token"]), timeout=5).json()
    assert after["watchlist"]["updated_at"] > before["watchlist"]["updated_at"]
    assert after["shows"]["watchlisted_at"] > before["shows"]["watchlisted_at"]
    assert after["movies"]["watchlisted_at"] == before["movies"]["watchlisted_at"]
    assert after["all"] >= after["watchlist"]["updated_at"]
    assert after["all"].endswith("Z")


def test_avatar_is_valid_png(mocked: TraktEmulator) -> None:
    response = requests.get(f"{WEB}/images/avatars/alice.png", timeout=5)
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/png"
    assert assert_png(response.content) == (64, 64)


# -- failure injection -----------------------------------------------------------------------


def test_fail_next_answers_once_and_records(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    mocked.fail_next(r"^/users/settings$", status=502, json={"error": "bad_gateway"}, headers={"X-Test": "1"})
    failed = requests.get(f"{API}/users/settings", headers=trakt_headers(tokens["access_token"]), timeout=5)
    assert failed.status_code == 502 and failed.json() == {"error": "bad_gateway"}
    assert failed.headers["X-Test"] == "1"
    assert settings_status(API, tokens["access_token"]) == 200
    assert [r.status for r in mocked.requests_to("/users/settings")] == [502, 200]


def test_fail_next_respects_times_and_method(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    mocked.fail_next("/oauth/token", status=503, body="down", times=2, method="POST")
    assert refresh(AUTH, tokens["refresh_token"]).status_code == 503
    assert refresh(AUTH, tokens["refresh_token"]).text == "down"
    assert refresh(AUTH, tokens["refresh_token"]).status_code == 200
    assert mocked.refresh_count(tokens["refresh_token"]) == 1


def test_rate_limit_next_sends_retry_after_and_x_ratelimit(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    mocked.rate_limit_next("/sync/", retry_after=7)
    response = requests.get(f"{API}/sync/watchlist", headers=trakt_headers(tokens["access_token"]), timeout=5)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    ratelimit = json.loads(response.headers["X-Ratelimit"])
    assert {"name", "period", "limit", "remaining", "until"} <= set(ratelimit) and ratelimit["remaining"] == 0


def test_timeout_next_raises_read_timeout_in_process(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    mocked.timeout_next("/users/settings")
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(f"{API}/users/settings", headers=trakt_headers(tokens["access_token"]), timeout=5)
    assert mocked.requests_to("/users/settings")[0].status is None
    assert settings_status(API, tokens["access_token"]) == 200


def test_cloudflare_next_is_html(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    mocked.cloudflare_next("/users/settings", status=520)
    response = requests.get(f"{API}/users/settings", headers=trakt_headers(tokens["access_token"]), timeout=5)
    assert response.status_code == 520
    assert response.headers["Content-Type"].startswith("text/html") and "<html" in response.text
    assert "X-Ratelimit" not in response.headers


def test_malformed_next_is_200_non_json(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    mocked.malformed_next("/users/settings")
    response = requests.get(f"{API}/users/settings", headers=trakt_headers(tokens["access_token"]), timeout=5)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    with pytest.raises(ValueError):
        response.json()


def test_latency_delays_every_request(mocked: TraktEmulator) -> None:
    mocked.latency = 0.05
    started = time.perf_counter()
    requests.get(f"{WEB}/images/avatars/alice.png", timeout=5)
    requests.get(f"{API}/users/settings", headers=trakt_headers(), timeout=5)
    assert time.perf_counter() - started >= 0.1


# -- device flow -----------------------------------------------------------------------------


def device_code(base: str = AUTH) -> dict[str, object]:
    response = post_json(f"{base}/oauth/device/code", {"client_id": CLIENT_ID})
    assert response.status_code == 200
    return response.json()


def poll(code: object, base: str = AUTH) -> requests.Response:
    return post_json(
        f"{base}/oauth/device/token", {"code": code, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    )


def test_device_flow_pending_then_approved_then_used(mocked: TraktEmulator) -> None:
    device = device_code()
    assert re.fullmatch(r"[A-Z0-9]{8}", str(device["user_code"]))
    assert device["verification_url"] == f"{AUTH}/activate"
    assert device["expires_in"] == 600 and device["interval"] == 0

    pending = poll(device["device_code"])
    assert pending.status_code == 400 and pending.content == b""

    mocked.approve_device(str(device["user_code"]), "bob")
    approved = poll(device["device_code"])
    assert approved.status_code == 200
    assert settings_status(API, approved.json()["access_token"]) == 200
    assert poll(device["device_code"]).status_code == 409


def test_device_poll_faster_than_interval_is_429(mocked: TraktEmulator) -> None:
    mocked.device_interval = 1
    device = device_code()
    assert poll(device["device_code"]).status_code == 400
    assert poll(device["device_code"]).status_code == 429


def test_device_denied_is_418(mocked: TraktEmulator) -> None:
    device = device_code()
    mocked.deny_device(str(device["user_code"]))
    assert poll(device["device_code"]).status_code == 418


def test_device_expired_is_410(mocked: TraktEmulator) -> None:
    device, other = device_code(), device_code()
    mocked.expire_device(str(device["user_code"]))
    assert poll(device["device_code"]).status_code == 410
    mocked.advance(601)
    assert poll(other["device_code"]).status_code == 410


def test_device_bad_code_is_404(mocked: TraktEmulator) -> None:
    assert poll("0" * 64).status_code == 404


def test_device_activate_page_approves(mocked: TraktEmulator) -> None:
    device = device_code()
    page = requests.get(f"{WEB}/activate", timeout=5)
    assert page.status_code == 200 and 'name="code"' in page.text and "Approve" in page.text
    form = {"code": str(device["user_code"]).lower(), "username": "alice", "decision": "approve"}
    assert requests.post(f"{WEB}/activate", data=form, timeout=5).status_code == 200
    body = poll(device["device_code"]).json()
    me = requests.get(f"{API}/users/settings", headers=trakt_headers(body["access_token"]), timeout=5).json()
    assert me["user"]["username"] == "alice"


# -- over real HTTP --------------------------------------------------------------------------


def test_http_server_full_code_flow(emulator: TraktEmulator) -> None:
    verifier, challenge = pkce()
    with serve(emulator) as server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url)
        page = requests.get(authorize_url(server.url, challenge), timeout=5)
        assert page.status_code == 200 and "Cinema Club" in page.text
        form = {**hidden_fields(page.text), "username": "bob", "decision": "approve"}
        redirect = requests.post(f"{server.url}/oauth/authorize", data=form, allow_redirects=False, timeout=5)
        assert redirect.status_code == 302
        body = exchange(server.url, callback_params(redirect.headers["Location"])["code"], verifier).json()
        me = requests.get(f"{server.url}/users/settings", headers=trakt_headers(body["access_token"]), timeout=5)
        avatar_url = me.json()["user"]["images"]["avatar"]["full"]
        assert avatar_url == f"{server.url}/images/avatars/bob.png"
        assert_png(requests.get(avatar_url, timeout=5).content)
        assert refresh(server.url, body["refresh_token"]).status_code == 200
        assert refresh(server.url, body["refresh_token"]).json()["error"] == "invalid_grant"
        assert requests.get(f"{server.url}/users/settings", headers={"User-Agent": ""}, timeout=5).status_code == 403
    assert emulator.api_url == API and emulator.image_url == WEB
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{server.url}/users/settings", timeout=1)


def test_after_the_server_stops_an_image_url_not_given_follows_the_web_url_again(emulator: TraktEmulator) -> None:
    with emulator.serve() as server:
        assert emulator.base_urls() == [server.url]
    emulator.web_url = "https://trakt.example"
    assert emulator.image_url == "https://trakt.example"
    given = TraktEmulator(image_url="https://images.example/")
    with given.serve() as server:
        assert given.image_url == server.url
    given.web_url = "https://trakt.example"
    assert (given.auth_url, given.image_url) == (AUTH, "https://images.example")


def test_http_server_concurrent_refresh_has_one_winner(emulator: TraktEmulator) -> None:
    pair = emulator.issue_tokens("alice", CLIENT_ID)
    statuses: list[int] = []
    with emulator.serve() as server:
        threads = [
            threading.Thread(target=lambda: statuses.append(refresh(server.url, pair["refresh_token"]).status_code))
            for _ in range(6)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(statuses) == [200, 400, 400, 400, 400, 400]
    assert emulator.refresh_count(pair["refresh_token"]) == 1


def test_http_server_timeout_sleeps_then_504(emulator: TraktEmulator) -> None:
    emulator.timeout_sleep = 0.3
    emulator.latency = 0.01
    with emulator.serve() as server:
        emulator.timeout_next("/users/settings", times=2)
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.get(f"{server.url}/users/settings", headers=trakt_headers(), timeout=0.1)
        started = time.perf_counter()
        response = requests.get(f"{server.url}/users/settings", headers=trakt_headers(), timeout=5)
        assert response.status_code == 504 and time.perf_counter() - started >= 0.3


def test_http_server_keeps_connections_alive_until_it_stops(emulator: TraktEmulator) -> None:
    """As Trakt's do: one connection serves request after request, error answers included (a
    client pays no handshake per request); once the server stops, a kept connection is closed,
    never answered by a leftover thread."""
    pair = emulator.issue_tokens("alice", CLIENT_ID)
    head = "".join(f"{name}: {value}\r\n" for name, value in trakt_headers(pair["access_token"]).items())
    with emulator.serve() as server:
        host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
        connection = socket.create_connection((host, port), timeout=5)
        answers = connection.makefile("rb")
        for path in ("/users/settings", "/no/such/path", "/users/settings"):
            connection.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{head}\r\n".encode())
            status, length = read_answer_head(answers)
            assert status == (404 if path.startswith("/no") else 200)
            assert len(answers.read(length)) == length
    try:
        connection.sendall(f"GET /users/settings HTTP/1.1\r\nHost: {host}\r\n{head}\r\n".encode())
        assert answers.readline() == b""  # closed by stop(), not answered
    except OSError:
        pass  # closed before the request could even be sent
    finally:
        connection.close()


def read_answer_head(answers: Any) -> tuple[int, int]:
    """The status and Content-Length of the next answer on a raw connection."""
    status = int(answers.readline().split()[1])
    length = 0
    while (line := answers.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, length


def test_cli_serves_demo_data() -> None:
    command = [
        sys.executable,
        "-m",
        "django_trakt.testing",
        "--port",
        "0",
        "--client-id",
        "cli-id",
        "--client-secret",
        "cli-secret",
        "--redirect-uri",
        REDIRECT_URI,
        "--demo-user",
        "demo",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url is not None, line
        items = requests.get(
            f"{url.group(0)}/users/demo/watchlist",
            headers={"trakt-api-version": "2", "trakt-api-key": "cli-id", "User-Agent": UA},
            timeout=5,
        ).json()
        assert {item["type"] for item in items} == {"movie", "show", "season", "episode"}
    finally:
        process.terminate()
        process.wait(timeout=5)
    assert process.returncode == 0
