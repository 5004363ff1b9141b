"""The background tasks on a real queue: RQ on this machine's Redis, run by RQ worker processes.

The workers are separate processes (``manage.py rqworker`` of django-rq, with the job class
of django-tasks-rq), started with the settings of tests/rq_settings.py against the test
database and the local Trakt served on a loopback port. They run in burst mode: they work
until the queue is empty, then exit, so a test waits for its workers to finish, never for
a time. Row locks need PostgreSQL, and so do several processes sharing one test database:
these run in the PostgreSQL pass (``python3 tests/run.py``; CI fails without PostgreSQL).

Redis: the tests' own database (``TRAKT_TEST_REDIS_URL``, default db 12), flushed before and
after each test, and scanned after each test for any token in plain text.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from django.db import connection
from django.template import Context, Template
from django.urls import reverse

from django_trakt.conf import LIBRARY_USER_AGENT
from django_trakt.internal.pages import images
from django_trakt.models import PendingGrant, TraktToken
from tests import rq_image_host
from tests.conftest import link_user, make_emulator

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("TRAKT_TEST_REDIS_URL", "redis://127.0.0.1:6379/12")
EXPIRED = -dt.timedelta(minutes=1)

redis = pytest.importorskip("redis")

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="worker processes share the database: PostgreSQL"),
]


def database_url() -> str:
    params = connection.settings_dict
    host = params["HOST"] or "127.0.0.1"
    port = params["PORT"] or "5432"
    user = params["USER"] or "postgres"
    # The test database (test_<NAME>), which this process's connection uses.
    return f"postgres://{user}@{host}:{port}/{params['NAME']}"


@pytest.fixture
def store():
    """The tests' Redis database, empty before and after; the test fails on a plain token left in it."""
    connection_ = redis.Redis.from_url(REDIS_URL)
    try:
        connection_.ping()
    except redis.exceptions.ConnectionError:
        if os.environ.get("CI"):
            raise
        pytest.skip("Redis does not answer on 127.0.0.1:6379 (.ci/run starts it)")
    connection_.flushdb()
    yield connection_
    connection_.flushdb()


@pytest.fixture
def served(store, settings, tmp_path):
    """The local Trakt on a loopback port, and this process set up as the workers are (tests/rq_settings.py)."""
    from tests import rq_settings

    emulator = make_emulator()
    with emulator.serve() as server:
        provider = {**settings.SOCIALACCOUNT_PROVIDERS["trakt"]}
        provider.update({"AUTH_URL": server.url, "API_URL": server.url, "WEB_URL": server.url})
        settings.SOCIALACCOUNT_PROVIDERS = {"trakt": provider}
        for name in ("RQ_QUEUES", "TASKS", "TRAKT_TASK_BACKEND", "CACHES", "TRAKT_IMAGE_HOSTS"):
            setattr(settings, name, getattr(rq_settings, name))
        settings.TRAKT_IMAGE_RESOLVER = rq_image_host.public_dns
        settings.MEDIA_ROOT = str(tmp_path / "media")
        yield Queue(emulator, server.url, store, tmp_path)


class Queue:
    """The local Trakt, the Redis store, and worker processes run against them."""

    def __init__(self, trakt, server_url: str, store, tmp_path: Path) -> None:
        self.trakt, self.server_url, self.store, self.tmp_path = trakt, server_url, store, tmp_path
        self.output: list[str] = []

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.rq_settings",
            "DATABASE_URL": database_url(),
            "TRAKT_TEST_SERVER_URL": self.server_url,
            "TRAKT_TEST_REDIS_URL": REDIS_URL,
            "TRAKT_TEST_MEDIA_ROOT": str(self.tmp_path / "media"),
            **extra,
        }

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "django", *args], cwd=ROOT, env=self.env(**env), capture_output=True, text=True
        )
        self.output.append(done.stdout + done.stderr)
        return done

    def start(self, name: str, worker_class: str = "rq.worker.SimpleWorker", **env: str) -> subprocess.Popen[str]:
        """One RQ worker process in burst mode (by default as the README starts it)."""
        return subprocess.Popen(
            [
                *[sys.executable, "-m", "django", "rqworker", "--burst", "--name", name],
                *["--worker-class", worker_class, "--job-class", "django_tasks_rq.Job", "default"],
            ],
            cwd=ROOT,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def work(self, workers: int = 1, **env: str) -> list[str]:
        """Run ``workers`` RQ worker processes at once until the queue is empty; their names."""
        names = [f"trakt-test-{index}" for index in range(workers)]
        processes = [self.start(name, **env) for name in names]
        for process in processes:
            out, _ = process.communicate(timeout=300)
            self.output.append(out)
            assert process.returncode == 0, out
        return names

    def jobs(self) -> list:
        """Every RQ job in the store (queued, finished or failed)."""
        from rq.job import Job

        ids = [key.decode().rsplit(":", 1)[1] for key in self.store.scan_iter("rq:job:*") if key.count(b":") == 2]
        return [Job.fetch(job_id, connection=self.store) for job_id in ids]

    def failed(self) -> list:
        return [job for job in self.jobs() if job.get_status() == "failed"]

    def assert_holds_no_token(self, secrets: list[str]) -> None:
        """No Redis value (job payloads decompressed), no task argument and no worker output holds a token."""
        assert secrets
        for key in self.store.scan_iter("*"):
            values = _values(self.store, key)
            for value in [key, *values]:
                for text in (value, _inflated(value)):
                    assert not any(secret.encode() in text for secret in secrets), key
        for job in self.jobs():
            assert not any(secret in repr((job.args, job.kwargs)) for secret in secrets)
        for output in self.output:
            assert not any(secret in output for secret in secrets)


def _values(store, key: bytes) -> list[bytes]:
    """What a Redis key holds, whatever its type."""
    kind = store.type(key).decode()
    if kind == "string":
        return [store.get(key)]
    if kind == "hash":
        return list(store.hvals(key))
    if kind == "list":
        return store.lrange(key, 0, -1)
    if kind == "set":
        return list(store.smembers(key))
    if kind == "zset":
        return store.zrange(key, 0, -1)
    return [repr(store.dump(key)).encode()]


def _inflated(value: bytes) -> bytes:
    try:
        return zlib.decompress(value)
    except zlib.error:
        return b""


def tokens_of(*tokens: TraktToken) -> list[str]:
    return [value for token in tokens for value in (token.access_token, token.refresh_token)]


# -- the refresh fan-out ------------------------------------------------------------------------------


def test_fan_out_on_three_workers_refreshes_every_due_link_exactly_once(served):
    trakt = served.trakt
    due = [link_user(trakt, expires_in=EXPIRED)[1] for _ in range(24)]
    not_due = [link_user(trakt)[1] for _ in range(3)]
    spent = {token.pk: token.refresh_token for token in due}

    # Three tasks of 8 links (the default, LINKS_PER_TASK, would put the 24 in one).
    fan_out = "from django_trakt.tasks import enqueue_due; print(enqueue_due(links_per_task=8))"
    command = served.run("shell", "-c", fan_out)
    assert command.returncode == 0, command.stderr
    assert command.stdout.strip().splitlines()[-1] == "24"
    batches = [job.args[0] for job in served.jobs()]
    assert sorted(len(batch) for batch in batches) == [8, 8, 8]
    assert sorted(pk for batch in batches for pk in batch) == sorted(spent)

    # Each task in flight for 4 s or more: long past the workers' start-up, so the three
    # workers started together each take one (a quick first worker would take them all).
    trakt.latency = 0.5
    workers = served.work(3)
    trakt.latency = 0.0
    assert not served.failed()
    for token in due:
        assert trakt.refresh_count(spent[token.pk]) == 1
        token.refresh_from_db()
        assert token.status == TraktToken.Status.ACTIVE and token.refresh_token != spent[token.pk]
        assert trakt.is_access_token_valid(token.access_token)
        assert token.expires_at > dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    assert trakt.refresh_count(accepted=False) == 0  # no refresh token was ever presented twice
    for token in not_due:
        assert trakt.refresh_count(token.refresh_token, accepted=None) == 0
    # The work was shared: more than one worker ran refreshes.
    assert len({job.worker_name for job in served.jobs()} & set(workers)) > 1
    served.assert_holds_no_token(tokens_of(*due, *not_due) + list(spent.values()))


def test_fan_out_enqueued_twice_still_refreshes_each_link_once(served):
    trakt = served.trakt
    due = [link_user(trakt, expires_in=EXPIRED)[1] for _ in range(8)]
    spent = {token.pk: token.refresh_token for token in due}
    for _ in range(2):  # two schedulers, or a scheduler that fired twice
        enqueued = served.run("refresh_trakt_tokens", "--enqueue").stdout.strip()
        assert enqueued == "8 due links enqueued for refresh on 'default'."
    served.work(3)
    assert not served.failed()
    assert all(trakt.refresh_count(spent[token.pk]) == 1 for token in due)
    assert trakt.refresh_count(accepted=False) == 0


STOPS = {
    # systemd KillMode=mixed (or a terminal's Ctrl+C reaching the worker alone): the worker only.
    "simple-worker": ("rq.worker.SimpleWorker", lambda worker: worker.send_signal(signal.SIGTERM)),
    # KillMode=control-group: every process of the unit, the forked work-horse included (RQ
    # gives the horse a session of its own, so a process group's signal would miss it).
    "forking-worker-and-horse": ("rq.worker.Worker", lambda worker: _sigterm_with_children(worker.pid)),
}


def _sigterm_with_children(pid: int) -> None:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert children, "the worker has forked no work-horse"
    for process in [pid, *map(int, children)]:
        os.kill(process, signal.SIGTERM)


@pytest.mark.parametrize("stop", STOPS)
def test_sigterm_mid_batch_stops_after_the_refresh_in_flight_and_loses_no_link(served, stop):
    worker_class, send_sigterm = STOPS[stop]
    trakt = served.trakt
    trakt.revoke_grant_on_reuse = True  # a refresh token presented twice would kill its grant
    due = [link_user(trakt, expires_in=EXPIRED)[1] for _ in range(12)]
    spent = {token.pk: token.refresh_token for token in due}
    assert (
        served.run("refresh_trakt_tokens", "--enqueue").stdout.strip()
        == "12 due links enqueued for refresh on 'default'."
    )
    (batch,) = served.jobs()
    trakt.latency = 0.3  # each refresh is in flight long enough to be interrupted

    worker = served.start("trakt-test-stopped", worker_class)
    deadline = time.monotonic() + 60
    while not trakt.requests_to("/oauth/token"):  # the first refresh has left
        assert worker.poll() is None and time.monotonic() < deadline, worker.communicate()[0]
        time.sleep(0.01)
    send_sigterm(worker)  # a deploy
    out, _ = worker.communicate(timeout=120)
    served.output.append(out)
    assert worker.returncode == 0, out

    # The refresh in flight was stored; the rest of the batch went back on the queue, one task.
    batch.refresh()
    outcome = batch.return_value()
    assert outcome["refreshed"] >= 1 and outcome["refreshed"] + outcome.get("requeued", 0) == 12, (outcome, out)
    assert outcome.get("requeued"), (outcome, out)
    (rest,) = [job for job in served.jobs() if job.get_status() == "queued"]
    assert rest.func_name == "django_trakt.tasks.refresh_links" and len(rest.args[0]) == outcome["requeued"]
    assert trakt.refresh_count(accepted=None) == outcome["refreshed"]

    trakt.latency = 0.0
    served.work()
    assert not served.failed()
    for token in due:
        assert trakt.refresh_count(spent[token.pk], accepted=None) == 1  # presented once, accepted
        token.refresh_from_db()
        assert token.status == TraktToken.Status.ACTIVE and not token.refresh_claimed_by
        assert trakt.is_access_token_valid(token.access_token)  # not lost
    assert trakt.refresh_count(accepted=False) == 0
    served.assert_holds_no_token(tokens_of(*due) + list(spent.values()))


# -- pages --------------------------------------------------------------------------------------------


WATCHLIST = Template("{% load trakt %}{% trakt_watchlist user type='movies' %}")


def test_stale_watchlist_renders_without_trakt_and_a_worker_revalidates_it(served):
    from django.core.cache import cache

    from django_trakt.internal.pages.watchlist import _activities_key, cache_key

    trakt = served.trakt
    user, token = link_user(trakt)
    trakt.add_watchlist_item(user.username, "movie", title="Heat", year=1995)
    trakt.reset_requests()
    page = WATCHLIST.render(Context({"user": user}))
    assert "being fetched from Trakt" in page and not trakt.requests
    served.work()
    assert "Heat" in WATCHLIST.render(Context({"user": user}))

    # The copy grows old (past TRAKT_WATCHLIST_TTL) while the list changes at Trakt.
    # (The worker's clock is the real one: the copy and the user's last_activities are aged instead.)
    for key in (cache_key(f"user:{user.pk}", "movies", "rank", "asc"), _activities_key(f"user:{user.pk}")):
        cache.set(key, {**cache.get(key), "at": 0}, 3600)
    trakt.add_watchlist_item(user.username, "movie", title="Alien", year=1979)
    trakt.reset_requests()
    pages = [WATCHLIST.render(Context({"user": user})) for _ in range(10)]
    assert all("Heat" in page and "Alien" not in page for page in pages)
    assert not trakt.requests
    queued = [job for job in served.jobs() if job.get_status() == "queued"]
    assert [list(job.args) for job in queued] == [[user.pk, None, "movies", "rank", 10]]

    served.work()
    assert not served.failed()
    (request,) = trakt.requests_to("/sync/watchlist/movies/rank/asc")
    assert request.headers["Authorization"] == f"Bearer {token.access_token}"
    assert "Alien" in WATCHLIST.render(Context({"user": user}))
    served.assert_holds_no_token(tokens_of(token))


def test_image_requested_before_it_is_stored_is_fetched_by_a_worker(served, client):
    from allauth.socialaccount.models import SocialAccount

    user, token = link_user(served.trakt)
    account = SocialAccount.objects.get(user=user)
    account.extra_data["user"]["images"] = {"avatar": {"full": rq_image_host.IMAGE_URL}}
    account.save()
    url = reverse("django_trakt:avatar", args=[account.pk, images.avatar_key(account.pk, rq_image_host.IMAGE_URL)])

    first, second = client.get(url), client.get(url)
    assert first.content == second.content == images.default_image(images.AVATAR)
    stores = [job for job in served.jobs() if job.func_name == "django_trakt.tasks.store_image"]
    assert [list(job.args) for job in stores] == [[rq_image_host.IMAGE_URL, "avatar"]]

    served.work(TRAKT_TEST_IMAGE_HOST="1")
    assert not served.failed()
    assert [agent.decode() for agent in served.store.lrange(rq_image_host.REQUESTS_KEY, 0, -1)] == [LIBRARY_USER_AGENT]
    served_image = client.get(url)
    assert served_image.content == rq_image_host.PICTURE and served_image["Content-Type"] == "image/png"
    served.assert_holds_no_token(tokens_of(token))


def test_disconnect_answers_without_trakt_and_a_worker_revokes(served, client):
    trakt = served.trakt
    user, token = link_user(trakt)
    access = token.access_token
    client.force_login(user)
    response = client.post(reverse("socialaccount_connections"), {"account": token.account_id})
    assert response.status_code == 302
    assert not trakt.requests_to("/oauth/revoke")  # the response did not wait for Trakt
    assert trakt.is_access_token_valid(access)
    (job,) = served.jobs()
    assert job.func_name == "django_trakt.tasks.revoke_grant"
    assert PendingGrant.objects.filter(pk=job.args[0]).exists()

    served.work()
    assert not served.failed()
    (revoke,) = trakt.requests_to("/oauth/revoke")
    assert revoke.json == {"token": access, "client_id": "test-client-id", "client_secret": "test-client-secret"}
    assert not trakt.is_access_token_valid(access)
    assert not PendingGrant.objects.exists()
    served.assert_holds_no_token([*tokens_of(token), token.access_token_encrypted])
