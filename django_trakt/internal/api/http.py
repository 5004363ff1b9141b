"""The one place that speaks HTTP to Trakt (transport level; TraktClient is built on it).

Every request carries Trakt's headers (``trakt-api-version``, ``trakt-api-key``, the
User-Agent Trakt requires), a timeout, and goes through one error mapping, so callers
see typed :mod:`django_trakt.exceptions` and never a raw ``requests`` error or a
Cloudflare page. Nothing here logs a header or a body: those carry tokens.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies

import requests
import urllib3
from allauth.socialaccount.adapter import get_adapter
from django.views.decorators.debug import sensitive_variables
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from django_trakt.conf import trakt_settings
from django_trakt.exceptions import (
    TraktAccountLimit,
    TraktAccountLocked,
    TraktAPIError,
    TraktForbidden,
    TraktMalformedResponse,
    TraktNotFound,
    TraktRateLimited,
    TraktServerError,
    TraktTimeout,
    TraktTransportError,
    TraktUnauthorized,
    TraktVIPOnly,
)
from django_trakt.internal.core.numbers import finite_number

logger = logging.getLogger(__name__)

API_VERSION = "2"

_STATUS_ERRORS: dict[int, type[TraktAPIError]] = {
    401: TraktUnauthorized,
    403: TraktForbidden,
    404: TraktNotFound,
    420: TraktAccountLimit,
    423: TraktAccountLocked,
    426: TraktVIPOnly,
}

#: requests' own default for an adapter: no retry of any kind once a request may have been sent.
NO_RETRIES = Retry(0, read=False)

_local = threading.local()


def _transport() -> HTTPAdapter:
    """This thread's connection pool to Trakt: one ``HTTPAdapter`` per thread, never retrying.

    Kept across requests so the refresh batch and the task workers reuse their connections
    (TLS handshakes are most of a refresh's time); per thread because an adapter's pools are
    not documented as thread-safe. Only the adapter is kept, never a session: see
    :func:`_session`.
    """
    transport: HTTPAdapter | None = getattr(_local, "transport", None)
    if transport is None:
        transport = _local.transport = HTTPAdapter(max_retries=NO_RETRIES)
    return transport


def _never_retry(session: requests.Session) -> None:
    """Make every mounted adapter of ``session`` send each request once.

    Trakt's refresh tokens are single-use: a refresh POST retried after a lost answer
    spends the new token Trakt issued to the lost answer, and the link is gone. Device
    polls and revokes are rate-limited at Trakt, and the callers here decide themselves
    when to try again (``retries.refresh_with_retries``, the device pages' interval). So no
    transport retry, whatever a site's ``get_requests_session`` mounted (allauth's default
    mounts none today). The adapters are changed in place: the session is made for one
    request of this module (allauth itself asks for a session per use and closes it, so a
    site cannot share them). An adapter that is not an ``HTTPAdapter`` has no documented
    retry setting and is left as it is.
    """
    for adapter in session.adapters.values():
        if isinstance(adapter, HTTPAdapter):
            adapter.max_retries = NO_RETRIES


def _session() -> requests.Session:
    """A session to Trakt for one request, made by the site's allauth adapter.

    ``get_requests_session()`` is where allauth (and every allauth provider) gets its
    sessions, and where sites set their proxies, CA bundle (``session.verify``), client
    certificate, headers or mounted adapters: calls to Trakt honour them like allauth's own
    calls. A FRESH session per request, as allauth itself asks for one per use: allauth's
    session binds ``session.request`` (a ``functools.partial`` with its timeout) when it is
    made, so a session kept for later would keep calling whatever ``Session.request`` was
    then (a site's test double of an earlier test, allauth's own request mocking).

    Connection reuse comes from :func:`_transport`, mounted in place of requests' plain
    ``HTTPAdapter`` (exactly that class: it holds nothing but pool sizes and retries). An
    adapter of the site's own class (its proxy transport, its CA handling) stays, sending
    each request once (see :func:`_never_retry`). Our headers, timeout,
    ``allow_redirects=False`` and ``stream=False`` are passed on every call (see
    :func:`send`), so they win over the session's defaults.
    """
    session = get_adapter().get_requests_session()
    _take_environment_now(session)
    transport = _transport()
    for prefix, mounted in list(session.adapters.items()):
        if type(mounted) is HTTPAdapter:
            session.mount(prefix, transport)
            mounted.close()  # never used: it holds no connection
    _never_retry(session)
    return session


def _take_environment_now(session: requests.Session) -> None:
    """What ``trust_env`` would take from the environment, taken now, and ``trust_env`` off.

    Under ``trust_env`` requests reads proxies, a CA bundle and netrc credentials from the
    environment while it prepares and sends each request: os.environ read through twice,
    a fifth of its CPU per request. Where the environment names no proxy (``*_proxy``,
    ``no_proxy``; ``urllib.request.getproxies``) and no netrc file (``NETRC``, ``~/.netrc``,
    ``~/_netrc``), the only thing it would take is the CA bundle (``REQUESTS_CA_BUNDLE``, else
    ``CURL_CA_BUNDLE``), which requests lets win over ``session.verify``: set here the same
    way. Otherwise the session is left as the site made it. Asked for each request: a site
    may change its environment while it runs (tests do).
    """
    if not session.trust_env or getproxies() or os.environ.get("NETRC"):
        return
    home = os.path.expanduser("~")  # where requests looks for netrc files
    if any(os.path.exists(os.path.join(home, name)) for name in (".netrc", "_netrc")):
        return
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.trust_env = False


def _release(session: requests.Session) -> None:
    """Close what ``session`` holds of its own once its answer is read; this thread's transport stays open."""
    transport = getattr(_local, "transport", None)
    for mounted in session.adapters.values():
        if mounted is not transport:
            mounted.close()


@sensitive_variables()
def trakt_headers(client_id: str, access_token: str | None = None) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": trakt_settings.USER_AGENT,
        "trakt-api-version": API_VERSION,
        "trakt-api-key": client_id,
    }
    if access_token:
        headers["Authorization"] = f"Bearer {access_token}"
    return headers


def header(response: requests.Response, name: str) -> str:
    """The value of the header ``name`` of an answer (``""`` when absent), whatever its case.

    Header names are case-insensitive (RFC 9110); requests' ``CaseInsensitiveDict`` knows
    it, a plain dict of headers does not (the answers of test doubles, allauth's own
    ``MockedResponse`` among them, which a site's ``get_requests_session`` may return).
    """
    headers = response.headers
    value = headers.get(name)
    if value is None:
        wanted = name.lower()
        value = next((found for key, found in headers.items() if key.lower() == wanted), None)
    return "" if value is None else str(value)


def content_type(response: requests.Response) -> str:
    """The media type of an answer, lower case, without parameters (``""`` when absent)."""
    return header(response, "Content-Type").split(";")[0].strip().lower()


def _excerpt(response: requests.Response) -> str:
    if content_type(response) == "text/html":
        # A Cloudflare (or proxy) page, e.g. its 429 rate-limit page (trakt/trakt-api#909): its
        # markup tells an operator nothing in a log line or in ``last_error``; say what it was.
        server = " ".join(header(response, "Server").split())[:40]
        return f"an HTML page{f' from {server}' if server else ''}, not Trakt's JSON"
    text = response.text or ""
    return " ".join(text.split())


def _retry_after(response: requests.Response) -> float | None:
    seconds = finite_number(header(response, "Retry-After") or None)
    return None if seconds is None else max(0.0, seconds)


def error_for_response(response: requests.Response) -> TraktAPIError:
    """The typed exception for an HTTP error answer from Trakt."""
    status = response.status_code
    excerpt = _excerpt(response)
    if status == 429:
        return TraktRateLimited(status, excerpt, retry_after=_retry_after(response))
    if status >= 500:
        return TraktServerError(status, excerpt)
    return _STATUS_ERRORS.get(status, TraktAPIError)(status, excerpt)


#: Bytes asked of the socket per read of an answer's body.
_READ_SIZE = 64 * 1024


def request_within_deadline(
    session: requests.Session, method: str, url: str, *, seconds: float, **kwargs: Any
) -> requests.Response:
    """Send one request whose answer, body included, must end within ``seconds`` in all.

    requests' ``timeout`` bounds each socket operation, not the whole: an answer trickled a
    byte at a time would hold the caller (a refresh, its claim, a stopping command) without
    end. So the body is read here, each read allowed only what is left of the budget; past
    it the request ends as a read timeout (``requests.ReadTimeout``). The response returned
    holds its whole body, like a response read without ``stream``.
    """
    deadline = time.monotonic() + seconds
    response = session.request(method, url, timeout=(seconds, seconds), stream=True, **kwargs)
    raw = getattr(response, "raw", None)
    if not isinstance(raw, urllib3.response.BaseHTTPResponse):
        # A site's or a library's test double in place of requests' session (allauth's own
        # provider tests are one): its answer is in memory already, nothing can trickle.
        return response
    try:
        chunks = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise requests.ReadTimeout(f"the answer did not end within {seconds:g} seconds")
            sock = getattr(getattr(raw, "connection", None), "sock", None)
            if sock is not None:
                sock.settimeout(remaining)  # this read may take only what is left
            chunk = raw.read1(_READ_SIZE, decode_content=True)
            if not chunk:
                break
            chunks.append(chunk)
    except (TimeoutError, urllib3.exceptions.ReadTimeoutError) as err:
        response.close()
        raise requests.ReadTimeout(err) from err
    except urllib3.exceptions.HTTPError as err:
        response.close()
        raise requests.ConnectionError(err) from err
    except BaseException:
        response.close()
        raise
    raw.release_conn()  # read to the end: the connection can serve the next request
    response.raw = io.BytesIO(b"".join(chunks))
    return response


@sensitive_variables()
def send(
    method: str,
    url: str,
    *,
    client_id: str,
    access_token: str | None = None,
    json: Any = None,
    params: Mapping[str, Any] | None = None,
    raise_for_status: bool = True,
    timeout: float | None = None,
) -> requests.Response:
    """Send one request to Trakt and return its response.

    ``timeout`` (seconds) overrides the ``TIMEOUT`` setting, e.g. a shorter budget
    for calls made while a page renders. It bounds the whole request, body included
    (:func:`request_within_deadline`).

    Raises :class:`TraktTimeout` / :class:`TraktTransportError` when Trakt cannot be
    reached, and (unless ``raise_for_status`` is false) the typed
    :class:`TraktAPIError` for an error status.
    """
    path = urlsplit(url).path
    session = _session()
    try:
        response = request_within_deadline(
            session,
            method,
            url,
            seconds=trakt_settings.TIMEOUT if timeout is None else timeout,
            headers=trakt_headers(client_id, access_token),
            json=json,
            params=params,
            allow_redirects=False,
        )
    except requests.ConnectTimeout as err:
        # Nothing reached Trakt: unlike a read timeout, this is safe to try again at once.
        logger.warning("Trakt %s %s: no connection in time", method, path)
        raise TraktTransportError(f"Trakt could not be reached for {method} {path} in time") from err
    except requests.Timeout as err:
        logger.warning("Trakt %s %s timed out", method, path)
        raise TraktTimeout(f"Trakt did not answer {method} {path} in time") from err
    except requests.RequestException as err:
        logger.warning("Trakt %s %s failed: %s", method, path, type(err).__name__)
        raise TraktTransportError(f"Trakt could not be reached for {method} {path}") from err
    finally:
        _release(session)
    logger.debug("Trakt %s %s -> %s", method, path, response.status_code)
    if raise_for_status and response.status_code >= 400:
        raise error_for_response(response)
    return response


def error_document(response: requests.Response) -> Any:
    """The JSON body of an error answer: ``None`` when empty, ``"unparseable"`` when not JSON.

    Only a body that says it is JSON is parsed: an HTML page (Cloudflare's 429 or 403) is
    never fed to the JSON parser, whatever it contains.
    """
    if not response.content.strip():
        return None
    if content_type(response) not in ("application/json", ""):
        return "unparseable"
    try:
        return response.json()
    except ValueError:
        return "unparseable"


def decode_json(response: requests.Response) -> Any:
    """The JSON document of a 2xx answer, or :class:`TraktMalformedResponse`."""
    media_type = content_type(response)
    if media_type != "application/json":
        raise TraktMalformedResponse(f"Trakt answered with {media_type or 'no content type'} where JSON was expected")
    try:
        return response.json()
    except ValueError as err:
        raise TraktMalformedResponse("Trakt answered with a body that is not valid JSON") from err


@sensitive_variables()
def get_user_settings(client_id: str, access_token: str) -> dict[str, Any]:
    """``GET {API_URL}/users/settings``: the signed-in user's profile and account."""
    response = send("GET", f"{trakt_settings.API_URL}/users/settings", client_id=client_id, access_token=access_token)
    document = decode_json(response)
    if not isinstance(document, dict) or not isinstance(document.get("user"), dict):
        raise TraktMalformedResponse("Trakt's /users/settings answer has no user object")
    return document
