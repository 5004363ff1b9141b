"""The guarded download of a third party's image: pinned to a checked address, within one deadline.

Each hop resolves its host once, checks every address (:mod:`django_trakt.internal.pages.image_sources`)
and connects to the very address that was checked (:class:`PinnedAdapter`), so a DNS answer
that changes after the check (DNS rebinding) cannot move it. Every redirect is checked and
pinned again; a size cap, and the bytes must be a PNG, JPEG, GIF or WebP (by their magic
bytes, whatever the ``Content-Type`` says). Anything else is an :class:`ImageRefused`.

The timeout (``IMAGE_TIMEOUT``) is the whole fetch's, kept inside reads too
(:class:`_Deadline`): a host that trickles a byte at a time, which would satisfy every
per-read timeout, has its connection shut at the deadline.
"""

from __future__ import annotations

import contextlib
import contextvars
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import DEFAULT_POOLBLOCK, HTTPAdapter
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import LocationValueError

from django_trakt.conf import trakt_settings
from django_trakt.exceptions import ImageRefused
from django_trakt.internal.pages.image_sources import check_addresses, check_url, normalize_source

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
# What an avatar or a poster needs, and no more: each bound caps what a hostile or broken
# image host can make a worker (or a page, without workers) spend. These were settings
# (TRAKT_IMAGE_*) before 0.2.
#: The largest image accepted, in bytes: Trakt's posters and avatars are well under 1 MB.
IMAGE_MAX_BYTES = 2 * 1024 * 1024
#: Seconds for one whole download, redirects included: an image host answers in well under one.
IMAGE_TIMEOUT = 5.0
#: Redirects followed, each checked again: Trakt's hosts redirect once at most.
IMAGE_MAX_REDIRECTS = 3


# -- what an image is ---------------------------------------------------------------------


def sniff_image_type(data: bytes) -> str | None:
    """The MIME type of PNG, JPEG, GIF or WebP bytes, by their magic numbers; else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


# -- the fetch's deadline, inside reads too ------------------------------------------------------


class _Deadline:
    """The deadline of one whole fetch, held while a read blocks: at the deadline, its connections are shut.

    A socket timeout bounds each read, not their sum: a host sending a byte every few tenths
    of a second (in its headers, its body or its TLS handshake) would keep one fetch alive
    for as long as it likes. So every connection the fetch opens (:class:`_DeadlineHTTPSConnection`
    finds the fetch's deadline in a context variable) is watched by a timer, which shuts
    the socket at the deadline; whatever read was waiting then ends at once, and the fetch
    is refused. Shutting is all the timer does: the fetch's own thread reads, fails and
    closes as always.
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self._lock = threading.Lock()
        self._connections: list[HTTPConnection] = []
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._context = _current_deadline.set(self)
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        _current_deadline.reset(self._context)

    def passed(self) -> bool:
        return self.expired or time.monotonic() >= self.deadline

    def watch(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._connections.append(connection)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            connections = list(self._connections)
        for connection in connections:
            _shut(connection)


_current_deadline: contextvars.ContextVar[_Deadline | None] = contextvars.ContextVar(
    "django_trakt_image_deadline", default=None
)


def _shut(connection: HTTPConnection) -> None:
    sock = connection.sock
    if sock is None:
        return
    # The plain socket's shutdown, also under TLS: SSLSocket.shutdown would tear down the
    # TLS state under the reading thread's feet; this only makes its read return. An
    # OSError: closed already.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _connect_within_deadline(connection: HTTPConnection, connect: Callable[[], None]) -> None:
    deadline = _current_deadline.get()
    if deadline is not None:
        # Watched before connecting: urllib3 holds the socket in ``sock`` from its TCP connect
        # on, so the TLS handshake is cut at the deadline too.
        deadline.watch(connection)
    connect()
    if deadline is not None and deadline.passed():
        # The timer may have fired before the socket existed: nothing was shut, so refuse here.
        connection.close()
        raise TimeoutError("image download exceeded IMAGE_TIMEOUT")


class _DeadlineHTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        _connect_within_deadline(self, super().connect)


class _DeadlineHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        _connect_within_deadline(self, super().connect)


class _DeadlineHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


class _DeadlineHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


# -- connecting to the checked address ------------------------------------------------------------


class _PinnedPoolManager(PoolManager):
    """A urllib3 pool manager whose pools all connect to one address.

    The pool is opened for the pinned address, and the URL's host name goes to TLS as
    ``server_hostname`` (SNI) and ``assert_hostname`` (the certificate must be valid for
    the name, not the address). Both ``requests`` code paths (``connection_from_host``
    since requests 2.32.2, ``connection_from_url`` before) come through here.
    """

    def __init__(self, address: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.address = address
        # Connections that keep the fetch's deadline inside their reads (_Deadline).
        self.pool_classes_by_scheme = {"http": _DeadlineHTTPConnectionPool, "https": _DeadlineHTTPSConnectionPool}

    def connection_from_host(
        self,
        host: str | None,
        port: int | None = None,
        scheme: str | None = "http",
        pool_kwargs: dict[str, Any] | None = None,
    ) -> HTTPConnectionPool:
        name = (host or "").strip("[]").rstrip(".")
        if not name:
            raise LocationValueError("No host specified.")
        pinned = dict(pool_kwargs or {})
        if scheme == "https":
            # TLS only: urllib3 before 2.3 refuses these keywords on a plain-http connection
            # (the development origins of the local Trakt).
            pinned.update(server_hostname=name, assert_hostname=name)
        # The pool key includes server_hostname, so two names on one address never share a connection.
        return super().connection_from_host(self.address, port, scheme, pinned)


def _host_header(url: str) -> str:
    parts = urlsplit(url)
    name = (parts.hostname or "").rstrip(".")
    if ":" in name:
        name = f"[{name}]"
    default_port = 443 if parts.scheme == "https" else 80
    return name if parts.port in (None, default_port) else f"{name}:{parts.port}"


class PinnedAdapter(HTTPAdapter):
    """A ``requests`` transport that connects to one checked address, whatever DNS says now.

    Only the TCP connection is pinned: the request still names the URL's host in its
    ``Host`` header, TLS SNI and certificate check. No proxy is ever used (a proxy would
    resolve the name itself). :func:`fetch_image` makes one per hop and address.
    """

    def __init__(self, address: str, **kwargs: Any) -> None:
        self.address = address  # before HTTPAdapter.__init__, which builds the pool manager
        super().__init__(**kwargs)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = DEFAULT_POOLBLOCK, **pool_kwargs: Any
    ) -> None:
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        self.poolmanager = _PinnedPoolManager(
            self.address, num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs
        )

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        # urllib3 would name the pool's host, the pinned address, in the Host header.
        request.headers["Host"] = _host_header(request.url or "")
        # Through HTTPAdapter.send, which is also where ``responses`` intercepts in tests.
        return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=None)


def _pinned_session(address: str) -> requests.Session:
    # Not allauth's get_requests_session() (which http.py uses for Trakt's API): the fetch is
    # only safe because it connects to the address that was checked. A site's proxy would
    # resolve the name again, on its own network (where internal hosts are reachable), and a
    # site's mounted adapter would replace the pinning one. Image hosts are not Trakt's API.
    session = requests.Session()
    # Environment proxies would resolve the name again, and .netrc credentials have no
    # business going to an image host.
    session.trust_env = False
    adapter = PinnedAdapter(address)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _timed_out() -> ImageRefused:
    return ImageRefused("image download exceeded IMAGE_TIMEOUT")


@contextlib.contextmanager
def _pinned_get(url: str, host: str, addresses: list[str], deadline: _Deadline) -> Iterator[requests.Response]:
    """The streamed response of ``url`` from the first checked address that answers."""
    failure: requests.RequestException | None = None
    for address in addresses:
        remaining = deadline.deadline - time.monotonic()
        if remaining <= 0 or deadline.expired:
            raise _timed_out()
        session = _pinned_session(address)
        try:
            response = session.get(
                url,
                headers={
                    "User-Agent": trakt_settings.USER_AGENT,
                    "Accept": "image/webp,image/png,image/jpeg,image/gif",
                },
                timeout=remaining,
                allow_redirects=False,
                stream=True,
            )
        except requests.ConnectionError as err:
            # The next checked address may answer, as a plain connect tries each DNS answer.
            session.close()
            if deadline.passed():
                raise _timed_out() from err
            failure = err
            continue
        except requests.RequestException as err:
            session.close()
            if deadline.passed():
                raise _timed_out() from err
            raise ImageRefused(f"image host {host!r} could not be reached: {type(err).__name__}") from err
        try:
            with response:
                yield response
        finally:
            session.close()
        return
    raise ImageRefused(f"image host {host!r} could not be reached: {type(failure).__name__}") from failure


# -- the fetch ------------------------------------------------------------------------------


def _download(response: requests.Response, max_bytes: int, deadline: _Deadline) -> bytes:
    length = response.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise ImageRefused(f"image is larger than IMAGE_MAX_BYTES ({max_bytes})")
    body = bytearray()
    try:
        for chunk in response.iter_content(_CHUNK):
            body += chunk
            if len(body) > max_bytes:
                raise ImageRefused(f"image is larger than IMAGE_MAX_BYTES ({max_bytes})")
            if deadline.passed():
                raise _timed_out()
    except (requests.RequestException, OSError) as err:
        if deadline.passed():
            raise _timed_out() from err
        raise ImageRefused(f"image download failed: {type(err).__name__}") from err
    if deadline.expired:
        # Shut at the deadline: what came before it may look like a whole (short) body.
        raise _timed_out()
    return bytes(body)


def fetch_image(url: str) -> tuple[bytes, str]:
    """Download an image from Trakt's image hosts: ``(bytes, content type)`` or :class:`ImageRefused`.

    Sent with the library's User-Agent and without any Trakt API key or token (image
    hosts, Gravatar among them, need neither). Each hop resolves its host once, checks
    every address and connects to a checked one; redirects are followed by hand, each
    hop checked and pinned like the first; the timeout covers the whole download, reads
    included (:class:`_Deadline`).
    """
    with _Deadline(time.monotonic() + IMAGE_TIMEOUT) as deadline:
        return _fetch_within(url, deadline)


def _fetch_within(url: str, deadline: _Deadline) -> tuple[bytes, str]:
    max_bytes = IMAGE_MAX_BYTES
    current = normalize_source(url) or ""
    for _hop in range(IMAGE_MAX_REDIRECTS + 1):
        host = check_url(current)
        addresses = check_addresses(host)
        with _pinned_get(current, host, addresses, deadline) as response:
            if response.status_code in _REDIRECTS:
                location = response.headers.get("Location")
                if not location:
                    raise ImageRefused("image redirect without a Location")
                current = urljoin(current, location)
                continue
            if response.status_code != 200:
                raise ImageRefused(f"image host {host!r} answered HTTP {response.status_code}")
            content = _download(response, max_bytes, deadline)
        content_type = sniff_image_type(content)
        if content_type is None:
            raise ImageRefused("the downloaded bytes are not a PNG, JPEG, GIF or WebP image")
        return content, content_type
    raise ImageRefused("too many image redirects")
