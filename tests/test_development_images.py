"""Developing against the local Trakt: ``TRAKT_DEVELOPMENT_IMAGE_ORIGINS`` lets the image fetch
reach the local Trakt (plain http, loopback) while DEBUG is on, and nothing else; check E005
refuses the setting under ``check --deploy``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache
from django.core.checks import run_checks
from django.urls import reverse

from django_trakt.internal.pages import image_fetch, image_sources, images
from django_trakt.testing import TraktEmulator
from django_trakt.testing.documents import scheme_less
from django_trakt.testing.images import avatar_png, poster_png

pytestmark = pytest.mark.django_db

POSTER = "Local Poster"


@pytest.fixture(scope="module")
def local_trakt() -> Iterator[str]:
    """The local Trakt on a loopback port, as ``python -m django_trakt.testing`` serves it."""
    emulator = TraktEmulator()
    with emulator.serve(port=0) as server:
        yield server.url


@pytest.fixture(autouse=True)
def development_site(settings, tmp_path, local_trakt):
    settings.DEBUG = True
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.TRAKT_DEVELOPMENT_IMAGE_ORIGINS = [local_trakt]
    settings.TRAKT_IMAGE_RESOLVER = None  # the system's resolver: 127.0.0.1 is itself
    cache.clear()
    yield settings
    cache.clear()


def poster_page(client, source: str):
    token = images.poster_token(source)
    path = reverse("django_trakt:poster", args=[token]) if token else None
    return token, (client.get(path) if path else None)


def test_the_local_trakts_poster_is_fetched_stored_and_served(client, local_trakt):
    # Trakt (and the local Trakt) send poster URLs without a scheme.
    source = scheme_less(f"{local_trakt}/images/posters/{POSTER}.png")
    token, response = poster_page(client, source)
    assert token, "a poster of the trusted origin gets a local URL"
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response.content == poster_png(POSTER)
    assert response.content != images.default_image(images.POSTER)
    # Kept in storage under the plain-http source it was fetched from.
    stored = images.image_storage().open(images.storage_name(f"{local_trakt}/images/posters/{POSTER}.png", "poster"))
    assert stored.read() == poster_png(POSTER)


def test_the_local_trakts_avatar_is_fetched_with_its_full_url(local_trakt):
    assert image_fetch.fetch_image(f"{local_trakt}/images/avatars/demo.png") == (avatar_png("demo"), "image/png")


def test_without_debug_the_local_trakt_is_refused_as_before(client, settings, local_trakt):
    settings.DEBUG = False
    source = f"{local_trakt}/images/posters/{POSTER}.png"
    assert images.poster_token(source) == ""
    with pytest.raises(images.ImageRefused, match="scheme 'http' refused"):
        image_fetch.fetch_image(source)


@pytest.mark.parametrize(
    "change",
    [
        lambda url: url.replace("127.0.0.1", "localhost"),  # another name for the same host
        lambda url: url.rsplit(":", 1)[0] + ":1",  # another port on the same host
        lambda url: url.replace("http://", "https://"),  # another scheme
        lambda url: url.replace("http://", "http://user:pw@"),  # credentials
    ],
    ids=["other-name", "other-port", "other-scheme", "credentials"],
)
def test_only_the_trusted_origin_itself_is_let_through(local_trakt, change):
    url = change(local_trakt) + f"/images/posters/{POSTER}.png"
    assert image_sources.development_origin(url) is None
    with pytest.raises(images.ImageRefused):
        image_fetch.fetch_image(url)


def test_a_trusted_origin_does_not_open_loopback_to_other_hosts(settings):
    settings.TRAKT_IMAGE_HOSTS = ["walter-r2.trakt.tv"]
    settings.TRAKT_IMAGE_RESOLVER = lambda host: ["127.0.0.1"]  # an image host that resolves to loopback
    with pytest.raises(images.ImageRefused, match="non-public address"):
        image_fetch.fetch_image("https://walter-r2.trakt.tv/images/p.png")


def test_deploy_check_refuses_the_setting(settings):
    (error,) = [m for m in run_checks(include_deployment_checks=True) if m.id == "django_trakt.E005"]
    assert "TRAKT_DEVELOPMENT_IMAGE_ORIGINS" in error.msg
    settings.TRAKT_DEVELOPMENT_IMAGE_ORIGINS = []
    assert not [m for m in run_checks(include_deployment_checks=True) if m.id == "django_trakt.E005"]


def test_plain_checks_leave_a_development_site_alone():
    assert not [m for m in run_checks() if m.id in ("django_trakt.E005", "django_trakt.E101")]


@pytest.mark.parametrize(
    "value",
    ["http://127.0.0.1:8765", ["127.0.0.1:8765"], ["http://127.0.0.1:8765/images/"], ["ftp://127.0.0.1"], [5]],
)
def test_a_malformed_setting_is_reported(settings, value):
    settings.TRAKT_DEVELOPMENT_IMAGE_ORIGINS = value
    (error,) = [m for m in run_checks() if m.id == "django_trakt.E101"]
    assert "TRAKT_DEVELOPMENT_IMAGE_ORIGINS" in error.msg
    assert image_sources.development_origin("http://127.0.0.1:8765/images/posters/x.png") is None
