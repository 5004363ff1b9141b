#!/usr/bin/env python3
"""Benchmark: how many Trakt links each durability scenario loses.

    python bench/durability.py [--postgres URL] [--links N]

Trakt's refresh tokens are single-use: a new pair that is not stored is a lost link (the
user must sign in with Trakt again). Each scenario runs in a process of its own, on a fresh
database (a SQLite file in a temporary directory; with ``--postgres``, a database of that
name, created and dropped around each scenario), against the local Trakt served on
loopback. It prints one line per scenario, ``<scenario>: <lost> lost / <tried> tried``, then
what happened in brackets.

A link is lost when, after the scenario, it is flagged (any status but ``active``), its
stored tokens do not decrypt, its stored access token is not valid at the local Trakt, the
local Trakt counted a rejected refresh token for its user, or its stored refresh token is
rejected by the local Trakt (checked last, by spending it).

Scenarios (SQLite; with ``--postgres`` all but the 2-link command run on PostgreSQL too):

- ``command-defaults-20x5`` / ``-2x5``: ``manage.py refresh_trakt_tokens`` with its default
  options, 5 runs in a row, each in a subprocess; Trakt's access tokens live an hour, so
  every run refreshes every link again (latency 10 ms).
- ``atomic-rollback``: ``with transaction.atomic(): client.get(...); raise`` refreshes and
  rolls back; then the next call of each user.
- ``atomic-requests-view``: the same as a view under ``ATOMIC_REQUESTS`` (a 500), then the
  user's next page. ``-concurrent``: the user's other request (another thread) calls Trakt
  while the failing view still works on after its refresh, holding the row.
- ``page-render-slow-refresh``: ``{% trakt_watchlist %}`` (``TRAKT_PAGE_TIMEOUT`` 3 s) with
  an expired token while Trakt's token endpoint answers in 3.5 s.
- ``site-fault-*``: a site configuration fault, the command, the fault fixed, the command
  again (on SQLite with ``--concurrency 1``, so that the command's own SQLite behaviour,
  measured above, does not mix in).
- ``disconnect-during-refresh`` (PostgreSQL only): an unlink while the refresh is at Trakt;
  counts the pairs still live at Trakt afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CALLBACK_URL = "http://testserver/accounts/trakt/login/callback/"
SITE_DOMAIN = "testserver"
PAGE = "{% load trakt %}{% trakt_watchlist user as items %}{{ items|length }}"
HOUR = 3600
LATENCY = 0.01
SLOW_TOKEN_ANSWER = 3.5
#: Seconds the failing view of the concurrent ATOMIC_REQUESTS scenario works on after its refresh.
VIEW_WORK_AFTER_REFRESH = 1.0
SUBPROCESS_TIMEOUT = 120
#: The URLs of the ATOMIC_REQUESTS scenario (this module is its ROOT_URLCONF there).
urlpatterns: list[Any] = []

#: The site configuration faults (see break_site(); fix_site() undoes any of them).
SITE_FAULTS = [
    "wrong-secret-401",
    "invalid-client-400",
    "rejected-redirect-uri-setting",
    "rejected-redirect-uri-site-domain",
    "disabled-app-403",
    "placeholder-site",
    "missing-site",
]


# -- inside a scenario's process -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(database_url: str) -> Any:
    """The local Trakt on loopback, then Django on ``database_url`` (migrated, Site "testserver")."""
    from django_trakt.testing import TraktEmulator

    port = free_port()
    os.environ.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=database_url,
        TRAKT_TEST_SERVER_URL=f"http://127.0.0.1:{port}",
    )
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.sites.models import Site
    from django.core.management import call_command

    trakt = TraktEmulator()
    # Only the site's real callback is registered: a refresh that sends another is refused.
    trakt.add_app(
        settings.TRAKT_CLIENT_ID, settings.TRAKT_CLIENT_SECRET, name="Bench site", redirect_uris=[CALLBACK_URL]
    )
    trakt.server = trakt.serve(port=port)
    call_command("migrate", verbosity=0)
    Site.objects.update_or_create(pk=settings.SITE_ID, defaults={"domain": SITE_DOMAIN, "name": "Bench site"})
    Site.objects.clear_cache()
    return trakt


def seed(trakt: Any, count: int, prefix: str = "link") -> list[tuple[str, int]]:
    """``count`` users linked to Trakt with tokens Trakt issued, every link expired: [(username, token pk)]."""
    from allauth.socialaccount.models import SocialAccount
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from django_trakt.internal.api.tokens import grant_from_response
    from django_trakt.models import TraktToken

    links = []
    for n in range(count):
        username = f"{prefix}{n:02d}"
        trakt_user = trakt.add_user(username)
        user = get_user_model().objects.create_user(username, f"{username}@example.com", "pw")
        account = SocialAccount.objects.create(
            user=user,
            provider="trakt",
            uid=trakt_user.uuid,
            extra_data={"user": {"username": username, "ids": {"slug": trakt_user.slug, "uuid": trakt_user.uuid}}},
        )
        grant = grant_from_response(trakt.issue_tokens(trakt_user, settings.TRAKT_CLIENT_ID))
        token = TraktToken.objects.store_grant(account, grant)
        links.append((username, token.pk))
    TraktToken.objects.update(expires_at=timezone.now() - dt.timedelta(hours=1))
    return links


def join_background_threads(timeout: float = 30.0) -> None:
    """Let the app's own threads (on-demand refreshes, rescues of a rolled-back pair) finish."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and thread.name.startswith(("trakt-refresh-", "trakt-rescue-")):
            thread.join(max(0.0, deadline - time.monotonic()))


def audit(trakt: Any, links: list[tuple[str, int]]) -> dict[str, Any]:
    """Which links are lost, and why (see the module's docstring)."""
    from django.conf import settings
    from django.db import connection

    from django_trakt.models import TraktToken
    from django_trakt.testing.errors import OAuthError

    join_background_threads()
    connection.close()  # read what is committed, on a connection of its own
    reasons: dict[str, list[str]] = {}
    for username, pk in links:
        why = []
        row = TraktToken.objects.filter(pk=pk).first()
        refresh_value = None
        if row is None:
            why.append("row gone")
        else:
            if row.status != "active":
                why.append(f"status {row.status}")
            try:
                access_value, refresh_value = row.access_token, row.refresh_token
            except Exception as err:
                why.append(f"tokens unreadable ({type(err).__name__})")
            else:
                if not trakt.is_access_token_valid(access_value):
                    why.append("access token not valid at Trakt")
        rejected = trakt.refresh_count(user=username, accepted=False)
        if rejected:
            why.append(f"Trakt rejected {rejected} refresh(es)")
        if refresh_value:
            # Last, as it spends the stored refresh token: would Trakt accept it?
            body = {
                "grant_type": "refresh_token",
                "refresh_token": refresh_value,
                "client_id": settings.TRAKT_CLIENT_ID,
                "client_secret": settings.TRAKT_CLIENT_SECRET,
                "redirect_uri": CALLBACK_URL,
            }
            try:
                trakt.refresh(body)
            except OAuthError as err:
                why.append(f"stored refresh token rejected ({err.description or err.error})")
        elif row is not None and not any("unreadable" in reason for reason in why):
            why.append("no refresh token stored")
        if why:
            reasons[username] = why
    return {"lost": len(reasons), "tried": len(links), "why": summarize(reasons)}


def summarize(reasons: dict[str, list[str]]) -> dict[str, int]:
    """How many lost links have each reason (numbers in reasons folded: "Trakt rejected N ...")."""
    counts: dict[str, int] = {}
    for why in reasons.values():
        for reason in why:
            key = re.sub(r"\d+", "N", reason)
            counts[key] = counts.get(key, 0) + 1
    return counts


def scenario_command(trakt: Any, links_count: int, runs: int) -> dict[str, Any]:
    """``manage.py refresh_trakt_tokens`` (defaults), ``runs`` times, each in a subprocess."""
    from django.db import connection

    trakt.access_token_lifetime = HOUR  # shorter than the default 6h margin: due on every run
    links = seed(trakt, links_count)
    trakt.latency = LATENCY
    connection.close()
    env = {**os.environ}
    exits: list[int] = []
    counts: dict[str, list[int | None]] = {"refreshed": [], "need re-authorization": [], "failed": []}
    tracebacks = 0
    for _run in range(runs):
        result = subprocess.run(
            [sys.executable, "-m", "django", "refresh_trakt_tokens"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT,
        )
        exits.append(result.returncode)
        for outcome, per_run in counts.items():
            match = re.search(rf"(\d+) {outcome}", result.stdout + result.stderr)
            per_run.append(int(match[1]) if match else None)
        tracebacks += result.stderr.count("Traceback")
    trakt.latency = 0.0
    accepted = trakt.refresh_count()
    row = audit(trakt, links)
    row["details"] = {
        "exit codes": exits,
        **{f"{outcome} per run": per_run for outcome, per_run in counts.items()},
        "tracebacks": tracebacks,
        "refreshes Trakt accepted": accepted,
    }
    return row


class Rollback(Exception):
    pass


def scenario_atomic_rollback(trakt: Any, links_count: int) -> dict[str, Any]:
    """A refresh inside the caller's atomic block that then rolls back; then the user's next call."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from django_trakt.internal.links.client import TraktClient

    links = seed(trakt, links_count)
    first_calls: dict[str, int] = {}
    second_calls: dict[str, int] = {}
    for username, _pk in links:
        user = get_user_model().objects.get(username=username)
        try:
            with transaction.atomic():
                TraktClient.for_user(user).get("/users/settings")
                first_calls["ok"] = first_calls.get("ok", 0) + 1
                raise Rollback
        except Rollback:
            pass
        except Exception as err:
            # SQLite: a refresh inside the caller's transaction declines, sending nothing.
            first_calls[type(err).__name__] = first_calls.get(type(err).__name__, 0) + 1
        try:
            TraktClient.for_user(user).get("/users/settings")
            outcome = "ok"
        except Exception as err:
            outcome = type(err).__name__
        second_calls[outcome] = second_calls.get(outcome, 0) + 1
    join_background_threads()
    accepted = trakt.refresh_count()
    row = audit(trakt, links)
    row["details"] = {"call in the atomic block": first_calls, "second call": second_calls}
    row["details"]["refreshes Trakt accepted"] = accepted
    return row


class ViewFailed(Exception):
    pass


def view_settings_then_fail(request: Any) -> Any:
    """A view that calls Trakt (refreshing the expired token), then fails: its transaction rolls back."""
    from django_trakt.internal.links.client import TraktClient

    TraktClient.for_user(request.user).get("/users/settings")
    raise ViewFailed


def view_settings_then_work_then_fail(request: Any) -> Any:
    """As above, with more work (1 s) after the refresh: the row stays locked meanwhile."""
    from django_trakt.internal.links.client import TraktClient

    TraktClient.for_user(request.user).get("/users/settings")
    time.sleep(VIEW_WORK_AFTER_REFRESH)
    raise ViewFailed


def view_settings(request: Any) -> Any:
    from django.http import HttpResponse

    from django_trakt.internal.links.client import TraktClient

    return HttpResponse(TraktClient.for_user(request.user).get("/users/settings")["user"]["username"])


def scenario_atomic_requests_view(trakt: Any, links_count: int, concurrent: bool = False) -> dict[str, Any]:
    """Under ``ATOMIC_REQUESTS``: a view refreshes then raises (500); then the user's next page.

    ``concurrent``: the user's other request (another thread of the worker) calls Trakt while
    the failing view works on after its refresh, instead of after it.
    """
    from django.contrib.auth import get_user_model
    from django.db import connection, connections
    from django.test import Client, override_settings
    from django.urls import include, path

    global urlpatterns
    urlpatterns = [
        path("accounts/", include("allauth.urls")),  # the callback URL a refresh sends
        path("bench/fail/", view_settings_then_fail),
        path("bench/work-then-fail/", view_settings_then_work_then_fail),
        path("bench/settings/", view_settings),
    ]
    connections.settings["default"]["ATOMIC_REQUESTS"] = True
    connection.settings_dict["ATOMIC_REQUESTS"] = True
    links = seed(trakt, links_count)
    if concurrent:
        return atomic_requests_concurrent(trakt, links)
    statuses: dict[str, int] = {}
    with override_settings(ROOT_URLCONF=__name__):
        for username, _pk in links:
            client = Client(raise_request_exception=False)
            client.force_login(get_user_model().objects.get(username=username))
            failed = client.get("/bench/fail/").status_code
            after = client.get("/bench/settings/")
            wrong_user = after.status_code == 200 and after.content.decode() != username
            key = f"{failed} then {after.status_code}{' (wrong user)' if wrong_user else ''}"
            statuses[key] = statuses.get(key, 0) + 1
    join_background_threads()
    accepted = trakt.refresh_count()
    row = audit(trakt, links)
    row["details"] = {"responses": statuses, "refreshes Trakt accepted": accepted}
    return row


def atomic_requests_concurrent(trakt: Any, links: list[tuple[str, int]]) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.db import connections
    from django.test import Client, override_settings

    from django_trakt.internal.links.client import TraktClient

    failing: dict[str, int] = {}
    other: dict[str, int] = {}
    next_page: dict[str, int] = {}

    def count(counts: dict[str, int], key: str) -> None:
        counts[key] = counts.get(key, 0) + 1

    with override_settings(ROOT_URLCONF=__name__):
        for username, _pk in links:
            user = get_user_model().objects.get(username=username)

            def other_request(user: Any = user) -> None:
                time.sleep(VIEW_WORK_AFTER_REFRESH / 2)  # while the view works on after its refresh
                try:
                    TraktClient.for_user(user).get("/users/settings")
                    count(other, "ok")
                except Exception as err:
                    count(other, type(err).__name__)
                finally:
                    connections["default"].close()

            client = Client(raise_request_exception=False)
            client.force_login(user)
            concurrent = threading.Thread(target=other_request, name=f"bench-other-request-{username}")
            concurrent.start()
            count(failing, str(client.get("/bench/work-then-fail/").status_code))
            concurrent.join(timeout=30)
            join_background_threads()
            response = client.get("/bench/settings/")
            count(next_page, str(response.status_code))
    accepted = trakt.refresh_count()
    row = audit(trakt, links)
    row["details"] = {
        "failing view": failing,
        "concurrent request": other,
        "next page": next_page,
        "refreshes Trakt accepted": accepted,
    }
    return row


def scenario_page_render(trakt: Any, links_count: int) -> dict[str, Any]:
    """The watchlist tag on a page, expired token, Trakt's token endpoint answering in 3.5 s."""
    from django.contrib.auth import get_user_model
    from django.template import Context, Template

    links = seed(trakt, links_count)
    page = Template(PAGE)
    render_seconds, errors = [], 0
    for username, _pk in links:
        user = get_user_model().objects.get(username=username)
        trakt.slow_next("/oauth/token", SLOW_TOKEN_ANSWER)
        started = time.monotonic()
        try:
            page.render(Context({"user": user}))
        except Exception:
            errors += 1
        render_seconds.append(round(time.monotonic() - started, 2))
        join_background_threads()
        time.sleep(max(0.0, SLOW_TOKEN_ANSWER - (time.monotonic() - started)) + 0.1)  # Trakt's late answer
    row = audit(trakt, links)
    row["details"] = {"render seconds": render_seconds, "render errors": errors}
    return row


def break_site(trakt: Any, fault: str) -> Any:
    """Apply ``fault``; returns the settings override to disable at the fix, if any."""
    from django.conf import settings
    from django.contrib.sites.models import Site
    from django.test import override_settings

    provider = settings.SOCIALACCOUNT_PROVIDERS["trakt"]
    override = None
    if fault == "wrong-secret-401":
        override = override_settings(
            SOCIALACCOUNT_PROVIDERS={"trakt": {**provider, "APP": {**provider["APP"], "secret": "rotated"}}}
        )
    elif fault == "invalid-client-400":
        trakt.fail_next("/oauth/token", status=400, json={"error": "invalid_client"}, times=99)
    elif fault == "rejected-redirect-uri-setting":
        override = override_settings(
            SOCIALACCOUNT_PROVIDERS={"trakt": {**provider, "REDIRECT_URI": "https://elsewhere.test/callback/"}}
        )
    elif fault == "rejected-redirect-uri-site-domain":
        Site.objects.filter(pk=settings.SITE_ID).update(domain="elsewhere.test")
    elif fault == "disabled-app-403":
        trakt.disable_app(settings.TRAKT_CLIENT_ID)
    elif fault == "placeholder-site":
        Site.objects.filter(pk=settings.SITE_ID).update(domain="example.com")
    elif fault == "missing-site":
        Site.objects.all().delete()
    else:
        raise SystemExit(f"unknown fault {fault!r}")
    if override is not None:
        override.enable()
    Site.objects.clear_cache()
    return override


def fix_site(trakt: Any, override: Any) -> None:
    from django.conf import settings
    from django.contrib.sites.models import Site

    if override is not None:
        override.disable()
    trakt.clear_failures()
    trakt.disabled_apps.clear()
    Site.objects.update_or_create(pk=settings.SITE_ID, defaults={"domain": SITE_DOMAIN, "name": "Bench site"})
    Site.objects.clear_cache()


def run_command(options: list[str]) -> str:
    """``refresh_trakt_tokens`` in this process: its exit and first line of output, shortened."""
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    out, err = StringIO(), StringIO()
    try:
        call_command("refresh_trakt_tokens", *options, stdout=out, stderr=err)
    except CommandError as error:
        return f"exit {getattr(error, 'returncode', 1)}: {str(error).splitlines()[0][:100]}"
    except Exception as error:
        return f"crashed: {type(error).__name__}: {str(error)[:80]}"
    return f"exit 0: {out.getvalue().strip().splitlines()[-1][:100]}"


def scenario_site_fault(trakt: Any, links_count: int, fault: str, options: list[str]) -> dict[str, Any]:
    from django.db import connection

    links = seed(trakt, links_count)
    override = break_site(trakt, fault)
    tried_before = len(trakt.requests_to("/oauth/token"))
    broken = run_command(options)
    token_requests_while_broken = len(trakt.requests_to("/oauth/token")) - tried_before
    fix_site(trakt, override)
    connection.close()
    fixed = run_command(options)
    row = audit(trakt, links)
    row["details"] = {
        "while broken": broken,
        "token requests while broken": token_requests_while_broken,
        "after the fix": fixed,
    }
    return row


def scenario_disconnect(trakt: Any, links_count: int) -> dict[str, Any]:
    """An unlink while the link's refresh waits for Trakt's answer (1 s): any pair left live at Trakt?"""
    from allauth.socialaccount.models import SocialAccount
    from django.db import connections

    from django_trakt.internal.links.refresh import refresh_token
    from django_trakt.internal.links.revocation import unlink

    links = seed(trakt, links_count)
    live, outcomes = 0, {}
    for username, pk in links:
        trakt.slow_next("/oauth/token", 1.0)
        seen = len(trakt.requests_to("/oauth/token"))
        outcome: list[str] = []

        def refresh(pk: int = pk, outcome: list[str] = outcome) -> None:
            try:
                outcome.append(str(refresh_token(pk).outcome))
            except Exception as err:
                outcome.append(type(err).__name__)
            finally:
                connections["default"].close()

        refresher = threading.Thread(target=refresh, name=f"bench-refresh-{pk}")
        refresher.start()
        deadline = time.monotonic() + 5
        while len(trakt.requests_to("/oauth/token")) == seen and time.monotonic() < deadline:
            time.sleep(0.01)
        unlink(SocialAccount.objects.get(user__username=username))
        refresher.join(timeout=15)
        key = outcome[0] if outcome else "no outcome"
        outcomes[key] = outcomes.get(key, 0) + 1
        live += 1 if trakt.active_tokens(username) else 0
    join_background_threads()
    return {
        "lost": live,
        "tried": len(links),
        "unit": ("live pairs left", "disconnects"),
        "details": {"refresh": outcomes},
    }


def run_scenario(name: str, database_url: str, links: int, extra: list[str]) -> dict[str, Any]:
    trakt = start(database_url)
    try:
        if name == "command":
            return scenario_command(trakt, links, runs=int(extra[0]))
        if name == "atomic-rollback":
            return scenario_atomic_rollback(trakt, links)
        if name == "atomic-requests-view":
            return scenario_atomic_requests_view(trakt, links)
        if name == "atomic-requests-view-concurrent":
            return scenario_atomic_requests_view(trakt, links, concurrent=True)
        if name == "page-render":
            return scenario_page_render(trakt, links)
        if name == "site-fault":
            return scenario_site_fault(trakt, links, extra[0], extra[1:])
        if name == "disconnect":
            return scenario_disconnect(trakt, links)
        raise SystemExit(f"unknown scenario {name!r}")
    finally:
        trakt.server.stop()
        from django.db import connections

        connections.close_all()


# -- the orchestrating process ---------------------------------------------------------------------


class Database:
    """A fresh database for one scenario: a SQLite file in a temporary directory, or a PostgreSQL one."""

    def __init__(self, postgres_url: str | None) -> None:
        self.postgres_url = postgres_url
        self.directory: str | None = None

    def __enter__(self) -> str:
        if self.postgres_url is None:
            self.directory = tempfile.mkdtemp(prefix="bench-durability-")
            return f"sqlite:///{self.directory}/site.sqlite3"
        self._drop(create_again=True)
        return self.postgres_url

    def __exit__(self, *exc_info: Any) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
        else:
            self._drop()

    def _drop(self, *, create_again: bool = False) -> None:
        import psycopg

        base, name = str(self.postgres_url).rsplit("/", 1)
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if create_again:
                admin.execute(f'CREATE DATABASE "{name}"')


def scenarios(links: int, postgres: str | None) -> list[tuple[str, str | None, str, int, list[str]]]:
    """(label, PostgreSQL URL or None for SQLite, scenario, links, extra arguments)."""
    plan: list[tuple[str, str | None, str, int, list[str]]] = [
        (f"sqlite-command-defaults-{links}x5", None, "command", links, ["5"]),
        ("sqlite-command-defaults-2x5", None, "command", 2, ["5"]),
        (f"sqlite-atomic-rollback-{links}", None, "atomic-rollback", links, []),
        (f"sqlite-atomic-requests-view-{links}", None, "atomic-requests-view", links, []),
        ("sqlite-atomic-requests-view-concurrent-5", None, "atomic-requests-view-concurrent", 5, []),
        ("sqlite-page-render-slow-refresh-3", None, "page-render", 3, []),
    ]
    plan += [
        (f"sqlite-site-fault-{fault}-5", None, "site-fault", 5, [fault, "--concurrency", "1"]) for fault in SITE_FAULTS
    ]
    if postgres:
        plan += [
            (f"postgres-command-defaults-{links}x5", postgres, "command", links, ["5"]),
            (f"postgres-atomic-rollback-{links}", postgres, "atomic-rollback", links, []),
            (f"postgres-atomic-requests-view-{links}", postgres, "atomic-requests-view", links, []),
            ("postgres-atomic-requests-view-concurrent-5", postgres, "atomic-requests-view-concurrent", 5, []),
            ("postgres-page-render-slow-refresh-3", postgres, "page-render", 3, []),
        ]
        plan += [(f"postgres-site-fault-{fault}-5", postgres, "site-fault", 5, [fault]) for fault in SITE_FAULTS]
        plan.append(("postgres-disconnect-during-refresh-5", postgres, "disconnect", 5, []))
    return plan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", metavar="URL", help="also run on PostgreSQL (a database of this name is made)")
    parser.add_argument("--links", type=int, default=20, help="links per scenario where not fixed (default 20)")
    parser.add_argument("--only", help="run only the scenarios whose label contains this")
    parser.add_argument("--scenario", help=argparse.SUPPRESS)  # internal: [name, database, links, extra] as JSON
    args = parser.parse_args()
    # This tree's django_trakt, in this process and the scenarios' (not whichever is installed).
    sys.path.insert(0, str(ROOT))
    if args.scenario:
        import django_trakt

        name, database_url, links, extra = json.loads(args.scenario)
        row = run_scenario(name, database_url, links, extra)
        row["code"] = str(Path(django_trakt.__file__).parent)
        print(json.dumps(row))
        return 0

    import django_trakt

    print(f"code: {Path(django_trakt.__file__).parent}")
    started = time.monotonic()
    failed = 0
    for label, postgres, name, links, extra in scenarios(args.links, args.postgres):
        if args.only and args.only not in label:
            continue
        with Database(postgres) as database_url:
            run = subprocess.run(
                [sys.executable, __file__, "--scenario", json.dumps([name, database_url, links, extra])],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=SUBPROCESS_TIMEOUT * 3,
            )
        try:
            row = json.loads(run.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            failed += 1
            print(f"{label}: the scenario failed (exit {run.returncode})\n{run.stdout}\n{run.stderr}")
            continue
        if row["code"] != str(Path(django_trakt.__file__).parent):
            raise SystemExit(f"{label} ran the code in {row['code']}")
        lost_unit, tried_unit = row.get("unit", ("lost", "tried"))
        details = {**({"why": row["why"]} if row.get("why") else {}), **row["details"]}
        shown = "; ".join(f"{key}: {value}" for key, value in details.items())
        print(f"{label}: {row['lost']} {lost_unit} / {row['tried']} {tried_unit}  [{shown}]")
        sys.stdout.flush()
    print(f"total {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
