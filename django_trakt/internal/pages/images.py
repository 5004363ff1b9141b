"""Trakt's images, self-hosted: storage and local URLs (the fetch is :mod:`.image_fetch`).

Trakt forbids hotlinking its images, avatars included, so no Trakt (or Gravatar) image
URL ever reaches a browser. Pages link to this app's views instead
(:mod:`django_trakt.internal.pages.image_views`: avatars by account and a keyed digest, posters by a
signed token); on its first request a view fetches the image (:func:`.image_fetch.fetch_image`,
the guarded download), keeps it in Django's storage (any backend: the ``TRAKT_IMAGE_STORAGE``
alias of ``STORAGES``) and serves it from there. A refused fetch means the default image.

One fetch per source runs at a time (a short lock in the cache): the other requests for it
meanwhile get the default image, briefly cached, as while a task worker fetches it.

Storage names are content-addressed by the *source URL* (``<prefix>/<kind>/<sha256>``),
so "fetch again when the avatar URL changes" is an existence check, with no model.

With a task backend (``TRAKT_TASK_BACKEND``) a request for an image not stored yet never
downloads it: the view serves the default image and one fetch is enqueued per image (a
mark in the cache), which the task runs through :func:`store_image`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import logging
import math
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.core import signing
from django.core.files.base import ContentFile
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse
from django.utils.crypto import constant_time_compare, salted_hmac

from django_trakt.conf import trakt_settings
from django_trakt.exceptions import ImageRefused
from django_trakt.internal.core import dispatch
from django_trakt.internal.core.cache import cache_call, release_lock, take_lock
from django_trakt.internal.links.profile import TraktProfile
from django_trakt.internal.pages import image_fetch
from django_trakt.internal.pages.image_fetch import fetch_image, sniff_image_type
from django_trakt.internal.pages.image_sources import is_allowed_source, normalize_source

logger = logging.getLogger(__name__)


AVATAR, POSTER = "avatar", "poster"
DEFAULT_IMAGES = {AVATAR: "django_trakt/default-avatar.png", POSTER: "django_trakt/default-poster.png"}
_STATIC_ROOT = Path(__file__).resolve().parent.parent / "static"  # the app's static folder
_POSTER_SALT = "django_trakt.images.poster"
_AVATAR_SALT = "django_trakt.images.avatar"
#: The folder of the fetched images in their storage (``TRAKT_IMAGE_STORAGE`` picks the
#: storage, and with it the place): fixed, so housekeeping always finds them (was the setting
#: TRAKT_IMAGE_PREFIX).
IMAGE_PREFIX = "django_trakt"
#: Seconds the default image stands in after a failed fetch before it is tried again: a
#: broken image host is not asked on every render (was TRAKT_IMAGE_RETRY_AFTER).
IMAGE_RETRY_AFTER = 900.0


@dataclasses.dataclass(frozen=True)
class StoredImage:
    """An image ready to serve: its bytes, sniffed type, ETag digest and age."""

    content: bytes
    content_type: str
    digest: str
    modified: dt.datetime | None = None


# -- storage ----------------------------------------------------------------------------------


def image_storage() -> Any:
    """The storage of fetched images: ``STORAGES[TRAKT_IMAGE_STORAGE]``."""
    from django.core.files.storage import storages

    return storages[trakt_settings.IMAGE_STORAGE]


def source_digest(source_url: str) -> str:
    return hashlib.sha256(source_url.encode("utf-8")).hexdigest()


def storage_name(source_url: str, kind: str) -> str:
    """Where the image of ``source_url`` is kept: content-addressed by the source URL."""
    return f"{IMAGE_PREFIX}/{kind}s/{source_digest(source_url)}"


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
        content = stored.read(image_fetch.IMAGE_MAX_BYTES + 1)
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

    A refused or failed fetch is remembered for ``IMAGE_RETRY_AFTER`` seconds so a
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
    ticket, locked = take_lock(lock_key, math.ceil(image_fetch.IMAGE_TIMEOUT) + 30)
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
        cache_call("set", _failure_key(digest), True, IMAGE_RETRY_AFTER)
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
    the caller decides whether anyone still shows it (see :mod:`django_trakt.internal.links.revocation`).
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
