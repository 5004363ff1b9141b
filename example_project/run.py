#!/usr/bin/env python3
"""Set up everything and start the example site against a local Trakt.

    python3 example_project/run.py

Needs only Python 3.11+. It creates ``.venv`` at the repository root (once), installs
django-trakt with its example extras into it, migrates the SQLite database, starts the
local Trakt of ``django_trakt.testing`` on http://127.0.0.1:8765 with a demo user, and
serves the site on http://127.0.0.1:8000. Ctrl-C stops both. On the first run it creates
the superuser ``admin`` (password ``local-demo-admin``) for /admin/.

``LOCAL_TRAKT_PORT`` and ``EXAMPLE_SITE_ADDR`` (host:port) move the two servers; when a
port is taken it says so and exits with status 1.

With ``TRAKT_CLIENT_ID`` / ``TRAKT_CLIENT_SECRET`` set it uses the real Trakt instead
and starts no local one.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
EXAMPLE = ROOT / "example_project"
SITE = os.environ.get("EXAMPLE_SITE_ADDR", "127.0.0.1:8000")
LOCAL_TRAKT_PORT = os.environ.get("LOCAL_TRAKT_PORT", "8765")
LOCAL_TRAKT_START_TIMEOUT = 15.0  # seconds for the local Trakt to listen


def port_in_use(host: str, port: int) -> bool:
    """Whether binding ``host:port`` fails, as runserver's or the local Trakt's own bind would."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        if os.name == "nt":
            # Windows' SO_REUSEADDR would let us bind over a listener: ask for exclusivity instead.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        else:
            # Like both servers do, so that a port left in TIME_WAIT by the last run is not "in use".
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError:
            return True
    return False


def busy_ports(local_trakt: bool) -> list[str]:
    """One line per port that is taken, saying what needs it and how to move it."""
    problems = []
    site_host, site_port = SITE.rsplit(":", 1)
    if local_trakt and port_in_use("127.0.0.1", int(LOCAL_TRAKT_PORT)):
        problems.append(
            f"Port {LOCAL_TRAKT_PORT} is in use (the local Trakt): stop what uses it or set LOCAL_TRAKT_PORT"
        )
    if port_in_use(site_host, int(site_port)):
        problems.append(f"Port {site_port} is in use (the example site): stop what uses it or set EXAMPLE_SITE_ADDR")
    return problems


def wait_listening(process: subprocess.Popen, port: int) -> bool:
    """Whether the local Trakt listens on ``port`` before it exits or the timeout passes."""
    deadline = time.monotonic() + LOCAL_TRAKT_START_TIMEOUT
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)  # polling for the port, nothing else
    return False


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
    use_local_trakt = not os.environ.get("TRAKT_CLIENT_ID")
    # Before installing anything: a taken port would otherwise surface as a traceback
    # of one server while the other one starts anyway.
    problems = busy_ports(use_local_trakt)
    for problem in problems:
        print(problem, file=sys.stderr, flush=True)
    if problems:
        return 1
    python = ensure_installed("example")
    manage = [str(python), str(EXAMPLE / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], check=True)
    subprocess.run([*manage, "example_admin", f"--site=http://{SITE}"], check=True)
    local_trakt = None
    if use_local_trakt:
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
            ],
            # Its "listening on" lines would repeat the address printed below; its errors
            # (stderr) still reach the terminal.
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        if not wait_listening(local_trakt, int(LOCAL_TRAKT_PORT)):
            # Its own error (if any) is already on the terminal above this line.
            print(f"The local Trakt did not start on port {LOCAL_TRAKT_PORT}.", file=sys.stderr, flush=True)
            if local_trakt.poll() is None:
                local_trakt.terminate()
                local_trakt.wait(timeout=10)
            return 1
        os.environ["LOCAL_TRAKT_URL"] = f"http://127.0.0.1:{LOCAL_TRAKT_PORT}"
        print(f"Local Trakt on http://127.0.0.1:{LOCAL_TRAKT_PORT} (approve as user 'demo')", flush=True)
    if not os.environ.get("TRAKT_TOKEN_KEYS"):
        # example/settings.py silences it on the same condition; runserver only counts it.
        print(
            "Silenced check django_trakt.W001 (TRAKT_TOKEN_KEYS is unset): the example encrypts the stored "
            "tokens with a key derived from SECRET_KEY. Set TRAKT_TOKEN_KEYS to use keys of your own.",
            flush=True,
        )
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
