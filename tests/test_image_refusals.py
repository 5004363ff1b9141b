"""The image fetcher's remaining refusals and fallbacks: odd URLs, DNS answers, slow or broken
downloads, and storage or cache backends that fail. Each ends in the default image, never an error page."""

from __future__ import annotations

import io
import logging
import re
import socket
import time

import pytest
import responses
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import InMemoryStorage, storages
from django.urls import reverse

from django_trakt.exceptions import ImageRefused
from django_trakt.internal.pages import image_fetch, images
from django_trakt.internal.pages.image_fetch import fetch_image
from django_trakt.testing.images import poster_png

pytestmark = pytest.mark.django_db

PNG = poster_png("refusals")

SOURCE = "https://walter-r2.trakt.test/images/p.png"


def public_dns(host: str) -> list[str]:
    return ["93.184.216.34"]


@pytest.fixture(autouse=True)
def image_settings(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.TRAKT_IMAGE_HOSTS = ["trakt.test", ".trakt.test"]
    settings.TRAKT_IMAGE_RESOLVER = public_dns
    cache.clear()
    yield settings
    cache.clear()


def poster_path(source: str) -> str:
    token = images.poster_token(source)
    assert token
    return reverse("django_trakt:poster", args=[token])


def is_default_poster(response) -> bool:
    return (
        response.status_code == 200
        and response["Content-Type"] == "image/png"
        and response.content == images.default_image(images.POSTER)
    )


def host_calls(rsps, host: str) -> int:
    return sum(1 for call in rsps.calls if call.request.url.startswith(f"https://{host}/"))


# -- URL forms ---------------------------------------------------------------------------------------


def test_protocol_relative_source_is_fetched_over_https(web):
    _trakt, rsps = web
    rsps.add(responses.GET, SOURCE, body=PNG)
    assert fetch_image("//walter-r2.trakt.test/images/p.png") == (PNG, "image/png")
    assert rsps.calls[-1].request.url == SOURCE


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https:///images/p.png", "host '(none)' is not in TRAKT_IMAGE_HOSTS"),
        ("https://trakt.test:99999/images/p.png", "malformed image URL"),
        ("https://trakt.test:https/images/p.png", "malformed image URL"),
        ("https://[::1/images/p.png", "malformed image URL"),
    ],
    ids=["no-host", "port-out-of-range", "port-not-a-number", "broken-ipv6-literal"],
)
def test_unusable_url_is_refused_without_any_request(web, url, reason):
    trakt, rsps = web
    with pytest.raises(ImageRefused, match=re.escape(reason)):
        fetch_image(url)
    assert images.poster_token(url) == ""  # never even linked to
    assert len(rsps.calls) == 0 and trakt.requests == []


# -- DNS answers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["::1", "fe80::1%eth0", "fd12:3456::1", "2001:db8::7", "ff02::1", "::ffff:10.0.0.1", "not-an-address"],
    ids=["v6-loopback", "v6-link-local-zone", "v6-unique-local", "v6-documentation", "v6-multicast", "mapped", "junk"],
)
def test_non_public_or_unparsable_address_is_refused(web, settings, address):
    _trakt, rsps = web
    rsps.add(responses.GET, SOURCE, body=PNG)
    settings.TRAKT_IMAGE_RESOLVER = lambda host: ["93.184.216.34", address]
    with pytest.raises(ImageRefused, match="resolves to a non-public address"):
        fetch_image(SOURCE)
    assert len(rsps.calls) == 0


def test_public_ipv6_address_is_fetched(web, settings):
    _trakt, rsps = web
    rsps.add(responses.GET, SOURCE, body=PNG)
    settings.TRAKT_IMAGE_RESOLVER = lambda host: ["2606:4700:4700::1111"]
    assert fetch_image(SOURCE) == (PNG, "image/png")


def _gaierror(host):
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def _idna_error(host):
    raise UnicodeError("label empty or too long")


@pytest.mark.parametrize(
    ("resolver", "reason"),
    [
        (_gaierror, "does not resolve"),
        (_idna_error, "does not resolve"),
        (lambda host: [], "has no address"),
    ],
    ids=["nxdomain", "idna", "no-address"],
)
def test_resolver_failure_gives_default_poster_and_no_request(web, client, settings, resolver, reason):
    _trakt, rsps = web
    rsps.add(responses.GET, SOURCE, body=PNG)
    settings.TRAKT_IMAGE_RESOLVER = resolver
    with pytest.raises(ImageRefused, match=reason):
        fetch_image(SOURCE)
    assert is_default_poster(client.get(poster_path(SOURCE)))
    assert len(rsps.calls) == 0


# -- slow, big or broken downloads ------------------------------------------------------------------------


def test_declared_size_over_the_cap_is_refused(web, settings, monkeypatch):
    monkeypatch.setattr(image_fetch, "IMAGE_MAX_BYTES", 1000)
    _trakt, rsps = web
    body = PNG + b"\0" * 2000
    rsps.add(
        responses.GET,
        SOURCE,
        body=body,
        headers={"Content-Length": str(len(body))},
        auto_calculate_content_length=False,
    )
    with pytest.raises(ImageRefused, match=r"larger than IMAGE_MAX_BYTES \(1000\)"):
        fetch_image(SOURCE)


def test_slow_dns_counts_against_the_overall_timeout(web, settings, monkeypatch):
    _trakt, rsps = web
    rsps.add(responses.GET, SOURCE, body=PNG)

    def slow_dns(host):
        time.sleep(0.12)
        return ["93.184.216.34"]

    settings.TRAKT_IMAGE_RESOLVER = slow_dns
    monkeypatch.setattr(image_fetch, "IMAGE_TIMEOUT", 0.1)
    with pytest.raises(ImageRefused, match="exceeded IMAGE_TIMEOUT"):
        fetch_image(SOURCE)
    assert len(rsps.calls) == 0


def test_slow_image_host_is_cut_off_at_the_overall_timeout(web, client, settings, monkeypatch):
    trakt, _rsps = web
    trakt.latency = 0.12  # the local Trakt answers, but late
    monkeypatch.setattr(image_fetch, "IMAGE_TIMEOUT", 0.1)
    source = "https://trakt.test/images/posters/slow.png"
    with pytest.raises(ImageRefused, match="exceeded IMAGE_TIMEOUT"):
        fetch_image(source)
    cache.clear()
    assert is_default_poster(client.get(poster_path(source)))
    assert not storages["default"].exists(images.storage_name(source, images.POSTER))


class _DroppedConnection(io.RawIOBase):
    """A body that sends a few bytes, then the connection resets."""

    def __init__(self, head: bytes) -> None:
        self.head = head

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self.head:
            raise ConnectionResetError("connection reset by peer")
        size = min(len(buffer), len(self.head))
        buffer[:size], self.head = self.head[:size], self.head[size:]
        return size


def test_connection_dropped_mid_download_is_refused_and_nothing_stored(web, client):
    _trakt, rsps = web
    rsps.add(responses.GET, SOURCE, body=io.BufferedReader(_DroppedConnection(PNG[:20])))
    with pytest.raises(ImageRefused, match="image download failed: ChunkedEncodingError"):
        fetch_image(SOURCE)
    rsps.replace(responses.GET, SOURCE, body=io.BufferedReader(_DroppedConnection(PNG[:20])))
    assert is_default_poster(client.get(poster_path(SOURCE)))
    assert not storages["default"].exists(images.storage_name(SOURCE, images.POSTER))


# -- storage and cache that fail ----------------------------------------------------------------------------


class OfflineStorage(InMemoryStorage):
    """A storage that cannot be reached (a bucket with revoked credentials)."""

    def exists(self, name):
        raise OSError("storage offline")


class ReadOnlyStorage(InMemoryStorage):
    """A storage that can be read but refuses writes (full disk, read-only bucket)."""

    def _save(self, name, content):
        raise OSError("No space left on device")


class NoTimesStorage(InMemoryStorage):
    """A storage that keeps no modification times (some object stores)."""

    def get_modified_time(self, name):
        raise NotImplementedError


class RacingStorage(InMemoryStorage):
    """Another request stores the same image while this one is downloading it.

    The fetch looks twice before downloading (before taking the image's fetch lock, and
    under it): the other copy lands right after the second look, i.e. during the download
    (a request that found the cache down and fetched without the lock).
    """

    other_copy = b""
    looks_before_the_race = 1

    def exists(self, name):
        found = super().exists(name)
        if not found and type(self).other_copy:
            type(self).looks_before_the_race -= 1
            if type(self).looks_before_the_race < 0:
                super()._save(name, ContentFile(type(self).other_copy))
                type(self).other_copy = b""
        return found


def use_storage(settings, backend: str) -> None:
    settings.STORAGES = {**settings.STORAGES, "trakt_images": {"BACKEND": f"{__name__}.{backend}"}}
    settings.TRAKT_IMAGE_STORAGE = "trakt_images"


def use_broken_cache(settings) -> None:
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "broken": {"BACKEND": "tests.conftest.BrokenCache"},
    }
    settings.TRAKT_CACHE = "broken"


def test_stored_file_that_is_not_an_image_is_never_served(web, client, caplog):
    source = "https://trakt.test/images/posters/tampered.png"
    name = images.storage_name(source, images.POSTER)
    storages["default"].save(name, io.BytesIO(b"<script>alert(1)</script>"))
    response = client.get(poster_path(source))
    assert is_default_poster(response)
    assert b"<script>" not in response.content
    assert "is not an image; ignoring it" in caplog.text


def test_storage_without_modification_times_serves_without_last_modified(web, client, settings):
    use_storage(settings, "NoTimesStorage")
    trakt, _rsps = web
    path = poster_path("https://trakt.test/images/posters/timeless.png")
    assert client.get(path).content == poster_png("timeless")
    again = client.get(path)  # from storage now
    assert again.content == poster_png("timeless") and again.has_header("ETag")
    assert not again.has_header("Last-Modified")
    assert client.get(path, HTTP_IF_NONE_MATCH=again["ETag"]).status_code == 304
    assert len(trakt.requests_to(r"/images/.*")) == 1


def test_unreachable_storage_serves_default_without_fetching(web, client, settings, caplog):
    use_storage(settings, "OfflineStorage")
    trakt, _rsps = web
    response = client.get(poster_path("https://trakt.test/images/posters/offline.png"))
    assert is_default_poster(response)
    assert trakt.requests == []  # nothing fetched that could not be kept
    assert "Reading the stored Trakt image" in caplog.text


def test_storage_refusing_writes_still_serves_the_fetched_image(web, client, settings, caplog):
    use_storage(settings, "ReadOnlyStorage")
    trakt, _rsps = web
    path = poster_path("https://trakt.test/images/posters/unstored.png")
    response = client.get(path)
    assert response.status_code == 200 and response.content == poster_png("unstored")
    assert "serving it unstored" in caplog.text
    assert client.get(path).content == poster_png("unstored")
    assert len(trakt.requests_to(r"/images/.*")) == 2  # not kept, so fetched again


def test_image_stored_meanwhile_by_another_request_is_not_saved_twice(web, client, settings):
    use_storage(settings, "RacingStorage")
    RacingStorage.other_copy = PNG
    RacingStorage.looks_before_the_race = 1
    source = "https://trakt.test/images/posters/raced.png"
    response = client.get(poster_path(source))
    assert response.content == poster_png("raced")
    storage = storages["trakt_images"]
    name = images.storage_name(source, images.POSTER)
    directory, _file = name.rsplit("/", 1)
    assert storage.listdir(directory)[1] == [name.rsplit("/", 1)[1]]  # no second, renamed copy
    with storage.open(name, "rb") as stored:
        assert stored.read() == PNG  # the other request's copy is kept


def test_cache_down_still_fetches_and_serves_images(web, client, settings, caplog):
    use_broken_cache(settings)
    trakt, _rsps = web
    response = client.get(poster_path("https://trakt.test/images/posters/cacheless.png"))
    assert response.content == poster_png("cacheless")
    assert "The Trakt cache 'broken' failed on get" in caplog.text
    assert len(trakt.requests_to(r"/images/.*")) == 1


def test_cache_down_after_a_refusal_still_serves_default(web, client, settings, caplog):
    use_broken_cache(settings)
    _trakt, rsps = web
    rsps.add(responses.GET, SOURCE, body=b"not an image")
    path = poster_path(SOURCE)
    assert is_default_poster(client.get(path))
    assert is_default_poster(client.get(path))
    assert host_calls(rsps, "walter-r2.trakt.test") == 2  # the failure could not be remembered
    assert caplog.text.count("The Trakt cache 'broken' failed") >= 2


def test_unknown_storage_alias_serves_default_and_logs(web, client, settings, caplog):
    settings.TRAKT_IMAGE_STORAGE = "no-such-alias"
    trakt, _rsps = web
    with caplog.at_level(logging.ERROR, logger="django_trakt.internal.pages.image_views"):
        response = client.get(poster_path("https://trakt.test/images/posters/lost.png"))
    assert is_default_poster(response)
    assert "Serving a Trakt poster image failed" in caplog.text
    assert trakt.requests == []


@pytest.mark.parametrize("source", [None, "", "   ", 42])
def test_blank_source_has_no_image(settings, source):
    use_storage(settings, "OfflineStorage")  # would raise if it were asked
    assert images.get_image(source, images.AVATAR) is None
