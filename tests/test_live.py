"""The opt-in live suite: the real Trakt still sends what django-trakt relies on.

Run by a maintainer before a release (docs/local-trakt.md, "Before a release: the live
suite"); never in CI, and skipped unless these are set:

``TRAKT_LIVE_CLIENT_ID``, ``TRAKT_LIVE_CLIENT_SECRET``
    A Trakt API app of the maintainer's (creating one needs VIP, trakt/trakt-web#3057).
``TRAKT_LIVE_REFRESH_TOKEN``
    A refresh token of a test account for that app. **It is spent**: Trakt's refresh tokens
    are single-use. The new one is written to ``TRAKT_LIVE_TOKEN_FILE`` (default: a file in
    the temporary directory, whose path the run prints) before anything else is checked, so
    the next run can use it.
``TRAKT_LIVE_REDIRECT_URI`` (optional)
    A redirect URI registered for the app, sent with the refresh as Trakt requires
    (default ``urn:ietf:wg:oauth:2.0:oob``).
``TRAKT_LIVE_AUTH_URL``, ``TRAKT_LIVE_API_URL`` (optional)
    Default ``https://auth.trakt.tv`` and ``https://api.trakt.tv``.

    TRAKT_LIVE_CLIENT_ID=... TRAKT_LIVE_CLIENT_SECRET=... TRAKT_LIVE_REFRESH_TOKEN=... \\
        .venv/bin/python -m pytest -m live tests/test_live.py -v

No token, secret or code is printed or put into an assertion message. The calls are a
handful of GETs and one refresh, far below Trakt's 500 GETs per 5 minutes (#909).
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
import requests

from django_trakt import __version__
from django_trakt.internal.api.tokens import grant_from_response
from django_trakt.internal.pages.watchlist_items import item_from_document
from django_trakt.provider import trim_extra_data
from tests.trakt_shapes import (
    assert_shape,
    last_activities_problems,
    settings_problems,
    token_problems,
    watchlist_problems,
)

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not all(
            os.environ.get(name)
            for name in ("TRAKT_LIVE_CLIENT_ID", "TRAKT_LIVE_CLIENT_SECRET", "TRAKT_LIVE_REFRESH_TOKEN")
        ),
        reason="live suite: set TRAKT_LIVE_CLIENT_ID, TRAKT_LIVE_CLIENT_SECRET and TRAKT_LIVE_REFRESH_TOKEN",
    ),
]

TIMEOUT = 20


def token_file() -> Path:
    """Where the new refresh token goes: ``TRAKT_LIVE_TOKEN_FILE`` or a file in the temp directory."""
    named = os.environ.get("TRAKT_LIVE_TOKEN_FILE")
    return Path(named) if named else Path(tempfile.gettempdir()) / "django-trakt-live-refresh-token"


def save_refresh_token(path: Path, refresh_token: str) -> None:
    """Write the new (single-use) refresh token, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(refresh_token + "\n")


class Live:
    """The real Trakt, with the headers django-trakt sends."""

    def __init__(self) -> None:
        self.client_id = os.environ["TRAKT_LIVE_CLIENT_ID"]
        self.client_secret = os.environ["TRAKT_LIVE_CLIENT_SECRET"]
        self.auth_url = os.environ.get("TRAKT_LIVE_AUTH_URL", "https://auth.trakt.tv").rstrip("/")
        self.api_url = os.environ.get("TRAKT_LIVE_API_URL", "https://api.trakt.tv").rstrip("/")
        self.redirect_uri = os.environ.get("TRAKT_LIVE_REDIRECT_URI", "urn:ietf:wg:oauth:2.0:oob")
        self.session = requests.Session()

    def headers(self, access_token: str | None = None) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"django-trakt-live-suite/{__version__}",
            "trakt-api-version": "2",
            "trakt-api-key": self.client_id,
        }
        if access_token:
            headers["Authorization"] = f"Bearer {access_token}"
        return headers

    def get(self, path: str, access_token: str, **params: Any) -> requests.Response:
        response = self.session.get(
            f"{self.api_url}{path}", headers=self.headers(access_token), params=params or None, timeout=TIMEOUT
        )
        assert response.status_code == 200, f"GET {path}: HTTP {response.status_code}"
        assert response.headers.get("Content-Type", "").startswith("application/json"), f"GET {path}: not JSON"
        return response


@pytest.fixture(scope="module")
def live() -> Live:
    return Live()


@pytest.fixture(scope="module")
def access_token(live: Live, request: pytest.FixtureRequest) -> str:
    """Refresh the given token once for the whole module, and keep the new refresh token."""
    response = live.session.post(
        f"{live.auth_url}/oauth/token",
        json={
            "refresh_token": os.environ["TRAKT_LIVE_REFRESH_TOKEN"],
            "client_id": live.client_id,
            "client_secret": live.client_secret,
            "redirect_uri": live.redirect_uri,
            "grant_type": "refresh_token",
        },
        headers=live.headers(),
        timeout=TIMEOUT,
    )
    # The status and the OAuth error name only: the body of a refusal names no token.
    is_json = "json" in response.headers.get("Content-Type", "") and response.content.strip()
    error = response.json().get("error") if is_json and response.status_code != 200 else ""
    assert response.status_code == 200, f"refresh refused: HTTP {response.status_code} {error or '(no body)'}"
    document = response.json()
    path = token_file()
    if isinstance(document, dict) and isinstance(document.get("refresh_token"), str):
        # First: the old refresh token is dead now, this is the only copy of the new one.
        save_refresh_token(path, document["refresh_token"])
        # Past pytest's output capture: the maintainer must see where it went. The path only.
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"The new refresh token is in {path} (the one given is spent).")
    assert_shape(token_problems(document))
    grant = grant_from_response(document)
    assert grant.expires_at is not None
    return str(document["access_token"])


def test_live_refresh_answer_is_what_the_app_stores(access_token: str) -> None:
    assert token_file().read_text().strip()  # the new refresh token was kept
    assert access_token


def test_live_users_settings_has_the_profile_the_sign_in_relies_on(live: Live, access_token: str) -> None:
    document = live.get("/users/settings", access_token).json()
    assert_shape(settings_problems(document))
    kept = trim_extra_data(document)
    assert kept["user"]["ids"]["uuid"] == document["user"]["ids"]["uuid"]


def test_live_watchlist_items_are_what_the_tags_read(live: Live, access_token: str) -> None:
    response = live.get("/sync/watchlist/all/rank/asc", access_token, extended="images", page=1, limit=10)
    items = response.json()
    assert_shape(watchlist_problems(items))
    assert "X-Pagination-Page-Count" in response.headers
    for document in items:
        assert item_from_document(document) is not None, f"an item of type {document.get('type')!r} was not usable"


def test_live_last_activities_has_the_watchlist_markers(live: Live, access_token: str) -> None:
    assert_shape(last_activities_problems(live.get("/sync/last_activities", access_token).json()))
