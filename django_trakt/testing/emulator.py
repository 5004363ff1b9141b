"""``TraktEmulator``: the emulated Trakt's state, its rules, and the test fixtures API.

One object holds everything (apps, users, codes, tokens, device codes, recorded
requests, queued failures) behind one re-entrant lock, because the HTTP mode serves
requests on several threads and tests assert on the state from another. The WSGI
application in ``app.py`` only translates HTTP to calls of the rules defined here,
so ``emulator.authorize()`` and the consent page cannot disagree.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import hmac
import itertools
import json as jsonlib
import logging
import math
import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .app import CLOUDFLARE_RETRY_AFTER, TraktApp
from .documents import iso
from .errors import AuthorizationRedirectError, AuthorizationRejected, OAuthError
from .inprocess import bind
from .pages import cloudflare_page
from .server import EmulatorServer
from .state import (
    KINDS,
    AuthorizationGrant,
    DeviceCode,
    EmulatedApp,
    EmulatedUser,
    Failure,
    RecordedRequest,
    RefreshEvent,
    TokenPair,
    WatchlistItem,
    random_hex,
    slugify,
)

if TYPE_CHECKING:
    import responses

logger = logging.getLogger(__name__)

DAY = 24 * 60 * 60
#: What Trakt grants when the authorize request names no scope: it adds ``public
#: offline_access`` itself (its redirect chain, trakt/trakt-api#887).
DEFAULT_SCOPE = "public offline_access"
USER_CODE_ALPHABET = string.ascii_uppercase + string.digits


def _with_query(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` appended to whatever query it already has."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _s256(verifier: str) -> str:
    """PKCE S256: base64url, without padding, of the verifier's SHA-256."""
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def requested_scope(scope: str | None) -> str:
    """The scope an authorize request gets: its own, or ``public offline_access`` when it names none."""
    return " ".join(scope.split()) if scope and scope.strip() else DEFAULT_SCOPE


def _timestamp(value: float | dt.datetime | None, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.timestamp()
    return float(value)


class TraktEmulator:
    """A faithful, local, in-memory Trakt: auth server, API, website pages, images.

    Construct it with the base URLs it should answer on in-process (``mock()``) and
    use when building absolute URLs; ``serve()`` switches them to the loopback server
    while it runs. Tunables are plain attributes, read on every request:
    ``access_token_lifetime``, ``refresh_token_lifetime``, ``code_lifetime``,
    ``device_interval``, ``device_expires_in``, ``require_pkce``, ``latency``,
    ``timeout_sleep``.
    """

    def __init__(
        self,
        auth_url: str = "https://auth.trakt.tv",
        api_url: str = "https://api.trakt.tv",
        web_url: str = "https://trakt.tv",
        image_url: str | None = None,
    ) -> None:
        self.auth_url = auth_url.rstrip("/")
        self.api_url = api_url.rstrip("/")
        self.web_url = web_url.rstrip("/")
        self._image_url = image_url.rstrip("/") if image_url else None

        self.access_token_lifetime = 7 * DAY
        self.refresh_token_lifetime = 90 * DAY
        self.code_lifetime = 600
        self.device_interval: float = 5
        self.device_expires_in = 600
        self.require_pkce = True
        self.latency: float = 0.0
        self.timeout_sleep: float = 5.0

        self.lock = threading.RLock()
        self._clock_offset = 0.0
        self._ids = itertools.count(1)
        self._user_ids = itertools.count(1001)
        self.apps: dict[str, EmulatedApp] = {}
        self._users: list[EmulatedUser] = []
        self._shows: dict[str, dict[str, Any]] = {}
        self._grants: dict[str, AuthorizationGrant] = {}
        self._access: dict[str, TokenPair] = {}
        self._refresh: dict[str, TokenPair] = {}
        self._devices: dict[str, DeviceCode] = {}
        self._failures: list[Failure] = []
        self.requests: list[RecordedRequest] = []
        self.refresh_events: list[RefreshEvent] = []
        self.revoked_tokens: set[str] = set()
        self.disabled_apps: set[str] = set()
        self._legacy_refresh: set[str] = set()
        #: GETs counted per user (or app key) and fixed window: ``(who, window) -> count``.
        self._get_counts: dict[tuple[str, int], int] = {}
        #: Trakt's GET limit: 500 per 5 minutes per user (a maintainer, trakt/trakt-api#909,
        #: September 2026; older docs said 1000). ``None`` switches the limit off.
        self.get_limit: int | None = 500
        self.rate_limit_period = 300
        #: When set, going over the limit is answered by Cloudflare's edge rule instead of
        #: the API: ``429``, an HTML page, ``Retry-After: 300``, no ``X-Ratelimit`` (#909, #922).
        self.cloudflare_burst = False
        #: Opt-in: a refresh token presented again after it was spent revokes its whole grant
        #: (every pair refreshed from the same authorization), as RFC 9700 §4.14.2 recommends
        #: and Trakt's new auth stack may do. Off: the reuse is only refused (today's Trakt).
        self.revoke_grant_on_reuse = False

        self.app = TraktApp(self)

    # -- WSGI ---------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The emulator is itself a WSGI application (see ``app.TraktApp``)."""
        return self.app(environ, start_response)

    # -- clock and URLs -------------------------------------------------------------

    def now(self) -> float:
        """The emulator's clock: wall time plus whatever ``advance()`` added."""
        return time.time() + self._clock_offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward, to expire codes and tokens without sleeping."""
        with self.lock:
            self._clock_offset += seconds

    @property
    def image_url(self) -> str:
        """Base of generated image URLs: ``image_url`` if given, else ``web_url``."""
        return self._image_url or self.web_url

    @image_url.setter
    def image_url(self, value: str | None) -> None:
        self._image_url = value.rstrip("/") if value else None

    @contextmanager
    def answering_at(self, url: str) -> Iterator[None]:
        """Every base URL (auth, API, web, images) is ``url`` inside; the ones before after.

        The server's, while it runs. An image URL that was not given (``image_url`` follows
        ``web_url``) is restored as not given.
        """
        saved = (self.auth_url, self.api_url, self.web_url, self._image_url)
        self.auth_url = self.api_url = self.web_url = url.rstrip("/")
        self.image_url = url
        try:
            yield
        finally:
            self.auth_url, self.api_url, self.web_url, self._image_url = saved

    def base_urls(self) -> list[str]:
        """Distinct base URLs answered on in-process."""
        return list(dict.fromkeys([self.auth_url, self.api_url, self.web_url, self.image_url]))

    # -- apps and users ---------------------------------------------------------------

    def add_app(
        self,
        client_id: str,
        client_secret: str,
        *,
        name: str = "Example app",
        redirect_uris: Iterable[str] = (),
    ) -> EmulatedApp:
        """Register an OAuth app; redirect URIs are matched exactly, as on Trakt."""
        app = EmulatedApp(client_id, client_secret, name, list(redirect_uris))
        with self.lock:
            self.apps[client_id] = app
        return app

    def add_user(
        self,
        username: str,
        *,
        name: str | None = None,
        uuid: str | None = None,
        slug: str | None = None,
        private: bool = False,
        vip: bool = False,
        avatar: bool = True,
    ) -> EmulatedUser:
        """Create a Trakt account (uuid: 40 hex digits derived from the username; slug: from username).

        The uuid is what a site stores as the account's uid: deriving it from the name keeps a local
        Trakt restarted with the same users recognisable to a site that kept its database.
        """
        with self.lock:
            if uuid is None:
                seed = f"django-trakt-emulator:{username.lower()}".encode()
                uuid = hashlib.sha1(seed, usedforsecurity=False).hexdigest()
                if any(user.uuid == uuid for user in self._users):  # the name of a renamed user, taken again
                    uuid = random_hex(20)
            user = EmulatedUser(
                username=username,
                uuid=uuid,
                slug=slug or slugify(username),
                trakt_id=next(self._user_ids),
                name=name,
                private=private,
                vip=vip,
                joined_at=math.floor(self.now()) - 30 * DAY,
            )
            if not avatar:
                user.avatar_url = None
            self._users.append(user)
        return user

    @property
    def users(self) -> list[EmulatedUser]:
        """All users, in the order they were added (the first is the default)."""
        with self.lock:
            return list(self._users)

    def get_user(self, ref: str | EmulatedUser) -> EmulatedUser:
        """Find a user by object, username, slug or uuid; ``KeyError`` if unknown."""
        with self.lock:
            if isinstance(ref, EmulatedUser):
                if ref in self._users:
                    return ref
                raise KeyError(ref.username)
            for field in ("username", "slug", "uuid"):
                for user in self._users:
                    if getattr(user, field) == ref:
                        return user
        raise KeyError(ref)

    def rename_user(self, user: str | EmulatedUser, new_username: str) -> EmulatedUser:
        """Rename: username and slug change, uuid stays (why uuid is the stable id)."""
        with self.lock:
            found = self.get_user(user)
            found.username = new_username
            found.slug = slugify(new_username)
            self._bump(found, "account.settings_at")
        return found

    # -- watchlist ----------------------------------------------------------------------

    def _bump(self, user: EmulatedUser, *keys: str) -> None:
        """Set activity timestamps to now, always strictly later than before."""
        now = self.now()
        for key in keys:
            previous = user.activities.get(key, 0.0)
            user.activities[key] = max(now, previous + 0.001)

    def _show_document(self, show: str | Mapping[str, Any]) -> dict[str, Any]:
        """A show object; the same title always gets the same ids."""
        if isinstance(show, Mapping):
            document = copy.deepcopy(dict(show))
            document.setdefault("ids", self._media_ids("show", document.get("title", "show"), document.get("year")))
            return document
        if show not in self._shows:
            self._shows[show] = {"title": show, "year": None, "ids": self._media_ids("show", show, None)}
        return copy.deepcopy(self._shows[show])

    def _media_ids(self, kind: str, title: str | None, year: int | None) -> dict[str, Any]:
        trakt = next(self._ids) + 10000
        ids: dict[str, Any] = {"trakt": trakt}
        if kind in ("movie", "show"):
            ids["slug"] = slugify(f"{title or kind} {year or ''}")
        if kind != "season":
            ids["imdb"] = f"tt{trakt:07d}"
        if kind != "movie":
            ids["tvdb"] = trakt + 300000
        ids["tmdb"] = trakt + 500000
        return ids

    def add_watchlist_item(
        self,
        user: str | EmulatedUser,
        kind: str,
        *,
        title: str | None = None,
        year: int | None = None,
        rank: int | None = None,
        listed_at: float | dt.datetime | None = None,
        notes: str | None = None,
        ids: Mapping[str, Any] | None = None,
        show: str | Mapping[str, Any] | None = None,
        season: int | None = None,
        episode: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> WatchlistItem:
        """Add a movie, show, season or episode to a user's watchlist.

        Seasons and episodes need ``show`` (a title or a show document). ``extra``
        fields appear with ``?extended=full`` and feed sorting (``released``,
        ``runtime``, ``votes``). Bumps ``watchlist.updated_at`` and the kind's
        ``watchlisted_at`` so clients relying on last_activities see the change.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        if kind in ("movie", "show") and not title:
            raise ValueError(f"a {kind} needs a title")
        if kind in ("season", "episode") and show is None:
            raise ValueError(f"a {kind} needs its show")
        with self.lock:
            owner = self.get_user(user)
            media_ids = dict(ids) if ids is not None else self._media_ids(kind, title, year)
            show_document = self._show_document(show) if show is not None else None
            media: dict[str, Any]
            if kind in ("movie", "show"):
                media = {"title": title, "year": year, "ids": media_ids}
            elif kind == "season":
                media = {"number": season if season is not None else 1, "ids": media_ids}
                if title:
                    media["title"] = title
            else:
                media = {
                    "season": season if season is not None else 1,
                    "number": episode if episode is not None else 1,
                    "title": title,
                    "ids": media_ids,
                }
            next_rank = max((item.rank for item in owner.watchlist), default=0) + 1
            item = WatchlistItem(
                id=next(self._ids),
                kind=kind,
                rank=rank if rank is not None else next_rank,
                listed_at=_timestamp(listed_at, self.now()),
                notes=notes,
                media=media,
                show=show_document if kind in ("season", "episode") else None,
                extra=dict(extra or {}),
            )
            owner.watchlist.append(item)
            self._bump(owner, f"{kind}s.watchlisted_at", "watchlist.updated_at")
        return item

    def add_watchlist_items(self, user: str | EmulatedUser, items: Iterable[Mapping[str, Any]]) -> list[WatchlistItem]:
        """Add several items: each mapping has ``kind`` plus ``add_watchlist_item`` keywords."""
        added = []
        for spec in items:
            fields = dict(spec)
            kind = fields.pop("kind")
            added.append(self.add_watchlist_item(user, kind, **fields))
        return added

    def fill_watchlist(self, user: str | EmulatedUser, count: int, kind: str = "movie") -> list[WatchlistItem]:
        """Add ``count`` generated movies (or shows): quick bulk data for paging tests."""
        return [
            self.add_watchlist_item(user, kind, title=f"{kind.title()} {number}", year=1990 + number % 35)
            for number in range(1, count + 1)
        ]

    def remove_watchlist_item(self, user: str | EmulatedUser, item_id: int) -> None:
        """Remove an item by its list id, re-rank the rest, bump the activities."""
        with self.lock:
            owner = self.get_user(user)
            item = next((entry for entry in owner.watchlist if entry.id == item_id), None)
            if item is None:
                raise KeyError(f"no watchlist item {item_id} for {owner.username}")
            owner.watchlist.remove(item)
            for entry in owner.watchlist:
                if entry.rank > item.rank:
                    entry.rank -= 1
            self._bump(owner, f"{item.kind}s.watchlisted_at", "watchlist.updated_at")

    # -- clients and authorization -------------------------------------------------------

    def authenticate_client(self, client_id: Any, client_secret: Any, *, status: int = 401) -> EmulatedApp:
        """The app for these credentials, or ``invalid_client`` with ``status``.

        The token endpoint answers ``400`` (its contract, ``projects/api/src/contracts/oauth/index.ts``:
        "If the exchange cannot be completed, this endpoint returns a 400 response with an OAuth
        error", ``tokenErrorResponseSchema``); revoke and the device endpoints keep ``401``, which
        their contracts leave open.
        """
        app = self.apps.get(client_id) if isinstance(client_id, str) else None
        if (
            app is None
            or not isinstance(client_secret, str)
            or not hmac.compare_digest(app.client_secret.encode(), client_secret.encode())
        ):
            raise OAuthError(status, "invalid_client", "Client authentication failed: unknown client or wrong secret.")
        return app

    def validate_authorize(self, params: Mapping[str, str]) -> EmulatedApp:
        """Check an authorize request before any page or redirect.

        An unknown client or an unregistered redirect URI is never redirected to (a 400
        page). Everything else is refused *on the redirect*
        (:class:`AuthorizationRedirectError`), as Trakt's auth stack does:

        - PKCE is required (unless ``require_pkce`` is False): without a challenge Trakt
          redirects back with ``error=invalid_request`` and "pkce is required when requesting
          offline_access scope" (trakt/trakt-api#887; Trakt adds ``offline_access`` itself, see
          :func:`requested_scope`);
        - only ``S256`` is accepted: Trakt has only been seen with it, its own redirect chain
          adds ``code_challenge_method=S256`` (#887), and ``plain`` defeats PKCE; a challenge
          without a method is refused rather than taken as ``plain`` (RFC 7636's default).
        """
        app = self.apps.get(params.get("client_id", ""))
        if app is None:
            raise AuthorizationRejected("Unknown client_id.")
        redirect_uri = params.get("redirect_uri")
        if redirect_uri not in app.redirect_uris:
            raise AuthorizationRejected("The redirect_uri is not registered for this application.")
        if params.get("response_type") != "code":
            raise AuthorizationRejected("response_type must be 'code'.")
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method")
        scopes = requested_scope(params.get("scope")).split()
        if not challenge:
            if self.require_pkce:
                needed = " when requesting offline_access scope" if "offline_access" in scopes else ""
                self._refuse_on_redirect(params, "invalid_request", f"pkce is required{needed}")
        elif not method:
            self._refuse_on_redirect(params, "invalid_request", "code_challenge_method is required (S256)")
        elif method != "S256":
            self._refuse_on_redirect(
                params, "invalid_request", f"code_challenge_method {method} is not supported; use S256"
            )
        return app

    @staticmethod
    def _refuse_on_redirect(params: Mapping[str, str], error: str, description: str) -> None:
        state = {"state": params["state"]} if params.get("state") is not None else {}
        location = _with_query(params["redirect_uri"], {"error": error, "error_description": description, **state})
        raise AuthorizationRedirectError(location, error, description)

    def decide(self, params: Mapping[str, str], username: str | None = None, decision: str = "approve") -> str:
        """Apply a user's decision on an authorize request; return the callback URL.

        A request refused on the redirect (PKCE) returns that error's callback URL.
        """
        try:
            self.validate_authorize(params)
        except AuthorizationRedirectError as refused:
            return refused.location
        state = {"state": params["state"]} if params.get("state") is not None else {}
        redirect_uri = params["redirect_uri"]
        if decision == "deny":
            return _with_query(redirect_uri, {"error": "access_denied", **state})
        if decision != "approve":
            raise AuthorizationRejected("decision must be 'approve' or 'deny'.")
        with self.lock:
            if username:
                try:
                    user = self.get_user(username)
                except KeyError:
                    raise AuthorizationRejected(f"Unknown Trakt user {username!r}.") from None
            elif self._users:
                user = self._users[0]
            else:
                raise AuthorizationRejected("The emulator has no users: call add_user() first.")
            challenge = params.get("code_challenge") or None
            grant = AuthorizationGrant(
                code=random_hex(32),
                client_id=params["client_id"],
                user=user,
                redirect_uri=redirect_uri,
                code_challenge=challenge,
                code_challenge_method="S256" if challenge else None,
                created_at=self.now(),
                scope=requested_scope(params.get("scope")),
            )
            self._grants[grant.code] = grant
        logger.debug("Authorization code issued for user %s, client %s", user.username, grant.client_id)
        return _with_query(redirect_uri, {"code": grant.code, **state})

    def authorize(self, authorize_url: str, username: str | None = None, decision: str = "approve") -> str:
        """What the consent page does, for tests: returns the callback URL.

        Raises ``ValueError`` (``AuthorizationRejected``) where the page would show
        a 400 error instead of redirecting; a request Trakt refuses on the redirect (PKCE)
        returns the callback URL with ``error=invalid_request``, as the browser would get.
        """
        params = dict(parse_qsl(urlsplit(authorize_url).query, keep_blank_values=True))
        return self.decide(params, username, decision)

    # -- tokens -----------------------------------------------------------------------------

    def _new_pair(
        self, user: EmulatedUser, client_id: str, expires_in: int | None = None, scope: str = DEFAULT_SCOPE
    ) -> TokenPair:
        now = self.now()
        pair = TokenPair(
            access_token=random_hex(32),
            refresh_token=random_hex(32),
            client_id=client_id,
            user=user,
            created_at=int(now),
            expires_in=int(expires_in if expires_in is not None else self.access_token_lifetime),
            refresh_expires_at=now + self.refresh_token_lifetime,
            scope=scope,
        )
        self._access[pair.access_token] = pair
        self._refresh[pair.refresh_token] = pair
        return pair

    def issue_tokens(
        self, user: str | EmulatedUser, client_id: str, *, expires_in: int | None = None, legacy: bool = False
    ) -> dict[str, Any]:
        """Create a token pair as if the user had authorized; returns the token body.

        ``legacy=True``: a pair from before Trakt's July 2026 auth migration. Its refresh
        token gets an empty-body ``400`` (trakt/trakt-api#888: "that refresh token predates
        our recent auth migration, so it can't be exchanged any more") and its access token
        is expired: the user must authorize once more.
        """
        with self.lock:
            if client_id not in self.apps:
                raise KeyError(client_id)
            pair = self._new_pair(self.get_user(user), client_id, expires_in)
            if legacy:
                self._legacy_refresh.add(pair.refresh_token)
                pair.created_at = int(self.now()) - pair.expires_in - 1
            return pair.as_response()

    def _live(self, pair: TokenPair | None) -> bool:
        return (
            pair is not None
            and not pair.revoked
            and not pair.superseded
            and self.now() < pair.created_at + pair.expires_in
        )

    def is_access_token_valid(self, token: str) -> bool:
        """True if ``token`` would be accepted as a Bearer token right now."""
        with self.lock:
            return self._live(self._access.get(token))

    def user_for_token(self, token: str, client_id: str | None = None) -> EmulatedUser | None:
        """The user a live access token belongs to, else ``None``.

        With ``client_id``: only if the token was issued to that app. An OAuth access token is
        bound to the client it was issued to (RFC 6749 section 10.3 and 10.16: a resource
        server must not take a token minted for another client as this client's). Trakt
        documents no answer for the mix; the local Trakt refuses it like an unknown token.
        """
        with self.lock:
            pair = self._access.get(token)
            if pair is None or not self._live(pair):
                return None
            if client_id is not None and pair.client_id != client_id:
                return None
            return pair.user

    def active_tokens(self, user: str | EmulatedUser | None = None, client_id: str | None = None) -> list[TokenPair]:
        """Live token pairs, optionally for one user and/or client."""
        with self.lock:
            owner = self.get_user(user) if user is not None else None
            return [
                pair
                for pair in self._access.values()
                if self._live(pair)
                and (owner is None or pair.user is owner)
                and (client_id is None or pair.client_id == client_id)
            ]

    def expire_token(self, access_token: str) -> None:
        """Make one access token expired (its refresh token still works)."""
        with self.lock:
            pair = self._access[access_token]
            pair.created_at = int(self.now()) - pair.expires_in - 1

    def revoke_tokens(self, user: str | EmulatedUser | None = None, client_id: str | None = None) -> int:
        """Revoke live pairs (e.g. the user connected another app); returns how many."""
        with self.lock:
            pairs = self.active_tokens(user, client_id)
            for pair in pairs:
                pair.revoked = True
            return len(pairs)

    def exchange_code(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``grant_type=authorization_code``: single use, 10 minutes, exact redirect, PKCE (S256)."""
        with self.lock:
            app = self.authenticate_client(body.get("client_id"), body.get("client_secret"), status=400)
            code = body.get("code")
            if not isinstance(code, str) or not code:
                raise OAuthError(400, "invalid_request", "code is required.")
            grant = self._grants.get(code)
            if grant is None or grant.client_id != app.client_id:
                raise OAuthError(400, "invalid_grant", "The authorization code is invalid.")
            if grant.used:
                raise OAuthError(400, "invalid_grant", "The authorization code has already been used.")
            if self.now() > grant.created_at + self.code_lifetime:
                raise OAuthError(400, "invalid_grant", "The authorization code has expired.")
            if body.get("redirect_uri") != grant.redirect_uri:
                raise OAuthError(400, "invalid_grant", "redirect_uri does not match the authorization request.")
            if grant.code_challenge is not None:
                verifier = body.get("code_verifier")
                if not isinstance(verifier, str) or not verifier:
                    raise OAuthError(400, "invalid_grant", "code_verifier is required (PKCE).")
                expected = _s256(verifier)
                if not hmac.compare_digest(expected.encode(), grant.code_challenge.encode()):
                    raise OAuthError(400, "invalid_grant", "code_verifier does not match the code_challenge.")
            grant.used = True
            pair = self._new_pair(grant.user, app.client_id, scope=grant.scope)
        logger.debug("Code exchanged for tokens: user %s, client %s", grant.user.username, app.client_id)
        return pair.as_response()

    def refresh(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``grant_type=refresh_token``: single use and rotating; the old pair dies."""
        with self.lock:
            app = self.authenticate_client(body.get("client_id"), body.get("client_secret"), status=400)
            token = body.get("refresh_token")
            if not isinstance(token, str) or not token:
                raise OAuthError(400, "invalid_request", "refresh_token is required.")
            redirect_uri = body.get("redirect_uri")
            if not redirect_uri:
                raise OAuthError(400, "invalid_request", "redirect_uri is required.")
            if redirect_uri not in app.redirect_uris:
                raise OAuthError(400, "invalid_grant", "redirect_uri is not registered for this application.")
            pair = self._refresh.get(token)
            reason = ""
            if token in self._legacy_refresh:
                reason = "legacy"
            elif pair is None or pair.client_id != app.client_id:
                reason = "unknown"
            elif pair.superseded:
                reason = "reused"
            elif pair.revoked:
                reason = "revoked"
            elif self.now() > pair.refresh_expires_at:
                reason = "expired"
            event = RefreshEvent(
                refresh_token=token,
                client_id=app.client_id,
                username=pair.user.username if pair is not None else None,
                at=self.now(),
                accepted=not reason,
                reason=reason,
            )
            self.refresh_events.append(event)
            if reason == "reused" and self.revoke_grant_on_reuse and pair is not None:
                # RFC 9700 §4.14.2: a refresh token presented twice means one copy is in the
                # wrong hands; the server revokes every token of that grant.
                revoked = self._revoke_grant(pair)
                logger.info("Refresh token reused: %s tokens of its grant revoked", revoked)
            if reason:
                logger.info("Refresh rejected (%s) for client %s", reason, app.client_id)
                if reason == "legacy":
                    # trakt/trakt-api#888: "HTTP 400, no further detail in the response body".
                    raise OAuthError(400)
                raise OAuthError(400, "invalid_grant", f"The refresh token is invalid ({reason}).")
            assert pair is not None
            pair.superseded = True
            new_pair = self._new_pair(pair.user, app.client_id, scope=pair.scope)
            new_pair.grant_id = pair.grant_id or id(pair)
            pair.grant_id = new_pair.grant_id
            event.new_refresh_token = new_pair.refresh_token
        logger.debug("Tokens refreshed: user %s, client %s", pair.user.username, app.client_id)
        return new_pair.as_response()

    def _revoke_grant(self, pair: TokenPair) -> int:
        """Revoke every pair refreshed from the same authorization as ``pair``; how many were live."""
        grant_id = pair.grant_id or id(pair)
        family = [p for p in self._access.values() if p is pair or (p.grant_id and p.grant_id == grant_id)]
        live = sum(1 for p in family if self._live(p))
        for member in family:
            member.revoked = True
        return live

    def refresh_count(
        self,
        refresh_token: str | None = None,
        *,
        user: str | EmulatedUser | None = None,
        accepted: bool | None = True,
    ) -> int:
        """How many refresh attempts match (default: accepted ones).

        ``refresh_count(token)`` is 1 for a token used once; ``accepted=False``
        counts rejections, ``accepted=None`` every attempt.
        """
        with self.lock:
            username = self.get_user(user).username if user is not None else None
            return sum(
                1
                for event in self.refresh_events
                if (refresh_token is None or event.refresh_token == refresh_token)
                and (username is None or event.username == username)
                and (accepted is None or event.accepted == accepted)
            )

    def revoke(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``/oauth/revoke``: kill the pair the token (access or refresh) belongs to."""
        with self.lock:
            app = self.authenticate_client(body.get("client_id"), body.get("client_secret"))
            token = body.get("token")
            if not isinstance(token, str) or not token:
                raise OAuthError(400, "invalid_request", "token is required.")
            pair = self._access.get(token) or self._refresh.get(token)
            if pair is not None and pair.client_id == app.client_id:
                pair.revoked = True
                self.revoked_tokens.update({pair.access_token, pair.refresh_token})
                logger.debug("Tokens revoked: user %s, client %s", pair.user.username, app.client_id)
        return {}

    # -- device flow -----------------------------------------------------------------------

    def create_device_code(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``/oauth/device/code``: a code for the device, a short one for the user."""
        with self.lock:
            client_id = body.get("client_id")
            if not isinstance(client_id, str) or client_id not in self.apps:
                raise OAuthError(401, "invalid_client", "Unknown client_id.")
            user_code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
            device = DeviceCode(
                device_code=random_hex(32),
                user_code=user_code,
                client_id=client_id,
                created_at=self.now(),
                expires_in=self.device_expires_in,
                interval=self.device_interval,
            )
            self._devices[device.device_code] = device
        return {
            "device_code": device.device_code,
            "user_code": device.user_code,
            # The contract (projects/api/src/contracts/oauth/index.ts, device code): "The QR code should
            # use https://auth.trakt.tv/activate"; the user_code may be appended (its playground,
            # projects/playground/src/createDeviceTokenPoller.ts: `${verification_url}/${user_code}`).
            "verification_url": f"{self.auth_url}/activate",
            "expires_in": device.expires_in,
            "interval": device.interval,
        }

    def _device_expired(self, device: DeviceCode) -> bool:
        return device.expired or self.now() > device.created_at + device.expires_in

    def poll_device(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``/oauth/device/token``: 400 pending, 404, 409, 410, 418, 429, or the tokens."""
        with self.lock:
            app = self.authenticate_client(body.get("client_id"), body.get("client_secret"))
            code = body.get("code")
            device = self._devices.get(code) if isinstance(code, str) else None
            if device is None or device.client_id != app.client_id:
                raise OAuthError(404)
            if device.status == "used":
                raise OAuthError(409)
            if self._device_expired(device):
                raise OAuthError(410)
            if device.status == "denied":
                raise OAuthError(418)
            now = self.now()
            if device.last_poll is not None and now - device.last_poll < device.interval:
                raise OAuthError(429)
            device.last_poll = now
            if device.status == "pending" or device.user is None:
                raise OAuthError(400)
            device.status = "used"
            pair = self._new_pair(device.user, app.client_id)
        return pair.as_response()

    def _device_by_user_code(self, user_code: str) -> DeviceCode:
        wanted = re.sub(r"[^A-Z0-9]", "", user_code.upper())
        for device in self._devices.values():
            if device.user_code == wanted:
                return device
        raise KeyError(user_code)

    def approve_device(self, user_code: str, username: str | EmulatedUser | None = None) -> None:
        """A user enters ``user_code`` and approves (default user: the first one)."""
        with self.lock:
            device = self._device_by_user_code(user_code)
            if self._device_expired(device) or device.status != "pending":
                raise ValueError("This code is no longer pending.")
            if username is not None:
                device.user = self.get_user(username)
            elif self._users:
                device.user = self._users[0]
            else:
                raise ValueError("The emulator has no users: call add_user() first.")
            device.status = "approved"

    def deny_device(self, user_code: str) -> None:
        """A user enters ``user_code`` and denies: the device's next poll gets 418."""
        with self.lock:
            device = self._device_by_user_code(user_code)
            if device.status != "pending":
                raise ValueError("This code is no longer pending.")
            device.status = "denied"

    def expire_device(self, user_code: str) -> None:
        """Expire a device code now: its next poll gets 410."""
        with self.lock:
            self._device_by_user_code(user_code).expired = True

    # -- rate limit -----------------------------------------------------------------------------

    def count_get(self, who: str) -> tuple[int, float]:
        """Count one API GET of ``who``; its count in this window and when the window ends.

        Fixed windows of ``rate_limit_period`` seconds on the emulator's clock (so
        ``advance()`` opens the next one), as Trakt's ``X-Ratelimit`` ``until`` suggests.
        """
        period = max(1, int(self.rate_limit_period))
        window = int(self.now() // period)
        with self.lock:
            if any(key[1] < window for key in self._get_counts):
                # Only the current window counts: forget the others instead of growing forever.
                self._get_counts = {key: value for key, value in self._get_counts.items() if key[1] >= window}
            count = self._get_counts.get((who, window), 0) + 1
            self._get_counts[(who, window)] = count
        return count, float((window + 1) * period)

    # -- recorded requests ------------------------------------------------------------------

    def record(self, request: RecordedRequest) -> None:
        """Keep a request for assertions (called by the WSGI app)."""
        with self.lock:
            self.requests.append(request)

    def requests_to(self, path_or_regex: str | re.Pattern[str], method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests for a path.

        A string must match the whole path (it is a regular expression, so a plain
        path just works); a compiled pattern is searched anywhere in the path.
        """
        with self.lock:
            recorded = list(self.requests)
        if isinstance(path_or_regex, str):
            pattern = re.compile(path_or_regex)
            matches: Callable[[str], Any] = pattern.fullmatch
        else:
            matches = path_or_regex.search
        return [
            request
            for request in recorded
            if matches(request.path) and (method is None or request.method == method.upper())
        ]

    def reset_requests(self) -> None:
        """Forget recorded requests (not refresh events or revocations)."""
        with self.lock:
            self.requests.clear()

    # -- failure injection -------------------------------------------------------------------

    def _queue(self, path_regex: str | re.Pattern[str], method: str | None, times: int, **fields: Any) -> Failure:
        failure = Failure(pattern=re.compile(path_regex), method=method, times=times, **fields)
        with self.lock:
            self._failures.append(failure)
        return failure

    def take_failure(self, method: str, path: str) -> Failure | None:
        """The first queued failure matching this request, consuming one use."""
        with self.lock:
            for failure in self._failures:
                if failure.matches(method, path):
                    failure.times -= 1
                    if failure.times <= 0:
                        self._failures.remove(failure)
                    return failure
        return None

    def clear_failures(self) -> None:
        """Drop every queued failure."""
        with self.lock:
            self._failures.clear()

    def fail_next(
        self,
        path_regex: str | re.Pattern[str],
        *,
        status: int = 500,
        json: Any = None,
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        times: int = 1,
        method: str | None = None,
    ) -> Failure:
        """Answer the next ``times`` requests whose path matches (``re.search``) with this.

        The request is still recorded; nothing else happens (no token is spent).
        ``json`` wins over ``body``; with neither the body is empty.
        """
        header_list = list((headers or {}).items())
        if json is not None:
            payload = jsonlib.dumps(json).encode("utf-8")
            if not any(name.lower() == "content-type" for name, _ in header_list):
                header_list.append(("Content-Type", "application/json"))
        elif isinstance(body, str):
            payload = body.encode("utf-8")
        else:
            payload = body or b""
        return self._queue(path_regex, method, times, status=status, headers=header_list, body=payload)

    def rate_limit_next(
        self,
        path_regex: str | re.Pattern[str],
        retry_after: float = 1,
        *,
        times: int = 1,
        method: str | None = None,
    ) -> Failure:
        """Trakt's 429: ``Retry-After`` seconds and an ``X-Ratelimit`` JSON header (limit 500, #909)."""
        seconds = max(0, math.ceil(retry_after))
        ratelimit = {
            "name": "AUTHED_API_GET_LIMIT",
            "period": 300,
            "limit": 500,
            "remaining": 0,
            "until": iso(self.now() + seconds),
        }
        return self.fail_next(
            path_regex,
            status=429,
            json={"error": "rate_limit_exceeded", "error_description": "Rate limit exceeded."},
            headers={"Retry-After": str(seconds), "X-Ratelimit": jsonlib.dumps(ratelimit)},
            times=times,
            method=method,
        )

    def timeout_next(self, path_regex: str | re.Pattern[str], *, times: int = 1, method: str | None = None) -> Failure:
        """A request that never answers in time.

        In-process the call raises ``requests.exceptions.ReadTimeout``; over HTTP the
        server sleeps ``timeout_sleep`` seconds, then answers 504.
        """
        return self._queue(path_regex, method, times, kind="timeout", status=504)

    def slow_next(
        self, path_regex: str | re.Pattern[str], seconds: float, *, times: int = 1, method: str | None = None
    ) -> Failure:
        """Requests that Trakt acts on at once but answers only after ``seconds``.

        A client whose read timeout is shorter gives up (in-process: ``ReadTimeout`` after
        its timeout) although the request took effect: a refresh rotated the token.
        """
        return self._queue(path_regex, method, times, kind="slow", delay=float(seconds))

    def trickle_next(
        self, path_regex: str | re.Pattern[str], interval: float, *, times: int = 1, method: str | None = None
    ) -> Failure:
        """Requests Trakt acts on at once but answers one byte every ``interval`` seconds (over HTTP).

        No single read waits long, so a per-read timeout never fires: only a deadline for
        the whole answer ends it. In-process the answer comes at once.
        """
        return self._queue(path_regex, method, times, kind="trickle", delay=float(interval))

    def disable_app(self, client_id: str) -> None:
        """Trakt disabled or deleted this app: every request naming it gets a 403.

        Trakt deletes apps without OAuth sessions automatically (trakt/trakt-api#691); from
        then on every call of the app (authorize, token, device code and poll, revoke, API)
        is refused with a 403, whatever its user or token.
        """
        with self.lock:
            self.disabled_apps.add(client_id)

    def enable_app(self, client_id: str) -> None:
        """Undo :meth:`disable_app`."""
        with self.lock:
            self.disabled_apps.discard(client_id)

    def cloudflare_next(
        self,
        path_regex: str | re.Pattern[str],
        status: int = 403,
        *,
        times: int = 1,
        method: str | None = None,
    ) -> Failure:
        """Cloudflare in front of Trakt: an HTML page, no ``X-Ratelimit``.

        A ``429`` is Cloudflare's rate-limit page and carries ``Retry-After: 300``
        (trakt/trakt-api#909: "text/html with Server: cloudflare, Retry-After: 300 and no
        X-Ratelimit header").
        """

        headers = {"Content-Type": "text/html; charset=UTF-8", "Server": "cloudflare", "CF-RAY": "emulated"}
        if status == 429:
            headers["Retry-After"] = str(CLOUDFLARE_RETRY_AFTER)
        return self.fail_next(
            path_regex,
            status=status,
            body=cloudflare_page(status),
            headers=headers,
            times=times,
            method=method,
        )

    def malformed_next(
        self, path_regex: str | re.Pattern[str], *, times: int = 1, method: str | None = None
    ) -> Failure:
        """A 200 that claims JSON but is cut short (a broken proxy or a deploy)."""
        return self.fail_next(
            path_regex,
            status=200,
            body=b'{"user": {"username": ',
            headers={"Content-Type": "application/json"},
            times=times,
            method=method,
        )

    # -- running ------------------------------------------------------------------------------

    @contextmanager
    def mock(self, rsps: responses.RequestsMock | None = None) -> Iterator[responses.RequestsMock]:
        """Intercept ``requests`` calls to the base URLs and answer them in-process."""

        with bind(self, rsps) as active:
            yield active

    def serve(self, host: str = "127.0.0.1", port: int = 0, *, public_url: str | None = None) -> EmulatorServer:
        """Start a threaded loopback HTTP server; the base URLs follow it until ``stop()``."""

        return EmulatorServer(self, host, port, public_url=public_url).start()
