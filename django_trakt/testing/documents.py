"""Trakt-shaped JSON documents built from the emulator's records.

Kept apart from the HTTP handling so the shapes (which is what a client's parser
depends on) can be read in one place and compared with Trakt's blueprint.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from .state import AUTO_AVATAR, EmulatedUser, WatchlistItem

#: Per-kind activity keys of ``/sync/last_activities``, exactly the contract's
#: (projects/api/src/contracts/sync/schema/response/lastActivitiesResponseSchema.ts).
ACTIVITY_KEYS: dict[str, tuple[str, ...]] = {
    "movies": (
        "watched_at",
        "collected_at",
        "rated_at",
        "watchlisted_at",
        "favorited_at",
        "commented_at",
        "paused_at",
        "hidden_at",
    ),
    "episodes": (
        "watched_at",
        "collected_at",
        "rated_at",
        "watchlisted_at",
        "commented_at",
        "paused_at",
    ),
    "shows": ("rated_at", "watchlisted_at", "favorited_at", "commented_at", "hidden_at", "dropped_at"),
    "seasons": ("rated_at", "watchlisted_at", "commented_at", "hidden_at"),
    "comments": ("liked_at", "reacted_at", "blocked_at"),
    "lists": ("liked_at", "reacted_at", "updated_at", "commented_at"),
    "watchlist": ("updated_at",),
    "favorites": ("updated_at",),
    "collaborations": ("updated_at",),
    "account": ("settings_at", "followed_at", "following_at", "pending_at", "requested_at"),
    "saved_filters": ("updated_at",),
    "notes": ("updated_at",),
}


def iso(timestamp: float) -> str:
    """Trakt's timestamp format: UTC, milliseconds, ``Z`` suffix."""
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def avatar_url(user: EmulatedUser, image_base: str) -> str | None:
    """The avatar URL a profile carries (``None``: the user has no avatar)."""
    if user.avatar_url == AUTO_AVATAR:
        return f"{image_base}/images/avatars/{user.slug}.png"
    return user.avatar_url


def scheme_less(url: str) -> str:
    """``url`` without its scheme: ``walter-r2.trakt.tv/images/...``.

    Trakt's ``extended=images`` URLs come like that (observed; ``shared/trakt-api.md``,
    "Watchlist"), so a client must add ``https://`` itself.
    """
    return url.split("://", 1)[1] if "://" in url else url


def user_document(user: EmulatedUser, image_base: str, *, with_uuid: bool = True) -> dict[str, Any]:
    """The ``user`` object of ``/users/settings`` (and, without uuid, ``/users/{id}``).

    Shaped after ``settingsResponseSchema.ts`` (projects/api/src/contracts/users/schema/
    response): ``images.avatar.full``, ``vip_og`` and ``vip_years`` are required there.
    ``images`` is left out only for a user whose ``avatar_url`` a test set to ``None``
    (a profile the contract does not allow, kept to prove the default image).
    """
    ids: dict[str, Any] = {"slug": user.slug}
    if with_uuid and not user.omit_uuid:
        ids["uuid"] = user.uuid
    ids["trakt"] = user.trakt_id
    document: dict[str, Any] = {
        "username": user.username,
        "private": user.private,
        "deleted": False,
        "name": user.name,
        "vip": user.vip,
        "vip_ep": user.vip_ep,
        "director": False,
        "ids": ids,
        "joined_at": iso(user.joined_at),
        "location": user.location,
        "about": user.about,
        "gender": user.gender,
        "age": user.age,
        "vip_og": user.vip_og,
        "vip_years": user.vip_years,
        "vip_cover_image": None,
    }
    url = avatar_url(user, image_base)
    if url is not None:
        document["images"] = {"avatar": {"full": url}}
    return document


def settings_document(user: EmulatedUser, image_base: str) -> dict[str, Any]:
    """``GET /users/settings``: the signed-in user's profile and account settings.

    Every key ``settingsResponseSchema.ts`` requires is here, ``permissions`` included;
    ``browsing`` only comes with ``extended=browsing`` and is left out.
    """
    return {
        "user": user_document(user, image_base),
        "permissions": dict(user.permissions),
        "account": {
            "timezone": user.timezone,
            "date_format": "mdy",
            "time_24hr": False,
            "cover_image": None,
            "token": None,
            "display_ads": not user.vip,
        },
        "connections": dict.fromkeys(
            ("facebook", "twitter", "mastodon", "google", "tumblr", "medium", "slack", "apple", "dropbox", "microsoft"),
            False,
        ),
        "sharing_text": {
            "watching": "I'm watching [item]",
            "watched": "I just watched [item]",
            "rated": "[item] [stars]",
        },
        "limits": {
            "list": {"count": 100 if user.vip else 2, "item_count": 5000 if user.vip else 100},
            "watchlist": {"item_count": 5000 if user.vip else 100},
            "favorites": {"item_count": 250 if user.vip else 50},
            "search": {"recent_count": 25 if user.vip else 5},
            "collection": {"item_count": 5000 if user.vip else 100},
            "notes": {"item_count": 1000 if user.vip else 100},
        },
    }


def last_activities_document(user: EmulatedUser) -> dict[str, Any]:
    """``GET /sync/last_activities``: every key present, unset ones at join time."""
    document: dict[str, Any] = {}
    latest = user.joined_at
    for group, keys in ACTIVITY_KEYS.items():
        section: dict[str, str] = {}
        for key in keys:
            value = user.activities.get(f"{group}.{key}", user.joined_at)
            latest = max(latest, value)
            section[key] = iso(value)
        document[group] = section
    return {"all": iso(latest), **document}


def _with_images(media: dict[str, Any], kind: str, image_base: str) -> dict[str, Any]:
    """A copy of ``media`` with Trakt-style image URL lists served by the emulator, without scheme."""
    name = f"{kind}-{media.get('ids', {}).get('trakt', 'x')}"
    url = scheme_less(f"{image_base}/images/posters/{name}.png")
    key = "screenshot" if kind == "episode" else "poster"
    return {**media, "images": {key: [url], "fanart": [url] if kind != "episode" else []}}


def watchlist_item_document(item: WatchlistItem, image_base: str, extended: set[str]) -> dict[str, Any]:
    """One watchlist entry as Trakt sends it; seasons and episodes carry their show."""
    media = copy.deepcopy(item.media)
    if "full" in extended:
        media.update(copy.deepcopy(item.extra))
    document: dict[str, Any] = {
        "rank": item.rank,
        "id": item.id,
        "listed_at": iso(item.listed_at),
        "notes": item.notes,
        "type": item.kind,
    }
    if "images" in extended:
        media = _with_images(media, item.kind, image_base)
    document[item.kind] = media
    if item.show is not None:
        show = copy.deepcopy(item.show)
        if "images" in extended:
            show = _with_images(show, "show", image_base)
        document["show"] = show
    return document
