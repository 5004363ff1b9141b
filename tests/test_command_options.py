"""A bad option of any of the app's commands: one line on stderr and exit status 2.

From a shell (a real ``python manage.py ...`` process) argparse's convention holds: no
traceback, no usage dump, nothing on stdout. Through ``call_command`` the same message
comes as a :class:`CommandError` the caller can catch.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from django_trakt.management.commands.refresh_trakt_tokens import parse_duration

ROOT = Path(__file__).resolve().parent.parent

MANAGE_PY = """\
import sys

from django.core.management import execute_from_command_line

execute_from_command_line(sys.argv)
"""

# (command, arguments, the option the error must name)
CASES = [
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
    # argparse's "prog: error: ..." for what the parser rejects, Django's "CommandError: ..."
    # for what handle() rejects.
    for prefix in (f"manage.py {command}: error: ", "CommandError: "):
        if line.startswith(prefix):
            return line.removeprefix(prefix)
    raise AssertionError(f"unexpected error line: {line!r}")


def in_process_error(command: str, args: list[str]) -> CommandError:
    with pytest.raises(CommandError) as excinfo:
        call_command(command, *args, stdout=io.StringIO(), stderr=io.StringIO())
    return excinfo.value


@pytest.mark.parametrize(("command", "args", "option"), CASES, ids=IDS)
def test_bad_option_from_the_shell_is_one_line_and_exit_status_2(manage, command, args, option):
    message = the_error_line(manage(command, *args), command, option)
    # call_command() raises the same message (Django prefixes the parser's with "Error: ").
    error = in_process_error(command, args)
    assert str(error) in (message, f"Error: {message}")
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
    error = in_process_error("refresh_trakt_tokens", ["--user", "nobody"])
    assert str(error) == "No user 'nobody' (give a username or an id)."
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
        (["--concurrency", "0"], "argument --concurrency: must be a positive whole number, not '0'."),
        (["--max-rate", "-1"], "argument --max-rate: must be a positive number, not '-1'."),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_option_in_process_raises_command_error(args, message):
    error = in_process_error("refresh_trakt_tokens", args)
    assert str(error) == f"Error: {message}"
    assert error.returncode == 2


def test_concurrency_above_64_in_process_raises_command_error():
    error = in_process_error("refresh_trakt_tokens", ["--concurrency", "65"])
    assert str(error) == "--concurrency must be at most 64."
    assert error.returncode == 2


def test_parse_duration_is_unchanged():
    assert parse_duration("1d12h") == parse_duration("36h") == parse_duration("129600")
    with pytest.raises(ValueError):
        parse_duration("abc")
