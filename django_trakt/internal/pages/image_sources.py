"""Which image URLs may be fetched, and which addresses they may be fetched from (the SSRF rules).

The URL comes from a third party (a Trakt profile, a watchlist item), so a fetch may only go
to https on ``TRAKT_IMAGE_HOSTS`` (:func:`check_url`), and only to public addresses
(:func:`check_addresses`, :func:`is_public_address`): never to the site's own network, its
cloud's metadata service or a loopback port. One exception, for development only: with
``DEBUG`` on, the origins named in ``TRAKT_DEVELOPMENT_IMAGE_ORIGINS`` (the local Trakt) may
be plain http on loopback (:func:`development_origin`); check E005 refuses that setting under
``check --deploy``. The fetch itself, which connects to the very address checked here, is
:mod:`django_trakt.internal.pages.image_fetch`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from django_trakt.conf import origin_of, trakt_settings
from django_trakt.exceptions import ImageRefused

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
