#!/usr/bin/env python3
"""Set up everything and start the example site against a local Trakt.

    python3 example_project/run.py

Needs only Python 3.11+. It creates ``.venv`` at the repository root (once), installs
django-trakt with its example extras into it, migrates the SQLite database, starts the
local Trakt of ``django_trakt.testing`` on http://127.0.0.1:8765 with a demo user, and
serves the site on http://127.0.0.1:8000. Ctrl-C stops both.

With ``TRAKT_CLIENT_ID`` / ``TRAKT_CLIENT_SECRET`` set it uses the real Trakt instead
and starts no local one.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
EXAMPLE = ROOT / "example_project"
SITE = os.environ.get("EXAMPLE_SITE_ADDR", "127.0.0.1:8000")
LOCAL_TRAKT_PORT = os.environ.get("LOCAL_TRAKT_PORT", "8765")


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_installed(extras: str) -> Path:
    """Create the virtualenv and install the project with ``extras``, only when needed."""
    python = venv_python()
    if not python.exists():
        print(f"Creating {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / f".installed-{extras}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        print(f"Installing django-trakt[{extras}] ...", flush=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "-e", f"{ROOT}[{extras}]"], check=True)
        stamp.write_text(digest)
    return python


def main() -> int:
    python = ensure_installed("example")
    manage = [str(python), str(EXAMPLE / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], check=True)
    local_trakt = None
    if not os.environ.get("TRAKT_CLIENT_ID"):
        port = SITE.rsplit(":", 1)[1]
        callback = "/accounts/trakt/login/callback/"
        local_trakt = subprocess.Popen(
            [
                str(python), "-m", "django_trakt.testing",
                "--port", LOCAL_TRAKT_PORT,
                "--client-id", "example-local-client-id",
                "--client-secret", "example-local-client-secret",
                "--app-name", "django-trakt example",
                # Trakt matches the redirect URI exactly: register both spellings of loopback.
                "--redirect-uri", f"http://127.0.0.1:{port}{callback}",
                "--redirect-uri", f"http://localhost:{port}{callback}",
                "--demo-user", "demo",
            ]
        )  # fmt: skip
        os.environ["LOCAL_TRAKT_URL"] = f"http://127.0.0.1:{LOCAL_TRAKT_PORT}"
        print(f"Local Trakt on http://127.0.0.1:{LOCAL_TRAKT_PORT} (approve as user 'demo')", flush=True)
    print(f"Example site on http://{SITE}/", flush=True)
    try:
        return subprocess.run([*manage, "runserver", SITE]).returncode
    except KeyboardInterrupt:
        return 0
    finally:
        if local_trakt is not None:
            local_trakt.terminate()
            local_trakt.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
