"""The app's commands read like Django's own: usage errors, ``--help``, notes, summaries.

A bad option of any command is one line on stderr in argparse's form
(``manage.py <command>: error: <message>``), whether argparse or ``handle()`` finds it,
and exit status 2: no traceback, no usage dump, nothing on stdout. Through ``call_command``
the same message comes as a :class:`CommandError` (``"Error: <message>"``).

Most tests run in-process (``call_command``, the parser's ``format_help()``); a few real
``python manage.py`` processes prove what only a process shows: the line and the status.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.test import override_settings

from django_trakt.internal.core import clock as app_clock
from django_trakt.internal.links.rotation import DEFAULT_BATCH_SIZE
from django_trakt.management.commands.refresh_trakt_tokens import Command as RefreshCommand
from django_trakt.management.commands.refresh_trakt_tokens import format_duration, parse_duration
from django_trakt.management.commands.rotate_trakt_keys import Command as RotateCommand
from django_trakt.management.commands.trakt_redirect_uri import Command as RedirectUriCommand
from django_trakt.models import TraktToken

ROOT = Path(__file__).resolve().parent.parent
EXPIRED = -dt.timedelta(hours=1)
DAY_ISH = dt.timedelta(days=1, hours=2, minutes=3, seconds=4)

MANAGE_PY = """\
import sys

from django.core.management import execute_from_command_line

execute_from_command_line(sys.argv)
"""

# (command, arguments, the option the error must name)
CASES = [
    ("refresh_trakt_tokens", ["--within", "-5m"], "--within"),  # argparse alone: "expected one argument"
    ("refresh_trakt_tokens", ["--within=-5m"], "--within"),
    ("refresh_trakt_tokens", ["--within", "-1"], "--within"),
    ("refresh_trakt_tokens", ["--enqueue", "--dry-run"], "--dry-run"),  # found by handle()
    ("refresh_trakt_tokens", ["--within", "abc"], "--within"),
    ("refresh_trakt_tokens", ["--within", ""], "--within"),
    ("refresh_trakt_tokens", ["--within", "99999999999d"], "--within"),  # beyond timedelta
    ("refresh_trakt_tokens", ["--within", "2932896d"], "--within"),  # a timedelta, but not once added to now
    ("refresh_trakt_tokens", ["--within"], "--within"),
    ("refresh_trakt_tokens", ["--concurrency", "0"], "--concurrency"),
    ("refresh_trakt_tokens", ["--concurrency", "65"], "--concurrency"),
    ("refresh_trakt_tokens", ["--concurrency", "x"], "--concurrency"),
    ("refresh_trakt_tokens", ["--max-rate", "-1"], "--max-rate"),
    ("refresh_trakt_tokens", ["--max-rate", "abc"], "--max-rate"),
    ("refresh_trakt_tokens", ["--max-rate", "nan"], "--max-rate"),
    ("refresh_trakt_tokens", ["--limit", "0"], "--limit"),
    ("refresh_trakt_tokens", ["--limit", "1.5"], "--limit"),
    ("refresh_trakt_tokens", ["--max-retry-after", "0"], "--max-retry-after"),
    ("refresh_trakt_tokens", ["--max-retry-after", "inf"], "--max-retry-after"),
    ("refresh_trakt_tokens", ["--dry-run=yes"], "--dry-run"),
    ("refresh_trakt_tokens", ["--verbosity", "9"], "--verbosity"),
    ("refresh_trakt_tokens", ["--bogus"], "--bogus"),
    ("rotate_trakt_keys", ["--batch-size", "0"], "--batch-size"),
    ("rotate_trakt_keys", ["--batch-size", "-5"], "--batch-size"),
    ("rotate_trakt_keys", ["--batch-size", "lots"], "--batch-size"),
    ("rotate_trakt_keys", ["--batch-size"], "--batch-size"),
    ("rotate_trakt_keys", ["--dry-run=yes"], "--dry-run"),
    ("rotate_trakt_keys", ["--bogus"], "--bogus"),
    ("trakt_redirect_uri", ["--host", "https://media.example.com/"], "--host"),
    ("trakt_redirect_uri", ["--host", "media example"], "--host"),
    ("trakt_redirect_uri", ["--host", ""], "--host"),
    ("trakt_redirect_uri", ["--host", "bad_host!"], "--host"),
    ("trakt_redirect_uri", ["--host"], "--host"),
    ("trakt_redirect_uri", ["--https", "--http"], "--http"),
    ("trakt_redirect_uri", ["--https=yes"], "--https"),
    ("trakt_redirect_uri", ["--bogus"], "--bogus"),
]
IDS = [f"{command} {' '.join(arg or repr(arg) for arg in args)}" for command, args, _option in CASES]

#: In real processes: each way a usage error is found (a converter, argparse itself, handle(),
#: the value that argparse would take for an option) in each command.
SHELL_CASES = [
    ("refresh_trakt_tokens", ["--within", "-5m"], "--within"),
    ("refresh_trakt_tokens", ["--concurrency", "65"], "--concurrency"),
    ("refresh_trakt_tokens", ["--bogus"], "--bogus"),
    ("refresh_trakt_tokens", ["--enqueue", "--dry-run"], "--dry-run"),
    ("rotate_trakt_keys", ["--batch-size", "0"], "--batch-size"),
    ("rotate_trakt_keys", ["--batch-size", "lots"], "--batch-size"),
    ("trakt_redirect_uri", ["--host", "https://media.example.com/"], "--host"),
    ("trakt_redirect_uri", ["--https", "--http"], "--http"),
]
SHELL_IDS = [f"{command} {' '.join(args)}" for command, args, _option in SHELL_CASES]


@pytest.fixture(scope="module")
def manage(tmp_path_factory) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``python manage.py ...`` (tests.settings) in a new process, outside the repository."""
    directory = tmp_path_factory.mktemp("manage")
    (directory / "manage.py").write_text(MANAGE_PY)
    # Nothing of the parent's configuration leaks in (the PostgreSQL pass sets DATABASE_URL).
    base_env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TRAKT_", "DJANGO_")) and key not in ("DATABASE_URL", "LOCAL_TRAKT_URL")
    }
    base_env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    base_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=directory,
            env={**base_env, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


def the_error_line(result: subprocess.CompletedProcess[str], command: str, option: str) -> str:
    """The message of the one line a bad option must produce; fails on anything else."""
    output = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 2, output
    assert "Traceback" not in result.stdout + result.stderr, output
    assert result.stdout == "", output
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, output
    line = result.stderr.rstrip("\n")
    assert line.strip() and option in line, output
    # One style for every usage error, whoever finds it: argparse's "prog: error: ...".
    prefix = f"manage.py {command}: error: "
    assert line.startswith(prefix), output
    return line.removeprefix(prefix)


def in_process_error(command: str, args: list[str]) -> CommandError:
    with pytest.raises(CommandError) as excinfo:
        call_command(command, *args, stdout=io.StringIO(), stderr=io.StringIO())
    return excinfo.value


@pytest.mark.parametrize(("command", "args", "option"), SHELL_CASES, ids=SHELL_IDS)
def test_bad_option_from_the_shell_is_one_line_and_exit_status_2(manage, command, args, option):
    message = the_error_line(manage(command, *args), command, option)
    # call_command() raises the same message, with Django's parser's "Error: ".
    error = in_process_error(command, args)
    assert str(error) == f"Error: {message}"
    assert error.returncode == 2


@pytest.mark.parametrize(("command", "args", "option"), CASES, ids=IDS)
def test_bad_option_in_process_is_one_line_naming_the_option_and_exit_status_2(command, args, option):
    error = in_process_error(command, args)
    message = str(error)
    assert message.startswith("Error: ") and option in message, message
    assert "\n" not in message and "Traceback" not in message
    assert error.returncode == 2


@pytest.fixture(scope="module")
def migrated_database(manage, tmp_path_factory) -> str:
    """The ``DATABASE_URL`` of a migrated SQLite file (``--user`` looks users up)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('database') / 'db.sqlite3'}"
    migrate = manage("migrate", "--noinput", "-v", "0", DATABASE_URL=url)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    return url


def test_unknown_user_from_the_shell_is_one_line_and_exit_status_2(manage, migrated_database):
    result = manage("refresh_trakt_tokens", "--user", "nobody", DATABASE_URL=migrated_database)
    message = the_error_line(result, "refresh_trakt_tokens", "nobody")
    assert message == "No user 'nobody' (give a username or an id)."


@pytest.mark.django_db
def test_unknown_user_in_process_raises_command_error_with_exit_status_2():
    # The same "Error: " as the parser's errors (it used to come without: two styles).
    error = in_process_error("refresh_trakt_tokens", ["--user", "nobody"])
    assert str(error) == "Error: No user 'nobody' (give a username or an id)."
    assert error.returncode == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--within", "abc"],
            "argument --within: expected a duration such as 6h, 90m, 1d or 3600 (seconds), not 'abc'.",
        ),
        (["--within", "99999999999d"], "argument --within: '99999999999d' is too long a duration (at most 3660d)."),
        (["--within", "2932896d"], "argument --within: '2932896d' is too long a duration (at most 3660d)."),
        (
            ["--within", "-5m"],
            "argument --within: must not be negative, not '-5m': it is how long before expiry a link is "
            "refreshed (0 refreshes only the expired ones).",
        ),
        (["--limit", "0"], "argument --limit: must be a positive whole number, not '0'."),
        (["--concurrency", "0"], "argument --concurrency: must be a positive whole number (at most 64), not '0'."),
        (["--concurrency", "65"], "argument --concurrency: must be a positive whole number (at most 64), not '65'."),
        (["--enqueue", "--dry-run"], "--enqueue and --dry-run do not go together."),
        (["--max-rate", "-1"], "argument --max-rate: must be a positive number, not '-1'."),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_option_in_process_raises_command_error(args, message):
    error = in_process_error("refresh_trakt_tokens", args)
    assert str(error) == f"Error: {message}"
    assert error.returncode == 2


def test_parse_duration_is_unchanged():
    assert parse_duration("1d12h") == parse_duration("36h") == parse_duration("129600")
    with pytest.raises(ValueError):
        parse_duration("abc")
    with pytest.raises(ValueError):
        parse_duration("-5m")


@pytest.mark.parametrize("duration", [dt.timedelta(hours=6), dt.timedelta(days=1, hours=12), dt.timedelta(0), DAY_ISH])
def test_format_duration_reads_back_as_the_same_duration(duration):
    assert parse_duration(format_duration(duration)) == duration


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--within", "90m"], dt.timedelta(minutes=90)),
        (["--within=1d"], dt.timedelta(days=1)),
        (["--within", "0", "--limit", "5"], dt.timedelta(0)),
        ([], dt.timedelta(hours=6)),  # the default, a string in --help, a duration here
    ],
)
def test_within_values_that_are_not_negative_still_parse(args, expected):
    parser = RefreshCommand().create_parser("manage.py", "refresh_trakt_tokens")
    assert parser.parse_args(args).within == expected


# -- --help: what each option defaults to, and what each exit status means ----------------------


def help_text(command: BaseCommand, name: str) -> str:
    return " ".join(command.create_parser("manage.py", name).format_help().split())


def test_refresh_help_lists_every_default_and_exit_status():
    text = help_text(RefreshCommand(), "refresh_trakt_tokens")
    for default in (
        "expiring within this margin, e.g. 90m, 1d or 3600 (seconds) (default: 6h)",
        "repeat for several (default: every user)",
        "Refresh at most this many links (default: no limit)",
        "at most 64 (default: 4;",
        "refreshes per second (default: no limit)",
        "wait for the next run (default: 30)",
    ):
        assert default in text
    exit_statuses = text[text.index("Exit status:") :]
    for status in (
        "0 done",
        "1 some links failed",
        "2 a bad option or argument",
        "3 the site's configuration stopped the run",
        "4 stopped by SIGTERM or SIGINT",
    ):
        assert status in exit_statuses
    assert "within TIMEOUT + 12 seconds" in exit_statuses


def test_rotate_and_redirect_uri_help_list_defaults_and_exit_statuses():
    rotate = help_text(RotateCommand(), "rotate_trakt_keys")
    assert f"Rows per transaction (default: {DEFAULT_BATCH_SIZE})" in rotate
    assert "Exit status: 0 every token is encrypted" in rotate
    assert "1 some tokens cannot be decrypted" in rotate and "2 a bad option, or unusable TRAKT_TOKEN_KEYS" in rotate
    redirect = help_text(RedirectUriCommand(), "trakt_redirect_uri")
    assert "(default: the domain of the current Site" in redirect and "plain HTTP (default)" in redirect
    assert "Exit status: 0 the redirect URI is on stdout" in redirect
    assert "1 the site cannot tell its redirect URI" in redirect and "2 a bad option or argument" in redirect


def test_help_from_the_shell_exits_0_with_the_exit_statuses(manage):
    result = manage("refresh_trakt_tokens", "--help")
    assert result.returncode == 0 and result.stderr == ""
    assert "Exit status:" in result.stdout and "(default: 6h)" in result.stdout


# -- notes only when they change what the run does -----------------------------------------------


def run(*args: str) -> tuple[str, str, int]:
    """``call_command`` the refresh: its stdout, stderr and exit status."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("refresh_trakt_tokens", "--no-color", *args, stdout=out, stderr=err)
    except CommandError as error:
        return out.getvalue(), err.getvalue() + f"CommandError: {error}\n", error.returncode
    return out.getvalue(), err.getvalue(), 0


@pytest.mark.django_db
def test_one_at_a_time_is_said_only_to_who_asked_for_threads_and_not_on_a_dry_run(trakt, linked):
    # pytest-django runs the test in a transaction: worker threads could not see its rows,
    # so the batch refreshes in the caller's thread whatever --concurrency says.
    linked(expires_in=EXPIRED)
    out, err, status = run()  # the default concurrency: nothing to say
    assert (err, status) == ("", 0) and "1 refreshed" in out
    out, err, status = run("--dry-run", "--force", "--concurrency", "8")
    assert (err, status) == ("", 0) and "Dry run: 1 links would be refreshed" in out
    out, err, status = run("--force", "--concurrency", "8")
    assert (
        err == ("Note: called inside a transaction: refreshing in the caller's thread, one link at a time.\n")
        and "1 refreshed" in out
    )
    _out, err, _status = run("--force", "--concurrency", "1")  # what was asked for
    assert err == ""


# -- repeated failures said once ------------------------------------------------------------------


@pytest.fixture
def trakt_down(monkeypatch):
    """Trakt cannot be reached (connection refused), and the retries' backoff does not sleep."""
    monkeypatch.setattr(app_clock, "sleep", lambda seconds: None)
    providers = {"trakt": {**settings.SOCIALACCOUNT_PROVIDERS["trakt"]}}
    providers["trakt"].update(API_URL="https://down.trakt.test", AUTH_URL="https://down.trakt.test")
    with override_settings(SOCIALACCOUNT_PROVIDERS=providers):
        yield


REFRESH_FAILED = "Refreshing the Trakt token of account"
REACHED = "Trakt could not be reached for POST /oauth/token"


@pytest.mark.django_db
def test_trakt_down_is_logged_once_and_summarised_by_kind(trakt, linked, trakt_down, caplog):
    links = 4
    for _ in range(links):
        linked(expires_in=EXPIRED)
    with caplog.at_level(logging.INFO, logger="django_trakt"):
        out, err, status = run()
    assert status == 1 and out == ""
    # Each link: three attempts, each logged by the HTTP layer and by the refresh: 24 lines.
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 2 and warnings[0] == "Trakt POST /oauth/token failed: ConnectionError"
    assert re.fullmatch(rf"{REFRESH_FAILED} \d+ failed: {REACHED}", warnings[1]), warnings
    assert err.splitlines() == [
        f"{links} links failed: {REACHED}",
        f"{links * 3 * 2 - 2} log lines that repeat one above were left out (-v 2 logs each).",
        f"CommandError: 0 refreshed, 0 not due, 0 need re-authorization, {links} failed. "
        "Failed links are retried on the next run.",
    ]
    assert TraktToken.objects.filter(last_error=REACHED).count() == links  # each link's own record stays
    # The loggers are themselves again after the run.
    caplog.clear()
    logging.getLogger("django_trakt.internal.links.refresh").warning("%s 9 failed: %s", REFRESH_FAILED, REACHED)
    assert len(caplog.records) == 1


@pytest.mark.django_db
def test_verbosity_2_logs_every_failure(trakt, linked, trakt_down, caplog):
    for _ in range(2):
        linked(expires_in=EXPIRED)
    with caplog.at_level(logging.INFO, logger="django_trakt"):
        out, err, status = run("-v", "2")
    assert status == 1
    refresh_warnings = [record for record in caplog.records if record.getMessage().startswith(REFRESH_FAILED)]
    assert len(refresh_warnings) == 2 * 3
    assert out.count(f"failed ({REACHED})") == 2  # one line per link on stdout
    assert err.splitlines()[0] == f"2 links failed: {REACHED}" and "left out" not in err


@pytest.mark.django_db
def test_failures_of_different_kinds_get_a_line_each(trakt, linked, monkeypatch, caplog):
    monkeypatch.setattr(app_clock, "sleep", lambda seconds: None)
    for _ in range(3):
        linked(expires_in=EXPIRED)
    trakt.fail_next("/oauth/token", status=503, times=3)  # the first link, all its attempts
    trakt.malformed_next("/oauth/token")  # the second link: may have been refreshed, not retried
    _out, err, status = run("--concurrency", "1")
    assert status == 1
    assert err.splitlines() == [
        "1 link failed: Trakt answered HTTP 503",
        "1 link failed: Trakt answered with a body that is not valid JSON",
        "2 log lines that repeat one above were left out (-v 2 logs each).",  # the 503's retries
        "CommandError: 1 refreshed, 0 not due, 0 need re-authorization, 2 failed. "
        "Failed links are retried on the next run.",
    ]
