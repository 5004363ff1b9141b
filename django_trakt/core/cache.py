"""The app's cache (``TRAKT_CACHE``): calls that never fail, and short locks built on ``add``.

Watchlists, image failures, device-flow budgets and page budgets all live in the site's
cache. A cache that is down must not turn a page into a 500, so every call goes through
:func:`cache_call`, which logs and answers None instead of raising.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from django.core.cache import caches

from django_trakt.conf import trakt_settings

logger = logging.getLogger(__name__)


def trakt_cache() -> Any:
    return caches[trakt_settings.CACHE]


def cache_call(method: str, *args: Any, **kwargs: Any) -> Any:
    """``trakt_cache().<method>(...)``, or None (logged) when the cache fails."""
    try:
        return getattr(trakt_cache(), method)(*args, **kwargs)
    except Exception:
        logger.warning("The Trakt cache %r failed on %s", trakt_settings.CACHE, method, exc_info=True)
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
