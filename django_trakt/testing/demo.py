"""Demo data for the CLI and the example site: a few films and shows people know.

Separate from the CLI so a test or a site's fixture can seed the same data.
"""

from __future__ import annotations

from typing import Any

from .emulator import TraktEmulator
from .state import EmulatedUser

DEMO_WATCHLIST: tuple[dict[str, Any], ...] = (
    {
        "kind": "movie",
        "title": "The Grand Budapest Hotel",
        "year": 2014,
        "extra": {"released": "2014-03-07", "runtime": 100, "votes": 41000},
    },
    {
        "kind": "movie",
        "title": "Spirited Away",
        "year": 2001,
        "extra": {"released": "2001-07-20", "runtime": 125, "votes": 52000},
    },
    {
        "kind": "movie",
        "title": "Paddington 2",
        "year": 2017,
        "notes": "Rainy Sunday pick.",
        "extra": {"released": "2017-11-10", "runtime": 103, "votes": 12000},
    },
    {
        "kind": "show",
        "title": "Slow Horses",
        "year": 2022,
        "extra": {"first_aired": "2022-04-01T00:00:00.000Z", "runtime": 50, "votes": 9000},
    },
    {
        "kind": "show",
        "title": "Severance",
        "year": 2022,
        "extra": {"first_aired": "2022-02-18T00:00:00.000Z", "runtime": 55, "votes": 30000},
    },
    {"kind": "season", "show": "The Bear", "season": 1},
    {"kind": "episode", "show": "Andor", "season": 1, "episode": 8, "title": "Narkina 5"},
)


def seed_demo_user(emulator: TraktEmulator, username: str, *, with_watchlist: bool = True) -> EmulatedUser:
    """Add ``username`` (named after itself, with an avatar) and the demo watchlist."""
    user = emulator.add_user(username, name=username.replace("-", " ").title())
    if with_watchlist:
        emulator.add_watchlist_items(user, DEMO_WATCHLIST)
    return user
