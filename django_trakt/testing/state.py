"""The emulator's in-memory records: apps, users, grants, tokens, watchlist items.

These are plain dataclasses with no behaviour beyond small conveniences, so that the
rules (who may do what, when a token dies) live in one place, ``emulator.py``, and
tests can read the records directly when asserting on them.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from typing import Any

from requests.structures import CaseInsensitiveDict

#: ``EmulatedUser.avatar_url`` value meaning "serve a generated PNG from the emulator".
AUTO_AVATAR = "auto"

#: Watchlist item kinds, as Trakt spells them in an item's ``type``.
KINDS = ("movie", "show", "season", "episode")


def slugify(value: str) -> str:
    """Derive a Trakt-like slug: lowercase, runs of non-alphanumerics become ``-``.

    Trakt's slugs follow the username, which is why a rename changes the slug.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")
    return slug or "user"


def random_hex(nbytes: int) -> str:
    """A random lowercase hex string (Trakt's uuids are 40 hex digits, tokens 64)."""
    return secrets.token_hex(nbytes)


@dataclasses.dataclass
class EmulatedApp:
    """An OAuth application registered with the emulated Trakt."""

    client_id: str
    client_secret: str
    name: str = "Example app"
    redirect_uris: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class WatchlistItem:
    """One entry of a user's watchlist.

    ``media`` is the Trakt object for the kind (a movie, show, season or episode
    document); ``show`` is the parent show for seasons and episodes. ``extra`` holds
    fields only sent with ``?extended=full`` (and used for sorting: ``released``,
    ``runtime``, ``votes``...).
    """

    id: int
    kind: str
    rank: int
    listed_at: float
    notes: str | None
    media: dict[str, Any]
    show: dict[str, Any] | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class EmulatedUser:
    """A Trakt account.

    Tests may change fields directly: ``omit_uuid = True`` makes ``/users/settings``
    leave out ``ids.uuid``; ``avatar_url`` is ``AUTO_AVATAR`` (a PNG served by the
    emulator), any string (sent as is) or ``None`` (no ``images`` in the profile).
    Use ``TraktEmulator.rename_user`` to rename, so the slug follows.
    """

    username: str
    uuid: str
    slug: str
    trakt_id: int
    name: str | None = None
    private: bool = False
    vip: bool = False
    vip_ep: bool = False
    #: Required by ``settingsResponseSchema.ts``: a VIP from before 2017, and for how many years.
    vip_og: bool = False
    vip_years: int = 0
    #: ``permissions`` of ``/users/settings`` (required by the same schema).
    permissions: dict[str, bool] = dataclasses.field(
        default_factory=lambda: {"commenting": True, "liking": True, "following": True}
    )
    avatar_url: str | None = AUTO_AVATAR
    omit_uuid: bool = False
    joined_at: float = 0.0
    location: str | None = None
    about: str | None = None
    gender: str | None = None
    age: int | None = None
    timezone: str = "UTC"
    #: The list's own default order, sent as ``X-Sort-By`` / ``X-Sort-How``.
    watchlist_sort_by: str = "rank"
    watchlist_sort_how: str = "asc"
    watchlist: list[WatchlistItem] = dataclasses.field(default_factory=list)
    #: ``"movies.watchlisted_at"``-style keys to unix times; see ``last_activities``.
    activities: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class AuthorizationGrant:
    """An authorization code handed to a redirect URI, waiting to be exchanged."""

    code: str
    client_id: str
    user: EmulatedUser
    redirect_uri: str
    code_challenge: str | None
    code_challenge_method: str | None
    created_at: float
    used: bool = False
    scope: str = "public offline_access"


@dataclasses.dataclass
class TokenPair:
    """An access token and its refresh token, which live and die together.

    ``superseded`` is set when the refresh token was spent (the pair rotated):
    both tokens are then dead, as on Trakt.
    """

    access_token: str
    refresh_token: str
    client_id: str
    user: EmulatedUser
    created_at: int
    expires_in: int
    refresh_expires_at: float
    revoked: bool = False
    superseded: bool = False
    #: Shared by the pairs refreshed from one authorization (0: the first pair; see
    #: ``TraktEmulator.revoke_grant_on_reuse``).
    grant_id: int = 0
    #: What the user granted (Trakt adds ``public offline_access`` to a request naming none).
    scope: str = "public offline_access"

    def as_response(self) -> dict[str, Any]:
        """The body ``/oauth/token`` answers with."""
        return {
            "access_token": self.access_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "scope": self.scope,
            "created_at": self.created_at,
        }


@dataclasses.dataclass
class DeviceCode:
    """A device-flow request: ``status`` is pending, approved, denied or used."""

    device_code: str
    user_code: str
    client_id: str
    created_at: float
    expires_in: int
    interval: float
    status: str = "pending"
    expired: bool = False
    user: EmulatedUser | None = None
    last_poll: float | None = None


@dataclasses.dataclass
class RefreshEvent:
    """One attempt to use a refresh token, kept so tests can count refreshes.

    ``accepted`` is False for a rejected attempt; ``reason`` says why (for example
    ``"reused"`` for a refresh token presented a second time).
    """

    refresh_token: str
    client_id: str
    username: str | None
    at: float
    accepted: bool
    reason: str = ""
    new_refresh_token: str | None = None


@dataclasses.dataclass
class RecordedRequest:
    """A request the emulator received, in either mode, kept for assertions.

    ``headers`` is case-insensitive. ``json`` is the parsed body when it parsed,
    ``form`` the decoded form when the body was form-encoded. ``status`` is filled
    in once the emulator has answered (``None`` for an emulated timeout).
    """

    method: str
    path: str
    query: dict[str, str]
    headers: CaseInsensitiveDict[str]
    body: bytes
    json: Any
    form: dict[str, str] | None
    timestamp: float
    url: str = ""
    status: int | None = None


@dataclasses.dataclass
class Failure:
    """A queued failure: the next ``times`` requests matching it get this answer.

    ``kind`` is ``"response"`` (answer with status/headers/body), ``"timeout"`` (no
    answer, nothing done) or ``"slow"`` (done at once, answered after ``delay`` seconds).
    """

    pattern: re.Pattern[str]
    method: str | None
    times: int
    kind: str = "response"
    status: int = 500
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    body: bytes = b""
    delay: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        """True when this failure applies to a request for ``method path``."""
        if self.times <= 0:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.pattern.search(path) is not None
