"""What refreshes on every task worker may send to Trakt together: a budget in the site's cache.

The command's batch spaces its refreshes inside one process (``--max-rate``, and a pause
after a long 429). Refresh tasks run on many workers on many machines, so their limit
lives where all of them see it, the app's cache (``TRAKT_CACHE``):

- at most ``TRAKT_REFRESH_RATE`` refreshes start per second, counted in a key per second
  (``add`` then ``incr``, atomic in Redis and Memcached);
- a 429 whose ``Retry-After`` is long pauses every worker's refreshes until then: more
  requests in that time would only prolong Cloudflare's block (trakt/trakt-api#909).

A cache that cannot count lets the refresh go: a refresh that is due and not sent is a
user who may have to sign in again, and Trakt's own 429 is still obeyed (the pause).
"""

from __future__ import annotations

import math

from django_trakt.conf import trakt_settings
from django_trakt.internal.core import clock
from django_trakt.internal.core.cache import cache_call

_PAUSE_KEY = "django_trakt:refresh_pause:v1"


def _window_key(second: int) -> str:
    return f"django_trakt:refresh_rate:v1:{second}"


def take_slot() -> float:
    """Claim one refresh start now: 0.0 when it may go, else the seconds to wait before asking again."""
    pause = paused_for()
    if pause > 0:
        return pause
    rate = trakt_settings.REFRESH_RATE
    if rate <= 0:
        return 0.0
    now = clock.now()
    second = int(now)
    key = _window_key(second)
    if cache_call("add", key, 0, 5) is None:
        return 0.0
    count = cache_call("incr", key)
    if not isinstance(count, int) or count <= rate:
        return 0.0
    return max(0.01, second + 1 - now)


def pause(seconds: float) -> None:
    """Trakt asked to wait ``seconds`` (a 429): every worker's refreshes wait until then."""
    until = clock.now() + seconds
    if until > paused_until():
        cache_call("set", _PAUSE_KEY, until, math.ceil(seconds) + 1)


def paused_until() -> float:
    value = cache_call("get", _PAUSE_KEY)
    return float(value) if isinstance(value, (int, float)) else 0.0


def paused_for() -> float:
    return max(0.0, paused_until() - clock.now())
