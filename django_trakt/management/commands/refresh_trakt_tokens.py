"""``manage.py refresh_trakt_tokens``: refresh every Trakt link that is due.

Run it on a schedule (hourly suits the default ``--within 6h``); see the README. With
``--enqueue`` it refreshes nothing itself: it enqueues the due links on the site's task
queue (``TRAKT_TASK_BACKEND``), ``tasks.LINKS_PER_TASK`` to a ``refresh_links`` task, and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import re
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser
from django.db import DatabaseError

from django_trakt.conf import trakt_settings
from django_trakt.exceptions import TraktConfigurationError, TraktSiteMisconfigured
from django_trakt.internal.core import clock
from django_trakt.internal.links.batch import Candidate, refresh_due_tokens, sequential_reason
from django_trakt.internal.links.outcomes import Outcome, RefreshResult
from django_trakt.internal.links.refresh import DEFAULT_MARGIN
from django_trakt.management.base import TraktCommand, UsageError, one_line
from django_trakt.management.repeats import FailureKinds, first_of_each_kind
from django_trakt.models import TraktToken

#: Exit status when some links failed (they are retried on the next run).
FAILED_STATUS = 1

#: Exit status when the site's configuration stops the run (2 is a bad option).
SITE_FAULT_STATUS = 3

#: Exit status of a run stopped by SIGTERM or SIGINT after draining (the summary says what
#: was done; links not started wait for the next run).
STOPPED_STATUS = 4

#: The longest a stopped run takes to exit with the default ``TIMEOUT`` (10 s): the refreshes
#: in flight get their request's deadline (``TIMEOUT``) plus the store deadline (10 s), and a
#: little for the summary. Below systemd's 90 s and Kubernetes' 30 s grace periods.
DRAIN_BOUND_HELP = "TIMEOUT + 12 seconds (22 s by default)"

_DURATION = re.compile(r"^\s*(?:(?P<d>\d+)d)?\s*(?:(?P<h>\d+)h)?\s*(?:(?P<m>\d+)m)?\s*(?:(?P<s>\d+)s?)?\s*$")


def parse_duration(value: str) -> dt.timedelta:
    """``"6h"``, ``"90m"``, ``"1d12h"``, ``"3600"`` (seconds) -> timedelta."""
    match = _DURATION.match(value)
    if not value.strip() or not match or not any(match.groupdict().values()):
        raise ValueError(value)
    parts = {key: int(number) for key, number in match.groupdict().items() if number}
    return dt.timedelta(
        days=parts.get("d", 0), hours=parts.get("h", 0), minutes=parts.get("m", 0), seconds=parts.get("s", 0)
    )


def format_duration(duration: dt.timedelta) -> str:
    """The inverse of :func:`parse_duration` for whole seconds: ``6h``, ``1d12h``, ``90s``."""
    minutes, seconds = divmod(int(duration.total_seconds()), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    text = "".join(
        f"{number}{unit}" for number, unit in ((days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")) if number
    )
    return text or "0s"


_Number = TypeVar("_Number", int, float)

#: The most refresh requests in flight at once (and the default).
MAX_CONCURRENCY = 64
DEFAULT_CONCURRENCY = 4


# The converters raise ArgumentTypeError, the one exception argparse reports as
# "argument --option: <message>" (through the parser's error()); it names the option,
# so the messages do not.
def _positive(kind: type[_Number], *, at_most: _Number | None = None) -> Callable[[str], _Number]:
    """An argparse ``type=`` for a positive (and finite) ``int`` or ``float``, up to ``at_most``."""
    noun = "whole number" if kind is int else "number"

    def convert(value: str) -> _Number:
        limit = "" if at_most is None else f" (at most {at_most})"
        message = f"must be a positive {noun}{limit}, not {value!r}."
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(message) from None
        # float() accepts "nan" and "inf": neither is a usable rate or delay.
        if not math.isfinite(number) or number <= 0 or (at_most is not None and number > at_most):
            raise argparse.ArgumentTypeError(message)
        return number

    return convert


#: The longest ``--within``: ten years is "every link" for any real site, and a margin must
#: still give a date once added to now.
MAX_WITHIN = dt.timedelta(days=3660)


def _duration(value: str) -> dt.timedelta:
    """The argparse ``type=`` of ``--within``: :func:`parse_duration`, with a usage message."""
    try:
        duration = parse_duration(value)
    except ValueError:
        if _is_negative_duration(value):
            raise argparse.ArgumentTypeError(
                f"must not be negative, not {value!r}: it is how long before expiry a link is refreshed "
                "(0 refreshes only the expired ones)."
            ) from None
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 6h, 90m, 1d or 3600 (seconds), not {value!r}."
        ) from None
    except OverflowError:  # timedelta's limit (999999999 days)
        duration = MAX_WITHIN + dt.timedelta(days=1)
    if duration > MAX_WITHIN:
        raise argparse.ArgumentTypeError(f"{value!r} is too long a duration (at most {MAX_WITHIN.days}d).")
    return duration


def _is_negative_duration(value: str) -> bool:
    try:
        return value.strip().startswith("-") and parse_duration(value.strip()[1:]) >= dt.timedelta(0)
    except (ValueError, OverflowError):
        return False


@contextlib.contextmanager
def _draining_on_signals(stop: threading.Event, announce: Callable[[int], None]) -> Iterator[None]:
    """While the block runs, SIGTERM and SIGINT set ``stop`` (the batch then drains) instead of
    killing the process; the previous handlers are put back afterwards. Outside the main
    thread (``call_command`` from a thread) signals cannot be handled, and nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: Any) -> None:
        if not stop.is_set():
            stop.set()
            clock.cut_waits_short()  # a backoff or a 429's wait must not outlast the bound
            announce(signum)

    previous = {signum: signal.signal(signum, handle) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        clock.cut_waits_short(False)


#: The loggers a refresh run writes a warning to for each link (and each attempt) that fails.
PER_LINK_LOGGERS = (
    "django_trakt.internal.api.http",
    "django_trakt.internal.links.refresh",
    "django_trakt.internal.links.lapsed_claim",
    "django_trakt.internal.links.own_connection",
    "django_trakt.internal.links.batch",
    "django_trakt.internal.links.durability",
)


class Command(TraktCommand):
    help = "Refresh the Trakt tokens that expire soon. Run it on a schedule, e.g. hourly."
    exit_statuses = (
        (0, "done (every due link refreshed, or tasks enqueued)"),
        (
            FAILED_STATUS,
            "some links failed, the database cut the run short, or the task queue was down: "
            "the rest wait for the next run",
        ),
        (SITE_FAULT_STATUS, "the site's configuration stopped the run (fix it, then run again)"),
        (
            STOPPED_STATUS,
            "stopped by SIGTERM or SIGINT: no refresh starts after the signal, those in flight finish "
            f"and the summary is printed, within {DRAIN_BOUND_HELP}",
        ),
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--within",
            type=_duration,
            # A string default goes through type= too, and reads as one in --help.
            default=format_duration(DEFAULT_MARGIN),
            metavar="DURATION",
            help="Refresh links expiring within this margin, e.g. 90m, 1d or 3600 (seconds) (default: %(default)s).",
        )
        parser.add_argument("--dry-run", action="store_true", help="List what would be refreshed; change nothing.")
        parser.add_argument(
            "--user",
            action="append",
            dest="users",
            metavar="USER",
            help="Only this user's link (username or id); repeat for several (default: every user).",
        )
        parser.add_argument("--force", action="store_true", help="Refresh even links that are not due.")
        parser.add_argument(
            "--limit", type=_positive(int), metavar="N", help="Refresh at most this many links (default: no limit)."
        )
        parser.add_argument(
            "--concurrency",
            # None: not asked for (the note about refreshing one at a time is only for who asked).
            type=_positive(int, at_most=MAX_CONCURRENCY),
            metavar="N",
            help=f"Refresh requests in flight at once, at most {MAX_CONCURRENCY} (default: {DEFAULT_CONCURRENCY}; "
            "one at a time on SQLite and inside a transaction).",
        )
        parser.add_argument(
            "--max-rate",
            type=_positive(float),
            metavar="PER_SECOND",
            help="At most this many refreshes per second (default: no limit).",
        )
        parser.add_argument(
            "--enqueue",
            action="store_true",
            help="Enqueue the due links on TRAKT_TASK_BACKEND, 25 to a refresh_links task, and exit.",
        )
        parser.add_argument(
            "--max-retry-after",
            type=_positive(float),
            default=30.0,
            metavar="SECONDS",
            help="Wait out a 429 whose Retry-After is at most this many seconds; longer ones wait for the next run "
            "(default: %(default)g).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user_ids = self._user_ids(options["users"]) if options["users"] else None
        self.verbosity = options["verbosity"]
        self.show_progress = self.verbosity >= 1 and self.stdout.isatty()
        self.done = 0
        self.failures = FailureKinds()
        if options["enqueue"]:
            self._enqueue(options, user_ids)
            return
        asked = options["concurrency"]
        concurrency = asked or DEFAULT_CONCURRENCY
        # Only who asked for threads hears why there are none (a dry run starts none anyway).
        if asked and asked > 1 and not options["dry_run"] and (reason := sequential_reason()) and self.verbosity >= 1:
            self.stderr.write(f"Note: {reason}.")
        stop = threading.Event()
        # -v 2 logs every failure; below, each kind once (the summary counts them).
        only_once = first_of_each_kind(PER_LINK_LOGGERS if self.verbosity < 2 else ())
        try:
            with _draining_on_signals(stop, self._stopping), only_once as repeats:
                report = refresh_due_tokens(
                    within=options["within"],
                    force=options["force"],
                    user_ids=user_ids,
                    limit=options["limit"],
                    concurrency=concurrency,
                    max_rate=options["max_rate"],
                    dry_run=options["dry_run"],
                    max_retry_after=options["max_retry_after"],
                    on_result=self._on_result,
                    stop=stop,
                )
        except DatabaseError as err:
            raise CommandError(f"Stopped by a database error: {one_line(str(err))}", returncode=FAILED_STATUS) from err
        except TraktSiteMisconfigured as err:
            # Every link would fail the same way, and none is flagged for it: fix, run again.
            raise CommandError(
                f"Stopped: {err} {err.NO_LINK_FLAGGED}",
                returncode=SITE_FAULT_STATUS,
            ) from err
        except TraktConfigurationError as err:
            raise CommandError(str(err), returncode=SITE_FAULT_STATUS) from err
        if self.show_progress:
            self.stdout.write("")
        if options["dry_run"]:
            self.stdout.write(f"Dry run: {self.done} links would be refreshed, {report.not_due} not due.")
            return
        summary = (
            f"{report.refreshed} refreshed, {report.not_due} not due, "
            f"{report.needs_reauth} need re-authorization, {report.failed} failed"
        )
        if report.abandoned_revoked:
            summary += f"; {report.abandoned_revoked} abandoned sign-ins revoked at Trakt"
        self._name_key_problems()
        self._name_failures(repeats.left_out)
        if report.stopped:
            self.stdout.write(summary)
            raise CommandError(
                f"Stopped by a signal: {report.not_started} links not started; the rest wait for the next run.",
                returncode=STOPPED_STATUS,
            )
        if report.stream_error:
            raise CommandError(
                f"{summary}. The list of due links was cut short by a database error "
                f"({one_line(report.stream_error)}); the rest wait for the next run.",
                returncode=FAILED_STATUS,
            )
        if report.failed:
            raise CommandError(f"{summary}. Failed links are retried on the next run.", returncode=FAILED_STATUS)
        self.stdout.write(self.style.SUCCESS(summary))

    def _name_failures(self, left_out: int) -> None:
        """One line per kind of failure (not one per link), and what the log left out."""
        if self.verbosity < 1:
            return
        for line in self.failures.lines():
            self.stderr.write(line, style_func=self.style.WARNING)
        if left_out:
            self.stderr.write(
                f"{left_out} log lines that repeat one above were left out (-v 2 logs each).",
                style_func=self.style.WARNING,
            )

    def _stopping(self, signum: int) -> None:
        self.stderr.write(
            f"{signal.Signals(signum).name}: finishing the refreshes in flight (at most {DRAIN_BOUND_HELP}), "
            "starting no more."
        )

    def _name_key_problems(self) -> None:
        """Every run, not only the one that flagged them: links no configured key decrypts."""
        if self.verbosity < 1:
            return
        flagged = Counter(
            TraktToken.objects.filter(status__in=TraktToken.DECRYPTION_FLAGS).values_list("status", flat=True)
        )
        if unreadable := flagged[TraktToken.Status.UNREADABLE]:
            self.stderr.write(
                f"{unreadable} links cannot be decrypted with TRAKT_TOKEN_KEYS: put the removed key back "
                "(they heal on the next run)."
            )
        if corrupted := flagged[TraktToken.Status.CORRUPTED]:
            self.stderr.write(f"{corrupted} links hold damaged ciphertext: those users must sign in with Trakt again.")

    def _enqueue(self, options: dict[str, Any], user_ids: list[int] | None) -> None:
        from django_trakt import task_queue, tasks

        if options["dry_run"]:
            raise UsageError("--enqueue and --dry-run do not go together.")
        if task_queue.backend() is None:
            raise UsageError(
                "--enqueue needs a task backend: set TRAKT_TASK_BACKEND to an alias of TASKS "
                "(run manage.py check for what is wrong with it)."
            )
        try:
            enqueued = tasks.enqueue_due(
                within=options["within"], force=options["force"], user_ids=user_ids, limit=options["limit"]
            )
        except TraktConfigurationError as err:
            raise CommandError(str(err), returncode=SITE_FAULT_STATUS) from err
        except task_queue.QueueUnavailable as err:
            raise CommandError(f"Stopped: {one_line(str(err))}.", returncode=FAILED_STATUS) from err
        noun = "due link" if enqueued == 1 else "due links"
        self.stdout.write(
            self.style.SUCCESS(f"{enqueued} {noun} enqueued for refresh on {trakt_settings.TASK_BACKEND!r}.")
        )

    def _user_ids(self, references: list[str]) -> list[int]:
        users = get_user_model()._default_manager
        ids = []
        for reference in references:
            by_name = users.filter(**{get_user_model().USERNAME_FIELD: reference})
            match = by_name.first() or (users.filter(pk=reference).first() if reference.isdigit() else None)
            if match is None:
                raise UsageError(f"No user {reference!r} (give a username or an id).")
            ids.append(match.pk)
        return ids

    def _on_result(self, candidate: Candidate, result: RefreshResult | None) -> None:
        self.done += 1
        if result is not None and result.outcome is Outcome.FAILED:
            self.failures.add(result.detail)
        name = candidate.trakt_username or f"account {candidate.account_id}"
        if result is None:
            if self.verbosity >= 1:
                self.stdout.write(f"would refresh {name}")
            return
        if self.verbosity >= 2:
            style = self.style.SUCCESS if result.outcome is Outcome.REFRESHED else self.style.WARNING
            self.stdout.write(style(f"{name}: {result.outcome.value} ({result.detail})"))
        elif self.show_progress:
            self.stdout.write(f"\r{self.done} links processed", ending="")
            self.stdout.flush()
