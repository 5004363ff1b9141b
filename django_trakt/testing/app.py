"""The emulator's WSGI application: recording, failures, header checks, routing.

Both run modes (``responses`` in-process, the loopback server) call this same
application, so behaviour cannot drift between unit tests and the example site.
Routing is by path only; the host is ignored, so one server answers for the
auth, API, website and image hosts alike.

Checks, in order, for API and OAuth endpoints (HTML pages and images have none):

1. no ``User-Agent``: ``403`` Cloudflare-like HTML page;
2. ``trakt-api-version`` missing or not ``2``: ``400`` JSON ``invalid_api_version``;
3. ``trakt-api-key`` missing or not a registered client id: ``403`` JSON
   ``invalid_api_key``;
4. OAuth POSTs only: ``Content-Type`` not ``application/json``: ``412``; an
   ``Authorization: Basic`` header: ``400 invalid_request`` (auth.trakt.tv does not accept
   HTTP Basic client authentication and answers 400, trakt/trakt-api#903); a body that is
   not a JSON object: ``400 invalid_request``;
5. API GETs only: the rate limit, ``get_limit`` (500) GETs per ``rate_limit_period`` (5
   minutes) per user, or per app key without a token (trakt/trakt-api#909). Over it: the
   API's ``429`` (JSON, ``Retry-After``, ``X-Ratelimit``), or with ``cloudflare_burst``
   Cloudflare's (HTML, ``Retry-After: 300``, no ``X-Ratelimit``; #909, #922).

Other conventions where Trakt's documentation leaves room: errors are JSON
``{"error", "error_description"}``; a missing or dead Bearer token is ``401
invalid_token``; a private user's data is ``401`` without a token and ``403`` with
another user's; ``/oauth/device/token`` answers 400/404/409/410/418/429 with an
empty body; ``GET /users/<slug>`` is JSON when ``trakt-api-*`` headers are sent,
else the HTML profile page; an unknown path is ``404`` JSON, a known path with
another method ``405`` JSON; an unknown watchlist type ``404``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote

from requests.structures import CaseInsensitiveDict

from . import documents, images, pages
from .errors import AuthorizationRedirectError, AuthorizationRejected, EmulatedTimeout, OAuthError
from .protocols import TraktRules
from .state import EmulatedUser, RecordedRequest
from .watchlist import DEFAULT_LIMIT, SORT_KEYS, TYPE_SEGMENTS, paginate, select

#: Cloudflare's rate-limit page asks for five minutes (trakt/trakt-api#909).
CLOUDFLARE_RETRY_AFTER = 300

logger = logging.getLogger(__name__)

#: WSGI environ key set by the in-process binding, so a timeout can raise instead of sleep.
INPROCESS_KEY = "django_trakt.testing.inprocess"
CLIENT_TIMEOUT_KEY = "django_trakt.testing.client_timeout"

Headers = list[tuple[str, str]]


@dataclasses.dataclass
class Response:
    """What a handler returns; turned into a WSGI response in one place."""

    status: int
    body: bytes = b""
    headers: Headers = dataclasses.field(default_factory=list)
    #: Served over HTTP one byte every this many seconds (0: at once).
    trickle: float = 0.0


def json_response(status: int, document: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
    return Response(status, json.dumps(document).encode("utf-8"), [("Content-Type", "application/json"), *headers])


def html_response(status: int, body: bytes, headers: Iterable[tuple[str, str]] = ()) -> Response:
    return Response(status, body, [("Content-Type", "text/html; charset=utf-8"), *headers])


def error_response(status: int, error: str, description: str) -> Response:
    return json_response(status, {"error": error, "error_description": description})


def oauth_error_response(error: OAuthError) -> Response:
    body = error.body()
    if body is None:
        return Response(error.status, b"", [("Content-Type", "application/json")])
    headers = [("WWW-Authenticate", f'Bearer error="{error.error}"')] if error.status == 401 else []
    return json_response(error.status, body, headers)


def status_line(status: int) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return f"{status} {phrase}"


def _from_recorded(name: str) -> Any:
    return property(lambda request: getattr(request.recorded, name), doc=f"``{name}`` of the recorded request.")


@dataclasses.dataclass
class Request:
    """A WSGI request as handlers see it: the request tests see (``recorded``) plus its environ.

    The parsed parts live once, on ``recorded``; the attributes below read them there.
    """

    environ: dict[str, Any]
    recorded: RecordedRequest

    method = _from_recorded("method")
    path = _from_recorded("path")
    query = _from_recorded("query")
    headers = _from_recorded("headers")
    body = _from_recorded("body")
    json = _from_recorded("json")
    form = _from_recorded("form")

    @property
    def inprocess(self) -> bool:
        return bool(self.environ.get(INPROCESS_KEY))

    @property
    def client_timeout(self) -> float | None:
        """The in-process client's read timeout (None over HTTP, where the client enforces it)."""
        value = self.environ.get(CLIENT_TIMEOUT_KEY)
        return float(value) if isinstance(value, (int, float)) else None

    def bearer(self) -> str | None:
        """The Bearer token, ``""`` for a malformed header, ``None`` if absent."""
        value = self.headers.get("Authorization")
        if value is None:
            return None
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""


def parse_request(environ: dict[str, Any], now: float) -> Request:
    """Read everything from the environ once: headers, body, JSON, form."""
    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").title()] = value
    if environ.get("CONTENT_TYPE"):
        headers["Content-Type"] = environ["CONTENT_TYPE"]
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    method = environ.get("REQUEST_METHOD", "GET").upper()
    # WSGI gives PATH_INFO as latin-1 decoded bytes; recover the UTF-8 text.
    path = environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "replace") or "/"
    query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
    content_type = headers.get("Content-Type", "").split(";")[0].strip().lower()
    parsed_json: Any = None
    form: dict[str, str] | None = None
    if body:
        try:
            parsed_json = json.loads(body)
        except ValueError:
            parsed_json = None
        if content_type == "application/x-www-form-urlencoded":
            form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    host = headers.get("Host") or environ.get("SERVER_NAME", "")
    url = f"{environ.get('wsgi.url_scheme', 'http')}://{host}{path}"
    if environ.get("QUERY_STRING"):
        url += "?" + environ["QUERY_STRING"]
    recorded = RecordedRequest(
        method=method,
        path=path,
        query=query,
        headers=CaseInsensitiveDict(headers),
        body=body,
        json=parsed_json,
        form=form,
        timestamp=now,
        url=url,
    )
    return Request(environ, recorded)


Handler = Callable[["Request", dict[str, str]], Response]

#: What a route needs checked before its handler runs.
PAGE, IMAGE, API, OAUTH = "page", "image", "api", "oauth"


class TraktApp:
    """The WSGI callable; all state lives on the emulator it was built for."""

    def __init__(self, emulator: TraktRules) -> None:
        self.emulator = emulator
        segment = r"(?:/(?P<type>[^/]+)(?:/(?P<sort_by>[^/]+)(?:/(?P<sort_how>[^/]+))?)?)?"
        self.routes: list[tuple[str, re.Pattern[str], str, Handler]] = [
            ("GET", re.compile(r"/oauth/authorize"), PAGE, self.authorize_page),
            ("POST", re.compile(r"/oauth/authorize"), PAGE, self.authorize_decision),
            ("POST", re.compile(r"/oauth/token"), OAUTH, self.token),
            ("POST", re.compile(r"/oauth/revoke"), OAUTH, self.revoke),
            ("POST", re.compile(r"/oauth/device/code"), OAUTH, self.device_code),
            ("POST", re.compile(r"/oauth/device/token"), OAUTH, self.device_token),
            ("GET", re.compile(r"/activate(?:/(?P<code>[^/]+))?/?"), PAGE, self.activate_page),
            ("POST", re.compile(r"/activate"), PAGE, self.activate_decision),
            ("GET", re.compile(r"/images/avatars/(?P<slug>[^/]+)\.png"), IMAGE, self.avatar),
            ("GET", re.compile(r"/images/posters/(?P<name>.+)\.png"), IMAGE, self.poster),
            ("GET", re.compile(r"/users/settings"), API, self.settings),
            ("GET", re.compile(r"/sync/last_activities"), API, self.last_activities),
            ("GET", re.compile(r"/sync/watchlist" + segment), API, self.own_watchlist),
            ("GET", re.compile(r"/users/(?P<id>[^/]+)/watchlist" + segment), API, self.user_watchlist),
            ("GET", re.compile(r"/users/(?P<id>[^/]+)/?"), PAGE, self.profile),
            (
                "GET",
                re.compile(r"/(?P<kind>movies|shows)/(?P<slug>[^/]+)(?:/seasons/\d+(?:/episodes/\d+)?)?/?"),
                PAGE,
                self.title,
            ),
        ]

    # -- WSGI entry point ---------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        emulator = self.emulator
        request = parse_request(environ, emulator.now())
        emulator.record(request.recorded)
        if emulator.latency > 0:
            time.sleep(emulator.latency)
        response = self.respond(request)
        request.recorded.status = response.status
        headers = [*response.headers, ("Content-Length", str(len(response.body)))]
        start_response(status_line(response.status), headers)
        if request.method == "HEAD":
            return [b""]
        if response.trickle and not request.inprocess:
            return self._trickled(response.body, response.trickle)
        return [response.body]

    @staticmethod
    def _trickled(body: bytes, interval: float) -> Iterable[bytes]:
        # One byte at a time, ``interval`` apart: an answer that never times out a single read.
        for index in range(len(body)):
            if index:
                time.sleep(interval)
            yield body[index : index + 1]

    def respond(self, request: Request) -> Response:
        """Injected failure, else route; unexpected errors become a logged 500."""
        failure = self.emulator.take_failure(request.method, request.path)
        if failure is not None:
            logger.debug("Injected %s for %s %s", failure.kind, request.method, request.path)
            if failure.kind == "timeout":
                if request.inprocess:
                    raise EmulatedTimeout(request.path)
                time.sleep(self.emulator.timeout_sleep)
                return html_response(504, pages.message_page("Gateway time-out", "The origin did not answer."))
            if failure.kind == "trickle":
                # Trakt acts on the request at once; its answer comes a byte at a time.
                response = self._route(request)
                return dataclasses.replace(response, trickle=failure.delay)
            if failure.kind == "slow":
                # Trakt acts on the request at once; only its answer is late.
                response = self._route(request)
                self._answer_late(request, failure.delay)
                return response
            return Response(failure.status, failure.body, list(failure.headers))
        if self._names_disabled_app(request):
            return html_response(403, pages.message_page("Forbidden", "Invalid API key or unapproved app."))
        return self._route(request)

    def _names_disabled_app(self, request: Request) -> bool:
        disabled = self.emulator.disabled_apps
        if not disabled:
            return False
        body_client = request.json.get("client_id") if isinstance(request.json, dict) else None
        named = (request.headers.get("trakt-api-key"), body_client, request.query.get("client_id"))
        return any(client_id in disabled for client_id in named if client_id)

    def _route(self, request: Request) -> Response:
        try:
            return self.route(request)
        except OAuthError as error:
            return oauth_error_response(error)
        except Exception:
            logger.exception("Emulator error on %s %s", request.method, request.path)
            return error_response(500, "server_error", "The emulator failed; see its log.")

    @staticmethod
    def _answer_late(request: Request, delay: float) -> None:
        timeout = request.client_timeout
        if timeout is not None and delay > timeout:
            time.sleep(timeout)
            raise EmulatedTimeout(request.path)  # the client gave up; the request was still processed
        time.sleep(delay)

    def route(self, request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        allowed = False
        for route_method, pattern, kind, handler in self.routes:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            if route_method != method:
                allowed = True
                continue
            params = {key: value for key, value in match.groupdict().items() if value is not None}
            if kind == PAGE and handler == self.profile and self._is_api_call(request):
                kind, handler = API, self.public_profile
            if kind in (API, OAUTH):
                refusal = self.check_trakt_headers(request)
                if refusal is not None:
                    return refusal
            if kind == OAUTH:
                refusal = self.check_oauth_body(request)
                if refusal is not None:
                    return refusal
            if kind == API and method == "GET":
                refusal = self.check_rate_limit(request)
                if refusal is not None:
                    return refusal
            return handler(request, params)
        if allowed:
            return error_response(405, "method_not_allowed", f"{request.method} is not allowed here.")
        return error_response(404, "not_found", f"No such endpoint: {request.path}")

    # -- checks -----------------------------------------------------------------------------

    @staticmethod
    def _is_api_call(request: Request) -> bool:
        """``/users/<slug>`` is a web page for browsers, JSON for API clients."""
        return "trakt-api-version" in request.headers or "trakt-api-key" in request.headers

    def check_trakt_headers(self, request: Request) -> Response | None:
        """Strict like Trakt (and the Cloudflare in front of it)."""
        if not request.headers.get("User-Agent", "").strip():
            return html_response(403, pages.cloudflare_page(403), [("Server", "cloudflare")])
        if request.headers.get("trakt-api-version", "").strip() != "2":
            return error_response(400, "invalid_api_version", "Send the header trakt-api-version: 2.")
        if request.headers.get("trakt-api-key", "").strip() not in self.emulator.apps:
            return error_response(403, "invalid_api_key", "Invalid API key or unapproved app (trakt-api-key).")
        return None

    @staticmethod
    def check_oauth_body(request: Request) -> Response | None:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return error_response(412, "invalid_content_type", "Content-Type must be application/json.")
        if request.headers.get("Authorization", "").lower().startswith("basic"):
            # trakt/trakt-api#903: "sends the client credentials via HTTP Basic authentication, which
            # auth.trakt.tv does not accept, so the code-for-token exchange 400s".
            return error_response(
                400,
                "invalid_request",
                "HTTP Basic client authentication is not supported; send the credentials in the JSON body.",
            )
        if not isinstance(request.json, dict):
            return error_response(400, "invalid_request", "The body must be a JSON object.")
        return None

    def check_rate_limit(self, request: Request) -> Response | None:
        """Trakt's GET limit: 500 per 5 minutes per user (trakt/trakt-api#909, a maintainer:
        "The GET limit is currently 500 requests per 5 minutes, not 1000").

        Counted in fixed windows of ``rate_limit_period`` seconds (Trakt's ``X-Ratelimit``
        ``until`` falls on five-minute boundaries, #220), per user when a live token is sent,
        else per app key. The API's answer is a JSON 429 with ``Retry-After`` and
        ``X-Ratelimit``; with ``cloudflare_burst`` it is Cloudflare's HTML 429 with
        ``Retry-After: 300`` and no ``X-Ratelimit`` (#909: "Content-Type: text/html with
        Server: cloudflare, Retry-After: 300 and no X-Ratelimit header").
        """
        emulator = self.emulator
        limit = emulator.get_limit
        if limit is None:
            return None
        token = request.bearer()
        user = emulator.user_for_token(token) if token else None
        who = f"user:{user.uuid}" if user is not None else f"app:{request.headers.get('trakt-api-key', '')}"
        count, until = emulator.count_get(who)
        if count <= limit:
            return None
        now = emulator.now()
        if emulator.cloudflare_burst:
            return html_response(
                429,
                pages.cloudflare_page(429),
                [("Server", "cloudflare"), ("CF-RAY", "emulated"), ("Retry-After", str(CLOUDFLARE_RETRY_AFTER))],
            )
        ratelimit = {
            "name": "AUTHED_API_GET_LIMIT" if user is not None else "UNAUTHED_API_GET_LIMIT",
            "period": int(emulator.rate_limit_period),
            "limit": limit,
            "remaining": 0,
            "until": documents.iso(until),
        }
        return json_response(
            429,
            {"error": "rate_limit_exceeded", "error_description": "Rate limit exceeded."},
            [("Retry-After", str(max(1, math.ceil(until - now)))), ("X-Ratelimit", json.dumps(ratelimit))],
        )

    def require_user(self, request: Request) -> EmulatedUser:
        """The token's user, or ``401 invalid_token``."""
        token = request.bearer()
        if not token:
            raise OAuthError(401, "invalid_token", "An OAuth access token is required.")
        # The token must be one issued to the app named by trakt-api-key (user_for_token).
        user = self.emulator.user_for_token(token, request.headers.get("trakt-api-key", "").strip())
        if user is None:
            raise OAuthError(401, "invalid_token", "The access token is invalid, expired or revoked.")
        return user

    def optional_user(self, request: Request) -> EmulatedUser | None:
        """The token's user if one was sent; a bad token is still a 401."""
        return None if request.bearer() is None else self.require_user(request)

    # -- OAuth pages ------------------------------------------------------------------------

    def authorize_page(self, request: Request, _: dict[str, str]) -> Response:
        try:
            app = self.emulator.validate_authorize(request.query)
        except AuthorizationRedirectError as refused:
            return Response(302, b"", [("Location", refused.location)])
        except AuthorizationRejected as error:
            return html_response(400, pages.message_page("Authorization error", str(error)))
        usernames = [user.username for user in self.emulator.users]
        return html_response(200, pages.consent_page(app.name, request.query, usernames))

    def authorize_decision(self, request: Request, _: dict[str, str]) -> Response:
        form = dict(request.form or {})
        username = form.pop("username", None) or None
        decision = form.pop("decision", "")
        try:
            location = self.emulator.decide(form, username, decision)
        except AuthorizationRejected as error:
            return html_response(400, pages.message_page("Authorization error", str(error)))
        return Response(302, b"", [("Location", location)])

    def activate_page(self, request: Request, params: dict[str, str]) -> Response:
        """``/activate``, or ``/activate/<user_code>`` with the code filled in (trakt/trakt-api#867)."""
        usernames = [user.username for user in self.emulator.users]
        code = params.get("code") or request.query.get("code", "")
        return html_response(200, pages.activate_page(usernames, code))

    def activate_decision(self, request: Request, _: dict[str, str]) -> Response:
        form = request.form or {}
        code, decision = form.get("code", ""), form.get("decision", "")
        usernames = [user.username for user in self.emulator.users]
        try:
            if decision == "approve":
                self.emulator.approve_device(code, form.get("username") or None)
                return html_response(200, pages.message_page("Device approved", "You can return to your device."))
            if decision == "deny":
                self.emulator.deny_device(code)
                return html_response(200, pages.message_page("Device denied", "The device was not connected."))
        except (KeyError, ValueError):
            return html_response(400, pages.activate_page(usernames, code, "That code is invalid or has expired."))
        return html_response(400, pages.activate_page(usernames, code, "Choose Approve or Deny."))

    # -- OAuth endpoints ---------------------------------------------------------------------

    def token(self, request: Request, _: dict[str, str]) -> Response:
        grant_type = request.json.get("grant_type")
        if grant_type == "authorization_code":
            return json_response(200, self.emulator.exchange_code(request.json))
        if grant_type == "refresh_token":
            return json_response(200, self.emulator.refresh(request.json))
        raise OAuthError(400, "unsupported_grant_type", f"grant_type {grant_type!r} is not supported.")

    def revoke(self, request: Request, _: dict[str, str]) -> Response:
        return json_response(200, self.emulator.revoke(request.json))

    def device_code(self, request: Request, _: dict[str, str]) -> Response:
        return json_response(200, self.emulator.create_device_code(request.json))

    def device_token(self, request: Request, _: dict[str, str]) -> Response:
        return json_response(200, self.emulator.poll_device(request.json))

    # -- images and web pages ----------------------------------------------------------------

    def avatar(self, _: Request, params: dict[str, str]) -> Response:
        return Response(200, images.avatar_png(params["slug"]), [("Content-Type", "image/png")])

    def poster(self, _: Request, params: dict[str, str]) -> Response:
        return Response(200, images.poster_png(params["name"]), [("Content-Type", "image/png")])

    def profile(self, _: Request, params: dict[str, str]) -> Response:
        with self.emulator.lock:
            user = self._user_by_slug(params["id"])
            if user is None:
                return html_response(404, pages.message_page("Not found", "There is no such Trakt user."))
            return html_response(
                200,
                pages.profile_page(
                    user.username, user.name, user.slug, documents.avatar_url(user, self.emulator.image_url)
                ),
            )

    # -- API -----------------------------------------------------------------------------------

    def title(self, request: Request, params: dict[str, str]) -> Response:
        """A movie's or show's page on the web host, so watchlist links in a site lead somewhere."""
        wanted = "movie" if params["kind"] == "movies" else "show"
        with self.emulator.lock:
            for user in self.emulator.users:
                for item in user.watchlist:
                    media = item.media if item.kind == wanted else item.show if wanted == "show" else None
                    if isinstance(media, dict) and media.get("ids", {}).get("slug") == params["slug"]:
                        heading = (
                            f"{media.get('title')} ({media.get('year')})" if media.get("year") else media.get("title")
                        )
                        return html_response(200, pages.message_page(str(heading), f"A {wanted} on the local Trakt."))
        return html_response(404, pages.message_page("Not found", f"There is no such {wanted}."))

    def _user_by_slug(self, slug: str) -> EmulatedUser | None:
        return next((user for user in self.emulator.users if user.slug == slug), None)

    def settings(self, request: Request, _: dict[str, str]) -> Response:
        user = self.require_user(request)
        with self.emulator.lock:
            return json_response(200, documents.settings_document(user, self.emulator.image_url))

    def last_activities(self, request: Request, _: dict[str, str]) -> Response:
        user = self.require_user(request)
        with self.emulator.lock:
            return json_response(200, documents.last_activities_document(user))

    def _visible_user(self, request: Request, ref: str) -> EmulatedUser:
        """``/users/{id}``: ``me`` (token required) or a slug; private needs its own token.

        A private user's data: ``401`` without a token, ``403`` with another user's.
        """
        viewer = self.optional_user(request)
        if ref == "me":
            if viewer is None:
                raise OAuthError(401, "invalid_token", "/users/me needs an access token.")
            return viewer
        user = self._user_by_slug(ref)
        if user is None:
            raise OAuthError(404, "not_found", "No such user.")
        if user.private and viewer is not user:
            if viewer is None:
                raise OAuthError(401, "invalid_token", "This user is private: an access token of theirs is required.")
            raise OAuthError(403, "forbidden", "This user is private.")
        return user

    def public_profile(self, request: Request, params: dict[str, str]) -> Response:
        """``GET /users/{id}`` as JSON; like Trakt, without ``ids.uuid``."""
        user = self._visible_user(request, params["id"])
        with self.emulator.lock:
            return json_response(200, documents.user_document(user, self.emulator.image_url, with_uuid=False))

    def own_watchlist(self, request: Request, params: dict[str, str]) -> Response:
        return self.watchlist(request, self.require_user(request), params)

    def user_watchlist(self, request: Request, params: dict[str, str]) -> Response:
        return self.watchlist(request, self._visible_user(request, params["id"]), params)

    def watchlist(self, request: Request, user: EmulatedUser, params: dict[str, str]) -> Response:
        """Filter, sort and (only when asked) paginate; always send the list's sort headers."""
        segment = params.get("type", "all")
        if segment not in TYPE_SEGMENTS:
            raise OAuthError(404, "not_found", f"Unknown watchlist type {segment!r}.")
        sort_by = params.get("sort_by", "rank")
        sort_how = params.get("sort_how", "asc")
        if sort_by not in SORT_KEYS:
            # The contract's sorts (projects/api/src/contracts/users/schema/request/sortParamsSchema.ts);
            # any other value is a validation error, never silently another order.
            raise OAuthError(400, "invalid_request", f"sort_by must be one of {', '.join(SORT_KEYS)}.")
        if sort_how not in ("asc", "desc"):
            raise OAuthError(400, "invalid_request", "sort_how must be asc or desc.")
        extended = set(filter(None, request.query.get("extended", "").split(",")))
        with self.emulator.lock:
            items = select(user.watchlist, TYPE_SEGMENTS[segment], sort_by, sort_how)
            headers = [("X-Sort-By", user.watchlist_sort_by), ("X-Sort-How", user.watchlist_sort_how)]
            if "page" in request.query or "limit" in request.query:
                try:
                    page = int(request.query.get("page") or 1)
                    limit = int(request.query.get("limit") or DEFAULT_LIMIT)
                except ValueError:
                    raise OAuthError(400, "invalid_request", "page and limit must be integers.") from None
                if page < 1 or limit < 1:
                    raise OAuthError(400, "invalid_request", "page and limit must be positive.")
                items, pagination = paginate(items, page, limit)
                headers.extend(pagination.items())
            body = [documents.watchlist_item_document(item, self.emulator.image_url, extended) for item in items]
        return json_response(200, body, headers)


def decode_path(raw: str) -> str:
    """Percent-decode a URL path the way a WSGI server fills ``PATH_INFO``."""
    return unquote(raw, encoding="latin-1")
