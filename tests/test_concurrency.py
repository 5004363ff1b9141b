"""Several refresh commands (separate processes) plus on-demand refreshes, at once.

Only PostgreSQL has the row locks this guarantee rests on, so these tests run in the
PostgreSQL pass of the suite (``python3 tests/run.py``; CI fails when PostgreSQL is
missing, so they are never silently skipped there).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.db import connection
from django.test import override_settings

from django_trakt.internal.links.client import TraktClient
from django_trakt.models import TraktToken
from tests.conftest import link_user, make_emulator

ROOT = Path(__file__).resolve().parent.parent
LINKS = 40
PROCESSES = 3

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL"),
]


@pytest.fixture
def served_trakt():
    emulator = make_emulator()
    emulator.latency = 0.01  # widen the race windows a little
    with emulator.serve() as server:
        yield emulator, server.url


def database_url() -> str:
    params = connection.settings_dict
    host = params["HOST"] or "127.0.0.1"
    port = params["PORT"] or "5432"
    user = params["USER"] or "postgres"
    return f"postgres://{user}@{host}:{port}/{params['NAME']}"


def start_command(server_url: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "TRAKT_TEST_SERVER_URL": server_url,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "django", "refresh_trakt_tokens", "--concurrency", "4", "-v", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_concurrent_commands_and_on_demand_refresh_each_token_exactly_once(served_trakt):
    trakt, server_url = served_trakt
    links = [link_user(trakt, expires_in=-dt.timedelta(minutes=1)) for _ in range(LINKS)]
    original = {token.pk: token.refresh_token for _user, token in links}

    providers = {"trakt": {"APP": {"client_id": "test-client-id", "secret": "test-client-secret"}}}
    for key in ("AUTH_URL", "API_URL", "WEB_URL"):
        providers["trakt"][key] = server_url
    on_demand_errors: list[BaseException] = []

    def on_demand(users):
        try:
            for user in users:
                TraktClient.for_user(user).get("/users/settings")
        except BaseException as err:  # reported below, in the test thread
            on_demand_errors.append(err)
        finally:
            connection.close()

    commands = [start_command(server_url) for _ in range(PROCESSES)]
    users = [user for user, _token in links]
    pages = [threading.Thread(target=on_demand, args=(users[n::2],)) for n in range(2)]
    # Settings are process-wide: override them once, around every thread's lifetime.
    with override_settings(SOCIALACCOUNT_PROVIDERS=providers):
        for thread in pages:
            thread.start()
        outputs = [command.communicate(timeout=120)[0] for command in commands]
        for thread in pages:
            thread.join(timeout=120)

    for command, output in zip(commands, outputs, strict=True):
        assert command.returncode == 0, output
        assert "failed" in output and ", 0 failed" in output
    assert on_demand_errors == []

    # Every due token was refreshed exactly once, and no refresh token was used twice.
    assert trakt.refresh_count(accepted=False) == 0
    for pk, refresh_value in original.items():
        assert trakt.refresh_count(refresh_value) == 1, f"link {pk}"
    # Every link still works.
    for token in TraktToken.objects.all():
        assert token.status == TraktToken.Status.ACTIVE
        assert trakt.is_access_token_valid(token.access_token)
        assert token.refresh_token not in original.values()
    assert trakt.refresh_count() == LINKS


def test_sigterm_mid_run_drains_prints_the_summary_and_loses_no_link(served_trakt):
    import signal
    import time

    trakt, server_url = served_trakt
    trakt.latency = 0.3  # each refresh is in flight for a while
    links = [link_user(trakt, expires_in=-dt.timedelta(minutes=1)) for _ in range(30)]
    original = {token.pk: token.refresh_token for _user, token in links}
    command = start_command(server_url)
    deadline = time.monotonic() + 60
    while len(trakt.requests_to("/oauth/token")) < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    command.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    output = command.communicate(timeout=40)[0]
    drained_in = time.monotonic() - signalled

    assert command.returncode == 4, output  # STOPPED_STATUS
    assert "SIGTERM: finishing the refreshes in flight" in output and "Stopped by a signal" in output
    assert "refreshed," in output and drained_in < 22
    refreshed = trakt.refresh_count()
    assert 6 <= refreshed < len(links)  # it stopped starting new refreshes
    # Nothing lost: every link holds a pair Trakt accepts, no token was presented twice.
    assert trakt.refresh_count(accepted=False) == 0
    for token in TraktToken.objects.all():
        assert token.status == TraktToken.Status.ACTIVE and token.refresh_claimed_by == ""
        assert trakt.is_access_token_valid(token.access_token), token.pk
        assert trakt.refresh_count(original[token.pk], accepted=None) == (token.refresh_token != original[token.pk])
