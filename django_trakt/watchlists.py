"""Watchlists for a site's views and tasks: the function under ``{% trakt_watchlist %}``.

``get_watchlist(user_or_username, type=..., sort=..., limit=...)`` never raises: it gives
a :class:`WatchlistResult` (its ``error`` says what went wrong) of :class:`WatchlistItem`,
and spends the same budgets of Trakt calls as the tag.
"""

from __future__ import annotations

from django_trakt.internal.pages.watchlist import get_watchlist
from django_trakt.internal.pages.watchlist_items import WatchlistError, WatchlistItem, WatchlistResult

__all__ = ["WatchlistError", "WatchlistItem", "WatchlistResult", "get_watchlist"]
