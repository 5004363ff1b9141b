"""``manage.py refresh_trakt_tokens``: refresh every Trakt link that is due.

Run it on a schedule (hourly suits the default ``--within 6h``); see the README. With
``--enqueue`` it refreshes nothing itself: it enqueues one task per due link on the
site's task queue (``TRAKT_TASK_BACKEND``) and exits.
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
from django_trakt.core import clock
from django_trakt.exceptions import TraktConfigurationError, TraktSiteMisconfigured
from django_trakt.links.batch import Candidate, refresh_due_tokens, sequential_reason
from django_trakt.links.refresh import DEFAULT_MARGIN, Outcome, RefreshResult
from django_trakt.management.base import TraktCommand, one_line, usage_error
from django_trakt.models import TraktToken

#: Exit status when the site's configuration stops the run (1: some links failed and are
#: retried on the next run; 2: a bad option).
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


_Number = TypeVar("_Number", int, float)


# The converters raise ArgumentTypeError, the one exception argparse reports as
# "argument --option: <message>" (through the parser's error()); it names the option,
# so the messages do not.
def _positive(kind: type[_Number]) -> Callable[[str], _Number]:
    """An argparse ``type=`` for a positive (and finite) ``int`` or ``float``."""
    noun = "whole number" if kind is int else "number"

    def convert(value: str) -> _Number:
        message = f"must be a positive {noun}, not {value!r}."
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(message) from None
        # float() accepts "nan" and "inf": neither is a usable rate or delay.
        if not math.isfinite(number) or number <= 0:
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
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 6h, 90m, 1d or 3600 (seconds), not {value!r}."
        ) from None
    except OverflowError:  # timedelta's limit (999999999 days)
        duration = MAX_WITHIN + dt.timedelta(days=1)
    if duration > MAX_WITHIN:
        raise argparse.ArgumentTypeError(f"{value!r} is too long a duration (at most {MAX_WITHIN.days}d).")
    return duration


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


class Command(TraktCommand):
    help = (
        "Refresh the Trakt tokens that expire soon (run it on a schedule, e.g. hourly). "
        "Exit status: 0 done, 1 some links failed (retried on the next run), 2 bad option, "
        f"3 the site's configuration stopped the run, {STOPPED_STATUS} stopped by SIGTERM/SIGINT: "
        "no refresh starts after the signal, those in flight finish, the summary is printed, "
        f"within {DRAIN_BOUND_HELP}."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--within",
            type=_duration,
            default=DEFAULT_MARGIN,
            help="Refresh links expiring within this margin (default: 6h; e.g. 90m, 1d, 3600).",
        )
        parser.add_argument("--dry-run", action="store_true", help="List what would be refreshed; change nothing.")
        parser.add_argument(
            "--user",
            action="append",
            dest="users",
            metavar="USER",
            help="Only this user's link (username or id); repeat for several.",
        )
        parser.add_argument("--force", action="store_true", help="Refresh even links that are not due.")
        parser.add_argument("--limit", type=_positive(int), help="Refresh at most this many links.")
        parser.add_argument(
            "--concurrency",
            type=_positive(int),
            default=4,
            help="Refresh requests in flight at once (default: 4).",
        )
        parser.add_argument("--max-rate", type=_positive(float), help="At most this many refreshes per second.")
        parser.add_argument(
            "--enqueue",
            action="store_true",
            help="Enqueue one refresh task per due link on TRAKT_TASK_BACKEND and exit (workers refresh them).",
        )
        parser.add_argument(
            "--max-retry-after",
            type=_positive(float),
            default=30.0,
            help="Wait out a 429 whose Retry-After is at most this many seconds; longer ones wait for the next run.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["concurrency"] > 64:
            raise usage_error("--concurrency must be at most 64.")
        user_ids = self._user_ids(options["users"]) if options["users"] else None
        self.verbosity = options["verbosity"]
        self.show_progress = self.verbosity >= 1 and self.stdout.isatty()
        self.done = 0
        if options["enqueue"]:
            self._enqueue(options, user_ids)
            return
        if options["concurrency"] > 1 and (reason := sequential_reason()) and self.verbosity >= 1:
            self.stderr.write(f"Note: {reason}.")
        stop = threading.Event()
        try:
            with _draining_on_signals(stop, self._stopping):
                report = refresh_due_tokens(
                    within=options["within"],
                    force=options["force"],
                    user_ids=user_ids,
                    limit=options["limit"],
                    concurrency=options["concurrency"],
                    max_rate=options["max_rate"],
                    dry_run=options["dry_run"],
                    max_retry_after=options["max_retry_after"],
                    on_result=self._on_result,
                    stop=stop,
                )
        except DatabaseError as err:
            raise CommandError(f"Stopped by a database error: {one_line(str(err))}", returncode=1) from err
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
                returncode=1,
            )
        if report.failed:
            raise CommandError(f"{summary}. Failed links are retried on the next run.", returncode=1)
        self.stdout.write(self.style.SUCCESS(summary))

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
        from django_trakt import tasks

        if options["dry_run"]:
            raise usage_error("--enqueue and --dry-run do not go together.")
        if tasks.backend() is None:
            raise usage_error(
                "--enqueue needs a task backend: set TRAKT_TASK_BACKEND to an alias of TASKS "
                "(run manage.py check for what is wrong with it)."
            )
        try:
            enqueued = tasks.enqueue_due(
                within=options["within"], force=options["force"], user_ids=user_ids, limit=options["limit"]
            )
        except TraktConfigurationError as err:
            raise CommandError(str(err), returncode=SITE_FAULT_STATUS) from err
        except tasks.QueueUnavailable as err:
            raise CommandError(f"Stopped: {one_line(str(err))}.", returncode=1) from err
        self.stdout.write(self.style.SUCCESS(f"{enqueued} refresh tasks enqueued on {trakt_settings.TASK_BACKEND!r}."))

    def _user_ids(self, references: list[str]) -> list[int]:
        users = get_user_model()._default_manager
        ids = []
        for reference in references:
            by_name = users.filter(**{get_user_model().USERNAME_FIELD: reference})
            match = by_name.first() or (users.filter(pk=reference).first() if reference.isdigit() else None)
            if match is None:
                raise usage_error(f"No user {reference!r} (give a username or an id).")
            ids.append(match.pk)
        return ids

    def _on_result(self, candidate: Candidate, result: RefreshResult | None) -> None:
        self.done += 1
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
