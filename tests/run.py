#!/usr/bin/env python3
"""Install what the tests need and run the whole suite, on SQLite and on PostgreSQL.

    python3 tests/run.py [pytest arguments]

Needs only Python 3.11+. Creates ``.venv`` at the repository root (once), installs
django-trakt with its test extras, then runs pytest twice: on SQLite, and on the
PostgreSQL at ``TEST_DATABASE_URL`` (default ``postgres://postgres@127.0.0.1:5432/test``),
where the row-lock and multi-process tests mean something. When PostgreSQL does not
answer, a developer's run says so and stops after SQLite; a CI run (``CI=true``) fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "example_project"))
from run import ROOT, ensure_installed

DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/test"


def postgres_answers(python: Path, url: str) -> bool:
    probe = "import sys, psycopg; psycopg.connect(sys.argv[1], connect_timeout=5).close()"
    return subprocess.run([python, "-c", probe, url], capture_output=True).returncode == 0


def run_pytest(python: Path, label: str, env: dict[str, str], args: list[str]) -> int:
    print(f"\n=== test suite on {label} ===", flush=True)
    return subprocess.run([python, "-m", "pytest", *args], cwd=ROOT, env=env).returncode


def main(args: list[str]) -> int:
    python = ensure_installed("test")
    base_env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    status = run_pytest(python, "SQLite", base_env, args)

    postgres_url = os.environ.get("TEST_DATABASE_URL", DEFAULT_POSTGRES_URL)
    if postgres_answers(python, postgres_url):
        status = run_pytest(python, "PostgreSQL", {**base_env, "DATABASE_URL": postgres_url}, args) or status
    elif os.environ.get("CI"):
        print(f"PostgreSQL does not answer at {postgres_url}: CI must run the PostgreSQL suite.", flush=True)
        status = status or 1
    else:
        print(f"\nPostgreSQL does not answer at {postgres_url}: skipped the PostgreSQL run.", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
