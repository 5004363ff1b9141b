"""The background tasks (django_trakt.tasks), fast: in process, on the Tasks framework's own backends.

The dummy backend keeps what was enqueued without running it, so a test sees exactly which
tasks (and which arguments) a page, a disconnect or the command enqueued, then plays the
worker by running them. The real queue, with RQ worker processes, is tests/test_tasks_rq.py.
"""

from __future__ import annotations

import datetime as dt
import logging
from io import StringIO

import pytest
import responses
from allauth.socialaccount.models import SocialAccount
from django.core.management import call_command
from django.core.management.base import CommandError
from django.template import Context, Template
from django.urls import reverse
from django.utils import timezone

from django_trakt import checks, signals, task_queue, tasks
from django_trakt.internal.core import dispatch
from django_trakt.internal.links import shared_rate
from django_trakt.internal.pages import images
from django_trakt.models import PendingGrant, TraktToken
from django_trakt.testing.images import avatar_png

pytestmark = pytest.mark.django_db

EXPIRED = -dt.timedelta(minutes=1)
FRAMEWORK = task_queue.tasks_module.__name__
DUMMY = f"{FRAMEWORK}.backends.dummy.DummyBackend"
IMMEDIATE = f"{FRAMEWORK}.backends.immediate.ImmediateBackend"
LOCAL_CACHE = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


@pytest.fixture
def queue(settings):
    """The dummy backend as TRAKT_TASK_BACKEND: what was enqueued, not run."""
    settings.TASKS = {"default": {"BACKEND": IMMEDIATE}, "trakt": {"BACKEND": DUMMY}}
    settings.TRAKT_TASK_BACKEND = "trakt"
    backend = task_queue.backend()
    backend.clear()
    yield backend
    backend.clear()


def run_queued(queue) -> list:
    """Play the worker: run every task enqueued so far (not those they enqueue), in order."""
    results, outcomes = list(queue.results), []
    queue.clear()
    for result in results:
        outcomes.append(result.task.call(*result.args, **result.kwargs))
    return outcomes


def secrets(*tokens: TraktToken) -> list[str]:
    return [value for token in tokens for value in (token.access_token, token.refresh_token)]


def assert_no_secret_in_args(queue, forbidden: list[str]) -> None:
    for result in queue.results:
        text = repr((result.args, result.kwargs))
        assert not any(secret in text for secret in forbidden)


WATCHLIST = Template("{% load trakt %}{% trakt_watchlist user type='movies' %}")


def render(user) -> str:
    return WATCHLIST.render(Context({"user": user}))


# -- no backend: as before ----------------------------------------------------------------------------


def test_without_a_task_backend_the_render_asks_trakt_itself(trakt, linked, settings):
    user, _token = linked()
    trakt.add_watchlist_item(user.username, "movie", title="Heat", year=1995)
    assert getattr(settings, "TRAKT_TASK_BACKEND", None) is None
    assert not dispatch.active()
    assert "Heat" in render(user)
    assert trakt.requests_to("/sync/watchlist/movies/rank/asc")


# -- watchlists ---------------------------------------------------------------------------------------


def test_stale_watchlist_is_shown_without_asking_trakt_and_revalidated_once(trakt, linked, queue, clock):
    user, token = linked()
    trakt.add_watchlist_item(user.username, "movie", title="Heat", year=1995)
    # The first copy: nothing is cached yet, so the worker fetches it.
    assert "being fetched from Trakt" in render(user)
    assert not trakt.requests
    run_queued(queue)
    assert "Heat" in render(user)
    trakt.add_watchlist_item(user.username, "movie", title="Alien", year=1979)
    clock.advance(301)  # past TRAKT_WATCHLIST_TTL
    trakt.reset_requests()

    pages = [render(user) for _ in range(5)]
    assert all("Heat" in page and "Alien" not in page for page in pages)
    assert all("not answering" not in page for page in pages)  # not shown as a failure
    assert not trakt.requests  # no render asked Trakt
    (revalidation,) = queue.results
    assert revalidation.task.name == "revalidate_watchlist"
    assert revalidation.args == [user.pk, None, "movies", "rank", 10]
    assert_no_secret_in_args(queue, secrets(token))

    run_queued(queue)
    assert trakt.requests_to("/sync/last_activities")
    assert "Alien" in render(user)
    assert not queue.results  # the new copy is fresh: nothing more to enqueue


def test_public_watchlist_task_carries_the_trakt_username(trakt, queue):
    trakt.add_user("Cinephile")
    trakt.add_watchlist_item("Cinephile", "movie", title="Heat", year=1995)
    page = Template("{% load trakt %}{% trakt_watchlist 'Cinephile' %}").render(Context({}))
    assert "being fetched from Trakt" in page
    (job,) = queue.results
    assert job.args == [None, "cinephile", "all", "rank", 10]
    assert run_queued(queue) == ["fetched"]
    assert "Heat" in Template("{% load trakt %}{% trakt_watchlist 'Cinephile' %}").render(Context({}))


def test_revalidation_run_twice_asks_trakt_once(trakt, linked, queue):
    user, _token = linked()
    trakt.add_watchlist_item(user.username, "movie", title="Heat", year=1995)
    render(user)
    (job,) = queue.results
    job.task.call(*job.args)
    job.task.call(*job.args)
    assert len(trakt.requests_to("/sync/watchlist/movies/rank/asc")) == 1


def test_revalidation_of_a_removed_user_does_nothing(trakt, queue):
    assert tasks.revalidate_watchlist.call(987654, None, "all", "rank", 10) == "no_user"
    assert not trakt.requests


def test_a_failing_queue_falls_back_to_the_in_process_fetch(trakt, linked, queue, monkeypatch, caplog):
    user, _token = linked()
    trakt.add_watchlist_item(user.username, "movie", title="Heat", year=1995)

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(type(queue), "enqueue", broker_down)
    with caplog.at_level(logging.ERROR, logger="django_trakt.tasks"):
        assert "Heat" in render(user)
    assert "Enqueuing the Trakt task revalidate_watchlist failed" in caplog.text


def test_with_the_cache_down_pages_ask_trakt_nothing_and_enqueue_nothing(trakt, linked, queue, settings):
    user, _token = linked()
    settings.CACHES = {"default": {"BACKEND": "tests.conftest.BrokenCache"}}
    assert "cannot be shown right now" in render(user)
    assert not trakt.requests and not queue.results


# -- images ------------------------------------------------------------------------------------------


@pytest.fixture
def avatar_host(web, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.TRAKT_IMAGE_HOSTS = [".trakt.test"]
    settings.TRAKT_IMAGE_RESOLVER = lambda host: ["93.184.216.34"]
    emulator, rsps = web
    picture = avatar_png("worker")
    rsps.add(responses.GET, "https://walter-r2.trakt.test/avatars/a.png", body=picture, content_type="image/png")
    return emulator, rsps, picture


def avatar_of(user, source: str) -> str:
    account = SocialAccount.objects.get(user=user, provider="trakt")
    account.extra_data["user"]["images"] = {"avatar": {"full": source}}
    account.save()
    return reverse("django_trakt:avatar", args=[account.pk, images.avatar_key(account.pk, source)])


def test_image_not_stored_serves_the_default_enqueues_once_then_the_real_one(avatar_host, client, queue):
    emulator, rsps, picture = avatar_host
    from tests.conftest import link_user

    user, _token = link_user(emulator)
    url = avatar_of(user, "https://walter-r2.trakt.test/avatars/a.png")
    first, second = client.get(url), client.get(url)
    default = images.default_image(images.AVATAR)
    assert first.content == default and second.content == default
    assert first["Cache-Control"] == "public, max-age=10"  # asked again soon, not kept for 15 minutes
    assert not [call for call in rsps.calls if "walter-r2" in call.request.url]
    (job,) = queue.results
    assert (job.task.name, job.args) == ("store_image", ["https://walter-r2.trakt.test/avatars/a.png", "avatar"])

    assert run_queued(queue) == [True]
    served = client.get(url)
    assert served.content == picture and served["Content-Type"] == "image/png"
    assert served["Cache-Control"].startswith("private")
    assert tasks.store_image.call("https://walter-r2.trakt.test/avatars/a.png", "avatar") is True
    assert len([call for call in rsps.calls if "walter-r2" in call.request.url]) == 1


def test_image_task_refuses_an_unknown_kind_and_a_forbidden_host(avatar_host, queue):
    assert tasks.store_image.call("https://walter-r2.trakt.test/avatars/a.png", "secrets") is False
    assert tasks.store_image.call("https://evil.example.com/a.png", "avatar") is False


# -- disconnect -------------------------------------------------------------------------------------


@pytest.fixture
def revocations():
    seen = []

    def receiver(sender, account, revoked_at_trakt, **kwargs):
        seen.append((account.uid, account.user_id, revoked_at_trakt))

    signals.link_revoked.connect(receiver, dispatch_uid="test_tasks")
    yield seen
    signals.link_revoked.disconnect(dispatch_uid="test_tasks")


def test_disconnect_enqueues_the_revoke_after_commit_and_a_worker_revokes(
    client, trakt, linked, queue, revocations, django_capture_on_commit_callbacks
):
    user, token = linked()
    account = token.account
    access = token.access_token
    client.force_login(user)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("socialaccount_connections"), {"account": account.pk})
    assert response.status_code == 302
    assert not queue.results  # nothing before the commit
    for callback in callbacks:
        callback()
    assert not trakt.requests_to("/oauth/revoke")  # the response did not wait for Trakt
    (job,) = queue.results
    assert job.task.name == "revoke_grant"
    assert_no_secret_in_args(queue, [*secrets(token), token.access_token_encrypted])
    assert not SocialAccount.objects.filter(pk=account.pk).exists()
    assert PendingGrant.objects.filter(pk=job.args[0]).exists()

    assert run_queued(queue) == [True]
    (revoke,) = trakt.requests_to("/oauth/revoke")
    assert revoke.json == {"token": access, "client_id": "test-client-id", "client_secret": "test-client-secret"}
    assert not trakt.is_access_token_valid(access)
    assert not PendingGrant.objects.exists()
    assert revocations == [(account.uid, user.pk, True)]
    # Run again (a queue that delivers twice): nothing more is sent or announced.
    assert job.task.call(*job.args) is False
    assert len(trakt.requests_to("/oauth/revoke")) == 1 and len(revocations) == 1


def test_rolled_back_disconnect_enqueues_nothing_and_keeps_no_grant(trakt, linked, queue):
    from django.db import transaction

    _user, token = linked()
    with pytest.raises(RuntimeError), transaction.atomic():
        token.account.delete()
        raise RuntimeError("rolled back")
    assert not queue.results and not PendingGrant.objects.exists()
    assert TraktToken.objects.filter(pk=token.pk).exists()


def test_revoke_that_trakt_refuses_keeps_the_grant_for_the_sweep(
    trakt, linked, queue, revocations, django_capture_on_commit_callbacks
):
    _user, token = linked()
    with django_capture_on_commit_callbacks(execute=True):
        token.account.delete()
    trakt.fail_next("/oauth/revoke", status=503)
    assert run_queued(queue) == [False]
    assert PendingGrant.objects.filter(revoked_at__isnull=True).count() == 1
    assert revocations[-1][2] is False


# -- refresh -----------------------------------------------------------------------------------------


def test_enqueue_command_enqueues_the_due_links_and_a_worker_refreshes_each_once(trakt, linked, queue):
    due = [linked(expires_in=EXPIRED)[1] for _ in range(3)]
    fresh = linked()[1]
    out = call_command_output("refresh_trakt_tokens", "--enqueue")
    assert out == "3 due links enqueued for refresh on 'trakt'."
    # One task for the three links (LINKS_PER_TASK to a task): a job's bookkeeping is paid once.
    (job,) = queue.results
    assert job.task.name == "refresh_links"
    assert sorted(job.args[0]) == sorted(token.pk for token in due)
    assert_no_secret_in_args(queue, secrets(*due, fresh))
    spent = {token.pk: token.refresh_token for token in due}

    assert run_queued(queue) == [{"refreshed": 3}]
    for token in due:
        assert trakt.refresh_count(spent[token.pk]) == 1
        token.refresh_from_db()
        assert token.refresh_token != spent[token.pk] and trakt.is_access_token_valid(token.access_token)
    assert trakt.refresh_count(accepted=False) == 0
    # Enqueued twice (two schedulers): the second run finds nothing due.
    for token in due:
        assert tasks.refresh_link.call(token.pk, 6 * 3600) == "not_due"


def test_fan_out_task_enqueues_the_refreshes(trakt, linked, queue):
    due = linked(expires_in=EXPIRED)[1]
    tasks.enqueue_due_links.using(backend="trakt").enqueue(6 * 3600.0)
    assert run_queued(queue) == [1]
    (job,) = queue.results
    assert job.args == [[due.pk], 6 * 3600.0, False]


def test_fan_out_splits_the_due_links_into_tasks_of_links_per_task(trakt, linked, queue):
    due = [linked(expires_in=EXPIRED)[1] for _ in range(5)]
    assert tasks.enqueue_due(links_per_task=2) == 5
    batches = [result.args[0] for result in queue.results]
    assert [len(batch) for batch in batches] == [2, 2, 1]
    assert sorted(pk for batch in batches for pk in batch) == sorted(token.pk for token in due)
    assert run_queued(queue) == [{"refreshed": 2}, {"refreshed": 2}, {"refreshed": 1}]
    assert trakt.refresh_count() == 5 and trakt.refresh_count(accepted=False) == 0


def test_a_429_in_a_batch_puts_off_the_rest_of_it_in_one_task(trakt, linked, queue):
    first, second, third = (linked(expires_in=EXPIRED)[1] for _ in range(3))
    trakt.rate_limit_next("/oauth/token", 120)
    before = timezone.now()
    assert tasks.refresh_links.call([first.pk, second.pk, third.pk]) == {"failed": 1, "requeued": 2}
    assert len(trakt.requests_to("/oauth/token")) == 1  # the two others were not sent during the pause
    retry, rest = queue.results
    assert (retry.task.name, retry.args) == ("refresh_link", [first.pk, None, 1, False])
    assert (rest.task.name, rest.args) == ("refresh_links", [[second.pk, third.pk], None, False])
    assert rest.task.run_after >= before + dt.timedelta(seconds=110)


def test_enqueue_with_force_refreshes_links_that_are_not_due(trakt, linked, queue):
    linked()
    assert (
        call_command_output("refresh_trakt_tokens", "--enqueue", "--force")
        == "1 due link enqueued for refresh on 'trakt'."
    )
    assert run_queued(queue) == [{"refreshed": 1}]


def test_passing_failure_is_enqueued_again_later_and_the_pair_is_kept(trakt, linked, queue):
    _user, token = linked(expires_in=EXPIRED)
    trakt.fail_next("/oauth/token", status=503)
    before = timezone.now()
    assert tasks.refresh_link.call(token.pk) == "failed"
    (retry,) = queue.results
    assert retry.args == [token.pk, None, 1, False]
    assert retry.task.run_after >= before + dt.timedelta(seconds=30)
    stored = TraktToken.objects.get(pk=token.pk)
    assert stored.refresh_token == token.refresh_token and trakt.is_access_token_valid(token.access_token)
    assert run_queued(queue) == ["refreshed"]


def test_retries_stop_after_trakt_task_retries(trakt, linked, queue, settings, monkeypatch):
    monkeypatch.setattr(tasks, "TASK_RETRIES", 1)
    _user, token = linked(expires_in=EXPIRED)
    trakt.fail_next("/oauth/token", status=503, times=2)
    assert tasks.refresh_link.call(token.pk) == "failed"
    assert run_queued(queue) == ["failed"]
    assert not queue.results


def test_read_timeout_is_not_retried_at_once(trakt, linked, queue):
    _user, token = linked(expires_in=EXPIRED)
    trakt.timeout_next("/oauth/token")
    assert tasks.refresh_link.call(token.pk) == "failed"
    assert not queue.results


def test_a_429_pauses_every_workers_refreshes_until_its_retry_after(trakt, linked, queue, clock):
    _user, first = linked(expires_in=EXPIRED)
    _user, second = linked(expires_in=EXPIRED)
    trakt.rate_limit_next("/oauth/token", 120)
    assert tasks.refresh_link.call(first.pk) == "failed"
    (retry,) = queue.results
    assert retry.task.run_after >= timezone.now() + dt.timedelta(seconds=110)
    queue.clear()
    trakt.reset_requests()
    # Another worker's task, during the pause: not sent to Trakt, put off until the pause ends.
    assert tasks.refresh_link.call(second.pk) == "deferred"
    assert not trakt.requests_to("/oauth/token")
    (deferred,) = queue.results
    assert deferred.args == [second.pk, None, 0, False]


def test_shared_budget_allows_trakt_refresh_rate_starts_per_second(clock, settings):
    settings.TRAKT_REFRESH_RATE = 2
    clock.now = 1000.25
    assert [shared_rate.take_slot() for _ in range(3)] == [0.0, 0.0, pytest.approx(0.75)]
    clock.advance(1)
    assert shared_rate.take_slot() == 0.0


def test_refresh_task_waits_in_the_worker_for_a_short_budget_wait(trakt, linked, queue, monkeypatch):
    _user, token = linked(expires_in=EXPIRED)
    answers = iter([0.2, 0.0])
    waits = []
    monkeypatch.setattr(shared_rate, "take_slot", lambda: next(answers))
    monkeypatch.setattr(tasks.clock, "sleep", waits.append)
    assert tasks.refresh_link.call(token.pk) == "refreshed"
    assert waits == [0.2]


def test_refresh_on_a_backend_without_run_after_retries_in_the_worker(trakt, linked, settings, monkeypatch):
    settings.TASKS = {"default": {"BACKEND": IMMEDIATE}}
    settings.TRAKT_TASK_BACKEND = "default"
    monkeypatch.setattr(tasks.clock, "sleep", lambda seconds: None)
    _user, token = linked(expires_in=EXPIRED)
    trakt.fail_next("/oauth/token", status=503)
    result = tasks.refresh_link.using(backend="default").enqueue(token.pk)
    assert result.return_value == "refreshed"


def test_site_fault_stops_the_task_and_flags_no_link(trakt, linked, queue, caplog):
    _user, token = linked(expires_in=EXPIRED)
    trakt.disable_app("test-client-id")
    with caplog.at_level(logging.ERROR, logger="django_trakt.tasks"):
        assert tasks.refresh_link.call(token.pk) == "site_misconfigured"
    assert TraktToken.objects.get(pk=token.pk).status == TraktToken.Status.ACTIVE
    assert "Trakt refresh task stopped" in caplog.text


# -- the switch and its checks -------------------------------------------------------------------------


def call_command_output(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip()


def test_mistyped_backend_alias_falls_back_to_in_process_with_an_error(trakt, linked, settings, caplog):
    settings.TRAKT_TASK_BACKEND = "typo"
    task_queue._reported.discard("typo")
    user, _token = linked()
    trakt.add_watchlist_item(user.username, "movie", title="Heat", year=1995)
    with caplog.at_level(logging.ERROR, logger="django_trakt.tasks"):
        assert "Heat" in render(user)
        render(user)
    assert caplog.text.count("TRAKT_TASK_BACKEND 'typo' cannot be used") == 1
    (error,) = checks.check_task_backend()
    assert error.id == "django_trakt.E004"
    with pytest.raises(CommandError) as raised:
        call_command("refresh_trakt_tokens", "--enqueue")
    assert raised.value.returncode == 2 and "TRAKT_TASK_BACKEND" in str(raised.value)


def test_enqueue_without_a_backend_is_a_usage_error(db):
    with pytest.raises(CommandError) as raised:
        call_command("refresh_trakt_tokens", "--enqueue")
    assert raised.value.returncode == 2


def test_enqueue_and_dry_run_do_not_go_together(queue):
    with pytest.raises(CommandError, match="--dry-run"):
        call_command("refresh_trakt_tokens", "--enqueue", "--dry-run")


def test_no_check_without_a_backend(settings):
    assert checks.check_task_backend() == []


def test_backend_that_is_no_queue_and_per_process_cache_are_reported(queue, settings):
    settings.CACHES = LOCAL_CACHE
    found = {message.id: message.msg for message in checks.check_task_backend()}
    assert set(found) == {"django_trakt.W011", "django_trakt.W012"}
    assert "DummyBackend" in found["django_trakt.W011"] and "LocMemCache" in found["django_trakt.W012"]


def test_checks_are_registered(queue, settings):
    settings.TRAKT_TASK_BACKEND = "typo"
    task_queue._reported.add("typo")
    from django.core import checks as django_checks

    assert "django_trakt.E004" in {message.id for message in django_checks.run_checks()}


def test_enqueue_command_with_the_queue_down_stops_at_once_with_one_line(trakt, linked, queue, monkeypatch):
    for _ in range(3):
        linked(expires_in=EXPIRED)
    calls = []

    def broker_down(*args, **kwargs):
        calls.append(args)
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379.\nConnection refused.")

    monkeypatch.setattr(type(queue), "enqueue", broker_down)
    with pytest.raises(CommandError) as stopped:
        call_command("refresh_trakt_tokens", "--enqueue", stdout=StringIO(), stderr=StringIO())
    assert stopped.value.returncode == 1 and len(calls) == 1  # not one try (and traceback) per link
    message = str(stopped.value)
    assert "\n" not in message and "ConnectionError" in message and "0 refresh tasks were enqueued" in message


@pytest.mark.parametrize("queue_up", [True, False], ids=["enqueued-again", "queue-refuses"])
def test_sigterm_during_a_batch_task_stops_after_the_refresh_in_flight(trakt, linked, queue, monkeypatch, queue_up):
    import os
    import signal

    first, second, third = (linked(expires_in=EXPIRED)[1] for _ in range(3))
    spent = {token.pk: token.refresh_token for token in (first, second, third)}

    def deploy(sender, token, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the batch runs, after its first refresh

    if not queue_up:
        monkeypatch.setattr(type(queue), "enqueue", lambda *args, **kwargs: (_ for _ in ()).throw(ConnectionError()))
    before = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the process under test must survive its own SIGTERM
    signals.token_refreshed.connect(deploy)
    try:
        outcome = tasks.refresh_links.call([first.pk, second.pk, third.pk])
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN  # the worker's handler is back
    finally:
        signals.token_refreshed.disconnect(deploy)
        signal.signal(signal.SIGTERM, before)

    assert trakt.refresh_count(spent[first.pk]) == 1
    assert trakt.refresh_count(accepted=None) == 1  # nothing started after the signal
    for token in (second, third):
        assert TraktToken.objects.get(pk=token.pk).refresh_token == spent[token.pk]
    if queue_up:
        assert outcome == {"refreshed": 1, "requeued": 2}
        (rest,) = queue.results
        assert (rest.task.name, rest.args) == ("refresh_links", [[second.pk, third.pk], None, False])
        assert rest.task.run_after is None
    else:
        assert outcome == {"refreshed": 1, "not_started": 2}  # still due: the next run takes them
