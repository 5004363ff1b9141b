#!/usr/bin/env python3
"""Benchmark: the same due links refreshed by a naive loop, the command and RQ workers, side by side.

    python bench/refresh.py [--links 2000] [--latency 0.05] [--concurrency 16] [--workers 4]
                            [--worker-class simple fork] [--paths naive command workers]

Needs PostgreSQL (``BENCH_DATABASE_URL``, default
``postgres://postgres@127.0.0.1:5432/django_trakt_bench``; dropped and created again) and, for
the workers, Redis (``TRAKT_TEST_REDIS_URL``, default ``redis://127.0.0.1:6379/12``; flushed).
Each path starts from the same state: ``--links`` due links in a fresh database, and a fresh
local Trakt in its own process answering each request after ``--latency`` seconds, which
revokes a whole grant when a refresh token is presented twice (RFC 9700 §4.14.2).

The paths, each in processes of its own with the same settings (``bench/bench_settings.py``):

- ``naive``: one process, ``requests.post`` per token and one ``UPDATE`` (no lock, no claim:
  the floor a refresh cannot go below, not something to run);
- ``command``: ``manage.py refresh_trakt_tokens --concurrency C``;
- ``workers``: ``manage.py refresh_trakt_tokens --enqueue``, then N ``manage.py rqworker
  --burst`` processes of each ``--worker-class`` (``simple``: ``rq.worker.SimpleWorker``, the
  job in the worker's process; ``fork``: RQ's default ``Worker``, a work-horse forked per job).

Printed per path: tokens/s and its share of the ideal (parallel requests / latency: 1 for the
naive loop, C for the command, N for the workers; the workers' time runs from their start to
the last one's exit), CPU milliseconds per token of the client processes (every process the
path started, enqueueing and forked work-horses included, from ``getrusage(RUSAGE_CHILDREN)``;
in brackets without their start-up and exit, measured by running the same processes with no
due link first),
of the local Trakt (its ``/proc/<pid>/stat``) and of PostgreSQL (the backends serving the
bench database, from ``pg_stat_activity`` and ``/proc/<pid>/stat``, sampled every 50 ms), SQL
statements per token and the largest peak memory (``VmHWM``) of one process
(``bench/query_count.py`` in each process), whether each link was
refreshed exactly once (one accepted refresh per link, none rejected), refresh tokens
presented twice, and links lost (the stored access token no longer valid at the local Trakt,
or the stored refresh token not the one it issued last).

Where the CPU goes: ``BENCH_PROFILE="py-spy record --gil --nonblocking --format raw -o
/tmp/p{n}.txt --"`` runs each measured process under that command (``{n}``: its number). The
figures of such a run are the profiler's, not the path's.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
CLIENT_ID, CLIENT_SECRET = "test-client-id", "test-client-secret"
# Outside a request the refresh builds its redirect URI from the Site, which must not be
# the placeholder example.com (refused): seed() names it bench.test.
SITE_DOMAIN = "bench.test"
SITE_CALLBACK = f"http://{SITE_DOMAIN}/accounts/trakt/login/callback/"
WORKER_CLASSES = {"simple": "rq.worker.SimpleWorker", "fork": "rq.worker.Worker"}
TICKS = os.sysconf("SC_CLK_TCK")


# -- the local Trakt, in a process of its own ------------------------------------------------------


def serve_trakt(links: int, latency: float, pipe: Any) -> None:
    """Child process: a local Trakt with ``links`` users holding tokens; answers the parent's questions."""
    from django_trakt.testing import TraktEmulator

    trakt = TraktEmulator()
    trakt.add_app(CLIENT_ID, CLIENT_SECRET, redirect_uris=[SITE_CALLBACK])
    trakt.revoke_grant_on_reuse = True
    grants = []
    for n in range(links):
        user = trakt.add_user(f"bench{n}")
        grants.append((user.uuid, f"bench{n}", trakt.issue_tokens(user, CLIENT_ID)))
    trakt.latency = latency
    with trakt.serve() as server:
        pipe.send((server.url, grants))
        while True:
            question, argument = pipe.recv()
            if question == "cpu":
                pipe.send(time.process_time())
            elif question == "audit":
                pipe.send(audit(trakt, argument))
            else:
                return


def audit(trakt: Any, stored: dict[str, tuple[str, str]]) -> dict[str, int]:
    """What Trakt saw, and which links the stored pairs lost (``stored``: username -> access, refresh)."""
    with trakt.lock:
        events = list(trakt.refresh_events)
    presented = Counter(event.refresh_token for event in events)
    accepted = Counter(event.username for event in events if event.accepted)
    last_issued = {event.username: event.new_refresh_token for event in events if event.accepted}
    lost = 0
    for username, (access, refresh) in stored.items():
        if not trakt.is_access_token_valid(access) or last_issued.get(username, refresh) != refresh:
            lost += 1
    return {
        "attempts": len(events),
        "rejected": sum(1 for event in events if not event.accepted),
        "presented_twice": sum(1 for count in presented.values() if count > 1),
        "refreshed_once": sum(1 for username in stored if accepted[username] == 1),
        "lost": lost,
    }


# -- the database ---------------------------------------------------------------------------------


def setup_django(database_url: str, server_url: str) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="bench_settings", DATABASE_URL=database_url, TRAKT_TEST_SERVER_URL=server_url
    )
    for path in (str(ROOT), str(BENCH)):
        if path not in sys.path:
            sys.path.insert(0, path)
    import django

    django.setup()


def reset_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')


def seed(grants: list[Any]) -> None:
    """Write one due link per grant (the tables emptied first)."""
    from allauth.socialaccount.models import SocialAccount
    from django.contrib.auth import get_user_model
    from django.contrib.sites.models import Site
    from django.db import connection
    from django.utils import timezone

    from django_trakt.internal.api.tokens import grant_from_response
    from django_trakt.models import TraktToken

    User = get_user_model()
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {User._meta.db_table} CASCADE")
    Site.objects.update_or_create(pk=1, defaults={"domain": SITE_DOMAIN, "name": "bench"})
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
    connection.close()  # its backend is not one the measurement counts


def stored_pairs() -> dict[str, tuple[str, str]]:
    from django.db import connection

    from django_trakt.models import TraktToken

    pairs = {
        token.account.extra_data["user"]["username"]: (token.access_token, token.refresh_token)
        for token in TraktToken.objects.select_related("account")
    }
    connection.close()
    return pairs


class PostgresCPU(threading.Thread):
    """CPU seconds of the PostgreSQL backends serving one database, sampled until stopped.

    The postmaster's children are read from ``/proc`` every 20 ms; a backend serves the
    bench database when its process title names it. A backend's last slice before it exits
    is missed (at most 20 ms of it): short-lived connections are counted a little low.
    """

    def __init__(self, database_url: str) -> None:
        import psycopg

        super().__init__(daemon=True)
        self.name = database_url.rsplit("/", 1)[1]
        with psycopg.connect(database_url, autocommit=True) as probe:
            backend = probe.execute("SELECT pg_backend_pid()").fetchone()[0]
        self.postmaster = int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.done = threading.Event()
        self.sample(baseline=True)

    def sample(self, baseline: bool = False) -> None:
        try:
            children = Path(f"/proc/{self.postmaster}/task/{self.postmaster}/children").read_text().split()
        except OSError:
            return
        for pid in map(int, children):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if f" {self.name} ".encode() not in title:
                continue
            seconds = process_cpu(pid)
            if seconds is not None:
                # A backend already there at the start counts from then; a later one from 0.
                self.first.setdefault(pid, seconds if baseline else 0.0)
                self.last[pid] = seconds

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.sample()

    def seconds(self) -> float:
        self.done.set()
        self.join()
        self.sample()
        return sum(self.last[pid] - self.first[pid] for pid in self.last)


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a live process (``/proc/<pid>/stat``), None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- the paths ------------------------------------------------------------------------------------


def naive_loop() -> None:
    """``--naive-loop`` (a process of its own): one ``requests.post`` per token, one UPDATE."""
    import requests
    from django.utils import timezone

    from django_trakt.internal.api.tokens import grant_from_response
    from django_trakt.models import TraktToken

    server = os.environ["TRAKT_TEST_SERVER_URL"]
    headers = {"trakt-api-version": "2", "trakt-api-key": CLIENT_ID, "User-Agent": "bench"}
    for token in TraktToken.objects.filter(status=TraktToken.Status.ACTIVE).iterator(chunk_size=2000):
        body = {
            "grant_type": "refresh_token",
            "refresh_token": token.refresh_token,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uri": SITE_CALLBACK,
        }
        answer = requests.post(f"{server}/oauth/token", json=body, headers=headers, timeout=10)
        if answer.status_code != 200:
            raise SystemExit(f"naive loop: HTTP {answer.status_code}: {answer.text[:300]}")
        token.apply_grant(grant_from_response(answer.json()))
        TraktToken.objects.filter(pk=token.pk).update(
            access_token_encrypted=token.access_token_encrypted,
            refresh_token_encrypted=token.refresh_token_encrypted,
            expires_at=token.expires_at,
            last_refreshed_at=timezone.now(),
        )


def environment(database_url: str, server_url: str, query_dir: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(BENCH), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "DJANGO_SETTINGS_MODULE": "bench_settings",
        "DATABASE_URL": database_url,
        "TRAKT_TEST_SERVER_URL": server_url,
        "TRAKT_TEST_REDIS_URL": redis_url(),
        # The shared budget off: the bench measures the refresh, not a site's chosen rate.
        "TRAKT_TEST_REFRESH_RATE": "0",
        "BENCH_QUERY_DIR": query_dir,
    }


def redis_url() -> str:
    return os.environ.get("TRAKT_TEST_REDIS_URL", "redis://127.0.0.1:6379/12")


def run(command: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"bench: {' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")


def profiled(command: list[str], env: dict[str, str], n: int = 0) -> list[str]:
    """``command`` under ``$BENCH_PROFILE`` in the measured run (not the start-up run), ``{n}``
    replaced by the process's number, e.g. ``py-spy record --gil --format raw -o /tmp/p{n}.txt --``."""
    wrapper = os.environ.get("BENCH_PROFILE", "").split() if env.get("BENCH_QUERY_DIR") else []
    return [*(word.replace("{n}", str(n)) for word in wrapper), *command]


def run_path(path: str, option: Any, env: dict[str, str]) -> float:
    """Run one path to its end; the seconds it took (the workers: from their start)."""
    manage = [sys.executable, "-m", "django"]
    if path == "naive":
        started = time.perf_counter()
        run([sys.executable, __file__, "--naive-loop"], env)
        return time.perf_counter() - started
    if path == "command":
        started = time.perf_counter()
        run(profiled([*manage, "refresh_trakt_tokens", "--concurrency", str(option)], env), env)
        return time.perf_counter() - started
    workers, worker_class = option
    run([*manage, "refresh_trakt_tokens", "--enqueue"], env)
    worker = [*manage, "rqworker", "--burst", "--worker-class", WORKER_CLASSES[worker_class]]
    worker += ["--job-class", "django_tasks_rq.Job", "-v", "0", "default"]
    started = time.perf_counter()
    quiet = {} if os.environ.get("BENCH_SHOW_WORKERS") else {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    processes = [subprocess.Popen(profiled(worker, env, n), cwd=ROOT, env=env, **quiet) for n in range(workers)]
    elapsed = queue_drained(processes) - started
    codes = [process.wait() for process in processes]
    if any(codes):
        raise SystemExit(f"bench: workers exited {codes}")
    return elapsed


def queue_drained(processes: list[subprocess.Popen[bytes]]) -> float:
    """When the last job ended: the queue empty and no job running, twice in a row.

    Not the workers' exit: with RQ 3.0 and redis-py 8 a worker's teardown may wait up to 60 s
    for its pub/sub thread (docs/operations.md), after its work is done.
    """
    import redis
    from rq import Queue
    from rq.registry import StartedJobRegistry

    queue = Queue("default", connection=redis.Redis.from_url(redis_url()))
    started = StartedJobRegistry(queue=queue)
    quiet_polls = 0
    while quiet_polls < 2 and any(process.poll() is None for process in processes):
        quiet_polls = quiet_polls + 1 if not queue.count and not started.count else 0
        time.sleep(0.02)
    return time.perf_counter() - 0.02 * quiet_polls


def measure(path: str, option: Any, links: int, latency: float, database_url: str) -> dict[str, Any]:
    """Fresh local Trakt and links, then one path, measured."""
    import redis

    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    trakt = context.Process(target=serve_trakt, args=(links, latency, child))
    trakt.start()
    server_url, grants = parent.recv()
    store = redis.Redis.from_url(redis_url())
    query_dir = tempfile.mkdtemp(prefix="bench-queries-")
    try:
        env = environment(database_url, server_url, query_dir)
        # The same processes with nothing to do: their start-up and exit, paid once per run.
        seed([])
        store.flushdb()
        before = children_cpu()
        run_path(path, option, {**env, "BENCH_QUERY_DIR": ""})
        start_up = children_cpu() - before
        seed(grants)
        store.flushdb()
        parent.send(("cpu", None))
        trakt_before = parent.recv()
        postgres = PostgresCPU(database_url)
        postgres.start()
        clients_before = children_cpu()
        seconds = run_path(path, option, env)
        clients = children_cpu() - clients_before
        postgres_seconds = postgres.seconds()
        parent.send(("cpu", None))
        trakt_seconds = parent.recv() - trakt_before
        queries, peak_kb = __import__("query_count").total(Path(query_dir))
        failed_jobs = store.zcard("rq:failed:default")
        parent.send(("audit", stored_pairs()))
        seen = parent.recv()
    finally:
        parent.send(("done", None))
        trakt.join(timeout=30)
        shutil.rmtree(query_dir, ignore_errors=True)
        store.flushdb()
    if path == "naive":
        name, parallel = "naive loop (requests.post, one UPDATE)", 1
    elif path == "command":
        name, parallel = f"refresh_trakt_tokens --concurrency {option}", option
    else:
        name, parallel = f"--enqueue + {option[0]} RQ {WORKER_CLASSES[option[1]].rsplit('.', 1)[1]}s", option[0]
    per_token = 1000 / links
    return {
        "path": name,
        "tokens_s": links / seconds,
        "ideal": links / seconds / (parallel / latency),
        "client_ms": clients * per_token,
        "client_refresh_ms": (clients - start_up) * per_token,
        "trakt_ms": trakt_seconds * per_token,
        "postgres_ms": postgres_seconds * per_token,
        "queries": queries / links,
        "peak_mb": peak_kb / 1024,
        "once": seen["refreshed_once"] == links and seen["attempts"] == links and not failed_jobs,
        "twice": seen["presented_twice"],
        "lost": seen["lost"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--links", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16])
    parser.add_argument("--workers", type=int, nargs="+", default=[4])
    parser.add_argument("--worker-class", nargs="+", choices=sorted(WORKER_CLASSES), default=["simple"])
    paths = ["naive", "command", "workers"]
    parser.add_argument("--paths", nargs="+", choices=paths, default=paths)
    parser.add_argument("--naive-loop", action="store_true", help=argparse.SUPPRESS)  # internal
    args = parser.parse_args()
    database_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/django_trakt_bench")
    if args.naive_loop:
        setup_django(database_url, os.environ["TRAKT_TEST_SERVER_URL"])
        naive_loop()
        return 0
    reset_database(database_url)
    setup_django(database_url, "http://127.0.0.1:9")  # seeds only: the measured processes get the real URL
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    runs: list[tuple[str, Any]] = []
    for path in args.paths:
        if path == "naive":
            runs.append((path, None))
        elif path == "command":
            runs += [(path, concurrency) for concurrency in args.concurrency]
        else:
            runs += [(path, (n, kind)) for kind in args.worker_class for n in args.workers]
    print(
        f"{args.links} due links, the local Trakt answering in {args.latency * 1000:.0f} ms, PostgreSQL, "
        f"{os.cpu_count()} CPU cores; CPU in ms per token"
    )
    print(
        "| path | tokens/s | % of ideal | client CPU (start-up excluded) | local Trakt CPU | PostgreSQL CPU "
        "| queries/token | peak memory of a process | each refreshed once | presented twice | links lost |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    worst = 0
    for path, option in runs:
        row = measure(path, option, args.links, args.latency, database_url)
        print(
            f"| {row['path']} | {row['tokens_s']:.0f} | {row['ideal']:.0%} "
            f"| {row['client_ms']:.1f} ({row['client_refresh_ms']:.1f}) "
            f"| {row['trakt_ms']:.1f} | {row['postgres_ms']:.1f} | {row['queries']:.2f} | {row['peak_mb']:.0f} MB "
            f"| {row['once']} "
            f"| {row['twice']} | {row['lost']} |",
            flush=True,
        )
        if not row["once"] or row["twice"] or row["lost"]:
            worst = 1
    return worst


if __name__ == "__main__":
    sys.exit(main())
