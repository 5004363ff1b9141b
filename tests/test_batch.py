"""The batch behind ``refresh_trakt_tokens``: called directly (a task queue), rate limited,
threaded, and the command's progress line on a terminal."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from django_trakt.internal.core import clock as app_clock
from django_trakt.internal.links import batch
from django_trakt.internal.links.batch import RateLimiter, refresh_due_tokens
from django_trakt.internal.links.outcomes import Outcome
from django_trakt.models import TraktToken

DUE = dt.timedelta(hours=1)
FRESH = dt.timedelta(days=6)


def snapshot(token):
    token.refresh_from_db()
    return token.access_token, token.refresh_token, token.expires_at


class FakeClock:
    """The app's clock for the batch: a monotonic clock that only moves when it sleeps."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(app_clock, "monotonic", fake.monotonic)
    monkeypatch.setattr(app_clock, "sleep", fake.sleep)
    return fake


def break_link(monkeypatch, broken_pk, error=RuntimeError):
    """One link whose refresh hits a bug (not a Trakt error)."""
    real = batch.refresh_with_retries

    def refresh(token, **kwargs):
        if getattr(token, "pk", token) == broken_pk:  # the stream passes the row it read
            raise error("boom")
        return real(token, **kwargs)

    monkeypatch.setattr(batch, "refresh_with_retries", refresh)


# -- rate limit -----------------------------------------------------------------------------------


def test_rate_limiter_spaces_starts_by_interval(clock):
    limiter = RateLimiter(per_second=4)
    starts = []
    for _ in range(4):
        limiter.wait()
        starts.append(clock.now)
    assert starts == [1000.0, 1000.25, 1000.5, 1000.75]


def test_rate_limiter_after_idle_period_does_not_wait(clock):
    limiter = RateLimiter(per_second=2)
    limiter.wait()
    clock.now += 10  # nothing to do for a while: no backlog of waiting is built up
    limiter.wait()
    assert clock.sleeps == []


def test_batch_max_rate_spaces_refreshes(trakt, linked, clock):
    tokens = [linked(expires_in=DUE)[1] for _ in range(3)]
    report = refresh_due_tokens(concurrency=1, max_rate=5)
    assert report.refreshed == 3
    assert clock.sleeps == [0.2, 0.2]  # the first starts at once
    assert trakt.refresh_count() == 3 and all(snapshot(t)[2] > dt.datetime.now(dt.UTC) + FRESH for t in tokens)


def test_batch_without_max_rate_never_waits(trakt, linked, clock):
    for _ in range(3):
        linked(expires_in=DUE)
    assert refresh_due_tokens(concurrency=1).refreshed == 3
    assert clock.sleeps == []


# -- called directly, as a task queue would ---------------------------------------------------------


def test_batch_without_on_result_refreshes_and_reports(trakt, linked):
    _u1, due = linked(expires_in=DUE)
    _u2, later = linked(expires_in=FRESH)
    due_before, later_before = snapshot(due), snapshot(later)
    report = refresh_due_tokens(concurrency=1)
    assert (report.refreshed, report.not_due, report.needs_reauth, report.failed) == (1, 1, 0, 0)
    assert snapshot(due) != due_before and snapshot(later) == later_before


def test_batch_user_ids_limits_links_and_counts(trakt, linked):
    u1, t1 = linked(expires_in=DUE)
    u2, t2 = linked(expires_in=FRESH)
    _u3, t3 = linked(expires_in=DUE)
    before = snapshot(t2), snapshot(t3)
    report = refresh_due_tokens(user_ids=iter([u1.pk, u2.pk]), concurrency=1)
    # u3's due link is neither refreshed nor counted.
    assert (report.refreshed, report.not_due) == (1, 1)
    assert snapshot(t1) != before[0] and (snapshot(t2), snapshot(t3)) == before
    assert trakt.refresh_count() == 1


def test_batch_dry_run_without_on_result_changes_nothing(trakt, linked):
    links = [linked(expires_in=DUE)[1] for _ in range(2)] + [linked(expires_in=FRESH)[1]]
    before = [snapshot(t) for t in links]
    report = refresh_due_tokens(dry_run=True)
    assert (report.refreshed, report.not_due) == (0, 1)
    assert [snapshot(t) for t in links] == before and trakt.requests == []


def test_batch_dry_run_on_result_lists_due_links_soonest_first(trakt, linked):
    _u1, later = linked("later", expires_in=dt.timedelta(hours=3))
    _u2, sooner = linked("sooner", expires_in=dt.timedelta(minutes=10))
    linked("fresh", expires_in=FRESH)
    seen = []
    refresh_due_tokens(dry_run=True, on_result=lambda candidate, result: seen.append((candidate, result)))
    assert [(c.pk, c.trakt_username, result) for c, result in seen] == [
        (sooner.pk, "sooner", None),
        (later.pk, "later", None),
    ]
    assert trakt.requests == []


def test_batch_unexpected_error_in_one_link_does_not_stop_batch(trakt, linked, monkeypatch, caplog):
    tokens = [linked(expires_in=DUE + dt.timedelta(minutes=n))[1] for n in range(3)]
    broken = tokens[1]
    broken_before = snapshot(broken)
    break_link(monkeypatch, broken.pk)
    results = {}
    with caplog.at_level(logging.ERROR, logger="django_trakt.internal.links.batch"):
        report = refresh_due_tokens(concurrency=1, on_result=lambda c, r: results.setdefault(c.pk, r))
    assert (report.refreshed, report.failed) == (2, 1)
    assert results[broken.pk].outcome is Outcome.FAILED
    assert results[broken.pk].detail == "unexpected error: RuntimeError"
    assert snapshot(broken) == broken_before
    assert f"Unexpected error refreshing Trakt link {broken.pk}" in caplog.text
    assert broken_before[0] not in caplog.text and broken_before[1] not in caplog.text


# -- worker threads ---------------------------------------------------------------------------------


@pytest.fixture
def threaded_db(monkeypatch):
    """Worker threads have their own connections. PostgreSQL runs them as they are; SQLite's
    shared in-memory test database answers "table is locked" to concurrent writers, so
    there each refresh holds a lock (the queue, threads and result handling stay real)."""
    if connection.vendor == "sqlite":
        lock = threading.Lock()
        real = batch.refresh_with_retries

        def serialized(pk, **kwargs):
            with lock:
                return real(pk, **kwargs)

        monkeypatch.setattr(batch, "refresh_with_retries", serialized)


@pytest.mark.django_db(transaction=True)
def test_batch_threaded_refreshes_each_link_once_and_reports_in_calling_thread(trakt, linked, threaded_db):
    links = [linked(expires_in=DUE)[1] for _ in range(6)]
    linked(expires_in=FRESH)
    original = {token.pk: token.refresh_token for token in links}
    calls = []
    report = refresh_due_tokens(
        concurrency=3, on_result=lambda c, r: calls.append((c.pk, r.outcome, threading.get_ident()))
    )
    assert (report.refreshed, report.not_due, report.failed) == (6, 1, 0)
    assert sorted(pk for pk, _outcome, _thread in calls) == sorted(original)
    assert {outcome for _pk, outcome, _thread in calls} == {Outcome.REFRESHED}
    assert {thread for _pk, _outcome, thread in calls} == {threading.get_ident()}
    for pk, refresh_value in original.items():
        assert trakt.refresh_count(refresh_value) == 1, f"link {pk}"
        token = TraktToken.objects.get(pk=pk)
        assert trakt.is_access_token_valid(token.access_token)
    assert {t.name for t in threading.enumerate() if t.name.startswith("trakt-refresh-")} == set()


@pytest.mark.django_db(transaction=True)
def test_batch_threaded_more_links_than_queue_holds_all_refreshed(trakt, linked, threaded_db, monkeypatch):
    # Two workers and a queue of four: the workers are held back until the queue has
    # been full for a while, so feeding the queue has to wait for room.
    tokens = [linked(expires_in=DUE)[1] for _ in range(9)]
    release = threading.Event()
    real = batch.refresh_with_retries

    def held_back(pk, **kwargs):
        release.wait(timeout=5)
        return real(pk, **kwargs)

    monkeypatch.setattr(batch, "refresh_with_retries", held_back)
    timer = threading.Timer(0.15, release.set)
    timer.start()
    try:
        report = refresh_due_tokens(concurrency=2)
    finally:
        timer.cancel()
    assert report.refreshed == 9 and trakt.refresh_count() == 9
    assert len({snapshot(t)[1] for t in tokens}) == 9


@pytest.mark.django_db(transaction=True)
def test_batch_threaded_unexpected_error_in_one_link_does_not_stop_batch(
    trakt, linked, threaded_db, monkeypatch, caplog
):
    tokens = [linked(expires_in=DUE + dt.timedelta(minutes=n))[1] for n in range(5)]
    broken = tokens[2]
    break_link(monkeypatch, broken.pk, error=KeyError)
    results = {}
    with caplog.at_level(logging.ERROR, logger="django_trakt.internal.links.batch"):
        report = refresh_due_tokens(concurrency=2, on_result=lambda c, r: results.setdefault(c.pk, r))
    assert (report.refreshed, report.failed) == (4, 1)
    assert results[broken.pk].detail == "unexpected error: KeyError"
    assert set(results) == {t.pk for t in tokens}
    assert f"Unexpected error refreshing Trakt link {broken.pk}" in caplog.text


# -- the command's progress line ---------------------------------------------------------------------


class TerminalOutput(StringIO):
    def isatty(self) -> bool:
        return True


def run_command(*args, out=None):
    out = out if out is not None else TerminalOutput()
    call_command("refresh_trakt_tokens", "--concurrency", "1", "--no-color", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_command_on_terminal_shows_progress_counter_then_summary(trakt, linked):
    linked(expires_in=DUE)
    linked(expires_in=DUE)
    output = run_command()
    assert output.startswith("\r1 links processed\r2 links processed\n")
    assert output.endswith("2 refreshed, 0 not due, 0 need re-authorization, 0 failed\n")


def test_command_not_on_terminal_has_no_progress_counter(trakt, linked):
    linked(expires_in=DUE)
    output = run_command(out=StringIO())
    assert "links processed" not in output and "\r" not in output
    assert output == "1 refreshed, 0 not due, 0 need re-authorization, 0 failed\n"


def test_command_on_terminal_verbosity_2_lists_links_instead_of_counter(trakt, linked):
    user, _token = linked(expires_in=DUE)
    output = run_command("-v", "2")
    assert f"{user.username}: refreshed (refreshed)" in output and "links processed" not in output


def test_command_dry_run_quiet_prints_only_summary(trakt, linked):
    linked(expires_in=DUE)
    linked(expires_in=FRESH)
    output = run_command("--dry-run", "-v", "0")
    assert output == "Dry run: 1 links would be refreshed, 1 not due.\n"
    assert trakt.requests == []


@pytest.mark.django_db(transaction=True)
def test_stream_of_due_links_read_again_after_a_database_error_each_link_once(trakt):
    from django.db import OperationalError, connection

    from django_trakt.internal.links.batch import refresh_due_tokens
    from tests.conftest import link_user

    links = [link_user(trakt, expires_in=-dt.timedelta(hours=1)) for _ in range(5)]
    reads = []

    def drop_first_read(execute, sql, params, many, context):
        if "ORDER BY" in sql and "expires_at" in sql and sql.lstrip().upper().startswith(("SELECT", "DECLARE")):
            reads.append(sql)
            if len(reads) == 1:
                raise OperationalError("terminating connection due to administrator command")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(drop_first_read):
        report = refresh_due_tokens(concurrency=1)
    assert report.stream_restarts == 1 and report.refreshed == 5 and report.stream_error == ""
    assert trakt.refresh_count() == 5 and trakt.refresh_count(accepted=False) == 0
    assert len(links) == 5
