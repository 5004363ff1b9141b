"""The README's Installation section, followed literally, gives a working site.

The blocks are read from README.md itself (the ``install: PATH MODE`` HTML comment just
before each fence), applied to a fresh ``django-admin startproject mysite``, and the
shell steps run as written (all but ``export`` and ``runserver``). A script then signs a
user in against the local Trakt answering on Trakt's real hosts, in-process: no network.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import django
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MARKER = re.compile(
    r"^<!-- install: (?P<path>\S+) (?P<mode>append|create|run)(?: django<(?P<below>\d+\.\d+))? -->\n"
    r"```[\w-]*\n(?P<body>.*?)^```$",
    re.M | re.S,
)
TIMEOUT = 120


def installation_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Installation\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def install_blocks() -> list[tuple[str, str, str]]:
    """The blocks for the installed Django (a block marked ``django<X.Y`` only below X.Y)."""
    blocks = []
    for match in MARKER.finditer(installation_section()):
        below = match["below"]
        if below and django.VERSION[:2] >= tuple(int(part) for part in below.split(".")):
            continue
        blocks.append((match["path"], match["mode"], match["body"]))
    return blocks


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{shlex.join(args)} exited {result.returncode}:\n{output}"
    assert "Traceback" not in output, f"{shlex.join(args)}:\n{output}"
    return result


SIGN_IN_SCRIPT = textwrap.dedent(
    """
    import os
    import re
    import sys

    import django

    django.setup()

    from django.core import mail
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django.urls import reverse

    from django_trakt.models import TraktToken
    from django_trakt.testing import TraktEmulator

    from django.conf import settings

    # Django's default mail backend (SMTP to localhost:25) would fail the signup's mail.
    mailers = getattr(settings, "MAILERS", None)  # Django 6.1+
    backend = mailers["default"]["BACKEND"] if mailers else settings.EMAIL_BACKEND
    assert backend != "django.core.mail.backends.smtp.EmailBackend", backend
    allowed_hosts = list(settings.ALLOWED_HOSTS)
    setup_test_environment(debug=settings.DEBUG)  # mail goes to mail.outbox instead of the console
    settings.ALLOWED_HOSTS = allowed_hosts  # as runserver has them: DEBUG and none allow localhost
    redirect_uri = sys.argv[1]

    emulator = TraktEmulator()  # Trakt's real hosts, answered in-process
    emulator.add_app(
        os.environ["TRAKT_CLIENT_ID"], os.environ["TRAKT_CLIENT_SECRET"], redirect_uris=[redirect_uri]
    )
    emulator.add_user("Wanda", name="Wanda Watcher")
    emulator.add_watchlist_item("Wanda", "movie", title="Arrival", year=2016)

    with emulator.mock():
        client = Client(HTTP_HOST="localhost:8000")  # the host runserver serves (README step 4)
        home = client.get("/")
        assert home.status_code == 200, home.status_code
        assert "Sign in with Trakt" in home.content.decode()

        start = client.post(reverse("trakt_login"))
        assert start.status_code == 302, start.status_code
        callback = emulator.authorize(start["Location"], username="Wanda")
        assert callback.startswith(redirect_uri), (callback, redirect_uri)
        response = client.get(callback)
        assert response.status_code == 302 and response["Location"] == reverse("socialaccount_signup"), response

        page = client.get(reverse("socialaccount_signup"))
        assert page.status_code == 200, page.status_code
        username = page.context["form"].initial.get("username", "")
        done = client.post(reverse("socialaccount_signup"), {"email": "wanda@example.com", "username": username})
        assert done.status_code == 302, done.status_code
        print("after signup:", done["Location"])

        # ACCOUNT_EMAIL_VERIFICATION = "mandatory": confirm the address from the mail.
        assert len(mail.outbox) == 1, mail.outbox
        link = re.search(r"https?://\\S+/accounts/confirm-email/\\S+", mail.outbox[0].body)
        assert link, mail.outbox[0].body
        assert client.get(link.group()).status_code == 200
        confirmed = client.post(link.group())
        assert confirmed.status_code == 302, confirmed.status_code
        print("after confirmation:", confirmed["Location"])

        # allauth's default: no sign-in on confirmation; "Sign in with Trakt" once more.
        again = client.post(reverse("trakt_login"))
        back = client.get(emulator.authorize(again["Location"], username="Wanda"))
        assert back.status_code == 302 and back["Location"] == "/", (back, back.get("Location"))

        home = client.get("/")
        html = home.content.decode()
        assert home.status_code == 200, home.status_code
        assert "Signed in as Wanda" in html, html
        assert 'class="trakt-avatar"' in html and 'alt="Wanda"' in html, html
        assert 'class="trakt-watchlist"' in html and "Arrival" in html, html
        assert not re.search(r'<img[^>]+src="https?://', html), html  # images are served by the site
        assert TraktToken.objects.get().status == TraktToken.Status.ACTIVE

        before = emulator.refresh_count()
        try:
            call_command("refresh_trakt_tokens", "--force", verbosity=2)
        except SystemExit as exit:
            assert not exit.code, f"refresh_trakt_tokens exited {exit.code}"
        assert emulator.refresh_count() == before + 1, emulator.refresh_count()
    print("SIGNED IN AND REFRESHED")
    """
)


def test_readme_installation_gives_a_working_site(tmp_path):
    blocks = install_blocks()
    modes = {(path, mode) for path, mode, _ in blocks}
    assert {
        ("mysite/settings.py", "append"),
        ("mysite/urls.py", "create"),
        ("templates/home.html", "create"),
        ("shell", "run"),
    } <= modes, modes

    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "TRAKT_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="mysite.settings",
        TRAKT_CLIENT_ID="readme-client-id",
        TRAKT_CLIENT_SECRET="readme-client-secret",
        TRAKT_TOKEN_KEYS=Fernet.generate_key().decode(),
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        PYTHONDONTWRITEBYTECODE="1",
    )
    run([sys.executable, "-m", "django", "startproject", "mysite"], tmp_path, env)
    project = tmp_path / "mysite"

    shell_lines: list[str] = []
    for path, mode, body in blocks:
        if mode == "run":
            shell_lines += [line for line in body.splitlines() if line.strip() and not line.startswith("#")]
            continue
        target = project / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode == "append":
            assert target.exists(), f"{path}: startproject made no such file to append to"
            target.write_text(target.read_text(encoding="utf-8") + "\n\n" + body, encoding="utf-8")
        else:
            target.write_text(body, encoding="utf-8")

    # Every variable the settings read is one the shell steps export.
    exported = {name for line in shell_lines if line.startswith("export ") for name in re.findall(r"(\w+)=", line)}
    settings_text = "".join(b for _, m, b in blocks if m == "append")
    settings_read = set(re.findall(r'os\.environ(?:\.get\(|\[)"(\w+)"', settings_text))
    assert settings_read and settings_read <= exported, (settings_read, exported)
    # Read with .get: a new shell without the exports gets the checks' words, not a KeyError.
    assert "os.environ[" not in settings_text
    unexported = {key: value for key, value in env.items() if key not in exported}
    bare = subprocess.run(
        [sys.executable, "manage.py", "migrate"],
        cwd=project,
        env=unexported,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert bare.returncode != 0 and "Traceback" not in bare.stderr, bare.stdout + bare.stderr
    for words in ("django_trakt.E001", "django_trakt.E002", "export TRAKT_CLIENT_ID and TRAKT_CLIENT_SECRET"):
        assert words in bare.stderr, bare.stderr

    check = run([sys.executable, "manage.py", "check"], project, env)
    print(check.stdout, check.stderr)

    redirect_uri = ""
    commands = [line for line in shell_lines if not line.startswith("export ")]
    assert any(line.startswith("python manage.py runserver") for line in commands), commands
    for line in commands:
        args = shlex.split(line)
        assert args[:2] == ["python", "manage.py"], f"an unexpected shell step: {line}"
        if args[2] == "runserver":
            continue
        result = run([sys.executable, *args[1:]], project, env)
        if args[2] == "trakt_redirect_uri":
            redirect_uri = result.stdout.strip()
    assert redirect_uri == "http://localhost:8000/accounts/trakt/login/callback/", redirect_uri
    # The URI step 2 tells people to register is the one the command prints.
    assert f"`{redirect_uri}`" in installation_section()

    script = project / "sign_in.py"  # next to manage.py, so "mysite" imports
    script.write_text(SIGN_IN_SCRIPT, encoding="utf-8")
    flow = run([sys.executable, str(script), redirect_uri], project, env)
    print(flow.stdout, flow.stderr)
    assert "SIGNED IN AND REFRESHED" in flow.stdout
    assert "1 refreshed" in flow.stdout + flow.stderr, flow.stdout + flow.stderr
