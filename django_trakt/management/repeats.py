"""Repeated failures said once: when Trakt is down, every link fails the same way.

A run over 500 links against a stopped Trakt would otherwise log two warnings per attempt
(the HTTP layer's and the refresh's), three attempts per link: 3000 lines saying one thing.
At the default verbosity the command logs the first warning of each kind and counts the
rest (:class:`FirstOfEachKind`), and its summary gives one line per kind of failure
(:class:`FailureKinds`): ``500 links failed: Trakt could not be reached for POST /oauth/token``.

Two messages are of one kind when they differ only in their numbers (an account id, a
status code, a number of seconds).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator

_NUMBER = re.compile(r"\d+")


def kind_of(message: str) -> str:
    """``message`` with its numbers blanked out: what a failure was, whichever link it hit."""
    return _NUMBER.sub("#", message)


class FirstOfEachKind(logging.Filter):
    """Passes a warning (or worse) only the first time its kind is seen; counts the others.

    Attached to loggers, so it applies to whatever handlers the site configured: their
    log lines are summarised too, for as long as the filter is attached. Records below
    WARNING pass untouched. Safe to call from several threads (the batch's workers log).
    """

    def __init__(self) -> None:
        super().__init__()
        self.left_out = 0
        self._seen: set[tuple[str, int, str]] = set()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, kind_of(record.getMessage()))
        with self._lock:
            if key in self._seen:
                self.left_out += 1
                return False
            self._seen.add(key)
            return True


@contextlib.contextmanager
def first_of_each_kind(logger_names: Iterable[str]) -> Iterator[FirstOfEachKind]:
    """While the block runs, the named loggers pass each kind of warning once."""
    only_once = FirstOfEachKind()
    loggers = [logging.getLogger(name) for name in logger_names]
    for logger in loggers:
        logger.addFilter(only_once)
    try:
        yield only_once
    finally:
        for logger in loggers:
            logger.removeFilter(only_once)


class FailureKinds:
    """How many links failed of each kind, and the first message of each (in order of first sight)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.first: dict[str, str] = {}

    def add(self, message: str) -> None:
        kind = kind_of(message)
        self.first.setdefault(kind, message)
        self.counts[kind] += 1

    def lines(self) -> list[str]:
        """``"12 links failed: Trakt could not be reached for POST /oauth/token"``, one per kind."""
        return [
            f"{self.counts[kind]} {'link' if self.counts[kind] == 1 else 'links'} failed: {first}"
            for kind, first in self.first.items()
        ]
