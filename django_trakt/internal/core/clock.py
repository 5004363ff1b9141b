"""The app's clock: the one seam through which tests move time or skip waits.

Every decision that depends on the time of day (a cached copy's freshness, a budget's
window, when a device code may be polled) reads :func:`now`, and every wait that Trakt
asked for (``Retry-After``, a rate limit, a retry's backoff) goes through :func:`sleep`.
Tests replace these two functions, not ``time.time``/``time.sleep``: those are the
stdlib's, shared by every thread (the local Trakt's server included).

Rate limits space calls with :func:`monotonic`. Deadlines that bound real input/output
(an image download, waiting for a rescue thread) use ``time.monotonic`` directly: they
measure elapsed time, not a decision.
"""

from __future__ import annotations

import threading
import time

#: Set while a command drains after SIGTERM/SIGINT: waits end at once, so a backoff or a
#: 429's wait cannot hold a stopping process past its bound.
_waits_cut_short = threading.Event()


def now() -> float:
    """Seconds since the epoch."""
    return time.time()


def monotonic() -> float:
    """A clock for spacing calls apart (the batch's rate limit), unaffected by clock changes."""
    return time.monotonic()


def sleep(seconds: float) -> None:
    """Wait ``seconds`` (a wait Trakt asked for, or a backoff); at once while :func:`cut_waits_short`."""
    _waits_cut_short.wait(seconds)


def cut_waits_short(cut: bool = True) -> None:
    """End every :func:`sleep` now and until called again with ``cut=False`` (a draining process)."""
    if cut:
        _waits_cut_short.set()
    else:
        _waits_cut_short.clear()
