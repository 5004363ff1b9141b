"""The app's background work as Django Tasks: what runs on the site's queue, off the request path.

Defined with the Tasks framework (``django.tasks`` or the ``django-tasks`` backport), on the
backend ``TRAKT_TASK_BACKEND`` names (:mod:`django_trakt.task_queue`; None: in process, as
before). With a backend:

- :data:`refresh_link` ``(token_id, within_seconds=None, attempt=0, force=False)`` refreshes one link
  under its row lock, within the budget all workers share
  (:mod:`django_trakt.internal.links.shared_rate`);
- :data:`refresh_links` ``(token_ids, within_seconds=None, force=False)`` refreshes each of
  these links that is due, one after the other (a worker stopping meanwhile enqueues the
  rest again);
- :data:`enqueue_due_links` ``(within_seconds, force=False)`` enqueues the due links,
  :data:`LINKS_PER_TASK` to a :data:`refresh_links` task (what a scheduler calls;
  ``refresh_trakt_tokens --enqueue`` does the same and prints how many links);
- :data:`revalidate_watchlist` ``(user_id, username, list_type, sort, limit)`` fetches one
  cached watchlist copy again (a page showed the old one without waiting);
- :data:`store_image` ``(source_url, kind)`` fetches one image into storage (its view served
  the default meanwhile);
- :data:`revoke_grant` ``(grant_id, account_id, user_id, uid, extra_data)`` revokes a removed
  link's grant at Trakt (the disconnect answered at once).

Arguments are ids and plain values, never a token: the encrypted tokens stay in the
database (a removed link's grant waits in a ``PendingGrant`` row for its revoke). Every
task is safe to run twice and on several workers at once: the refresh locks its row and
finds the link no longer due the second time, the watchlist and image find their fresh
copy, the revoke finds its grant gone.

Retries: the framework has none of its own. A refresh that failed for a passing reason
(5xx, a connection error, a 429) is enqueued again with ``run_after`` (30 s, 60 s,
120 s...; a 429 at its ``Retry-After``) up to ``TASK_RETRIES`` times when the backend
supports ``run_after``; on one that does not, the task retries in the worker as the
command does (short waits only), and the next scheduled run picks up what is left. A read
timeout is never retried at once (Trakt may have rotated the token). The other tasks are
re-enqueued by the next page or image request once their "queued" mark in the cache
expires, or, for a revoke, by the scheduled sweep of pending grants.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from django_trakt.conf import PROVIDER_ID, get_trakt_app
from django_trakt.exceptions import TraktSiteMisconfigured
from django_trakt.internal.core import clock, dispatch
from django_trakt.internal.links import pending, revocation, shared_rate
from django_trakt.internal.links.batch import due_links
from django_trakt.internal.links.outcomes import Outcome, RefreshResult
from django_trakt.internal.links.refresh import DEFAULT_MARGIN, refresh_token
from django_trakt.internal.links.retries import refresh_with_retries
from django_trakt.internal.pages import images, watchlist
from django_trakt.models import TraktToken
from django_trakt.task_queue import QueueDispatcher, QueueUnavailable, backend, define, enqueue, supports_defer

logger = logging.getLogger(__name__)

#: Seconds before the first retry of a refresh that failed for a passing reason; doubled each time.
RETRY_BACKOFF = 30.0
#: Longest a refresh task waits in the worker for the shared budget before it re-enqueues itself.
MAX_BUDGET_WAIT = 5.0
#: Times a refresh that failed for a passing reason is enqueued again (30 s, 60 s, 120 s):
#: past that, the next scheduled run tries it (was the setting TRAKT_TASK_RETRIES).
TASK_RETRIES = 3


# -- refresh ---------------------------------------------------------------------------------------


def _margin(within_seconds: float | None) -> dt.timedelta:
    return DEFAULT_MARGIN if within_seconds is None else dt.timedelta(seconds=float(within_seconds))


def _retry_later(token_id: int, within_seconds: float | None, attempt: int, force: bool, delay: float) -> bool:
    if attempt >= TASK_RETRIES or not supports_defer():
        return False
    when = timezone.now() + dt.timedelta(seconds=max(1.0, delay))
    return enqueue(refresh_link, token_id, within_seconds, attempt + 1, force, run_after=when)


def _wait_for_budget(put_off: Callable[[dt.datetime], bool], stopping: threading.Event | None = None) -> bool:
    """Wait for a start in the shared budget; False when the work was put off instead
    (``put_off(when)`` enqueued it again) or ``stopping`` was set meanwhile."""
    waited = 0.0
    while (wait := shared_rate.take_slot()) > 0:
        # A long pause (a 429): the worker is not held, the work comes back when it ends.
        long_pause = waited + wait > MAX_BUDGET_WAIT and supports_defer()
        if long_pause and put_off(timezone.now() + dt.timedelta(seconds=wait)):
            return False
        clock.sleep(wait)
        waited += wait
        if stopping is not None and stopping.is_set():
            return False
    return True


@define
def refresh_link(token_id: int, within_seconds: float | None = None, attempt: int = 0, force: bool = False) -> str:
    """Refresh link ``token_id`` if it is due (or ``force``); the outcome's name (``refreshed``, ``not_due``...)."""
    if not _wait_for_budget(
        lambda when: enqueue(refresh_link, token_id, within_seconds, attempt, force, run_after=when)
    ):
        return "deferred"
    return _refresh_one(token_id, within_seconds, attempt, force)


def _refresh_one(
    token: TraktToken | int, within_seconds: float | None, attempt: int, force: bool, app: Any = None
) -> str:
    """One link (its id, or its row as read: then it is claimed in one statement while still so),
    its budget slot taken; a passing failure enqueued again as :data:`refresh_link`."""
    token_id = token.pk if isinstance(token, TraktToken) else token
    margin = _margin(within_seconds)
    try:
        if supports_defer():
            # Retried by re-enqueueing, so the worker never sleeps on Trakt's behalf.
            result: RefreshResult = refresh_token(token, within=margin, force=force, skip_locked=True, app=app)
        else:
            result = refresh_with_retries(token, within=margin, force=force, skip_locked=True, app=app)
    except TraktSiteMisconfigured as err:
        # Every link would fail the same way and none is flagged: the operator must fix it.
        logger.error("Trakt refresh task stopped: %s %s", err, err.NO_LINK_FLAGGED)
        return SITE_MISCONFIGURED
    if result.outcome is Outcome.FAILED and result.token is not None:
        if result.retry_after is not None:
            shared_rate.pause(result.retry_after)
            _retry_later(token_id, within_seconds, attempt, force, result.retry_after)
        elif result.retryable:
            _retry_later(token_id, within_seconds, attempt, force, RETRY_BACKOFF * 2**attempt)
    return str(result.outcome)


SITE_MISCONFIGURED = "site_misconfigured"

#: Due links per :data:`refresh_links` task. A task costs its worker a job's bookkeeping
#: (dequeue, result, signals: a dozen Redis round trips and milliseconds of CPU, a fork with
#: RQ's default worker); one task per link made a refresh in a worker cost several times the
#: CPU of one in the command. 25 links are about a second of work at 50 ms per request: the
#: last tasks of a run still spread over the workers, and a stopping worker finishes one
#: refresh, not 25 (the rest are enqueued again).
LINKS_PER_TASK = 25


@define
def refresh_links(token_ids: list[int], within_seconds: float | None = None, force: bool = False) -> dict[str, int]:
    """Refresh each of links ``token_ids`` that is due (or ``force``), one after the other; how
    many links had each outcome (``refreshed``, ``not_due``...; ``requeued``: enqueued again
    because the worker was stopping or Trakt asked to wait; ``not_started``: stopping, and the
    queue refused them: the next run takes them)."""
    counts: dict[str, int] = {}
    ids = [int(pk) for pk in token_ids]
    app = get_trakt_app()  # once per task, not per link
    # The rows in one query: each link is then claimed in one statement while still as read.
    rows = TraktToken.objects.in_bulk(ids)
    with _stopping_on_signals() as stopping:
        for index, token_id in enumerate(ids):
            rest = _Rest(ids[index:], within_seconds, force)
            if stopping.is_set() or not _wait_for_budget(rest.put_off, stopping):
                # Stopping (enqueued again to run at once), or put off by a long pause.
                if rest.enqueued or rest.put_off(None):
                    counts[REQUEUED] = len(rest.token_ids)
                else:
                    # The queue refused: these links are still due, and the next run takes them.
                    logger.warning("%s Trakt links left for the next run by a stopping worker", len(rest.token_ids))
                    counts[NOT_STARTED] = len(rest.token_ids)
                break
            outcome = _refresh_one(rows.get(token_id, token_id), within_seconds, 0, force, app=app)
            counts[outcome] = counts.get(outcome, 0) + 1
            if outcome == SITE_MISCONFIGURED:
                break  # the rest would fail alike; they are still due for the next run
    return counts


REQUEUED = "requeued"
NOT_STARTED = "not_started"


@dataclass
class _Rest:
    """The links of a batch not started yet, and whether they were enqueued again."""

    token_ids: list[int]
    within_seconds: float | None
    force: bool
    enqueued: bool = False

    def put_off(self, when: dt.datetime | None) -> bool:
        """Enqueue them as one :data:`refresh_links` task, to run at ``when`` (None: now)."""
        self.enqueued = enqueue(refresh_links, self.token_ids, self.within_seconds, self.force, run_after=when)
        return self.enqueued


@contextlib.contextmanager
def _stopping_on_signals() -> Iterator[threading.Event]:
    """While a batch runs: an event SIGTERM or SIGINT sets, so no refresh starts after it.

    The handler in place before (a worker's warm shutdown, e.g. RQ's ``request_stop``) is
    still called, so the worker stops once the task returns. It may install another handler
    (RQ's: a second signal is a cold shutdown): that one is left in place afterwards. Outside
    the main thread (a threaded worker) signals cannot be handled, and nothing changes.
    """
    stopping = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stopping
        return
    previous: dict[int, Any] = {}

    def handle(signum: int, frame: Any) -> None:
        stopping.set()
        clock.cut_waits_short()
        before = previous.get(signum)
        if callable(before):
            before(signum, frame)
        elif before == signal.SIG_DFL:
            # A forking worker's work-horse dies at SIGTERM by default: it stops after this
            # refresh instead, and the rest of its batch is enqueued again.
            logger.warning("Stopping after the refresh in flight (signal %s)", signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, handle)
    try:
        yield stopping
    finally:
        for number, before in previous.items():
            if signal.getsignal(number) is handle:
                signal.signal(number, before)
        if stopping.is_set():
            clock.cut_waits_short(False)


def enqueue_due(
    *,
    within: dt.timedelta = DEFAULT_MARGIN,
    force: bool = False,
    user_ids: Iterable[int] | None = None,
    limit: int | None = None,
    links_per_task: int = LINKS_PER_TASK,
) -> int:
    """Enqueue every due link, ``links_per_task`` to a :data:`refresh_links` task; how many
    links were enqueued.

    Raises :class:`~django_trakt.exceptions.TraktConfigurationError` when no usable task
    backend is configured (the command says so), and :class:`QueueUnavailable` at the first
    task the queue refuses: with its broker down every other would fail the same way.
    """
    from django_trakt.exceptions import TraktConfigurationError

    if backend() is None:
        raise TraktConfigurationError(
            "No task backend: set TRAKT_TASK_BACKEND to an alias of TASKS (see README, Background work)."
        )
    _revoke_abandoned_grants()
    within_seconds = within.total_seconds()
    links = due_links(within=within, force=force, user_ids=user_ids).values_list("pk", flat=True)
    if limit is not None:
        links = links[:limit]
    enqueued = 0

    def send(batch: list[int]) -> int:
        try:
            return len(batch) if enqueue(refresh_links, batch, within_seconds, force, strict=True) else 0
        except QueueUnavailable as err:
            raise QueueUnavailable(f"{err}; {enqueued} refresh tasks were enqueued before it") from err

    batch: list[int] = []
    # Closed by this code, never by the garbage collector: on PostgreSQL the rows come from
    # a server-side cursor (docs/design.md).
    with contextlib.closing(iter(links.iterator(chunk_size=2000))) as stream:
        for pk in stream:
            batch.append(pk)
            if len(batch) >= max(1, links_per_task):
                enqueued += send(batch)
                batch = []
    if batch:
        enqueued += send(batch)
    return enqueued


def _revoke_abandoned_grants() -> None:
    # Housekeeping that rides along with the scheduled run, as in the command.
    try:
        pending.revoke_abandoned()
    except Exception:
        logger.exception("Revoking abandoned Trakt grants failed")


@define
def enqueue_due_links(within_seconds: float | None = None, force: bool = False) -> int:
    """The fan-out a scheduler calls: enqueue every due link (:func:`enqueue_due`); how many."""
    return enqueue_due(within=_margin(within_seconds), force=force)


# -- pages -----------------------------------------------------------------------------------------


@define
def revalidate_watchlist(user_id: int | None, username: str | None, list_type: str, sort: str, limit: int) -> str:
    """Fetch one watchlist copy again (the user's own with ``user_id``, else Trakt user ``username``)."""
    from django.contrib.auth import get_user_model

    owner: Any = username or ""
    if user_id is not None:
        owner = get_user_model()._default_manager.filter(pk=user_id).first()
        if owner is None:
            return "no_user"
    result = watchlist.revalidate(owner, type=list_type, sort=sort, limit=limit)
    return str(result.error) or "fetched"


@define
def store_image(source_url: str, kind: str) -> bool:
    """Fetch one image into storage; whether a copy is stored now."""
    if kind not in images.DEFAULT_IMAGES:
        return False
    return images.store_image(source_url, kind)


@define
def revoke_grant(grant_id: int, account_id: int, user_id: int | None, uid: str, extra_data: Any) -> bool:
    """Revoke a removed link's grant at Trakt (held as ``PendingGrant`` ``grant_id``); True if confirmed."""
    from allauth.socialaccount.models import SocialAccount

    account = SocialAccount(provider=PROVIDER_ID, uid=uid, user_id=user_id, extra_data=extra_data or {})
    return revocation.revoke_held(grant_id, account, account_id)


# -- the seam the lower layers call ------------------------------------------------------------------

dispatch.install(
    QueueDispatcher(
        {
            dispatch.REFRESH_LINK: lambda: refresh_link,
            dispatch.REVALIDATE_WATCHLIST: lambda: revalidate_watchlist,
            dispatch.STORE_IMAGE: lambda: store_image,
            dispatch.REVOKE_GRANT: lambda: revoke_grant,
        }
    )
)
