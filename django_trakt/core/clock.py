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

import time


def now() -> float:
    """Seconds since the epoch."""
    return time.time()


def monotonic() -> float:
    """A clock for spacing calls apart (the batch's rate limit), unaffected by clock changes."""
    return time.monotonic()


def sleep(seconds: float) -> None:
    """Wait ``seconds`` (a wait Trakt asked for, or a backoff)."""
    time.sleep(seconds)
