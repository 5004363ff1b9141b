"""``manage.py refresh_trakt_tokens`` on a file SQLite database, in real processes: no link lost.

Trakt's refresh tokens are single-use: a refresh whose new pair is not stored leaves a user
who must sign in again. On SQLite, worker threads used to fail their save with "database
is locked" after Trakt had already rotated the token; now a batch on SQLite refreshes one
link at a time (and says so on stderr when ``--concurrency`` asked for more). These tests
run the command as a site would, at its default options and with the others, against a
served local Trakt, and check every link still works at Trakt afterwards.

They make their own database file in ``tmp_path`` (set up and read by
``python -m tests.sqlite_site`` in its own processes), not the pytest-django test
database: so they run in the SQLite pass, and in the PostgreSQL pass too, where only the
pytest process is on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from django_trakt.testing import TraktEmulator
from tests.conftest import make_emulator

ROOT = Path(__file__).resolve().parent.parent
LINKS = 20
TIMEOUT = 120
HOUR = 3600
WEEK = 7 * 24 * HOUR
SQLITE_NOTE = "Note: SQLite has one writer: refreshing one link at a time."


def show(result: subprocess.CompletedProcess[str]) -> str:
    """A subprocess's exit status and output, for assertion messages."""
    return f"{result.args} exited {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def refreshed(result: subprocess.CompletedProcess[str]) -> int:
    match = re.search(r"(\d+) refreshed", result.stdout)
    assert match, show(result)
    return int(match[1])


class SqliteSite:
    """A site whose database is one SQLite file, every process of it a real one."""

    def __init__(self, trakt: TraktEmulator, server_url: str, database: Path) -> None:
        self.trakt = trakt
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            # Four slashes: an absolute path. Replaces the PostgreSQL URL of the PostgreSQL pass.
            "DATABASE_URL": f"sqlite:///{database}",
            "TRAKT_TEST_SERVER_URL": server_url,
        }

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    @staticmethod
    def finish(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
        """Its exit status and output; one that hangs is killed, and what it wrote still shown."""
        try:
            stdout, stderr = process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            stderr += f"\n[killed after {TIMEOUT} s]"
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def check(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self.finish(self.start(*args))
        assert result.returncode == 0, show(result)
        return result

    def start_refresh(self, *options: str) -> subprocess.Popen[str]:
        return self.start("-m", "django", "refresh_trakt_tokens", *options)

    def refresh(self, *options: str) -> subprocess.CompletedProcess[str]:
        """One run of the command that must succeed and refresh every link, and say nothing else but the note."""
        result = self.finish(self.start_refresh(*options))
        assert result.returncode == 0, show(result)
        assert refreshed(result) == LINKS, show(result)
        # Nothing else on stderr: no traceback, no "database is locked". The note is only for
        # who asked for threads: at the default concurrency one at a time changes nothing they chose.
        expected = [SQLITE_NOTE] if "--concurrency" in options else []
        assert result.stderr.strip().splitlines() == expected, show(result)
        return result

    def seed(self, path: Path, count: int) -> None:
        links = []
        for n in range(count):
            user = self.trakt.add_user(f"sqlite{n:02d}")
            tokens = self.trakt.issue_tokens(user, settings.TRAKT_CLIENT_ID)
            links.append({"username": user.username, "uuid": user.uuid, "slug": user.slug, "tokens": tokens})
        path.write_text(json.dumps(links))
        self.check("-m", "tests.sqlite_site", "seed", str(path))

    def links(self) -> list[dict[str, str]]:
        return json.loads(self.check("-m", "tests.sqlite_site", "dump").stdout)

    def assert_nothing_lost(self) -> None:
        """Every link active and working at Trakt, and Trakt never saw a spent refresh token."""
        links = self.links()
        assert len(links) == LINKS
        for link in links:
            assert link["status"] == "active", link
            assert self.trakt.is_access_token_valid(link["access_token"]), link
        assert self.trakt.refresh_count(accepted=False) == 0


@pytest.fixture
def site(tmp_path: Path) -> Iterator[SqliteSite]:
    """A migrated file SQLite site with ``LINKS`` due links, and the local Trakt it talks to."""
    trakt = make_emulator()
    # Shorter than the command's default 6h margin: every pair a run stores is due again
    # for the next run, so each run refreshes every link.
    trakt.access_token_lifetime = HOUR
    trakt.latency = 0.01  # a refresh holds SQLite's writer lock while Trakt answers
    with trakt.serve() as server:
        site = SqliteSite(trakt, server.url, tmp_path / "site.sqlite3")
        site.check("-m", "django", "migrate", "--no-input")
        site.seed(tmp_path / "links.json", LINKS)
        yield site


def test_default_runs_in_a_row_lose_no_link(site: SqliteSite) -> None:
    for _run in range(5):
        spent = {link["refresh_token"] for link in site.links()}
        site.refresh()
        # Each stored refresh token was spent exactly once, and its successor stored.
        assert all(site.trakt.refresh_count(token) == 1 for token in spent)
        assert spent.isdisjoint(link["refresh_token"] for link in site.links())
    site.assert_nothing_lost()
    assert site.trakt.refresh_count() == LINKS * 5


def test_two_default_commands_at_once_lose_no_link(site: SqliteSite) -> None:
    # Trakt's real lifetime: a link one command refreshed is not due for the other, which
    # looks at it again once it holds the writer lock and passes over it. (With the
    # fixture's hour, shorter than the margin, both would rightly refresh every link in
    # turn: 40 a round.) So between rounds every link is made due by hand.
    site.trakt.access_token_lifetime = WEEK
    for round_ in range(3):
        if round_:
            site.check("-m", "tests.sqlite_site", "expire")
        commands = [site.start_refresh(), site.start_refresh()]
        results = [site.finish(command) for command in commands]
        shown = "\n".join(show(result) for result in results)
        for result in results:
            assert result.returncode == 0, shown
            assert result.stderr.strip() == "", shown
        assert sum(refreshed(result) for result in results) == LINKS, shown
        assert site.trakt.refresh_count(accepted=False) == 0, shown
    site.assert_nothing_lost()
    assert site.trakt.refresh_count() == LINKS * 3


OTHER_OPTIONS = {
    # Asking for more threads, rate-limited: still one link at a time on SQLite.
    "threads": ("--concurrency", "8", "--max-rate", "50"),
    # Every link, due or not.
    "force": ("--force",),
}


@pytest.mark.parametrize("options", OTHER_OPTIONS.values(), ids=OTHER_OPTIONS.keys())
def test_other_options_lose_no_link(site: SqliteSite, options: tuple[str, ...]) -> None:
    for _run in range(2):
        site.refresh(*options)
    site.assert_nothing_lost()
    assert site.trakt.refresh_count() == LINKS * 2
