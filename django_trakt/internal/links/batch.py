"""Refreshing every due link: what ``manage.py refresh_trakt_tokens`` runs.

A task queue (Celery beat, RQ, Huey...) can call :func:`refresh_due_tokens` directly.
Rows are streamed (primary keys only), so memory stays flat however many links a site
has; at most ``2 * concurrency`` are in flight at once. Several copies may run at the
same time on several machines: each token is refreshed under its row lock, and a row
another copy is refreshing is passed over (see :mod:`django_trakt.internal.links.refresh`).

Two cases run one link at a time, in the calling thread, whatever ``concurrency`` says
(:attr:`BatchReport.sequential_reason` tells which):

- SQLite: it has one writer for the whole database, and each refresh holds it while
  Trakt answers; worker threads would only queue for it and time out.
- Inside a transaction (an ``atomic()`` block, a ``TestCase``): worker threads have
  connections of their own, which cannot see the caller's uncommitted rows.

A fault of the site's configuration (:class:`~django_trakt.exceptions.TraktSiteMisconfigured`)
stops the batch at once and is raised: every other link would fail the same way, and none
is flagged for it.

A 429 whose ``Retry-After`` is longer than the batch waits out (``max_retry_after``) pauses
the batch: the links after it count as failed, unsent (the next run tries them). Cloudflare
asks for 300 seconds (trakt/trakt-api#909); a request in that time only prolongs the block.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, connections, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext

from django_trakt.conf import get_trakt_app
from django_trakt.exceptions import TraktSiteMisconfigured
from django_trakt.internal.core import clock
from django_trakt.internal.links import durability, pending
from django_trakt.internal.links.locks import database_alias, has_row_locks
from django_trakt.internal.links.outcomes import Outcome, RefreshResult
from django_trakt.internal.links.profile import USERNAME_LOOKUP
from django_trakt.internal.links.redirect_uri import refresh_redirect_uri
from django_trakt.internal.links.refresh import DEFAULT_MARGIN
from django_trakt.internal.links.retries import refresh_with_retries
from django_trakt.models import TraktToken

logger = logging.getLogger(__name__)

STREAM_CHUNK = 2000

#: Unreadable links are looked at too: they fail (and the command exits 1, so someone
#: notices) until the right key is back, then they heal and refresh as usual.
_REFRESHABLE = (TraktToken.Status.ACTIVE, TraktToken.Status.UNREADABLE)


@dataclass(frozen=True)
class Candidate:
    pk: int
    account_id: int
    trakt_username: str
    #: The row as read (its refresh token's ciphertext), claimed while still so (``claims``).
    token: TraktToken | None = field(default=None, repr=False, compare=False)


@dataclass
class BatchReport:
    counts: Counter[Outcome] = field(default_factory=Counter)
    #: Active links outside the margin (never locked nor sent to Trakt).
    outside_margin: int = 0
    #: Why the links were refreshed one at a time despite ``concurrency`` ("" if they were not).
    sequential_reason: str = ""
    #: Grants of sign-ins left unfinished, revoked at Trakt by this run (django_trakt.internal.links.pending).
    abandoned_revoked: int = 0
    #: The run was asked to stop (``stop``): links after that were not started.
    stopped: bool = False
    #: Links passed over because the run was stopping (never sent to Trakt).
    not_started: int = 0
    #: Times the stream of due links was read again after a database error (a killed session).
    stream_restarts: int = 0
    #: Why the stream of due links ended early ("" if it did not): the rest wait for the next run.
    stream_error: str = ""

    @property
    def refreshed(self) -> int:
        return self.counts[Outcome.REFRESHED]

    @property
    def not_due(self) -> int:
        return self.counts[Outcome.NOT_DUE] + self.outside_margin

    @property
    def needs_reauth(self) -> int:
        return self.counts[Outcome.NEEDS_REAUTH]

    @property
    def failed(self) -> int:
        return self.counts[Outcome.FAILED]


class Pause:
    """Until when Trakt asked the whole batch to wait (a 429's long ``Retry-After``), shared by threads."""

    def __init__(self) -> None:
        self._until = 0.0
        self._lock = threading.Lock()

    def extend(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, clock.monotonic() + seconds)

    def remaining(self) -> float:
        with self._lock:
            return max(0.0, self._until - clock.monotonic())


class RateLimiter:
    """At most ``per_second`` starts per second, shared by all worker threads."""

    def __init__(self, per_second: float | None) -> None:
        self.interval = 1.0 / per_second if per_second else 0.0
        self._next = clock.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = clock.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            clock.sleep(start - now)


def due_links(
    *, within: dt.timedelta = DEFAULT_MARGIN, force: bool = False, user_ids: Iterable[int] | None = None
) -> Any:
    """The active links the batch should look at, soonest expiry first (a queryset)."""
    links = TraktToken.objects.filter(status__in=_REFRESHABLE)
    if user_ids is not None:
        links = links.filter(account__user_id__in=list(user_ids))
    if not force:
        # An unknown expiry is due: the refresh learns it.
        links = links.filter(Q(expires_at__isnull=True) | Q(expires_at__lte=timezone.now() + within))
    return links.order_by("expires_at", "pk")


#: Times the stream of due links is read again after a database error before the run gives up on it.
STREAM_RESTARTS = 5


def _stream(links: Any, limit: int | None, report: BatchReport) -> Generator[Candidate, None, None]:
    """The due links, each once, read again from the start after a database error.

    A killed session (a failover, a PgBouncer restart) ends the server-side cursor under
    it: the query runs again on a new connection, and links already handed out are skipped.
    Still failing after :data:`STREAM_RESTARTS` tries, the error is noted in ``report``.
    """
    rows = links.only("pk", "account_id", "refresh_token_encrypted").annotate(
        trakt_username=F(f"account__{USERNAME_LOOKUP}")
    )
    seen: set[int] = set()
    for attempt in range(STREAM_RESTARTS + 1):
        if attempt:
            report.stream_restarts += 1
        try:
            # Closed here, never by the garbage collector (see refresh_due_tokens).
            with contextlib.closing(rows.iterator(chunk_size=STREAM_CHUNK)) as stream:
                for token in stream:
                    if token.pk in seen:
                        continue
                    if limit is not None and len(seen) >= limit:
                        break
                    seen.add(token.pk)
                    yield Candidate(token.pk, token.account_id, str(token.trakt_username or ""), token)
            report.stream_error = ""  # read to the end after all
            return
        except DatabaseError as err:
            durability.reconnect_next_time(database_alias())
            logger.warning("Reading the due Trakt links failed (%s); reading them again", err)
            report.stream_error = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            clock.sleep(min(2.0, 0.2 * 2**attempt))
    logger.error("Reading the due Trakt links failed %s times; the rest wait for the next run", STREAM_RESTARTS + 1)


def refresh_due_tokens(
    *,
    within: dt.timedelta = DEFAULT_MARGIN,
    force: bool = False,
    user_ids: Iterable[int] | None = None,
    limit: int | None = None,
    concurrency: int = 4,
    max_rate: float | None = None,
    dry_run: bool = False,
    on_result: Callable[[Candidate, RefreshResult | None], None] | None = None,
    stop: threading.Event | None = None,
    **retry_options: Any,
) -> BatchReport:
    """Refresh every active link expiring within ``within`` (every one with ``force``).

    ``on_result`` is called from the calling thread after each link (``None`` as
    result in a dry run). ``retry_options`` go to
    :func:`~django_trakt.internal.links.retries.refresh_with_retries`.

    ``stop`` (set from a signal handler, e.g. the command's SIGTERM): no refresh starts
    after it is set, and no retry; those in flight finish (each is bounded by ``TIMEOUT``
    and the store deadline), and the report says ``stopped``.
    """
    stop = stop or threading.Event()
    user_ids = list(user_ids) if user_ids is not None else None
    # Site faults that can be told before any link is tried (no Site, no app).
    app = get_trakt_app()
    refresh_redirect_uri()
    report = BatchReport()
    if concurrency > 1:
        report.sequential_reason = sequential_reason()
        if report.sequential_reason:
            concurrency = 1
    links = due_links(within=within, force=force, user_ids=user_ids)
    if not force:
        everything = TraktToken.objects.filter(status__in=_REFRESHABLE)
        if user_ids is not None:
            everything = everything.filter(account__user_id__in=user_ids)
        report.outside_margin = everything.count() - links.count()
    # Closed on the way out, whatever ends the batch: the rows come from a server-side
    # cursor on PostgreSQL, and a stream left to the garbage collector closes that cursor
    # whenever the collector runs, possibly in the middle of another query on the same
    # connection, which then waits for itself forever.
    with contextlib.closing(_stream(links, limit, report)) as candidates:
        if dry_run:
            for candidate in candidates:
                if on_result:
                    on_result(candidate, None)
            return report

        report.abandoned_revoked = _revoke_abandoned_grants()
        limiter = RateLimiter(max_rate)
        pause = Pause()
        max_retry_after = float(retry_options.get("max_retry_after", 30.0))

        retry_options["should_stop"] = stop.is_set

        def refresh_one(candidate: Candidate) -> RefreshResult | None:
            if stop.is_set():
                return None  # stopping: not started, nothing sent
            if (waiting := pause.remaining()) > 0:
                # Not sent: Trakt said to wait longer than this run waits. The stored pair is untouched.
                return RefreshResult(
                    Outcome.FAILED, None, f"deferred: Trakt asked to wait {waiting:.0f} more seconds (HTTP 429)"
                )
            limiter.wait()
            if stop.is_set():
                return None
            try:
                result = refresh_with_retries(
                    candidate.token or candidate.pk, force=force, within=within, app=app, **retry_options
                )
            except TraktSiteMisconfigured:
                raise
            except DatabaseError as err:
                # This thread's connection may be dead: the next link gets a new one.
                durability.reconnect_next_time(database_alias())
                logger.warning("Refreshing Trakt link %s failed on the database: %s", candidate.pk, err)
                return RefreshResult(Outcome.FAILED, None, f"database error: {err}", retryable=True)
            except Exception as err:  # one broken row must not stop the batch
                logger.exception("Unexpected error refreshing Trakt link %s", candidate.pk)
                return RefreshResult(Outcome.FAILED, None, f"unexpected error: {type(err).__name__}")
            if result.retry_after is not None and result.retry_after > max_retry_after:
                logger.warning(
                    "Trakt asked to wait %.0f seconds (HTTP 429); the rest of this run's links wait for the next run",
                    result.retry_after,
                )
                pause.extend(result.retry_after)
            return result

        def record(candidate: Candidate, result: RefreshResult | None) -> None:
            if result is None:
                report.stopped = True
                report.not_started += 1
                return
            report.counts[result.outcome] += 1
            if on_result:
                on_result(candidate, result)

        if concurrency <= 1:
            # In the calling thread (and its database connection, transaction included).
            for candidate in candidates:
                if stop.is_set():
                    report.stopped = True
                    break
                record(candidate, refresh_one(candidate))
            return report
        # The first link alone: a fault of the site's configuration then stops the batch after
        # one request to Trakt, not one per worker.
        if (first := next(candidates, None)) is not None:
            record(first, refresh_one(first))
        _run_threaded(candidates, refresh_one, record, concurrency, stop)
        if stop.is_set():
            report.stopped = True
    return report


def _revoke_abandoned_grants() -> int:
    # Housekeeping that rides along with the scheduled run; it must never stop the refresh.
    try:
        return pending.revoke_abandoned()
    except Exception:
        logger.exception("Revoking abandoned Trakt grants failed")
        return 0


def sequential_reason() -> str:
    """Why a batch asked for several threads refreshes one link at a time ("" if it does not)."""
    alias = database_alias()
    if not transaction.get_autocommit(using=alias):  # inside atomic(): autocommit is off
        return gettext("called inside a transaction: refreshing in the caller's thread, one link at a time")
    if not has_row_locks(alias):
        return gettext("SQLite has one writer: refreshing one link at a time")
    return ""


def _run_threaded(
    candidates: Iterator[Candidate],
    refresh_one: Callable[[Candidate], RefreshResult | None],
    record: Callable[[Candidate, RefreshResult | None], None],
    concurrency: int,
    stop: threading.Event,
) -> None:
    """Refresh on ``concurrency`` worker threads, at most ``2 * concurrency`` links in flight
    (the stream is read as the work goes, never all at once); results are recorded in the
    calling thread, so ``on_result`` needs no locking.

    A site fault stops the batch: nothing more is submitted, what has not started is
    cancelled, what is running finishes and is recorded, then the fault is raised. ``stop``
    does the same without a fault.
    """
    alias = database_alias()
    worker_connections: list[Any] = []
    faults: list[TraktSiteMisconfigured] = []

    def adopt_connection() -> None:
        # Each worker thread opens its own connection; they are closed from here once the
        # pool has stopped (Django allows that only for connections marked as shared).
        connection = connections[alias]
        connection.inc_thread_sharing()
        worker_connections.append(connection)

    def collect(
        done: Iterable[Future[RefreshResult | None]], submitted: dict[Future[RefreshResult | None], Candidate]
    ) -> None:
        for future in done:
            candidate = submitted.pop(future)
            if future.cancelled():
                record(candidate, None)
                continue
            try:
                result = future.result()
            except TraktSiteMisconfigured as err:
                faults.append(err)
                continue
            record(candidate, result)

    submitted: dict[Future[RefreshResult | None], Candidate] = {}
    # Futures as they end (or are cancelled): unlike wait(), no visit of every one in flight.
    finished: queue.SimpleQueue[Future[RefreshResult | None]] = queue.SimpleQueue()
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="trakt-refresh", initializer=adopt_connection)
    try:
        for candidate in candidates:
            if stop.is_set():
                break
            future = pool.submit(refresh_one, candidate)
            submitted[future] = candidate
            future.add_done_callback(finished.put)
            if len(submitted) >= 2 * concurrency:
                collect([finished.get()], submitted)
            if faults:
                break
        if faults or stop.is_set():
            for future in submitted:
                future.cancel()
        while submitted:
            collect([finished.get()], submitted)
    finally:
        for future in submitted:
            future.cancel()
        pool.shutdown(wait=True)
        for connection in worker_connections:
            connection.close()
            connection.dec_thread_sharing()
    if faults:
        raise faults[0]
