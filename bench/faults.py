#!/usr/bin/env python3
"""Benchmark: links lost and refresh tokens presented twice under production faults (PostgreSQL).

    python bench/faults.py --postgres URL [--links N] [--times N] [--only NAME]

Each scenario runs in a process of its own on a fresh PostgreSQL database, against the local
Trakt served on loopback (50 ms per request) with ``revoke_grant_on_reuse`` on: a refresh
token presented twice revokes the whole grant, as RFC 9700 §4.14.2 recommends. Trakt's
access tokens live an hour, so every run of ``refresh_trakt_tokens`` (a subprocess,
``--concurrency 4``) refreshes every link.

- ``sigterm``: SIGTERM ``--times`` times, each 0.3-1.5 s into a run, then a run to the end.
- ``sigkill``: the same with SIGKILL; then every claim is made to lapse (as time would) and a
  run checks those links. Goal: lost <= in flight at the kills, each flagged or held.
- ``connection-kills``: ``pg_terminate_backend`` on the command's sessions every 0.1-1 s for
  a whole run, then a clean run.
- ``idle-timeout-20ms``: ``idle_in_transaction_session_timeout = 20ms`` on the database.
- ``trickle``: one token answer trickled a byte every 0.5 s; the run must end within its
  deadline (TIMEOUT 10 s + the store deadline).

A link is lost as in ``bench/durability.py`` (its audit); "presented twice" counts refresh
tokens Trakt received more than once, before the audit spends the stored ones.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import durability as base  # bench/durability.py: start, seed, audit, Database

ROOT = base.ROOT
# The scenario processes import the test settings (tests.settings) as bench/durability.py does.
sys.path.insert(0, str(ROOT))
LATENCY = 0.05


def command(*options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "django", "refresh_trakt_tokens", "--concurrency", "4", *options],
        cwd=ROOT,
        env={**os.environ},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def presented_twice(trakt: Any) -> int:
    with trakt.lock:
        seen = Counter(event.refresh_token for event in trakt.refresh_events)
    return sum(1 for count in seen.values() if count > 1)


def standing_claims() -> int:
    from django.db import connection

    from django_trakt.models import TraktToken

    connection.close()
    return TraktToken.objects.exclude(refresh_claimed_by="").count()


def lapse_claims() -> None:
    import datetime as dt

    from django.utils import timezone

    from django_trakt.models import TraktToken

    TraktToken.objects.exclude(refresh_claimed_by="").update(
        refresh_claim_until=timezone.now() - dt.timedelta(seconds=1)
    )


def finish(trakt: Any, links: list[tuple[str, int]], details: dict[str, Any]) -> dict[str, Any]:
    from django_trakt.models import TraktToken

    details["presented twice"] = presented_twice(trakt)
    details["statuses"] = dict(Counter(TraktToken.objects.values_list("status", flat=True)))
    details["held (claim kept, token not sent again)"] = TraktToken.objects.exclude(refresh_claimed_by="").count()
    trakt.latency = 0.0
    row = base.audit(trakt, links)
    row["details"] = details
    return row


def scenario_signals(trakt: Any, count: int, times: int, signum: int) -> dict[str, Any]:
    links = base.seed(trakt, count)
    trakt.latency = LATENCY
    exits, drains, in_flight = [], [], []
    for _ in range(times):
        process = command()
        time.sleep(random.uniform(0.3, 1.5) + 1.0)  # noqa: S311  (startup, then into the run)
        process.send_signal(signum)
        sent = time.monotonic()
        process.communicate(timeout=60)
        drains.append(round(time.monotonic() - sent, 1))
        exits.append(process.returncode)
        in_flight.append(standing_claims())
    details: dict[str, Any] = {"exit codes": exits, "exit after the signal (s)": drains, "claims left": in_flight}
    if signum == signal.SIGKILL:
        lapse_claims()
    final = command()
    details["last run"] = final.communicate(timeout=120)[0].strip().splitlines()[-1][:100]
    return finish(trakt, links, details)


def scenario_connection_kills(trakt: Any, count: int) -> dict[str, Any]:
    import psycopg
    from django.conf import settings

    links = base.seed(trakt, count)
    trakt.latency = LATENCY
    name = settings.DATABASES["default"]["NAME"]
    url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    stop, kills = threading.Event(), [0]

    def killer() -> None:
        with psycopg.connect(url, autocommit=True) as admin:
            while not stop.wait(random.uniform(0.1, 1.0)):  # noqa: S311
                rows = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    [name],
                ).fetchall()
                kills[0] += len(rows)

    thread = threading.Thread(target=killer)
    thread.start()
    started = time.monotonic()
    run = command()
    output = run.communicate(timeout=300)[0]
    stop.set()
    thread.join()
    from django.db import connection

    connection.close()  # this process's own session was killed too
    details: dict[str, Any] = {
        "sessions killed": kills[0],
        "run (s)": round(time.monotonic() - started, 1),
        "exit": run.returncode,
        "tracebacks": output.count("Traceback"),
        "summary": output.strip().splitlines()[-1][:140],
    }
    # Answers received but not stored: a refresh Trakt accepted whose new token is not stored.
    from django_trakt.models import TraktToken

    stored = {row.refresh_token for row in TraktToken.objects.all()}
    with trakt.lock:
        details["answers received, pair not stored"] = sum(
            1
            for event in trakt.refresh_events
            if event.accepted and event.new_refresh_token not in stored and not _spent_later(trakt, event)
        )
    lapse_claims()
    details["clean run"] = command().communicate(timeout=120)[0].strip().splitlines()[-1][:100]
    return finish(trakt, links, details)


def _spent_later(trakt: Any, event: Any) -> bool:
    return any(other.refresh_token == event.new_refresh_token for other in trakt.refresh_events)


def scenario_idle_timeout(trakt: Any, count: int) -> dict[str, Any]:
    from django.conf import settings
    from django.db import connection

    links = base.seed(trakt, count)
    trakt.latency = LATENCY
    with connection.cursor() as cursor:
        name = settings.DATABASES["default"]["NAME"]
        cursor.execute(f"ALTER DATABASE \"{name}\" SET idle_in_transaction_session_timeout = '20ms'")
    connection.close()
    output = command().communicate(timeout=120)[0]
    return finish(trakt, links, {"summary": output.strip().splitlines()[-1][:120]})


def scenario_trickle(trakt: Any, count: int) -> dict[str, Any]:
    links = base.seed(trakt, count)
    trakt.trickle_next("/oauth/token", 0.5)
    started = time.monotonic()
    output = command().communicate(timeout=300)[0]
    details = {"run (s)": round(time.monotonic() - started, 1), "summary": output.strip().splitlines()[-1][:120]}
    return finish(trakt, links, details)


def run_scenario(name: str, database_url: str, links: int, times: int) -> dict[str, Any]:
    trakt = base.start(database_url)
    trakt.revoke_grant_on_reuse = True
    trakt.access_token_lifetime = base.HOUR
    try:
        if name == "sigterm":
            return scenario_signals(trakt, links, times, signal.SIGTERM)
        if name == "sigkill":
            return scenario_signals(trakt, links, times, signal.SIGKILL)
        if name == "connection-kills":
            return scenario_connection_kills(trakt, links)
        if name == "idle-timeout-20ms":
            return scenario_idle_timeout(trakt, links)
        if name == "trickle":
            return scenario_trickle(trakt, 5)
        raise SystemExit(f"unknown scenario {name!r}")
    finally:
        trakt.server.stop()
        from django.db import connections

        connections.close_all()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", metavar="URL", help="required: a database of this name is made")
    parser.add_argument("--links", type=int, default=300)
    parser.add_argument("--times", type=int, default=5, help="signals per signal scenario (default 5)")
    parser.add_argument("--only", help="run only the scenarios whose name contains this")
    parser.add_argument("--scenario", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scenario:
        name, database_url, links, times = json.loads(args.scenario)
        print(json.dumps(run_scenario(name, database_url, links, times)))
        return 0
    if not args.postgres:
        parser.error("--postgres is required")
    failed = 0
    for name in ("sigterm", "sigkill", "connection-kills", "idle-timeout-20ms", "trickle"):
        if args.only and args.only not in name:
            continue
        started = time.monotonic()
        with base.Database(args.postgres) as database_url:
            run = subprocess.run(
                [sys.executable, __file__, "--scenario", json.dumps([name, database_url, args.links, args.times])],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=1200,
            )
        try:
            row = json.loads(run.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            failed += 1
            print(f"{name}: the scenario failed (exit {run.returncode})\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}")
            continue
        details = {**({"why": row["why"]} if row.get("why") else {}), **row["details"]}
        shown = "; ".join(f"{key}: {value}" for key, value in details.items())
        print(f"{name}: {row['lost']} lost / {row['tried']}  [{shown}]  ({time.monotonic() - started:.0f} s)")
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
