"""What a watchlist is for a page: Trakt's documents read into items, and the tag's arguments.

:func:`item_from_document` reads one item of Trakt's ``/watchlist`` answer (anything it does
not understand is skipped, never an error); :class:`WatchlistResult` of :class:`WatchlistItem`
is what a page gets, with ``error`` a :class:`WatchlistError`. :func:`parse_sort` and
:func:`parse_limit` read the tag's ``sort`` and ``limit``. Where the lists come from (the
cache, Trakt, the budget) is :mod:`django_trakt.internal.pages.watchlist`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Iterator
from typing import Any

from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext, gettext_lazy

from django_trakt.conf import trakt_settings
from django_trakt.internal.pages import images

#: ``type`` values of the tag -> the item kinds they select (Trakt's URL segments).
TYPES: dict[str, tuple[str, ...]] = {
    "all": ("movie", "show", "season", "episode"),
    "movies": ("movie",),
    "shows": ("show",),
    "seasons": ("season",),
    "episodes": ("episode",),
}
#: Trakt's ``sort_by`` values for watchlists, in the contract's order (trakt/trakt-api,
#: ``projects/api/src/contracts/users/schema/request/sortParamsSchema.ts``); ``"-added"``
#: sorts descending. ``my_rating`` and ``random`` are not in the contract: gone.
SORTS: tuple[str, ...] = ("rank", "added", "title", "released", "runtime", "popularity", "percentage", "votes")
#: The most items a tag fetches (its ``limit`` is capped): each page of items is a Trakt call
#: from the page budget, and a page showing more is a list, not a widget (was the setting
#: TRAKT_WATCHLIST_MAX_ITEMS).
WATCHLIST_MAX_ITEMS = 100
KIND_LABELS = {
    "movie": gettext_lazy("Movie"),
    "show": gettext_lazy("Show"),
    "season": gettext_lazy("Season"),
    "episode": gettext_lazy("Episode"),
}


class WatchlistError(enum.StrEnum):
    """Why a :class:`WatchlistResult` is empty or stale (compare with strings in templates)."""

    NONE = ""
    INVALID = "invalid"  # a bad type, sort or user argument
    NOT_LINKED = "not_linked"  # the user has no Trakt account linked
    REAUTHORIZE = "reauthorize"  # the link needs the user to sign in with Trakt again
    NOT_FOUND = "not_found"  # no such Trakt user
    PRIVATE = "private"  # the Trakt user's lists are private
    RATE_LIMITED = "rate_limited"  # Trakt answered 429
    UNAVAILABLE = "unavailable"  # Trakt is down, slow, or answered something unusable
    BUSY = "busy"  # this site's budget of Trakt calls for pages is spent for now: try later
    FETCHING = "fetching"  # never fetched yet: a task worker is fetching it (TRAKT_TASK_BACKEND)


@dataclasses.dataclass(frozen=True)
class WatchlistItem:
    """One movie, show, season or episode of a watchlist, ready for a template."""

    kind: str
    title: str
    year: int | None = None
    url: str = ""
    rank: int | None = None
    show_title: str = ""
    season: int | None = None
    number: int | None = None
    poster_url: str = ""
    listed: str = ""

    @property
    def kind_label(self) -> str:
        return str(KIND_LABELS.get(self.kind, self.kind))

    @property
    def display_title(self) -> str:
        """The title as a person reads it: seasons and episodes name their show."""
        if self.kind == "season":
            label = self.title or gettext("Season %(number)s") % {"number": self.season}
            return f"{self.show_title}: {label}" if self.show_title else label
        if self.kind == "episode":
            code = f"{self.season or 0}x{self.number or 0:02d}"
            return " ".join(part for part in (self.show_title, code, self.title) if part)
        return self.title

    @property
    def listed_at(self) -> dt.datetime | None:
        return parse_datetime(self.listed) if self.listed else None


@dataclasses.dataclass(frozen=True)
class WatchlistResult:
    """What a watchlist tag renders: iterable over its items.

    ``stale``: the items are the last good copy, Trakt could not give a fresh one.
    ``error``: a :class:`WatchlistError` ("" when all went well).
    """

    items: list[WatchlistItem]
    type: str = "all"
    stale: bool = False
    error: str = WatchlistError.NONE

    def __iter__(self) -> Iterator[WatchlistItem]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)


# -- reading Trakt's documents --------------------------------------------------------------


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _poster_source(media: dict[str, Any], kind: str) -> Any:
    found = media.get("images")
    if not isinstance(found, dict):
        return None
    for key in ("screenshot", "poster", "thumb") if kind == "episode" else ("poster", "thumb"):
        urls = found.get(key)
        if isinstance(urls, list) and urls:
            return urls[0]
        if isinstance(urls, str):
            return urls
    return None


def _page_id(media: dict[str, Any]) -> str:
    ids = _dict(media.get("ids"))
    value = ids.get("slug") or ids.get("trakt")
    return str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""


def item_from_document(document: Any) -> dict[str, Any] | None:
    """A cacheable dict for one item of Trakt's watchlist answer; None if it cannot be shown."""
    if not isinstance(document, dict):
        return None
    kind = document.get("type")
    media = document.get(kind) if isinstance(kind, str) else None
    if kind not in KIND_LABELS or not isinstance(media, dict):
        return None
    show = _dict(document.get("show"))
    web = trakt_settings.WEB_URL
    media_id, show_id = _page_id(media), _page_id(show)
    season = _int(media.get("season")) if kind == "episode" else _int(media.get("number"))
    number = _int(media.get("number")) if kind == "episode" else None
    if kind == "movie":
        url = f"{web}/movies/{media_id}" if media_id else ""
    elif kind == "show":
        url = f"{web}/shows/{media_id}" if media_id else ""
    elif kind == "season":
        url = f"{web}/shows/{show_id}/seasons/{season}" if show_id and season is not None else ""
    else:
        url = (
            f"{web}/shows/{show_id}/seasons/{season}/episodes/{number}"
            if show_id and None not in (season, number)
            else ""
        )
    title = _str(media.get("title"))
    if not title and kind in ("movie", "show"):
        return None
    poster = _poster_source(media, kind) or (_poster_source(show, "show") if kind == "season" else None)
    return {
        "kind": kind,
        "title": title,
        "year": _int(media.get("year")) if kind in ("movie", "show") else _int(show.get("year")),
        "url": url,
        "rank": _int(document.get("rank")),
        "show_title": _str(show.get("title")),
        "season": season,
        "number": number,
        "poster": images.poster_token(poster) if poster else "",
        "listed": _str(document.get("listed_at")),
    }


def result_from_entry(
    entry: dict[str, Any], list_type: str, limit: int, *, stale: bool = False, error: str = ""
) -> WatchlistResult:
    prefix = images.poster_url_prefix()
    items = [
        WatchlistItem(
            kind=data["kind"],
            title=data["title"],
            year=data["year"],
            url=data["url"],
            rank=data["rank"],
            show_title=data["show_title"],
            season=data["season"],
            number=data["number"],
            poster_url=prefix + data["poster"] if prefix and data["poster"] else "",
            listed=data["listed"],
        )
        for data in entry["items"][:limit]
    ]
    return WatchlistResult(items, list_type, stale, WatchlistError(error))


def parse_sort(sort: Any) -> tuple[str, str] | None:
    if not isinstance(sort, str):
        return None
    sort = sort.strip().lower()
    how = "desc" if sort.startswith("-") else "asc"
    sort = sort.lstrip("-")
    return (sort, how) if sort in SORTS else None


def is_valid_sort(sort: Any) -> bool:
    """Whether ``sort`` is one of :data:`SORTS`, optionally with a leading ``-``."""
    return parse_sort(sort) is not None


def sort_error(sort: Any) -> str:
    """What is wrong with an unknown ``sort``, naming the sorts Trakt accepts."""
    return (
        f"trakt_watchlist: unknown sort {sort!r}; use one of {', '.join(SORTS)} "
        f"(a leading '-' sorts descending, e.g. '-added')"
    )


def parse_limit(limit: Any) -> int:
    maximum = WATCHLIST_MAX_ITEMS
    try:
        value = int(limit) if limit not in (None, "") else maximum
    except (TypeError, ValueError):
        value = maximum
    return min(max(value, 1), maximum)
