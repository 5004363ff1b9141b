"""Watchlists for templates: cached, page-time safe, never raising.

:func:`get_watchlist` is what ``{% trakt_watchlist %}`` calls; a view or a task can
call it too (``django_trakt.watchlists`` is its public home). What a list and its items are is
:mod:`django_trakt.internal.pages.watchlist_items`. It returns a :class:`WatchlistResult` and
never raises: when Trakt is slow, down or rate-limiting, the result carries the last good copy
(``stale``) or no items, and ``error`` says why.

Caching (Django's cache framework, alias ``TRAKT_CACHE``):

* One entry per list (``user:<pk>`` or ``trakt:<slug>``, type, sort): the items, when
  they were fetched, and for the user's own list the ``/sync/last_activities`` marker
  they match. The entry is kept for ``WATCHLIST_STALE_TTL`` (the "last good
  copy") and counts as fresh for ``TRAKT_WATCHLIST_TTL``: a fresh entry costs no
  request and no query.
* Past the TTL, the user's own list asks ``/sync/last_activities`` first (one call per
  user per TTL, shared by all their lists) and fetches the list again only if the
  watchlist changed. A public list (a Trakt username, no token) is fetched again.
* After a failure, a list is not asked for again for ``FAILURE_BACKOFF``
  seconds (a 429's ``Retry-After``, if longer), so a page never waits on a Trakt that
  is down, and a rate limit is not hammered.
* When an entry is being refreshed by another request, it is served as it is.
* An unknown or private Trakt username is not asked about again, whatever the type or
  sort, for ``WATCHLIST_NOT_FOUND_TTL`` seconds.

Budgets (the site must never become an amplifier that gets its Trakt app banned,
:mod:`django_trakt.internal.pages.page_budget`): every request sent to Trakt from here is first
counted, in the cache, against a budget per window of ``PAGE_CALL_PERIOD`` seconds.
Public lists share one site-wide budget
(``PAGE_CALL_BUDGET``: Trakt counts those calls against the app's key); a user's
own lists have a budget per user (``PAGE_USER_CALL_BUDGET``: Trakt counts those
against the user's token). A spent budget, or a cache that cannot count, means no call:
the stale copy or the empty state, with ``error == "busy"`` (or ``"unavailable"``).

Calls made here use ``TRAKT_PAGE_TIMEOUT`` and wait out a 429 only if its
``Retry-After`` is at most ``PAGE_RETRY_WAIT`` (0: never sleep in a render). No cache key
or log line contains a token.

With a task backend (``TRAKT_TASK_BACKEND``, :mod:`django_trakt.internal.core.dispatch`) a render
never asks Trakt: a copy past its TTL is shown as it is and one revalidation is enqueued
per copy (a mark in the cache, however many renders see it); a list never fetched shows
the empty ``"fetching"`` state and enqueues its first fetch. The task calls
:func:`revalidate`, which is the in-process path above, with the worker's full timeout.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
from itertools import islice
from typing import Any

from django_trakt.conf import trakt_settings
from django_trakt.exceptions import (
    TraktError,
    TraktForbidden,
    TraktNotFound,
    TraktNotLinked,
    TraktRateLimited,
    TraktReauthorizationRequired,
    TraktSiteMisconfigured,
    TraktUnauthorized,
)
from django_trakt.internal.core import clock, dispatch
from django_trakt.internal.core.cache import cache_call
from django_trakt.internal.links.client import PAGE_SIZE, TraktClient
from django_trakt.internal.pages.page_budget import PUBLIC_SCOPE, BudgetSpent, PageClient
from django_trakt.internal.pages.watchlist_items import (
    TYPES,
    WatchlistError,
    WatchlistResult,
    item_from_document,
    parse_limit,
    parse_sort,
    result_from_entry,
)

logger = logging.getLogger(__name__)

#: Bump when the cached entry's shape changes: old entries are then simply ignored.
CACHE_VERSION = 1
#: A 429's Retry-After is honoured as a backoff up to this many seconds.
MAX_BACKOFF = 3600.0
#: Seconds the last good copy is kept, to show while Trakt fails: a week covers an outage
#: and a weekend without anyone at hand (it was the setting TRAKT_WATCHLIST_STALE_TTL).
WATCHLIST_STALE_TTL = 7 * 24 * 3600.0
#: Seconds renders stop asking Trakt about a list after a failure: long enough not to hammer
#: a Trakt that is down, short enough that a blip is forgotten (was TRAKT_FAILURE_BACKOFF).
FAILURE_BACKOFF = 60.0
#: Seconds an unknown or private Trakt username is not asked about again: such a name rarely
#: changes, and each try costs the site-wide budget (was TRAKT_WATCHLIST_NOT_FOUND_TTL).
WATCHLIST_NOT_FOUND_TTL = 3600.0
#: The longest 429 Retry-After a render waits out: 0, a page never sleeps; the list comes from
#: the cache or the next render instead (was TRAKT_PAGE_RETRY_WAIT).
PAGE_RETRY_WAIT = 0.0
_SLUG = re.compile(r"[^a-z0-9_]+")

# -- whose list ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Owner:
    """The user's own list (``user`` set) or a public list by Trakt slug."""

    key: str
    user: Any = None
    slug: str = ""

    @property
    def budget_scope(self) -> str:
        # Trakt counts a user-token call against that user and an app-key call against the
        # app: own lists get a budget per user, public lists share the site's.
        return self.key if self.user is not None else PUBLIC_SCOPE

    def client(self, *, background: bool = False) -> TraktClient:
        # A task worker keeps nobody waiting: it gets the full timeout and waits for a refresh.
        options: dict[str, Any] = {
            "scope": self.budget_scope,
            "timeout": None if background else trakt_settings.PAGE_TIMEOUT,
            "max_retry_wait": PAGE_RETRY_WAIT,
            "refresh_wait": None if background else trakt_settings.PAGE_TIMEOUT,
        }
        if self.user is not None:
            return PageClient.for_user(self.user, **options)
        return PageClient(**options)

    def path(self, list_type: str, sort_by: str, sort_how: str) -> str:
        base = "sync/watchlist" if self.user is not None else f"users/{self.slug}/watchlist"
        return f"{base}/{list_type}/{sort_by}/{sort_how}"


def _owner(user_or_username: Any) -> _Owner | WatchlistError:
    if isinstance(user_or_username, str):
        slug = _SLUG.sub("-", user_or_username.strip().lower()).strip("-")[:100]
        return _Owner(key=f"trakt:{slug}", slug=slug) if slug else WatchlistError.INVALID
    if user_or_username is None or not hasattr(user_or_username, "is_authenticated"):
        return WatchlistError.INVALID if user_or_username is not None else WatchlistError.NOT_LINKED
    if not user_or_username.is_authenticated or user_or_username.pk is None:
        return WatchlistError.NOT_LINKED
    return _Owner(key=f"user:{user_or_username.pk}", user=user_or_username)


# -- cache, never failing ----------------------------------------------------------------------


def cache_key(owner_key: str, list_type: str, sort_by: str, sort_how: str) -> str:
    return f"django_trakt:watchlist:v{CACHE_VERSION}:{owner_key}:{list_type}:{sort_by}:{sort_how}"


def _activities_key(owner_key: str) -> str:
    return f"django_trakt:activities:v{CACHE_VERSION}:{owner_key}"


def _activity_marker(document: Any, list_type: str) -> str | None:
    """What must be unchanged for a cached list to still be right (None: unknown, refetch)."""
    if not isinstance(document, dict):
        return None
    watchlist = document.get("watchlist")
    updated = watchlist.get("updated_at") if isinstance(watchlist, dict) else None
    if not isinstance(updated, str):
        return None
    per_type = []
    for kind in TYPES[list_type]:
        section = document.get(f"{kind}s")
        per_type.append(section.get("watchlisted_at") if isinstance(section, dict) else None)
    return json.dumps([updated, per_type])


def _missing_key(owner_key: str) -> str:
    """An unknown or private public user: one entry for all its types and sorts."""
    return f"django_trakt:watchlist:v{CACHE_VERSION}:{owner_key}:missing"


def _last_activities(owner: _Owner, client: TraktClient, now: float) -> Any:
    """``/sync/last_activities``, asked at most once per TTL per user (all lists share it)."""
    key = _activities_key(owner.key)
    cached = cache_call("get", key)
    if isinstance(cached, dict) and now - cached.get("at", 0) < trakt_settings.WATCHLIST_TTL:
        return cached.get("document")
    document = client.get("sync/last_activities")
    cache_call("set", key, {"document": document, "at": now}, trakt_settings.WATCHLIST_TTL)
    return document


def _fetch(client: TraktClient, path: str, limit: int) -> tuple[list[dict[str, Any]], bool]:
    """Up to ``limit`` items, page by page (one request per page); and whether that is all."""
    documents = list(islice(client.iter_pages(path, {"extended": "images"}, limit=min(limit, PAGE_SIZE)), limit))
    items = [item for item in map(item_from_document, documents) if item is not None]
    return items, len(documents) < limit


def _covers(entry: Any, limit: int) -> bool:
    return isinstance(entry, dict) and (entry.get("complete") or len(entry.get("items", ())) >= limit)


def _error_for(err: TraktError, owner: _Owner) -> WatchlistError:
    if isinstance(err, TraktRateLimited):
        return WatchlistError.RATE_LIMITED
    if owner.user is None and isinstance(err, TraktNotFound):
        return WatchlistError.NOT_FOUND
    if owner.user is None and isinstance(err, (TraktUnauthorized, TraktForbidden)):
        return WatchlistError.PRIVATE
    return WatchlistError.UNAVAILABLE


# -- the function under the tag -------------------------------------------------------------------


def get_watchlist(user_or_username: Any, type: str = "all", sort: str = "rank", limit: Any = None) -> WatchlistResult:
    """A watchlist for a template: a user's own (a ``User``) or a public one (a Trakt username).

    ``type``: all, movies, shows, seasons or episodes. ``sort``: Trakt's ``sort_by``
    (rank, added, title, released, ...), ``"-added"`` for descending. ``limit``: at
    most this many items (capped at ``WATCHLIST_MAX_ITEMS``). Never raises.
    With a task backend it never asks Trakt either (see the module's docs).
    """
    return _watchlist(user_or_username, type, sort, limit, background=False)


def revalidate(user_or_username: Any, type: str = "all", sort: str = "rank", limit: Any = None) -> WatchlistResult:
    """:func:`get_watchlist` as a task worker runs it: asks Trakt when the copy is past its TTL.

    Safe to run twice or at once on several workers: a fresh copy costs nothing, and a
    copy another worker is fetching is left to it.
    """
    return _watchlist(user_or_username, type, sort, limit, background=True)


def _revalidation_mark(key: str, entry: dict[str, Any] | None) -> str:
    # One mark per copy (its fetch time names it): a new copy may be revalidated again.
    return f"{key}:queued:{entry['at'] if entry is not None else 'none'}"


def _enqueue_revalidation(
    key: str, entry: dict[str, Any] | None, owner: _Owner, list_type: str, sort: str, limit: int
) -> bool | None:
    """Hand the fetch to a worker: True (queued, now or by an earlier render), False (the
    cache cannot tell: show what there is), None (not queued: fetch in process)."""
    mark = _revalidation_mark(key, entry)
    # Expires, so a job the queue lost is enqueued again by a later render.
    added = cache_call("add", mark, True, max(60, math.ceil(trakt_settings.WATCHLIST_TTL)))
    if added is None:
        return False  # the cache is down: as without a backend, pages then ask Trakt nothing
    if not added:
        return True
    user_id = owner.user.pk if owner.user is not None else None
    if dispatch.enqueue(dispatch.REVALIDATE_WATCHLIST, user_id, owner.slug or None, list_type, sort, limit):
        return True
    cache_call("delete", mark)
    return None


def _watchlist(user_or_username: Any, type: Any, sort: Any, limit: Any, *, background: bool) -> WatchlistResult:
    list_type = type.strip().lower() if isinstance(type, str) else ""
    parsed_sort = parse_sort(sort)
    owner = _owner(user_or_username)
    if list_type not in TYPES or parsed_sort is None:
        return WatchlistResult([], list_type if list_type in TYPES else "all", error=WatchlistError.INVALID)
    if isinstance(owner, WatchlistError):
        return WatchlistResult([], list_type, error=owner)
    sort_by, sort_how = parsed_sort
    limit = parse_limit(limit)
    key = cache_key(owner.key, list_type, sort_by, sort_how)
    entry = cache_call("get", key)
    if not (isinstance(entry, dict) and entry.get("v") == CACHE_VERSION):
        entry = None
    now = clock.now()
    usable = entry is not None and _covers(entry, limit)
    if usable and now - entry["at"] < trakt_settings.WATCHLIST_TTL:
        return result_from_entry(entry, list_type, limit)

    def fallback(error: str) -> WatchlistResult:
        if entry is None:
            return WatchlistResult([], list_type, error=WatchlistError(error))
        return result_from_entry(entry, list_type, limit, stale=True, error=error)

    # A public name found unknown or private is not asked about again for any type or sort.
    backoff_keys = [key + ":backoff"] if owner.user is not None else [_missing_key(owner.key), key + ":backoff"]
    for backoff in (cache_call("get_many", backoff_keys) or {}).values():
        if isinstance(backoff, dict) and now < backoff.get("until", 0):
            return fallback(backoff.get("error", WatchlistError.UNAVAILABLE))
    if not background and dispatch.active():
        sort_name = ("-" if sort_how == "desc" else "") + sort_by
        queued = _enqueue_revalidation(key, entry, owner, list_type, sort_name, limit)
        if queued is not None:
            if entry is not None:
                # Not "stale": Trakt did not fail, the copy is being brought up to date.
                return result_from_entry(entry, list_type, limit)
            error = WatchlistError.FETCHING if queued else WatchlistError.UNAVAILABLE
            return WatchlistResult([], list_type, error=error)
    lock_key = key + ":lock"
    locked = bool(cache_call("add", lock_key, True, max(1, round(trakt_settings.PAGE_TIMEOUT * 4))))
    if usable and not locked:
        return result_from_entry(entry, list_type, limit)  # another request is refreshing it right now
    try:
        client = owner.client(background=background)
        marker = None
        if owner.user is not None:
            marker = _activity_marker(_last_activities(owner, client, now), list_type)
            if usable and marker is not None and entry.get("marker") == marker:
                entry = {**entry, "at": now}
                cache_call("set", key, entry, WATCHLIST_STALE_TTL)
                return result_from_entry(entry, list_type, limit)
        items, complete = _fetch(client, owner.path(list_type, sort_by, sort_how), limit)
    except BudgetSpent as spent:
        # No backoff is stored: the budget itself says when pages may ask again.
        return fallback(spent.error)
    except TraktNotLinked:
        return WatchlistResult([], list_type, error=WatchlistError.NOT_LINKED)
    except TraktReauthorizationRequired:
        return fallback(WatchlistError.REAUTHORIZE)
    except TraktError as err:
        if isinstance(err, TraktSiteMisconfigured):
            # The visitor sees "unavailable"; the operator gets what to fix (no token in it).
            logger.error("Trakt watchlist not fetched: %s %s", err, err.NO_LINK_FLAGGED)
        error = _error_for(err, owner)
        backoff_key, seconds = key + ":backoff", FAILURE_BACKOFF
        if isinstance(err, TraktRateLimited) and err.retry_after:
            seconds = max(seconds, min(err.retry_after, MAX_BACKOFF))
        if error in (WatchlistError.NOT_FOUND, WatchlistError.PRIVATE):
            # Trakt's answer about a name does not change soon: a visitor cycling through
            # names or sorts costs one call per name per TTL, not one per render.
            backoff_key, seconds = _missing_key(owner.key), WATCHLIST_NOT_FOUND_TTL
        logger.warning(
            "Trakt watchlist %s/%s not fetched (%s): %s", owner.key, list_type, error, err.__class__.__name__
        )
        if seconds > 0:
            cache_call("set", backoff_key, {"error": str(error), "until": now + seconds}, math.ceil(seconds))
        return fallback(error)
    finally:
        if locked:
            cache_call("delete", lock_key)
    entry = {"v": CACHE_VERSION, "items": items, "complete": complete, "marker": marker, "at": now}
    cache_call("set", key, entry, WATCHLIST_STALE_TTL)
    return result_from_entry(entry, list_type, limit)
