"""Trakt's images, self-hosted: a guarded server-side fetch, storage, and local URLs.

Trakt forbids hotlinking its images, avatars included, so no Trakt (or Gravatar) image
URL ever reaches a browser. Pages link to this app's views instead
(:mod:`django_trakt.pages.image_views`); on its first request a view fetches the image here,
keeps it in Django's storage (any backend: the ``TRAKT_IMAGE_STORAGE`` alias of
``STORAGES``) and serves it from there.

The fetch is careful because the URL comes from a third party: https only, only from
``TRAKT_IMAGE_HOSTS``, only to public addresses (:func:`is_public_address`), and the
connection goes to the very address that was checked (:class:`PinnedAdapter`), so a
DNS answer that changes after the check (DNS rebinding) cannot move it. Every redirect
is checked and pinned again; one overall timeout, a size cap, and the bytes must be a
PNG, JPEG, GIF or WebP (by their magic bytes, whatever the ``Content-Type`` says).
Anything else is an :class:`ImageRefused`, and the caller shows the default image.
One exception, for development only: with ``DEBUG`` on, the origins named in
``TRAKT_DEVELOPMENT_IMAGE_ORIGINS`` (the local Trakt) may be plain http on loopback
(:func:`development_origin`); check E005 refuses that setting under ``check --deploy``.

The timeout (``TRAKT_IMAGE_TIMEOUT``) is the whole fetch's, kept inside reads too
(:class:`_Deadline`): a host that trickles a byte at a time, which would satisfy every
per-read timeout, has its connection shut at the deadline. One fetch per source runs at
a time (a short lock in the cache): the other requests for it meanwhile get the default
image, briefly cached, as while a task worker fetches it.

Storage names are content-addressed by the *source URL* (``<prefix>/<kind>/<sha256>``),
so "fetch again when the avatar URL changes" is an existence check, with no model.

With a task backend (``TRAKT_TASK_BACKEND``) a request for an image not stored yet never
downloads it: the view serves the default image and one fetch is enqueued per image (a
mark in the cache), which the task runs through :func:`store_image`.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime as dt
import functools
import hashlib
import ipaddress
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from django.core import signing
from django.core.files.base import ContentFile
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse
from django.utils.crypto import constant_time_compare, salted_hmac
from requests.adapters import DEFAULT_POOLBLOCK, HTTPAdapter
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import LocationValueError

from django_trakt.conf import origin_of, trakt_settings
from django_trakt.core import dispatch
from django_trakt.core.cache import cache_call, release_lock, take_lock
from django_trakt.exceptions import ImageRefused
from django_trakt.links.profile import TraktProfile

logger = logging.getLogger(__name__)

AVATAR, POSTER = "avatar", "poster"
DEFAULT_IMAGES = {AVATAR: "django_trakt/default-avatar.png", POSTER: "django_trakt/default-poster.png"}
_STATIC_ROOT = Path(__file__).resolve().parent.parent / "static"  # the app's static folder
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_POSTER_SALT = "django_trakt.images.poster"
_AVATAR_SALT = "django_trakt.images.avatar"


@dataclasses.dataclass(frozen=True)
class StoredImage:
    """An image ready to serve: its bytes, sniffed type, ETag digest and age."""

    content: bytes
    content_type: str
    digest: str
    modified: dt.datetime | None = None


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


# -- which URLs may be fetched ----------------------------------------------------------------


def normalize_source(url: Any) -> str | None:
    """Trakt's image URL as an absolute URL (its API sends some without a scheme); None if blank."""
    if not isinstance(url, str) or not url.strip():
        return None
    url = url.strip()
    if url.startswith("//"):
        return _with_scheme(url[2:])
    if "://" not in url:
        return _with_scheme(url)
    return url


def _with_scheme(url: str) -> str:
    # https, as Trakt serves its images; plain http only on a trusted development origin
    # (the local Trakt sends scheme-less poster URLs as Trakt does, but serves plain http).
    plain = "http://" + url
    return plain if development_origin(plain) else "https://" + url


def development_origin(url: str) -> str | None:
    """The origin of ``url`` if ``TRAKT_DEVELOPMENT_IMAGE_ORIGINS`` trusts it (only with DEBUG); else None.

    Such a URL (the local Trakt's images) may be plain http on any port, and its host may
    resolve to loopback or private addresses. Every other URL gets the rules below.
    """
    trusted = trakt_settings.DEVELOPMENT_IMAGE_ORIGINS
    origin = origin_of(url) if trusted else None
    return origin if origin in trusted else None


def _development_host(host: str) -> bool:
    return any(urlsplit(origin).hostname == host.lower() for origin in trakt_settings.DEVELOPMENT_IMAGE_ORIGINS)


def host_allowed(host: str | None) -> bool:
    """True when ``host`` is in ``TRAKT_IMAGE_HOSTS`` (``".example.com"`` allows subdomains)."""
    if not host:
        return False
    host = host.lower().rstrip(".")
    for allowed in trakt_settings.IMAGE_HOSTS:
        if allowed.startswith("."):
            if host.endswith(allowed) or host == allowed[1:]:
                return True
        elif host == allowed:
            return True
    return False


def check_url(url: str) -> str:
    """The URL's host if it may be fetched (https, default port, no credentials, allowed host).

    A URL on a trusted development origin (:func:`development_origin`) passes as it is.
    """
    if development_origin(url):
        return (urlsplit(url).hostname or "").rstrip(".")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise ImageRefused("malformed image URL") from err
    if parts.scheme != "https":
        raise ImageRefused(f"image URL scheme {parts.scheme or '(none)'!r} refused: https only")
    if parts.username or parts.password:
        raise ImageRefused("image URL with credentials refused")
    if port not in (None, 443):
        raise ImageRefused(f"image URL port {port} refused")
    host = (parts.hostname or "").rstrip(".")
    if not host_allowed(host):
        raise ImageRefused(f"image host {host or '(none)'!r} is not in TRAKT_IMAGE_HOSTS")
    return host


def is_allowed_source(url: str | None) -> bool:
    """Whether ``url`` passes :func:`check_url` (no DNS): worth linking to our image view."""
    if not url:
        return False
    try:
        check_url(url)
    except ImageRefused:
        return False
    return True


def resolve_host(host: str) -> list[str]:
    """The host's IP addresses, from DNS (the default ``TRAKT_IMAGE_RESOLVER``)."""
    infos = socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


# -- which addresses may be connected to -------------------------------------------------------
#
# Written out rather than taken from ``ipaddress``'s ``is_global``/``is_private``: their
# answers changed between Python 3.11, 3.12.4 and 3.13 (3.11 calls the NAT64, 6to4,
# IPv4-compatible and site-local forms of 127.0.0.1 global, and so does 3.13 for most of
# them), and a security check must not depend on the interpreter. The lists follow
# IANA's IPv4 and IPv6 Special-Purpose Address Registries. An entry is refused even
# where IANA marks it "globally reachable" (anycast services, AS112): no image host
# lives there, and "not special" is easier to get right than a list of exceptions.

_IPV4_SPECIAL = tuple(
    ipaddress.IPv4Network(network)
    for network in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local (cloud metadata services)
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments (DS-Lite, NAT64 discovery, PCP, TURN)
        "192.0.2.0/24",  # documentation (TEST-NET-1)
        "192.31.196.0/24",  # AS112-v4
        "192.52.193.0/24",  # AMT
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",  # private
        "192.175.48.0/24",  # AS112 direct delegation
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation (TEST-NET-2)
        "203.0.113.0/24",  # documentation (TEST-NET-3)
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved
        "255.255.255.255/32",  # limited broadcast (inside 240/4; listed as the registry does)
    )
)

#: IANA's global unicast space: no IPv6 address outside it is routable on the internet.
_IPV6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")

#: Forms that carry an IPv4 address the packet really goes to: accepted only when that
#: IPv4 address is itself acceptable.
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: IPv4 in the last 32 bits

_IPV6_SPECIAL = tuple(
    ipaddress.IPv6Network(network)
    for network in (
        "::/8",  # reserved by the IETF: unspecified ::, loopback ::1, IPv4-compatible ::a.b.c.d, SIIT
        "::/128",  # unspecified
        "::1/128",  # loopback
        "::/96",  # IPv4-compatible (deprecated): refused whatever it embeds
        "::ffff:0:0:0/96",  # SIIT IPv4-translated
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215): where the IPv4 sits is the operator's choice
        "100::/64",  # discard-only
        "100:0:0:1::/64",  # dummy IPv6 prefix
        "2001::/23",  # IETF protocol assignments, all of it:
        "2001::/32",  # Teredo (refused whatever it embeds)
        "2001:2::/48",  # benchmarking
        "2001:10::/28",  # ORCHID (deprecated)
        "2001:20::/28",  # ORCHIDv2
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4 (refused whatever it embeds: the relay decides where it goes)
        "2620:4f:8000::/48",  # AS112 direct delegation
        "3fff::/20",  # documentation
        "5f00::/16",  # SRv6 SIDs
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)


def _parse_address(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        address = value
    else:
        try:
            address = ipaddress.ip_address(str(value).strip())
        except ValueError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        # A zone only means something for link-local and other non-global addresses.
        return None
    return address


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped or NAT64 (well-known prefix) address goes to."""
    if address in _IPV4_MAPPED:
        return address.ipv4_mapped
    if address in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public_address(value: Any) -> bool:
    """True only for a globally routable unicast address outside every special-purpose range.

    ``value`` is an address string (as DNS answers it) or an :mod:`ipaddress` address;
    anything unparsable, and any IPv6 address with a zone (``%eth0``), is not public.
    IPv4-mapped (``::ffff:a.b.c.d``) and NAT64 (``64:ff9b::a.b.c.d``) addresses are judged
    by the IPv4 address they embed. The other forms that embed one (IPv4-compatible
    ``::a.b.c.d``, 6to4 ``2002::/16``, Teredo ``2001::/32``, local-use NAT64
    ``64:ff9b:1::/48``) are refused outright. The same answer on every Python.
    """
    address = _parse_address(value)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return not any(address in network for network in _IPV4_SPECIAL)
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return is_public_address(embedded)
    return address in _IPV6_GLOBAL_UNICAST and not any(address in network for network in _IPV6_SPECIAL)


def _connect_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The form of a checked address to connect to: an IPv4-mapped one as its plain IPv4."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def check_addresses(host: str) -> list[str]:
    """The addresses to connect to for ``host``: asks the resolver once, refuses any non-public answer.

    The connection then goes to one of these addresses (:class:`PinnedAdapter`), never to
    a fresh lookup of the name, so what was checked is what is reached.
    """
    resolver: Callable[[str], Iterable[str]] = trakt_settings.IMAGE_RESOLVER or resolve_host
    try:
        answers = list(resolver(host))
    except (OSError, UnicodeError) as err:
        raise ImageRefused(f"image host {host!r} does not resolve") from err
    if not answers:
        raise ImageRefused(f"image host {host!r} has no address")
    addresses: list[str] = []
    # A trusted development origin's host (the local Trakt, DEBUG only) may be loopback or private.
    development = _development_host(host)
    for answer in answers:
        parsed = _parse_address(answer)
        if parsed is None or not (development or is_public_address(parsed)):
            raise ImageRefused(f"image host {host!r} resolves to a non-public address")
        address = _connect_address(parsed)
        if address not in addresses:
            addresses.append(address)
    return addresses


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
        raise TimeoutError("image download exceeded TRAKT_IMAGE_TIMEOUT")


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
        pinned = {**(pool_kwargs or {}), "server_hostname": name, "assert_hostname": name}
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
    return ImageRefused("image download exceeded TRAKT_IMAGE_TIMEOUT")


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
        raise ImageRefused(f"image is larger than TRAKT_IMAGE_MAX_BYTES ({max_bytes})")
    body = bytearray()
    try:
        for chunk in response.iter_content(_CHUNK):
            body += chunk
            if len(body) > max_bytes:
                raise ImageRefused(f"image is larger than TRAKT_IMAGE_MAX_BYTES ({max_bytes})")
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
    with _Deadline(time.monotonic() + trakt_settings.IMAGE_TIMEOUT) as deadline:
        return _fetch_within(url, deadline)


def _fetch_within(url: str, deadline: _Deadline) -> tuple[bytes, str]:
    max_bytes = trakt_settings.IMAGE_MAX_BYTES
    current = normalize_source(url) or ""
    for _hop in range(trakt_settings.IMAGE_MAX_REDIRECTS + 1):
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


# -- storage ----------------------------------------------------------------------------------


def image_storage() -> Any:
    """The storage of fetched images: ``STORAGES[TRAKT_IMAGE_STORAGE]``."""
    from django.core.files.storage import storages

    return storages[trakt_settings.IMAGE_STORAGE]


def source_digest(source_url: str) -> str:
    return hashlib.sha256(source_url.encode("utf-8")).hexdigest()


def storage_name(source_url: str, kind: str) -> str:
    """Where the image of ``source_url`` is kept: content-addressed by the source URL."""
    return f"{trakt_settings.IMAGE_PREFIX}/{kind}s/{source_digest(source_url)}"


def _failure_key(digest: str) -> str:
    return f"django_trakt:image-failed:{digest}"


def _queued_key(digest: str) -> str:
    return f"django_trakt:image-queued:{digest}"


def _fetching_key(digest: str) -> str:
    return f"django_trakt:image-fetching:{digest}"


def fetch_in_progress(source_url: Any) -> bool:
    """Whether a request is fetching ``source_url`` right now (the default stands in meanwhile)."""
    source = normalize_source(source_url)
    return source is not None and bool(cache_call("get", _fetching_key(source_digest(source))))


#: Seconds an enqueued fetch is not enqueued again (a job the queue lost is, after that).
QUEUED_FOR = 300


def fetch_queued(source_url: Any) -> bool:
    """Whether a task worker has been asked to fetch ``source_url`` (the default stands in meanwhile)."""
    source = normalize_source(source_url)
    return source is not None and bool(cache_call("get", _queued_key(source_digest(source))))


def _offloaded(source: str, kind: str, digest: str) -> bool:
    """True when a worker fetches the image (queued now or before); False: fetch it here."""
    if not dispatch.active():
        return False
    added = cache_call("add", _queued_key(digest), True, QUEUED_FOR)
    if added is None:
        return False  # the cache cannot tell what is queued: fetch here, as without a backend
    if not added or dispatch.enqueue(dispatch.STORE_IMAGE, source, kind):
        return True
    cache_call("delete", _queued_key(digest))
    return False


def _read_stored(storage: Any, name: str, digest: str) -> StoredImage | None:
    with storage.open(name, "rb") as stored:
        content = stored.read(trakt_settings.IMAGE_MAX_BYTES + 1)
    content_type = sniff_image_type(content)
    if content_type is None:
        logger.warning("Stored Trakt image %s is not an image; ignoring it", name)
        return None
    try:
        modified = storage.get_modified_time(name)
    except (NotImplementedError, OSError, AttributeError):
        modified = None
    return StoredImage(content, content_type, digest, modified)


def get_image(source_url: str, kind: str, *, background: bool = False) -> StoredImage | None:
    """The stored copy of ``source_url``, fetched and stored first if missing; None: use the default.

    A refused or failed fetch is remembered for ``TRAKT_IMAGE_RETRY_AFTER`` seconds so a
    broken image does not cost a download on every page view. With a task backend the
    fetch is enqueued instead (None meanwhile), unless ``background`` (the task itself).
    """
    source = normalize_source(source_url)
    if source is None:
        return None
    digest = source_digest(source)
    name = storage_name(source, kind)
    storage = image_storage()
    try:
        if storage.exists(name):
            return _read_stored(storage, name, digest)
    except Exception:
        logger.exception("Reading the stored Trakt image %s failed", name)
        return None
    if cache_call("get", _failure_key(digest)):
        return None
    if not background and _offloaded(source, kind, digest):
        return None
    # One fetch per source at a time (20 visitors of a page showing one new poster make one
    # download): the others get the default meanwhile, as while a task worker fetches it. A
    # cache that is down cannot say; then each request fetches, as before it had a lock.
    lock_key = _fetching_key(digest)
    ticket, locked = take_lock(lock_key, math.ceil(trakt_settings.IMAGE_TIMEOUT) + 30)
    if locked is False:
        return None
    try:
        return _fetch_and_store(source, kind, digest, storage, name)
    finally:
        if locked:
            release_lock(lock_key, ticket)


def _fetch_and_store(source: str, kind: str, digest: str, storage: Any, name: str) -> StoredImage | None:
    try:
        if storage.exists(name):  # the fetch that held the lock just before stored it
            return _read_stored(storage, name, digest)
    except Exception:
        logger.exception("Reading the stored Trakt image %s failed", name)
        return None
    if cache_call("get", _failure_key(digest)):  # ... or failed
        return None
    try:
        content, content_type = fetch_image(source)
    except ImageRefused as err:
        logger.info("Trakt %s image not fetched from %s: %s", kind, urlsplit(source).hostname, err)
        cache_call("set", _failure_key(digest), True, trakt_settings.IMAGE_RETRY_AFTER)
        return None
    try:
        if not storage.exists(name):  # stored meanwhile by a request that found the cache down
            storage.save(name, ContentFile(content))
    except Exception:
        logger.exception("Storing the Trakt image %s failed; serving it unstored", name)
    return StoredImage(content, content_type, digest, dt.datetime.now(dt.UTC))


def store_image(source_url: str, kind: str) -> bool:
    """Fetch ``source_url`` into storage unless it is stored (what the task runs); whether it is now.

    Safe twice and at once: the name is the source's digest and an existing copy is kept.
    """
    return get_image(source_url, kind, background=True) is not None


def delete_stored(source_url: Any, kind: str) -> bool:
    """Delete the stored copy of ``source_url``; True if there was one. Never raises: a failure is logged.

    The name is the source URL's digest, shared by everyone whose image that URL is:
    the caller decides whether anyone still shows it (see :mod:`django_trakt.links.revocation`).
    """
    source = normalize_source(source_url)
    if source is None:
        return False
    name = storage_name(source, kind)
    try:
        storage = image_storage()
        if not storage.exists(name):
            return False
        storage.delete(name)
    except Exception:
        logger.exception("Deleting the stored Trakt image %s failed", name)
        return False
    logger.info("Deleted the stored Trakt %s image %s", kind, name)
    return True


@functools.lru_cache(maxsize=4)
def default_image(kind: str) -> bytes:
    """The bytes of the default avatar or poster shipped in the app's static files."""
    return (_STATIC_ROOT / DEFAULT_IMAGES[kind]).read_bytes()


def default_image_url(kind: str) -> str:
    """The static-files URL of the default avatar or poster."""
    return static(DEFAULT_IMAGES[kind])


# -- avatars: local URLs ------------------------------------------------------------------------


def avatar_source(account: Any) -> str | None:
    """The avatar URL of a Trakt ``SocialAccount``'s profile, normalized (None: none we could use)."""
    return normalize_source(TraktProfile(account).avatar_source) if account is not None else None


def avatar_key(account_id: Any, source_url: str) -> str:
    """The URL key of an account's avatar: changes with the source, unguessable without SECRET_KEY."""
    return salted_hmac(_AVATAR_SALT, f"{account_id}|{source_url}", algorithm="sha256").hexdigest()[:24]


def avatar_key_matches(account_id: Any, source_url: str, key: str) -> bool:
    return constant_time_compare(key, avatar_key(account_id, source_url))


def avatar_url(account: Any) -> str | None:
    """This site's URL of the account's avatar, or None (no avatar, or one we would refuse)."""
    source = avatar_source(account)
    if account is None or source is None or not is_allowed_source(source):
        return None
    try:
        return reverse("django_trakt:avatar", args=[account.pk, avatar_key(account.pk, source)])
    except NoReverseMatch:
        logger.warning('django_trakt.site_urls is not included in the URLconf: path("trakt/", include(...))')
        return None


# -- posters: signed local URLs ------------------------------------------------------------------


def poster_token(source_url: Any) -> str:
    """An opaque, signed token for a poster URL ("" when the URL would be refused).

    Signed so nobody can make this site fetch a URL of their choosing; deterministic
    so the same poster keeps the same local URL (browser caching).
    """
    source = normalize_source(source_url)
    if not is_allowed_source(source):
        return ""
    return signing.Signer(salt=_POSTER_SALT).sign_object(source, compress=True)


def poster_source(token: str) -> str | None:
    """The poster URL a token was made for, or None for a forged or outdated token."""
    try:
        source = signing.Signer(salt=_POSTER_SALT).unsign_object(token)
    except (signing.BadSignature, ValueError, UnicodeError):
        return None
    return source if isinstance(source, str) else None


def poster_url_prefix() -> str:
    """The poster view's URL without its token ("" when the URLconf lacks the app's URLs)."""
    try:
        return reverse("django_trakt:poster", args=["0"])[:-1]
    except NoReverseMatch:
        return ""
