"""The local Trakt's refusals: every request it turns away, and how its fixtures API guards itself.

Sites test their own Trakt code against this emulator, so a refusal it misses is a bug
their tests cannot catch. Driven in-process with real ``requests`` calls (plus a few
loopback servers and one direct WSGI call); no Django database.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import logging
import re
import secrets
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from wsgiref.util import setup_testing_defaults

import pytest
import requests

from django_trakt.testing import TraktEmulator
from django_trakt.testing.__main__ import DEFAULT_REDIRECT_URIS, build_parser
from django_trakt.testing.demo import seed_demo_user
from django_trakt.testing.images import solid_png

CLIENT_ID = "strict-client-id"
CLIENT_SECRET = "strict-client-secret"
OTHER_ID = "other-client-id"
OTHER_SECRET = "other-client-secret"
REDIRECT_URI = "https://site.example/accounts/trakt/login/callback/"
AUTH = "https://auth.trakt.tv"
API = "https://api.trakt.tv"
WEB = "https://trakt.tv"
UA = "django-trakt-strictness/1.0"


def headers(token: str | None = None, **extra: str) -> dict[str, str]:
    sent = {"trakt-api-version": "2", "trakt-api-key": CLIENT_ID, "User-Agent": UA}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    sent.update(extra)
    return sent


def post(path: str, body: Any, base: str = AUTH) -> requests.Response:
    return requests.post(f"{base}{path}", json=body, headers=headers(), timeout=5)


def get(path: str, token: str | None = None, base: str = API, **params: Any) -> requests.Response:
    return requests.get(f"{base}{path}", params=params or None, headers=headers(token), timeout=5)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_params(challenge: str | None = None, **overrides: str) -> dict[str, str]:
    params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "state": "s"}
    if challenge is not None:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    params.update(overrides)
    return params


def authorize_url(challenge: str | None = None, **overrides: str) -> str:
    return f"{AUTH}/oauth/authorize?{urlencode(authorize_params(challenge, **overrides))}"


def code_from(callback: str) -> str:
    return parse_qs(urlsplit(callback).query)["code"][0]


def credentials(client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET) -> dict[str, str]:
    return {"client_id": client_id, "client_secret": secret}


def refresh_body(refresh_token: Any, **overrides: Any) -> dict[str, Any]:
    body = {"grant_type": "refresh_token", "refresh_token": refresh_token, "redirect_uri": REDIRECT_URI}
    body.update(credentials())
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not None}


def error_of(response: requests.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]


@pytest.fixture
def emulator() -> TraktEmulator:
    emulator = TraktEmulator()
    emulator.add_app(CLIENT_ID, CLIENT_SECRET, name="Strict Cinema", redirect_uris=[REDIRECT_URI])
    emulator.add_app(OTHER_ID, OTHER_SECRET, name="Other app", redirect_uris=[REDIRECT_URI])
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


# -- /oauth/token: client authentication and the authorization code ------------------------------


@pytest.mark.parametrize(
    "client",
    [
        pytest.param({"client_id": "nobody", "client_secret": CLIENT_SECRET}, id="unknown-client"),
        pytest.param({"client_id": CLIENT_ID, "client_secret": OTHER_SECRET}, id="another-apps-secret"),
        pytest.param({"client_id": CLIENT_ID}, id="no-secret"),
        pytest.param({"client_id": ["not", "a", "string"], "client_secret": CLIENT_SECRET}, id="client-id-not-string"),
    ],
)
def test_token_client_authentication_failure_is_400_invalid_client(mocked: TraktEmulator, client: dict) -> None:
    # The token endpoint's contract: a failed exchange is a 400 with an OAuth error
    # (projects/api/src/contracts/oauth/index.ts, tokenErrorResponseSchema).
    body = {"grant_type": "refresh_token", "refresh_token": "whatever", "redirect_uri": REDIRECT_URI, **client}
    response = post("/oauth/token", body)
    assert error_of(response) == (400, "invalid_client")
    assert "WWW-Authenticate" not in response.headers
    assert mocked.refresh_events == []  # refused before the refresh token was even looked at


@pytest.mark.parametrize("code", [None, "", 1234], ids=["missing", "empty", "not-a-string"])
def test_token_exchange_without_usable_code_is_invalid_request(mocked: TraktEmulator, code: Any) -> None:
    body = {"grant_type": "authorization_code", "redirect_uri": REDIRECT_URI, **credentials()}
    if code is not None:
        body["code"] = code
    response = post("/oauth/token", body)
    assert error_of(response) == (400, "invalid_request")
    assert response.json()["error_description"] == "code is required."


def test_token_exchange_of_another_apps_code_is_invalid_grant_and_leaves_it_usable(mocked: TraktEmulator) -> None:
    verifier, challenge = pkce()
    code = code_from(mocked.authorize(authorize_url(challenge)))
    exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    exchange["code_verifier"] = verifier

    stolen = post("/oauth/token", {**exchange, **credentials(OTHER_ID, OTHER_SECRET)})
    unknown = post("/oauth/token", {**exchange, "code": "0" * 64, **credentials()})

    for response in (stolen, unknown):
        assert error_of(response) == (400, "invalid_grant")
        assert response.json()["error_description"] == "The authorization code is invalid."
    assert post("/oauth/token", {**exchange, **credentials()}).status_code == 200  # not spent by the refusals


def test_token_body_that_is_not_a_json_object_is_invalid_request(mocked: TraktEmulator) -> None:
    response = post("/oauth/token", [refresh_body("x")])
    assert error_of(response) == (400, "invalid_request")
    assert response.json()["error_description"] == "The body must be a JSON object."


@pytest.mark.parametrize("grant_type", ["password", "client_credentials", None])
def test_token_unsupported_grant_type_names_it(mocked: TraktEmulator, grant_type: str | None) -> None:
    response = post("/oauth/token", {"grant_type": grant_type, **credentials()})
    assert error_of(response) == (400, "unsupported_grant_type")
    assert repr(grant_type) in response.json()["error_description"]


# -- /oauth/token: the refresh grant ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "description"),
    [
        ({"refresh_token": None}, "refresh_token is required."),
        ({"refresh_token": ""}, "refresh_token is required."),
        ({"redirect_uri": None}, "redirect_uri is required."),
        ({"redirect_uri": ""}, "redirect_uri is required."),
    ],
    ids=["no-refresh-token", "empty-refresh-token", "no-redirect-uri", "empty-redirect-uri"],
)
def test_refresh_missing_fields_are_invalid_request_and_spend_nothing(
    mocked: TraktEmulator, tokens: dict[str, Any], overrides: dict, description: str
) -> None:
    response = post("/oauth/token", refresh_body(**{"refresh_token": tokens["refresh_token"], **overrides}))
    assert error_of(response) == (400, "invalid_request")
    assert response.json()["error_description"] == description
    assert mocked.refresh_count(accepted=None) == 0
    assert post("/oauth/token", refresh_body(tokens["refresh_token"])).status_code == 200


def test_refresh_with_unregistered_redirect_uri_is_invalid_grant_and_spends_nothing(
    mocked: TraktEmulator, tokens: dict[str, Any]
) -> None:
    response = post("/oauth/token", refresh_body(tokens["refresh_token"], redirect_uri="https://site.example/other/"))
    assert error_of(response) == (400, "invalid_grant")
    assert "not registered" in response.json()["error_description"]
    assert mocked.refresh_count(accepted=None) == 0
    assert mocked.is_access_token_valid(tokens["access_token"])
    assert post("/oauth/token", refresh_body(tokens["refresh_token"])).status_code == 200


def test_refresh_token_of_another_app_is_rejected_as_unknown(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    body = refresh_body(tokens["refresh_token"], **credentials(OTHER_ID, OTHER_SECRET))
    response = post("/oauth/token", body)
    assert error_of(response) == (400, "invalid_grant")
    assert "(unknown)" in response.json()["error_description"]
    (event,) = mocked.refresh_events
    assert (event.client_id, event.accepted, event.reason) == (OTHER_ID, False, "unknown")
    # The rightful app can still use it.
    assert post("/oauth/token", refresh_body(tokens["refresh_token"])).status_code == 200


def test_refresh_of_a_never_issued_token_is_recorded_without_a_user(mocked: TraktEmulator) -> None:
    response = post("/oauth/token", refresh_body("f" * 64))
    assert error_of(response) == (400, "invalid_grant")
    (event,) = mocked.refresh_events
    assert (event.username, event.reason, event.accepted) == (None, "unknown", False)
    assert mocked.refresh_count("f" * 64, accepted=False) == 1


def test_refresh_token_expires_on_the_emulator_clock(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    mocked.advance(mocked.refresh_token_lifetime - 60)
    assert post("/oauth/token", refresh_body(tokens["refresh_token"])).status_code == 200
    newer = mocked.issue_tokens("alice", CLIENT_ID)
    mocked.advance(mocked.refresh_token_lifetime + 1)
    expired = post("/oauth/token", refresh_body(newer["refresh_token"]))
    assert error_of(expired) == (400, "invalid_grant")
    assert mocked.refresh_events[-1].reason == "expired"


def test_expire_token_kills_the_access_token_but_not_its_refresh_token(
    mocked: TraktEmulator, tokens: dict[str, Any]
) -> None:
    mocked.expire_token(tokens["access_token"])
    assert error_of(get("/users/settings", tokens["access_token"])) == (401, "invalid_token")
    refreshed = post("/oauth/token", refresh_body(tokens["refresh_token"]))
    assert refreshed.status_code == 200
    assert get("/users/settings", refreshed.json()["access_token"]).status_code == 200


def test_issue_tokens_for_an_unregistered_app_raises_key_error(emulator: TraktEmulator) -> None:
    with pytest.raises(KeyError):
        emulator.issue_tokens("alice", "never-registered")
    assert emulator.active_tokens() == []


# -- /oauth/revoke -----------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", 42], ids=["missing", "empty", "not-a-string"])
def test_revoke_without_a_token_is_invalid_request(mocked: TraktEmulator, tokens: dict[str, Any], token: Any) -> None:
    body = credentials() if token is None else {"token": token, **credentials()}
    response = post("/oauth/revoke", body)
    assert error_of(response) == (400, "invalid_request")
    assert mocked.is_access_token_valid(tokens["access_token"])


def test_revoke_of_unknown_or_another_apps_token_answers_200_and_kills_nothing(
    mocked: TraktEmulator, tokens: dict[str, Any]
) -> None:
    foreign = post("/oauth/revoke", {"token": tokens["access_token"], **credentials(OTHER_ID, OTHER_SECRET)})
    unknown = post("/oauth/revoke", {"token": "0" * 64, **credentials()})
    assert (foreign.status_code, foreign.json()) == (200, {})
    assert (unknown.status_code, unknown.json()) == (200, {})
    assert mocked.revoked_tokens == set()
    assert mocked.is_access_token_valid(tokens["access_token"])


def test_revoke_by_refresh_token_kills_the_whole_pair(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    assert post("/oauth/revoke", {"token": tokens["refresh_token"], **credentials()}).status_code == 200
    assert mocked.revoked_tokens == {tokens["access_token"], tokens["refresh_token"]}
    assert get("/users/settings", tokens["access_token"]).status_code == 401
    assert post("/oauth/token", refresh_body(tokens["refresh_token"])).json()["error"] == "invalid_grant"
    assert mocked.refresh_events[-1].reason == "revoked"


# -- routing and transport ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url"),
    [("GET", f"{AUTH}/oauth/token"), ("DELETE", f"{API}/users/settings"), ("PUT", f"{WEB}/activate")],
)
def test_known_path_with_another_method_is_405_json(mocked: TraktEmulator, method: str, url: str) -> None:
    response = requests.request(method, url, headers=headers(), timeout=5)
    assert error_of(response) == (405, "method_not_allowed")
    assert method in response.json()["error_description"]
    assert mocked.requests[-1].status == 405


def test_head_request_is_answered_like_get_without_body(mocked: TraktEmulator) -> None:
    response = requests.head(f"{WEB}/images/avatars/alice.png", timeout=5)
    assert response.status_code == 200 and response.content == b""
    assert response.headers["Content-Type"] == "image/png"
    assert mocked.requests[-1].method == "HEAD"


def test_wsgi_request_with_unreadable_content_length_has_no_body(emulator: TraktEmulator) -> None:
    body = json.dumps(refresh_body("x")).encode()
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/oauth/token",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": "a lot",
        "HTTP_USER_AGENT": UA,
        "HTTP_TRAKT_API_VERSION": "2",
        "HTTP_TRAKT_API_KEY": CLIENT_ID,
        "wsgi.input": io.BytesIO(body),
    }
    setup_testing_defaults(environ)
    answer: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]]) -> None:
        answer.update(status=status, headers=dict(response_headers))

    payload = json.loads(b"".join(emulator(environ, start_response)))
    assert answer["status"] == "400 Bad Request"
    assert payload["error_description"] == "The body must be a JSON object."
    (recorded,) = emulator.requests
    assert recorded.body == b"" and recorded.json is None and recorded.status == 400


def test_streamed_request_body_is_read_like_any_other(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    chunks = [chunk.encode() for chunk in re.findall(".{1,16}", json.dumps(refresh_body(tokens["refresh_token"])))]
    response = requests.post(
        f"{AUTH}/oauth/token",
        data=iter(chunks),
        headers={**headers(), "Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 200
    assert mocked.requests_to("/oauth/token")[-1].json == refresh_body(tokens["refresh_token"])


def test_unexpected_emulator_error_is_logged_500_json(
    mocked: TraktEmulator, tokens: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # A fixture mistake: one runtime is text, the other a number, so they cannot be sorted.
    mocked.add_watchlist_item("alice", "movie", title="Long", extra={"runtime": "180"})
    mocked.add_watchlist_item("alice", "movie", title="Short", extra={"runtime": 80})
    with caplog.at_level(logging.ERROR, logger="django_trakt.testing.app"):
        response = get("/sync/watchlist/movies/runtime/asc", tokens["access_token"])
    assert error_of(response) == (500, "server_error")
    assert "Emulator error on GET /sync/watchlist/movies/runtime/asc" in caplog.text
    assert "TypeError" in caplog.text
    assert get("/sync/watchlist/movies/rank/asc", tokens["access_token"]).status_code == 200


# -- failure injection details -----------------------------------------------------------------------


def test_fail_next_json_keeps_a_content_type_given_by_the_test(mocked: TraktEmulator, tokens: dict) -> None:
    mocked.fail_next("/users/settings", status=200, json={"user": {}}, headers={"content-type": "text/plain"})
    response = get("/users/settings", tokens["access_token"])
    assert response.headers["Content-Type"] == "text/plain"
    assert response.json() == {"user": {}}


def test_fail_next_for_another_method_or_zero_times_never_fires(mocked: TraktEmulator, tokens: dict) -> None:
    mocked.fail_next("/users/settings", status=503, method="POST")
    mocked.fail_next("/users/settings", status=502, times=0)
    assert get("/users/settings", tokens["access_token"]).status_code == 200
    mocked.clear_failures()
    assert get("/users/settings", tokens["access_token"]).status_code == 200


# -- the consent page and emulator.authorize() -------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"response_type": "token"}, "response_type must be &#x27;code&#x27;."),
    ],
    ids=["implicit-flow"],
)
def test_authorize_refuses_without_redirecting(mocked: TraktEmulator, overrides: dict, message: str) -> None:
    _, challenge = pkce()
    url = authorize_url(challenge, **overrides)
    response = requests.get(url, allow_redirects=False, timeout=5)
    assert response.status_code == 400 and "Location" not in response.headers
    assert message in response.text
    with pytest.raises(ValueError, match=re.escape(message.replace("&#x27;", "'"))):
        mocked.authorize(url)


@pytest.mark.parametrize("method", ["plain", "S512"])
def test_pkce_challenge_method_other_than_s256_is_refused_on_the_redirect(mocked: TraktEmulator, method: str) -> None:
    verifier = secrets.token_urlsafe(48)
    url = authorize_url(code_challenge=verifier, code_challenge_method=method)
    response = requests.get(url, allow_redirects=False, timeout=5)
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["error"] == ["invalid_request"] and "S256" in query["error_description"][0]
    assert "code" not in parse_qs(urlsplit(mocked.authorize(url)).query)


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"username": "nobody", "decision": "approve"}, "Unknown Trakt user &#x27;nobody&#x27;."),
        ({"username": "alice", "decision": "maybe"}, "decision must be &#x27;approve&#x27; or &#x27;deny&#x27;."),
        ({"username": "alice"}, "decision must be &#x27;approve&#x27; or &#x27;deny&#x27;."),
    ],
    ids=["unknown-user", "unknown-decision", "no-decision"],
)
def test_consent_form_with_bad_choice_is_400_page_without_code(mocked: TraktEmulator, form: dict, message: str) -> None:
    _, challenge = pkce()
    data = {**authorize_params(challenge), **form}
    response = requests.post(f"{AUTH}/oauth/authorize", data=data, allow_redirects=False, timeout=5)
    assert response.status_code == 400 and "Location" not in response.headers
    assert "<h1>Authorization error</h1>" in response.text and message in response.text


def test_emulator_without_users_asks_for_a_username_and_refuses_to_invent_one() -> None:
    empty = TraktEmulator()
    empty.add_app(CLIENT_ID, CLIENT_SECRET, redirect_uris=[REDIRECT_URI])
    _, challenge = pkce()
    with empty.mock():
        page = requests.get(authorize_url(challenge), timeout=5)
        assert page.status_code == 200
        assert '<input id="username" name="username" type="text" required>' in page.text
        assert "<select" not in page.text
        refused = requests.post(
            f"{AUTH}/oauth/authorize",
            data={**authorize_params(challenge), "decision": "approve"},
            allow_redirects=False,
            timeout=5,
        )
    assert refused.status_code == 400 and "call add_user() first" in refused.text
    with pytest.raises(ValueError, match="no users"):
        empty.authorize(authorize_url(challenge))


# -- users -------------------------------------------------------------------------------------------


def test_get_user_finds_by_username_slug_uuid_or_object_only_of_this_emulator(emulator: TraktEmulator) -> None:
    renamed = emulator.add_user("Carol Danvers")
    assert emulator.get_user("Carol Danvers") is renamed
    assert emulator.get_user("carol-danvers") is renamed
    assert emulator.get_user(renamed.uuid) is renamed
    assert emulator.get_user(renamed) is renamed
    stranger = TraktEmulator().add_user("alice")
    with pytest.raises(KeyError):
        emulator.get_user(stranger)  # same username, but another emulator's user
    with pytest.raises(KeyError):
        emulator.get_user("nobody")


def test_rename_user_moves_profile_and_watchlist_urls_but_tokens_and_uuid_stay(
    mocked: TraktEmulator, tokens: dict[str, Any]
) -> None:
    alice = mocked.get_user("alice")
    uuid = alice.uuid
    mocked.add_watchlist_item("alice", "movie", title="Heat", year=1995)
    before = get("/sync/last_activities", tokens["access_token"]).json()["account"]["settings_at"]

    assert mocked.rename_user(uuid, "Alice in Wonderland!") is alice

    assert (alice.username, alice.slug, alice.uuid) == ("Alice in Wonderland!", "alice-in-wonderland", uuid)
    assert get("/users/alice").status_code == 404
    assert requests.get(f"{WEB}/users/alice", timeout=5).status_code == 404
    profile = get("/users/alice-in-wonderland").json()
    assert profile["username"] == "Alice in Wonderland!"
    assert [item["movie"]["title"] for item in get("/users/alice-in-wonderland/watchlist").json()] == ["Heat"]
    assert get("/users/settings", tokens["access_token"]).json()["user"]["ids"]["uuid"] == uuid
    after = get("/sync/last_activities", tokens["access_token"]).json()["account"]["settings_at"]
    assert after > before


def test_rename_user_edge_cases(emulator: TraktEmulator) -> None:
    with pytest.raises(KeyError):
        emulator.rename_user("nobody", "somebody")
    assert emulator.rename_user("bob", "!!!").slug == "user"  # nothing sluggable left
    assert emulator.rename_user("user", "Bob").slug == "bob"  # found again by that slug


def test_user_without_avatar_has_no_images_anywhere(mocked: TraktEmulator) -> None:
    mocked.add_user("faceless", avatar=False)
    token = mocked.issue_tokens("faceless", CLIENT_ID)["access_token"]
    assert "images" not in get("/users/settings", token).json()["user"]
    assert "images" not in get("/users/faceless").json()
    page = requests.get(f"{WEB}/users/faceless", timeout=5)
    assert page.status_code == 200 and "<img" not in page.text


def test_public_profile_is_json_for_api_clients_without_uuid(mocked: TraktEmulator) -> None:
    response = get("/users/alice")
    assert response.headers["Content-Type"] == "application/json"
    profile = response.json()
    assert profile["username"] == "alice" and profile["name"] == "Alice Liddell"
    assert set(profile["ids"]) == {"slug", "trakt"}
    assert error_of(get("/users/nobody")) == (404, "not_found")
    assert requests.get(f"{WEB}/users/alice", timeout=5).headers["Content-Type"].startswith("text/html")


def test_private_profile_needs_the_owners_token(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    mocked.get_user("alice").private = True
    bob = mocked.issue_tokens("bob", CLIENT_ID)["access_token"]
    assert error_of(get("/users/alice")) == (401, "invalid_token")
    assert error_of(get("/users/alice", bob)) == (403, "forbidden")
    assert get("/users/alice", tokens["access_token"]).json()["private"] is True


def test_users_me_needs_a_live_token_and_is_its_owner(mocked: TraktEmulator, tokens: dict[str, Any]) -> None:
    assert error_of(get("/users/me")) == (401, "invalid_token")
    assert get("/users/me", tokens["access_token"]).json()["username"] == "alice"
    mocked.add_watchlist_item("alice", "show", title="Columbo")
    assert [item["type"] for item in get("/users/me/watchlist", tokens["access_token"]).json()] == ["show"]
    mocked.revoke_tokens("alice")
    assert error_of(get("/users/me", tokens["access_token"])) == (401, "invalid_token")


@pytest.mark.parametrize("authorization", ["Basic YWxpY2U6cHc=", "Bearer", "Bearer   "])
def test_malformed_authorization_header_is_401_even_where_optional(mocked: TraktEmulator, authorization: str) -> None:
    response = requests.get(
        f"{API}/users/alice/watchlist", headers={**headers(), "Authorization": authorization}, timeout=5
    )
    assert error_of(response) == (401, "invalid_token")
    assert response.json()["error_description"] == "An OAuth access token is required."


# -- watchlists ----------------------------------------------------------------------------------------


def test_watchlist_unknown_type_is_404_and_bad_direction_400(mocked: TraktEmulator, tokens: dict) -> None:
    assert error_of(get("/sync/watchlist/films", tokens["access_token"])) == (404, "not_found")
    bad_direction = get("/sync/watchlist/movies/rank/up", tokens["access_token"])
    assert error_of(bad_direction) == (400, "invalid_request")
    assert bad_direction.json()["error_description"] == "sort_how must be asc or desc."


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({"page": "two"}, "page and limit must be integers."),
        ({"limit": "ten"}, "page and limit must be integers."),
        ({"page": "0"}, "page and limit must be positive."),
        ({"page": "1", "limit": "-5"}, "page and limit must be positive."),
    ],
)
def test_watchlist_bad_pagination_is_400(mocked: TraktEmulator, tokens: dict, params: dict, description: str) -> None:
    mocked.fill_watchlist("alice", 3)
    response = get("/sync/watchlist", tokens["access_token"], **params)
    assert error_of(response) == (400, "invalid_request")
    assert response.json()["error_description"] == description


def test_watchlist_page_past_the_end_is_empty_with_headers(mocked: TraktEmulator, tokens: dict) -> None:
    mocked.fill_watchlist("alice", 3)
    response = get("/sync/watchlist", tokens["access_token"], page="5", limit="")
    assert response.status_code == 200 and response.json() == []
    assert response.headers["X-Pagination-Limit"] == "10" and response.headers["X-Pagination-Page-Count"] == "1"


def test_watchlist_title_sort_orders_seasons_and_episodes_by_their_show(mocked: TraktEmulator, tokens: dict) -> None:
    mocked.add_watchlist_item("alice", "episode", show="Zorro", season=1, episode=1, title="Aardvark")
    mocked.add_watchlist_item("alice", "season", show="Andor", season=2)
    mocked.add_watchlist_item("alice", "movie", title="Mad Max")
    items = get("/sync/watchlist/all/title/asc", tokens["access_token"]).json()
    assert [item["type"] for item in items] == ["season", "movie", "episode"]


def test_watchlist_released_sort_uses_release_date_then_first_aired_then_year(
    mocked: TraktEmulator, tokens: dict
) -> None:
    mocked.add_watchlist_items(
        "alice",
        [
            {"kind": "movie", "title": "Dated", "year": 1999, "extra": {"released": "2001-05-01"}},
            {"kind": "show", "title": "Aired", "extra": {"first_aired": "1995-09-01T00:00:00.000Z"}},
            {"kind": "movie", "title": "Year only", "year": 2010},
            {"kind": "movie", "title": "Unknown"},
            {"kind": "season", "show": {"title": "Parented", "year": 1980}, "season": 3},
        ],
    )
    items = get("/sync/watchlist/all/released/desc", tokens["access_token"]).json()
    titles = [(item.get("movie") or item.get("show"))["title"] for item in items]
    assert titles == ["Year only", "Dated", "Aired", "Parented", "Unknown"]


def test_watchlist_listed_at_accepts_datetimes_and_unix_times(mocked: TraktEmulator, tokens: dict) -> None:
    mocked.add_watchlist_item("alice", "movie", title="Naive", listed_at=dt.datetime(2024, 1, 2, 3, 4, 5))
    aware = dt.datetime(2024, 1, 2, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    mocked.add_watchlist_item("alice", "movie", title="Aware", listed_at=aware)
    mocked.add_watchlist_item("alice", "movie", title="Unix", listed_at=1_700_000_000.25)
    listed = [item["listed_at"] for item in get("/sync/watchlist", tokens["access_token"]).json()]
    assert listed == ["2024-01-02T03:04:05.000Z", "2024-01-02T10:00:00.000Z", "2023-11-14T22:13:20.250Z"]


def test_watchlist_show_given_as_document_keeps_its_ids(mocked: TraktEmulator, tokens: dict) -> None:
    andor = {"title": "Andor", "year": 2022, "ids": {"trakt": 7, "slug": "andor", "tvdb": 9}}
    mocked.add_watchlist_item("alice", "season", show=andor, season=2, title="Season Two")
    mocked.add_watchlist_item("alice", "episode", show={"title": "Severance", "year": 2022}, season=1, episode=1)
    andor["title"] = "changed by the test afterwards"
    season, episode = get("/sync/watchlist", tokens["access_token"]).json()
    assert season["show"] == {"title": "Andor", "year": 2022, "ids": {"trakt": 7, "slug": "andor", "tvdb": 9}}
    assert season["season"]["title"] == "Season Two" and season["season"]["number"] == 2
    assert episode["show"]["ids"]["slug"] == "severance-2022" and isinstance(episode["show"]["ids"]["trakt"], int)


@pytest.mark.parametrize(
    ("kind", "fields", "message"),
    [
        ("film", {"title": "Heat"}, "kind must be one of"),
        ("movie", {}, "a movie needs a title"),
        ("show", {"title": ""}, "a show needs a title"),
        ("season", {"season": 1}, "a season needs its show"),
        ("episode", {"title": "Pilot"}, "a episode needs its show"),
    ],
)
def test_add_watchlist_item_refuses_incomplete_items(emulator: TraktEmulator, kind: str, fields: dict, message) -> None:
    before = dict(emulator.get_user("alice").activities)
    with pytest.raises(ValueError, match=message):
        emulator.add_watchlist_item("alice", kind, **fields)
    assert emulator.get_user("alice").watchlist == [] and emulator.get_user("alice").activities == before


def test_remove_watchlist_item_reranks_and_bumps_activities(mocked: TraktEmulator, tokens: dict) -> None:
    first, second, third = mocked.fill_watchlist("alice", 3)
    before = get("/sync/last_activities", tokens["access_token"]).json()
    mocked.remove_watchlist_item("alice", second.id)
    items = get("/sync/watchlist", tokens["access_token"]).json()
    assert [(item["id"], item["rank"]) for item in items] == [(first.id, 1), (third.id, 2)]
    after = get("/sync/last_activities", tokens["access_token"]).json()
    assert after["movies"]["watchlisted_at"] > before["movies"]["watchlisted_at"]
    assert after["watchlist"]["updated_at"] > before["watchlist"]["updated_at"]


def test_remove_watchlist_item_with_unknown_id_raises_key_error(emulator: TraktEmulator) -> None:
    emulator.fill_watchlist("alice", 1)
    with pytest.raises(KeyError):
        emulator.remove_watchlist_item("alice", 999_999)


# -- device flow ----------------------------------------------------------------------------------------


def device_code(client_id: str = CLIENT_ID) -> dict[str, Any]:
    response = post("/oauth/device/code", {"client_id": client_id})
    assert response.status_code == 200
    return response.json()


def poll(code: Any) -> requests.Response:
    return post("/oauth/device/token", {"code": code, **credentials()})


def test_device_code_for_unknown_client_is_401(mocked: TraktEmulator) -> None:
    response = post("/oauth/device/code", {"client_id": "nobody"})
    assert error_of(response) == (401, "invalid_client")
    missing = post("/oauth/device/code", {})
    assert error_of(missing) == (401, "invalid_client")


def test_device_code_of_another_app_is_404_for_this_one(mocked: TraktEmulator) -> None:
    device = device_code(OTHER_ID)
    mocked.approve_device(device["user_code"])
    assert poll(device["device_code"]).status_code == 404


def test_device_poll_with_non_string_code_is_404(mocked: TraktEmulator) -> None:
    response = poll(["not", "a", "code"])
    assert (response.status_code, response.content) == (404, b"")


def test_unknown_user_code_is_refused_by_helpers_and_activate_page(mocked: TraktEmulator) -> None:
    for helper in (mocked.approve_device, mocked.deny_device, mocked.expire_device):
        with pytest.raises(KeyError):
            helper("NOPE0000")
    response = requests.post(f"{WEB}/activate", data={"code": "nope-0000", "decision": "approve"}, timeout=5)
    assert response.status_code == 400
    assert '<p role="status">That code is invalid or has expired.</p>' in response.text
    assert 'value="nope-0000"' in response.text  # what they typed stays in the field


def test_activate_page_deny_makes_the_device_poll_418(mocked: TraktEmulator) -> None:
    device = device_code()
    form = {"code": device["user_code"], "decision": "deny"}
    response = requests.post(f"{WEB}/activate", data=form, timeout=5)
    assert response.status_code == 200 and "<h1>Device denied</h1>" in response.text
    assert poll(device["device_code"]).status_code == 418


def test_activate_page_without_decision_asks_again(mocked: TraktEmulator) -> None:
    device = device_code()
    response = requests.post(f"{WEB}/activate", data={"code": device["user_code"]}, timeout=5)
    assert response.status_code == 400 and "Choose Approve or Deny." in response.text
    assert poll(device["device_code"]).status_code == 400  # still pending


def test_activate_page_with_unknown_username_refuses(mocked: TraktEmulator) -> None:
    device = device_code()
    form = {"code": device["user_code"], "username": "nobody", "decision": "approve"}
    assert requests.post(f"{WEB}/activate", data=form, timeout=5).status_code == 400
    assert poll(device["device_code"]).status_code == 400


def test_device_code_is_decided_only_once_and_not_after_expiry(mocked: TraktEmulator) -> None:
    approved, denied, late = device_code(), device_code(), device_code()
    mocked.approve_device(approved["user_code"], "bob")
    mocked.deny_device(denied["user_code"])
    for decide in (mocked.approve_device, mocked.deny_device):
        for device in (approved, denied):
            with pytest.raises(ValueError, match="no longer pending"):
                decide(device["user_code"])
    mocked.advance(mocked.device_expires_in + 1)
    with pytest.raises(ValueError, match="no longer pending"):
        mocked.approve_device(late["user_code"])
    assert poll(late["device_code"]).status_code == 410
    body = poll(approved["device_code"])
    assert body.status_code == 410  # an approved code must still be collected in time


def test_device_approval_without_users_is_refused() -> None:
    empty = TraktEmulator()
    empty.add_app(CLIENT_ID, CLIENT_SECRET)
    with empty.mock():
        device = device_code()
    with pytest.raises(ValueError, match="add_user"):
        empty.approve_device(device["user_code"])


# -- helpers around the emulator --------------------------------------------------------------------


def test_solid_png_needs_at_least_one_pixel() -> None:
    with pytest.raises(ValueError, match="at least one pixel"):
        solid_png(0, 10, (1, 2, 3))
    data = solid_png(3, 2, (1, 2, 3))
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data[16:24] == b"\x00\x00\x00\x03\x00\x00\x00\x02"


def test_seed_demo_user_without_watchlist(mocked: TraktEmulator) -> None:
    user = seed_demo_user(mocked, "movie-buff", with_watchlist=False)
    assert user.name == "Movie Buff" and user.watchlist == []
    assert get("/users/movie-buff/watchlist").json() == []


def test_cli_defaults_match_the_readme_and_example_site() -> None:
    args = build_parser().parse_args([])
    assert f"http://{args.host}:{args.port}" == "http://127.0.0.1:8765"
    assert "http://127.0.0.1:8000/accounts/trakt/login/callback/" in DEFAULT_REDIRECT_URIS
    assert args.redirect_uris is None and args.demo_users is None and not args.no_pkce


# -- the loopback server --------------------------------------------------------------------------------


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_server_on_ipv6_loopback_has_a_bracketed_url(emulator: TraktEmulator) -> None:
    with emulator.serve("::1") as server:
        assert re.fullmatch(r"http://\[::1\]:\d+", server.url)
        device = requests.post(
            f"{server.url}/oauth/device/code", json={"client_id": CLIENT_ID}, headers=headers(), timeout=5
        ).json()
        assert device["verification_url"] == f"{server.url}/activate"
    assert emulator.web_url == WEB


def test_server_on_explicit_port_advertises_its_public_url(emulator: TraktEmulator) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with emulator.serve("127.0.0.1", port, public_url="https://trakt.proxy.example/") as server:
        assert server.port == port and server.url == "https://trakt.proxy.example"
        answer = requests.post(
            f"http://127.0.0.1:{port}/oauth/device/code", json={"client_id": CLIENT_ID}, headers=headers(), timeout=5
        )
        assert answer.json()["verification_url"] == "https://trakt.proxy.example/activate"
        assert emulator.image_url == "https://trakt.proxy.example"
    assert (emulator.auth_url, emulator.api_url, emulator.image_url) == (AUTH, API, WEB)


def test_server_wait_returns_once_stopped_from_another_thread(emulator: TraktEmulator) -> None:
    server = emulator.serve()
    stopper = threading.Timer(0.05, server.stop)
    stopper.start()
    server.wait()  # the CLI's main loop
    stopper.join()
    server.stop()  # a second stop is harmless
    assert emulator.web_url == WEB
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{server.url}/activate", timeout=1)
