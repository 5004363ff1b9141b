"""The app's cache (``TRAKT_CACHE``): calls that never fail, short locks on ``add``, window counts.

Watchlists, image failures, device-flow budgets and page budgets all live in the site's
cache. A cache that is down must not turn a page into a 500, so every call goes through
:func:`cache_call`, which logs and answers None instead of raising.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Callable
from typing import Any

from django.core.cache import DEFAULT_CACHE_ALIAS, caches

from django_trakt.internal.core import clock

logger = logging.getLogger(__name__)

#: Which cache is the app's. ``core`` sits below the settings (``conf`` reads numbers through
#: ``core.numbers``), so it is told how to read ``TRAKT_CACHE`` rather than importing ``conf``:
#: the app's ``ready()`` installs ``conf``'s reader (:func:`read_alias_with`). Until then, Django's
#: default cache, which is also the setting's default.
_alias_reader: Callable[[], str] = lambda: DEFAULT_CACHE_ALIAS  # noqa: E731


def read_alias_with(reader: Callable[[], str]) -> None:
    """Name the app's cache by ``reader()`` from now on (``apps.ready``: ``conf``'s ``TRAKT_CACHE``)."""
    global _alias_reader
    _alias_reader = reader


def cache_alias() -> str:
    return _alias_reader()


def trakt_cache() -> Any:
    return caches[cache_alias()]


def cache_call(method: str, *args: Any, **kwargs: Any) -> Any:
    """``trakt_cache().<method>(...)``, or None (logged) when the cache fails."""
    try:
        return getattr(trakt_cache(), method)(*args, **kwargs)
    except Exception:
        logger.warning("The Trakt cache %r failed on %s", cache_alias(), method, exc_info=True)
        return None


def take_lock(key: str, seconds: int) -> tuple[str, bool | None]:
    """Take ``key`` for ``seconds`` if nobody holds it (``add`` is atomic in every backend).

    Gives the ticket to release it with, and True (taken now), False (someone holds it)
    or None (the cache is down: a caller that needs the lock to stop a burst then does
    nothing that the lock guards).
    """
    ticket = secrets.token_hex(8)
    added = cache_call("add", key, ticket, seconds)
    return ticket, None if added is None else bool(added)


def release_lock(key: str, ticket: str) -> None:
    """Release ``key`` if it is still ours: past its expiry it may be another holder's."""
    if cache_call("get", key) == ticket:
        cache_call("delete", key)


def count_in_window(name: str, period: float) -> tuple[int, int] | None:
    """Count one more event of ``name`` in the current window of ``period`` seconds.

    Gives the count so far in this window (this one included) and the seconds until the
    next window, or None when the cache cannot count (a caller then makes no call: an
    uncounted call is what a budget exists to prevent).

    A fixed window, numbered from :func:`clock.now`: the key names the window, so the
    count restarts when the clock (real or a test's) enters the next one, whatever the
    cache's own expiry does. Counted with ``add`` then ``incr``, both atomic in Django's
    cache backends (not the database cache, whose ``incr`` is a read then a write):
    requests in every process share it. At a window's edge up to twice a budget can pass
    in one period. An event refused by its caller is counted too.
    """
    now = clock.now()
    window = int(now // period)
    key = f"{name}:{window}"
    # Outlives its window in real time, so a count is never dropped while its window lasts.
    seconds = math.ceil(period) + 60
    if cache_call("add", key, 0, seconds) is None:
        return None
    count = cache_call("incr", key)
    if count is None:
        # ``incr`` raises ValueError for a key that is gone (evicted since the ``add``), and
        # cache_call answers None for that as for an outage: start the count again, once.
        added = cache_call("add", key, 1, seconds)
        if added is None:
            return None
        count = 1 if added else cache_call("incr", key)  # not added: another request started it meanwhile
    if not isinstance(count, int):
        return None
    return count, max(1, math.ceil((window + 1) * period - now))
