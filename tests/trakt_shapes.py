"""Shape checks: the parts of Trakt's answers django-trakt relies on.

Each ``*_problems`` function returns a list of what is wrong with a document (empty: the
shape is fine), so a failing check names every problem at once. They are written from
Trakt's contracts (the ``trakt/trakt-api`` repository, ``projects/api/src/contracts``)
and check only what the app reads:

- ``oauth/schema/response/tokenResponseSchema.ts`` (``tokens.grant_from_response``);
- ``oauth/schema/response/codeResponseSchema.ts`` (``device._device_authorization``);
- ``users/schema/response/settingsResponseSchema.ts`` (``provider.extract_uid``,
  ``provider.EXTRA_DATA_FIELDS``, the avatar);
- ``_internal/response/listedMediaResponseSchema.ts`` via ``sync`` watchlist
  (``watchlist_items.item_from_document``), ``?extended=images`` included;
- ``sync/schema/response/lastActivitiesResponseSchema.ts`` (``watchlist._activity_marker``).

They run in the normal suite against recorded documents (``tests/fixtures/trakt/``) and
the local Trakt's answers, and in ``tests/test_live.py`` against the real Trakt.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

#: Watchlist item types and the object each carries (seasons and episodes also their show).
ITEM_TYPES = ("movie", "show", "season", "episode")
#: What ``watchlist._activity_marker`` compares, per watchlist type.
ACTIVITY_GROUPS = ("movies", "shows", "seasons", "episodes")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_datetime(value: Any) -> bool:
    """An ISO 8601 timestamp with a zone, as zod's ``z.string().datetime()`` wants."""
    if not isinstance(value, str):
        return False
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return parsed.tzinfo is not None


def _get(document: Any, path: str) -> Any:
    value = document
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


_MISSING = object()


def _expect(problems: list[str], document: Any, path: str, test: Any, what: str, *, nullable: bool = False) -> None:
    value = _get(document, path)
    if value is _MISSING:
        problems.append(f"{path}: missing")
    elif value is None and nullable:
        return
    elif not test(value):
        problems.append(f"{path}: expected {what}, got {type(value).__name__} {str(value)[:40]!r}")


def token_problems(document: Any) -> list[str]:
    """``POST /oauth/token`` (code or refresh): what ``tokens.grant_from_response`` reads."""
    if not isinstance(document, dict):
        return ["the token answer is not an object"]
    problems: list[str] = []
    for key in ("access_token", "refresh_token", "token_type", "scope"):
        _expect(problems, document, key, lambda value: isinstance(value, str), "a string")
    for key in ("access_token", "refresh_token"):
        _expect(problems, document, key, _is_text, "a non-empty string")
    for key in ("expires_in", "created_at"):
        _expect(problems, document, key, _is_int, "an integer")
    if _is_int(document.get("expires_in")) and not 0 < document["expires_in"] <= 90 * 86400:
        problems.append(f"expires_in: {document['expires_in']} seconds is not a lifetime Trakt documents")
    return problems


def device_code_problems(document: Any) -> list[str]:
    """``POST /oauth/device/code``: the codes, where to enter them, and the timing."""
    if not isinstance(document, dict):
        return ["the device code answer is not an object"]
    problems: list[str] = []
    for key in ("device_code", "user_code"):
        _expect(problems, document, key, _is_text, "a non-empty string")
    _expect(
        problems,
        document,
        "verification_url",
        lambda value: isinstance(value, str) and value.startswith("https://"),
        "an https URL",
    )
    for key in ("expires_in", "interval"):
        _expect(problems, document, key, _is_int, "an integer")
    return problems


def settings_problems(document: Any) -> list[str]:
    """``GET /users/settings``: the profile the sign-in stores and identifies the account by."""
    if not isinstance(document, dict):
        return ["the settings answer is not an object"]
    problems: list[str] = []
    # The account's uid (never the slug: it changes on rename).
    _expect(problems, document, "user.ids.uuid", _is_text, "a non-empty string")
    _expect(problems, document, "user.ids.slug", _is_text, "a non-empty string")
    _expect(problems, document, "user.ids.trakt", _is_int, "an integer", nullable=True)
    _expect(problems, document, "user.username", _is_text, "a non-empty string")
    _expect(problems, document, "user.name", lambda value: isinstance(value, str), "a string", nullable=True)
    for key in ("private", "vip", "vip_ep"):
        _expect(problems, document, f"user.{key}", lambda value: isinstance(value, bool), "a boolean")
    _expect(problems, document, "user.joined_at", _is_datetime, "an ISO timestamp")
    # The avatar the site stores a copy of (with or without a scheme: image_sources.normalize_source).
    _expect(problems, document, "user.images.avatar.full", _is_text, "a non-empty string")
    # Required by the contract; the app does not store them, but their absence means the
    # document is not the one the contract describes.
    _expect(problems, document, "user.vip_og", lambda value: isinstance(value, bool), "a boolean")
    _expect(problems, document, "user.vip_years", _is_int, "an integer")
    _expect(problems, document, "permissions", lambda value: isinstance(value, dict), "an object")
    _expect(problems, document, "account.timezone", lambda value: isinstance(value, str), "a string")
    return problems


def _image_problems(problems: list[str], media: dict[str, Any], where: str) -> None:
    found = media.get("images")
    if found is None:
        return
    if not isinstance(found, dict):
        problems.append(f"{where}.images: expected an object")
        return
    for key, urls in found.items():
        if not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
            problems.append(f"{where}.images.{key}: expected a list of URL strings")


def watchlist_problems(items: Any) -> list[str]:
    """``GET /sync/watchlist/{type}/{sort_by}/{sort_how}``: what ``watchlist_items.item_from_document`` reads."""
    if not isinstance(items, list):
        return ["the watchlist answer is not a list"]
    problems: list[str] = []
    for index, item in enumerate(items):
        where = f"[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: not an object")
            continue
        kind = item.get("type")
        if kind not in ITEM_TYPES:
            problems.append(f"{where}.type: expected one of {', '.join(ITEM_TYPES)}, got {kind!r}")
            continue
        _expect(problems, item, "rank", _is_int, "an integer", nullable=True)
        _expect(problems, item, "listed_at", _is_datetime, "an ISO timestamp")
        _expect(problems, item, f"{kind}.ids.trakt", _is_int, "an integer")
        if kind in ("movie", "show"):
            _expect(problems, item, f"{kind}.title", lambda value: isinstance(value, str), "a string")
            _expect(problems, item, f"{kind}.ids.slug", _is_text, "a non-empty string", nullable=True)
        if kind in ("season", "episode"):
            _expect(problems, item, f"{kind}.number", _is_int, "an integer")
            _expect(problems, item, "show.title", lambda value: isinstance(value, str), "a string")
        if kind == "episode":
            _expect(problems, item, "episode.season", _is_int, "an integer")
        for key in (kind, "show"):
            if isinstance(item.get(key), dict):
                _image_problems(problems, item[key], f"{where}.{key}")
    return problems


def last_activities_problems(document: Any) -> list[str]:
    """``GET /sync/last_activities``: the markers that tell whether a watchlist changed."""
    if not isinstance(document, dict):
        return ["the last activities answer is not an object"]
    problems: list[str] = []
    _expect(problems, document, "all", _is_datetime, "an ISO timestamp")
    _expect(problems, document, "watchlist.updated_at", _is_datetime, "an ISO timestamp")
    for group in ACTIVITY_GROUPS:
        _expect(problems, document, f"{group}.watchlisted_at", _is_datetime, "an ISO timestamp")
    return problems


def assert_shape(problems: list[str]) -> None:
    """Fail with every problem named (the test's assertion)."""
    assert not problems, "Trakt's answer does not have the shape django-trakt relies on:\n" + "\n".join(problems)
