#!/usr/bin/env python3
"""Benchmark: refreshing 1,000 and 10,000 due links against the local Trakt.

    python bench/refresh.py [--sizes 1000 10000] [--concurrency 8] [--latency 0.05]
    python bench/refresh.py --workers 4 [--sizes 10000] [--latency 0.05]

Needs PostgreSQL (``BENCH_DATABASE_URL``, default
``postgres://postgres@127.0.0.1:5432/django_trakt_bench``; the database is dropped and
created again). The local Trakt runs in its own process with ``--latency`` seconds
added to every request. Each size runs in a fresh process, so that peak memory
(``ru_maxrss``) belongs to that size alone. Prints, per size: throughput, its ratio to
the ideal (concurrency / latency), database queries per token, peak memory.

With ``--workers N`` the links are refreshed by the background tasks instead: the
command's ``--enqueue`` puts one task per due link on RQ (Redis at 127.0.0.1:6379, the
tests' database 12, flushed), and N RQ worker processes (``rqworker --burst``, one job at
a time each) refresh them. Prints the throughput from the workers' start to the last
one's exit, its ratio to the ideal (N x 1 / latency), and whether each link was refreshed
exactly once.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLIENT_ID, CLIENT_SECRET = "test-client-id", "test-client-secret"
# Outside a request the refresh builds its redirect URI from the Site, which must not be
# the placeholder example.com (refused): seed() names it bench.test.
SITE_DOMAIN = "bench.test"
SITE_CALLBACK = f"http://{SITE_DOMAIN}/accounts/trakt/login/callback/"


def serve_trakt(links: int, latency: float, pipe: multiprocessing.connection.Connection) -> None:
    """Child process: a local Trakt with ``links`` users holding tokens, served on loopback."""
    from django_trakt.testing import TraktEmulator

    trakt = TraktEmulator()
    trakt.add_app(CLIENT_ID, CLIENT_SECRET, redirect_uris=[SITE_CALLBACK])
    grants = []
    for n in range(links):
        user = trakt.add_user(f"bench{n}")
        grants.append((user.uuid, f"bench{n}", trakt.issue_tokens(user, CLIENT_ID)))
    trakt.latency = latency
    with trakt.serve() as server:
        pipe.send((server.url, grants))
        pipe.recv()  # until the parent is done
        pipe.send(trakt.refresh_count(accepted=None))


def seed(links: int, latency: float, database_url: str) -> tuple[Any, Any]:
    """Start the local Trakt and write ``links`` due links to the database (this process)."""
    parent, child = multiprocessing.get_context("spawn").Pipe()
    trakt_process = multiprocessing.get_context("spawn").Process(target=serve_trakt, args=(links, latency, child))
    trakt_process.start()
    server_url, grants = parent.recv()
    setup_django(database_url, server_url)
    from allauth.socialaccount.models import SocialAccount
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone

    from django_trakt.internal.api.tokens import grant_from_response
    from django_trakt.models import TraktToken

    call_command("migrate", verbosity=0)
    from django.contrib.sites.models import Site

    Site.objects.update_or_create(pk=1, defaults={"domain": SITE_DOMAIN, "name": "bench"})
    User = get_user_model()
    users = User.objects.bulk_create([User(username=name, email=f"{name}@example.com") for _uuid, name, _g in grants])
    accounts = SocialAccount.objects.bulk_create(
        [
            SocialAccount(user=user, provider="trakt", uid=uuid, extra_data={"user": {"username": name}})
            for user, (uuid, name, _g) in zip(users, grants, strict=True)
        ]
    )
    tokens = []
    for account, (_uuid, _name, data) in zip(accounts, grants, strict=True):
        token = TraktToken(account=account)
        token.apply_grant(grant_from_response(data))
        token.expires_at = timezone.now()  # every link due
        tokens.append(token)
    TraktToken.objects.bulk_create(tokens, batch_size=1000)
    return (parent, trakt_process), server_url


def setup_django(database_url: str, server_url: str) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="tests.settings", DATABASE_URL=database_url, TRAKT_TEST_SERVER_URL=server_url
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def measure(links: int, concurrency: int, database_url: str, server_url: str) -> dict[str, float]:
    """In a fresh process (so that ru_maxrss is the refresh run's alone): refresh all."""
    setup_django(database_url, server_url)
    from django.db import connection
    from django.db.backends.signals import connection_created

    from django_trakt.internal.links.batch import refresh_due_tokens

    queries = 0
    lock = threading.Lock()

    def count(execute, sql, params, many, context):
        nonlocal queries
        with lock:
            queries += 1
        return execute(sql, params, many, context)

    def instrument(sender, connection, **kwargs):
        connection.execute_wrappers.append(count)

    connection_created.connect(instrument, weak=False)
    connection.close()  # the next query opens an instrumented connection
    started = time.perf_counter()
    report = refresh_due_tokens(concurrency=concurrency)
    elapsed = time.perf_counter() - started
    if report.refreshed != links or report.failed:
        raise SystemExit(f"bench: {dict(report.counts)} for {links} links")
    return {
        "links": links,
        "seconds": round(elapsed, 2),
        "throughput": round(links / elapsed, 1),
        "queries_per_token": round(queries / links, 3),
        "peak_rss_mb": round(peak_rss_kb() / 1024, 1),
    }


def peak_rss_kb() -> int:
    """This process's peak resident memory (``VmHWM``).

    Not ``getrusage().ru_maxrss``: Linux carries that over ``exec`` from the parent,
    so a child of the (large, seeding) bench process would report the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reset_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')


def measure_workers(size: int, workers: int, latency: float, database_url: str, server_url: str) -> dict[str, Any]:
    """Enqueue every due link, then time ``workers`` RQ worker processes refreshing them all."""
    import redis

    redis_url = os.environ.get("TRAKT_TEST_REDIS_URL", "redis://127.0.0.1:6379/12")
    store = redis.Redis.from_url(redis_url)
    store.flushdb()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.rq_settings",
        "DATABASE_URL": database_url,
        "TRAKT_TEST_SERVER_URL": server_url,
        "TRAKT_TEST_REDIS_URL": redis_url,
        # The shared budget off: the benchmark measures the workers, not the site's chosen rate.
        "TRAKT_TEST_REFRESH_RATE": "0",
    }
    manage = [sys.executable, "-m", "django"]
    enqueue = subprocess.run([*manage, "refresh_trakt_tokens", "--enqueue"], cwd=ROOT, env=env, capture_output=True)
    if enqueue.returncode:
        raise SystemExit(enqueue.stderr.decode())
    worker = [*manage, "rqworker", "--burst", "--worker-class", "rq.worker.SimpleWorker"]
    worker += ["--job-class", "django_tasks_rq.Job", "-v", "0", "default"]
    started = time.perf_counter()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    processes = [subprocess.Popen(worker, cwd=ROOT, env=env, **quiet) for _ in range(workers)]
    codes = [process.wait() for process in processes]
    elapsed = time.perf_counter() - started
    failed = store.zcard("rq:failed:default")
    store.flushdb()
    if any(codes) or failed:
        raise SystemExit(f"bench: workers exited {codes}, {failed} failed jobs")
    return {"seconds": round(elapsed, 2), "throughput": round(size / elapsed, 1), "enqueued": enqueue.stdout.decode()}


def run_workers(size: int, workers: int, latency: float, database_url: str) -> int:
    reset_database(database_url)
    (pipe, trakt_process), server_url = seed(size, latency, database_url)
    try:
        row = measure_workers(size, workers, latency, database_url, server_url)
    finally:
        pipe.send("done")
        attempts = pipe.recv()
        trakt_process.join(timeout=30)
    from django_trakt.models import TraktToken

    due_left = TraktToken.objects.filter(last_refreshed_at__isnull=True).count()
    ideal = workers / latency
    once = attempts == size and due_left == 0
    print(
        f"{size} links, {workers} RQ worker processes (1 job at a time each), {latency * 1000:.0f} ms per Trakt "
        f"request: {row['seconds']} s, {row['throughput']} tokens/s = {row['throughput'] / ideal:.0%} of ideal "
        f"{ideal:.0f}/s; {attempts} refresh requests for {size} links, each refreshed once: {once}"
    )
    return 0 if once else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--workers", type=int, help="refresh through the background tasks on N RQ workers")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size
    args = parser.parse_args()
    database_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/django_trakt_bench")
    if args.workers:
        sizes = args.sizes if args.sizes != [1000, 10000] else [10000]
        return max(run_workers(size, args.workers, args.latency, database_url) for size in sizes)
    if args.one:
        print(json.dumps(measure(args.one, args.concurrency, database_url, os.environ["TRAKT_TEST_SERVER_URL"])))
        return 0
    if len(args.sizes) > 1:
        # Each size in its own process: Django (and the seeded rows) are set up once per process.
        peaks = []
        for size in args.sizes:
            options = ["--concurrency", str(args.concurrency), "--latency", str(args.latency)]
            run = subprocess.run(
                [sys.executable, __file__, "--sizes", str(size), *options], capture_output=True, text=True
            )
            if run.returncode:
                print(run.stdout, run.stderr, file=sys.stderr)
                return run.returncode
            print(run.stdout.strip())
            peaks.append((size, float(run.stdout.rsplit("peak RSS of the refreshing process ", 1)[1].split()[0])))
        (small, small_peak), (large, large_peak) = peaks[0], peaks[-1]
        print(f"peak memory growth from {small} to {large} links: {large_peak - small_peak:.1f} MB")
        return 0
    size = args.sizes[0]
    reset_database(database_url)
    (pipe, trakt_process), _server_url = seed(size, args.latency, database_url)
    command = [sys.executable, __file__, "--one", str(size), "--concurrency", str(args.concurrency)]
    output = subprocess.run(command, capture_output=True, text=True, env=os.environ)
    pipe.send("done")
    attempts = pipe.recv()
    trakt_process.join(timeout=30)
    if output.returncode:
        print(output.stdout, output.stderr, file=sys.stderr)
        return output.returncode
    row = json.loads(output.stdout.strip().splitlines()[-1])
    if attempts != size:
        print(f"bench: Trakt saw {attempts} refresh requests for {size} links", file=sys.stderr)
        return 1
    ideal = args.concurrency / args.latency
    print(
        f"{size} links, concurrency {args.concurrency}, {args.latency * 1000:.0f} ms per Trakt request: "
        f"{row['seconds']} s, {row['throughput']} tokens/s = {row['throughput'] / ideal:.0%} of ideal {ideal:.0f}/s, "
        f"{row['queries_per_token']} queries/token, peak RSS of the refreshing process {row['peak_rss_mb']} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
