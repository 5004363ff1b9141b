#!/usr/bin/env python3
"""Install what the tests need, run the quality gates and the whole suite, on SQLite and
on PostgreSQL.

    python3 tests/run.py [pytest arguments]

Needs only Python 3.11+. Creates ``.venv`` at the repository root (once), installs
django-trakt with its test and lint extras, then:

1. the quality gates: ``ruff check``, ``ruff format --check``, ``mypy django_trakt``, in
   the background while the first pass runs (their output is printed after it);
2. pytest on SQLite, every test (this pass also builds the sdist and wheel and installs the
   wheel in a fresh virtualenv: tests/test_packaging.py);
3. pytest on the PostgreSQL at ``TEST_DATABASE_URL`` (default
   ``postgres://postgres@127.0.0.1:5432/test``), where the row-lock and multi-process
   tests mean something: every test that uses the database under test
   (``--database-tests-only``, tests/conftest.py). The others (pure functions, sites on
   SQLite files of their own, packaging) would repeat the SQLite pass exactly. When
   PostgreSQL does not answer, a developer's run says so and stops after SQLite; a CI run
   (``CI=true``) fails;
4. the coverage of ``django_trakt`` over both passes, against the floor of
   ``[tool.coverage.report] fail_under`` in pyproject.toml. The floor is checked on a
   full run only (no pytest arguments, both databases); a partial run just reports.

Both passes spread the tests over pytest-xdist workers (``TEST_WORKERS``, default: two per
CPU, at most four: many tests wait on processes of their own, and each worker has a Redis
database of its own for the RQ tests, 12 to 15, tests/conftest.py), a file per worker at a
time (``--dist loadfile``: a module's fixtures, such as the browser test's example site or the
packaging tests' build, start once). Each worker has its own test database. For one file, the fast loop is
``.venv/bin/python -m pytest tests/test_x.py`` (add ``DATABASE_URL=postgres://...`` for
PostgreSQL).

Every step runs even when an earlier one failed; any failure makes the exit status
non-zero.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "example_project"))
from run import ROOT, ensure_installed

DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/test"

GATES = [
    ("ruff check", ["-m", "ruff", "check", "."]),
    ("ruff format", ["-m", "ruff", "format", "--check", "."]),
    ("mypy", ["-m", "mypy", "django_trakt"]),
]


def postgres_answers(python: Path, url: str) -> bool:
    probe = "import sys, psycopg; psycopg.connect(sys.argv[1], connect_timeout=5).close()"
    return subprocess.run([python, "-c", probe, url], capture_output=True).returncode == 0


def start_gates(python: Path, env: dict[str, str]) -> list[tuple[str, subprocess.Popen[str]]]:
    """The quality gates, started in the background (output kept for :func:`report_gates`)."""
    return [
        (
            label,
            subprocess.Popen(
                [python, *command], cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            ),
        )
        for label, command in GATES
    ]


def report_gates(gates: list[tuple[str, subprocess.Popen[str]]]) -> int:
    status = 0
    for label, process in gates:
        output, _ = process.communicate()
        print(f"\n=== {label} ===\n{output.rstrip()}", flush=True)
        if process.returncode:
            print(f"{label}: FAILED", flush=True)
            status = 1
    return status


def workers() -> str:
    return os.environ.get("TEST_WORKERS") or str(min(4, 2 * (os.cpu_count() or 1)))


def run_pytest(python: Path, label: str, env: dict[str, str], args: list[str], *, append: bool) -> int:
    print(f"\n=== test suite on {label} ===", flush=True)
    # Coverage is collected over both passes and checked once at the end.
    coverage = ["--cov=django_trakt", "--cov-report=", "--cov-fail-under=0", *(["--cov-append"] if append else [])]
    spread = ["-n", workers(), "--dist", "loadfile"]
    return subprocess.run([python, "-m", "pytest", *spread, *coverage, *args], cwd=ROOT, env=env).returncode


def report_coverage(python: Path, env: dict[str, str], *, enforce: bool) -> int:
    print("\n=== coverage of django_trakt ===", flush=True)
    floor = [] if enforce else ["--fail-under=0"]
    status = subprocess.run([python, "-m", "coverage", "report", *floor], cwd=ROOT, env=env).returncode
    if not enforce:
        print("(floor not checked: partial run)", flush=True)
    return status


def main(args: list[str]) -> int:
    python = ensure_installed("test,lint")
    base_env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    subprocess.run([python, "-m", "coverage", "erase"], cwd=ROOT, env=base_env, check=True)

    gates = start_gates(python, base_env)
    status = run_pytest(python, "SQLite", base_env, args, append=False)
    status = report_gates(gates) or status

    postgres_url = os.environ.get("TEST_DATABASE_URL", DEFAULT_POSTGRES_URL)
    both_databases = postgres_answers(python, postgres_url)
    if both_databases:
        pg_env = {**base_env, "DATABASE_URL": postgres_url}
        only_database = ["--database-tests-only"]
        status = run_pytest(python, "PostgreSQL", pg_env, [*only_database, *args], append=True) or status
    elif os.environ.get("CI"):
        print(f"PostgreSQL does not answer at {postgres_url}: CI must run the PostgreSQL suite.", flush=True)
        status = status or 1
    else:
        print(f"\nPostgreSQL does not answer at {postgres_url}: skipped the PostgreSQL run.", flush=True)

    status = report_coverage(python, base_env, enforce=both_databases and not args) or status
    print(f"\n{'FAILED' if status else 'All gates and tests passed.'}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
