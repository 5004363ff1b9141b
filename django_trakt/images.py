"""Trakt's images, self-hosted: a guarded server-side fetch, storage, and local URLs.

Trakt forbids hotlinking its images, avatars included, so no Trakt (or Gravatar) image
URL ever reaches a browser. Pages link to this app's views instead
(:mod:`django_trakt.image_views`); on its first request a view fetches the image here,
keeps it in Django's storage (any backend: the ``TRAKT_IMAGE_STORAGE`` alias of
``STORAGES``) and serves it from there.

The fetch is careful because the URL comes from a third party: https only, only from
``TRAKT_IMAGE_HOSTS``, never to a private, loopback or link-local address, every
redirect checked again, one overall timeout, a size cap, and the bytes must be a PNG,
JPEG, GIF or WebP (by their magic bytes, whatever the ``Content-Type`` says). Anything
else is an :class:`ImageRefused`, and the caller shows the default image.

Storage names are content-addressed by the *source URL* (``<prefix>/<kind>/<sha256>``),
so "fetch again when the avatar URL changes" is an existence check, with no model.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from django.core import signing
from django.core.cache import caches
from django.core.files.base import ContentFile
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse
from django.utils.crypto import constant_time_compare, salted_hmac

from django_trakt.conf import PROVIDER_ID, trakt_settings
from django_trakt.exceptions import TraktError
from django_trakt.http import _session

logger = logging.getLogger(__name__)

AVATAR, POSTER = "avatar", "poster"
DEFAULT_IMAGES = {AVATAR: "django_trakt/default-avatar.png", POSTER: "django_trakt/default-poster.png"}
_STATIC_ROOT = Path(__file__).resolve().parent / "static"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_POSTER_SALT = "django_trakt.images.poster"
_AVATAR_SALT = "django_trakt.images.avatar"


class ImageRefused(TraktError):
    """An image was not fetched: a refused URL or address, an HTTP error, too big, not an image."""


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
        return "https:" + url
    if "://" not in url:
        return "https://" + url
    return url


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
    """The URL's host if it may be fetched (https, default port, no credentials, allowed host)."""
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


def _public_address(value: str) -> bool:
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def check_addresses(host: str) -> None:
    """Refuse a host that resolves to any private, loopback, link-local or reserved address."""
    resolver: Callable[[str], Iterable[str]] = trakt_settings.IMAGE_RESOLVER or resolve_host
    try:
        addresses = list(resolver(host))
    except (OSError, UnicodeError) as err:
        raise ImageRefused(f"image host {host!r} does not resolve") from err
    if not addresses:
        raise ImageRefused(f"image host {host!r} has no address")
    for address in addresses:
        if not _public_address(str(address)):
            raise ImageRefused(f"image host {host!r} resolves to a non-public address")


# -- the fetch ------------------------------------------------------------------------------


def _download(response: requests.Response, max_bytes: int, deadline: float) -> bytes:
    length = response.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise ImageRefused(f"image is larger than TRAKT_IMAGE_MAX_BYTES ({max_bytes})")
    body = bytearray()
    try:
        for chunk in response.iter_content(_CHUNK):
            body += chunk
            if len(body) > max_bytes:
                raise ImageRefused(f"image is larger than TRAKT_IMAGE_MAX_BYTES ({max_bytes})")
            if time.monotonic() > deadline:
                raise ImageRefused("image download exceeded TRAKT_IMAGE_TIMEOUT")
    except requests.RequestException as err:
        raise ImageRefused(f"image download failed: {type(err).__name__}") from err
    return bytes(body)


def fetch_image(url: str) -> tuple[bytes, str]:
    """Download an image from Trakt's image hosts: ``(bytes, content type)`` or :class:`ImageRefused`.

    Sent with the library's User-Agent and without any Trakt API key or token (image
    hosts, Gravatar among them, need neither). Redirects are followed by hand, each
    hop checked like the first; the timeout covers the whole download.
    """
    deadline = time.monotonic() + trakt_settings.IMAGE_TIMEOUT
    max_bytes = trakt_settings.IMAGE_MAX_BYTES
    current = normalize_source(url) or ""
    for _hop in range(trakt_settings.IMAGE_MAX_REDIRECTS + 1):
        host = check_url(current)
        check_addresses(host)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ImageRefused("image download exceeded TRAKT_IMAGE_TIMEOUT")
        try:
            response = _session().get(
                current,
                headers={
                    "User-Agent": trakt_settings.USER_AGENT,
                    "Accept": "image/webp,image/png,image/jpeg,image/gif",
                },
                timeout=remaining,
                allow_redirects=False,
                stream=True,
            )
        except requests.RequestException as err:
            raise ImageRefused(f"image host {host!r} could not be reached: {type(err).__name__}") from err
        with response:
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


def _cache() -> Any:
    return caches[trakt_settings.CACHE]


def _failure_key(digest: str) -> str:
    return f"django_trakt:image-failed:{digest}"


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


def get_image(source_url: str, kind: str) -> StoredImage | None:
    """The stored copy of ``source_url``, fetched and stored first if missing; None: use the default.

    A refused or failed fetch is remembered for ``TRAKT_IMAGE_RETRY_AFTER`` seconds so a
    broken image does not cost a download on every page view.
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
    try:
        if _cache().get(_failure_key(digest)):
            return None
    except Exception:
        logger.warning("The Trakt cache %r is not answering", trakt_settings.CACHE, exc_info=True)
    try:
        content, content_type = fetch_image(source)
    except ImageRefused as err:
        logger.info("Trakt %s image not fetched from %s: %s", kind, urlsplit(source).hostname, err)
        try:
            _cache().set(_failure_key(digest), True, trakt_settings.IMAGE_RETRY_AFTER)
        except Exception:
            logger.warning("The Trakt cache %r is not answering", trakt_settings.CACHE, exc_info=True)
        return None
    try:
        if not storage.exists(name):  # another request may have stored it meanwhile
            storage.save(name, ContentFile(content))
    except Exception:
        logger.exception("Storing the Trakt image %s failed; serving it unstored", name)
    return StoredImage(content, content_type, digest, dt.datetime.now(dt.UTC))


@functools.lru_cache(maxsize=4)
def default_image(kind: str) -> bytes:
    """The bytes of the default avatar or poster shipped in the app's static files."""
    return (_STATIC_ROOT / DEFAULT_IMAGES[kind]).read_bytes()


def default_image_url(kind: str) -> str:
    """The static-files URL of the default avatar or poster."""
    return static(DEFAULT_IMAGES[kind])


# -- avatars: local URLs ------------------------------------------------------------------------


def avatar_source(account: Any) -> str | None:
    """The avatar URL of a Trakt ``SocialAccount``'s profile (``user.images.avatar.full``)."""
    data = getattr(account, "extra_data", None)
    user = data.get("user") if isinstance(data, dict) else None
    images = user.get("images") if isinstance(user, dict) else None
    avatar = images.get("avatar") if isinstance(images, dict) else None
    return normalize_source(avatar.get("full")) if isinstance(avatar, dict) else None


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


def trakt_account_of(user: Any) -> Any:
    """The user's Trakt ``SocialAccount`` (the first linked), or None; one query."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    from allauth.socialaccount.models import SocialAccount

    return (
        SocialAccount.objects.filter(user_id=user.pk, provider=PROVIDER_ID)
        .only("pk", "uid", "provider", "extra_data")
        .order_by("pk")
        .first()
    )


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
