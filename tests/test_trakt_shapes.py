"""The shape checks of the live suite (tests/trakt_shapes.py), against recorded documents.

The documents under tests/fixtures/trakt/ are written from Trakt's contracts (see their
README), so a check that passes here and fails live means the real Trakt changed.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from django_trakt.internal.api.tokens import grant_from_response
from django_trakt.internal.pages.watchlist_items import item_from_document
from django_trakt.provider import trim_extra_data
from tests import trakt_shapes
from tests.trakt_shapes import (
    device_code_problems,
    last_activities_problems,
    settings_problems,
    token_problems,
    watchlist_problems,
)

FIXTURES = Path(__file__).parent / "fixtures" / "trakt"
ROOT = Path(__file__).resolve().parent.parent


def recorded(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def without(document: Any, path: str) -> Any:
    changed = copy.deepcopy(document)
    *parents, last = path.split(".")
    target = changed
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    del target[last]
    return changed


def replaced(document: Any, path: str, value: Any) -> Any:
    changed = copy.deepcopy(document)
    *parents, last = path.split(".")
    target = changed
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    target[last] = value
    return changed


CHECKS = {
    "token": token_problems,
    "device_code": device_code_problems,
    "settings": settings_problems,
    "watchlist": watchlist_problems,
    "last_activities": last_activities_problems,
}


@pytest.mark.parametrize("name", CHECKS)
def test_recorded_contract_document_passes_its_shape_check(name):
    assert CHECKS[name](recorded(name)) == []


def test_recorded_documents_are_read_by_the_app_as_the_live_suite_expects(db):
    grant = grant_from_response(recorded("token"))
    assert grant.expires_at is not None and grant.scope == "public offline_access"
    assert trim_extra_data(recorded("settings"))["user"]["ids"]["uuid"] == "b6589fc6ab0dc82cf12099d1c2d40ab994e8410c"
    kinds = [item_from_document(document)["kind"] for document in recorded("watchlist")]
    assert kinds == ["movie", "show", "season", "episode"]


@pytest.mark.parametrize(
    ("name", "broken", "problem"),
    [
        ("token", lambda d: without(d, "refresh_token"), "refresh_token: missing"),
        ("token", lambda d: replaced(d, "expires_in", "604800"), "expires_in: expected an integer"),
        ("token", lambda d: replaced(d, "expires_in", 10**9), "expires_in: 1000000000 seconds"),
        ("device_code", lambda d: replaced(d, "verification_url", "auth.trakt.tv/activate"), "an https URL"),
        ("settings", lambda d: without(d, "user.ids.uuid"), "user.ids.uuid: missing"),
        ("settings", lambda d: replaced(d, "user.ids.uuid", ""), "user.ids.uuid: expected a non-empty string"),
        ("settings", lambda d: without(d, "user.images"), "user.images.avatar.full: missing"),
        ("settings", lambda d: without(d, "permissions"), "permissions: missing"),
        ("settings", lambda d: replaced(d, "user.vip_years", True), "user.vip_years: expected an integer"),
        ("settings", lambda d: replaced(d, "user.joined_at", "2010-09-25"), "user.joined_at: expected an ISO"),
        ("watchlist", lambda d: replaced(d, "0.type", "person"), "[0].type: expected one of"),
        ("watchlist", lambda d: without(d, "0.movie.ids.trakt"), "movie.ids.trakt: missing"),
        ("watchlist", lambda d: replaced(d, "0.movie.images.poster", "x"), "[0].movie.images.poster: expected a list"),
        ("watchlist", lambda d: without(d, "3.show"), "show.title: missing"),
        ("watchlist", lambda d: {"items": d}, "the watchlist answer is not a list"),
        ("last_activities", lambda d: without(d, "watchlist"), "watchlist.updated_at: missing"),
        ("last_activities", lambda d: without(d, "seasons.watchlisted_at"), "seasons.watchlisted_at: missing"),
    ],
)
def test_shape_check_names_what_is_wrong(name, broken, problem):
    problems = CHECKS[name](broken(recorded(name)))
    assert any(problem in found for found in problems), problems


def test_assert_shape_fails_naming_every_problem():
    with pytest.raises(AssertionError) as raised:
        trakt_shapes.assert_shape(
            settings_problems(without(without(recorded("settings"), "user.ids.uuid"), "permissions"))
        )
    assert "user.ids.uuid: missing" in str(raised.value) and "permissions: missing" in str(raised.value)


def test_live_suite_is_collected_and_skipped_without_the_variables(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRAKT_LIVE_")}
    env["TRAKT_LIVE_TOKEN_FILE"] = str(tmp_path / "must-not-be-written")
    command = [sys.executable, "-m", "pytest", "-m", "live", "tests/test_live.py", "-q", "-p", "no:cacheprovider"]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 skipped" in run.stdout
    assert "set TRAKT_LIVE_CLIENT_ID, TRAKT_LIVE_CLIENT_SECRET and TRAKT_LIVE_REFRESH_TOKEN" in run.stdout
    assert not (tmp_path / "must-not-be-written").exists()


def test_live_suite_is_not_part_of_the_default_run():
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "tests/test_live.py", "-p", "no:cacheprovider"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "4 deselected" in run.stdout, run.stdout + run.stderr
