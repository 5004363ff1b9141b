"""Watchlist selection: filter by type, sort, paginate, as Trakt's endpoints do.

Pure functions over ``WatchlistItem`` records, so the rules are easy to check
without HTTP.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from .state import WatchlistItem

#: URL ``type`` segment -> item ``type``; ``all`` selects everything.
TYPE_SEGMENTS: dict[str, str | None] = {
    "all": None,
    "movies": "movie",
    "shows": "show",
    "seasons": "season",
    "episodes": "episode",
}

#: Default page size when only ``page`` is given (Trakt's default is 10).
DEFAULT_LIMIT = 10


def _title(item: WatchlistItem) -> str:
    if item.kind in ("season", "episode") and item.show is not None:
        return str(item.show.get("title") or "").lower()
    return str(item.media.get("title") or "").lower()


def _released(item: WatchlistItem) -> str:
    value = item.extra.get("released") or item.extra.get("first_aired")
    if value:
        return str(value)
    year = item.media.get("year") or (item.show or {}).get("year")
    return str(year) if year else ""


def _number(key: str) -> Callable[[WatchlistItem], Any]:
    return lambda item: item.extra.get(key) or 0


#: The sorts Trakt's contract lists, in its order (``sortEnumSchema`` in
#: projects/api/src/contracts/users/schema/request/sortParamsSchema.ts). ``my_rating`` and
#: ``random`` are not among them; the API answers other values with a 400 (``app.py``).
SORT_KEYS: dict[str, Callable[[WatchlistItem], Any]] = {
    "rank": lambda item: item.rank,
    "added": lambda item: item.listed_at,
    "title": _title,
    "released": _released,
    "runtime": _number("runtime"),
    "popularity": _number("votes"),
    "votes": _number("votes"),
    "percentage": _number("rating"),
}


def select(items: Sequence[WatchlistItem], kind: str | None, sort_by: str, sort_how: str) -> list[WatchlistItem]:
    """Items of ``kind`` (None: all) in the requested order; ``sort_by`` is one of ``SORT_KEYS``."""
    chosen = [item for item in items if kind is None or item.kind == kind]
    key = SORT_KEYS[sort_by]
    chosen.sort(key=lambda item: item.rank)  # tie-break by rank, sort is stable
    chosen.sort(key=key, reverse=sort_how == "desc")
    return chosen


def paginate(items: list[WatchlistItem], page: int, limit: int) -> tuple[list[WatchlistItem], dict[str, str]]:
    """One page and Trakt's ``X-Pagination-*`` headers (a page past the end is empty)."""
    total = len(items)
    start = (page - 1) * limit
    headers = {
        "X-Pagination-Page": str(page),
        "X-Pagination-Limit": str(limit),
        "X-Pagination-Page-Count": str(math.ceil(total / limit)),
        "X-Pagination-Item-Count": str(total),
    }
    return items[start : start + limit], headers
