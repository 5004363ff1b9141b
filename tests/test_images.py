"""Self-hosted images: the guarded fetch, storage, the avatar and poster views, the provider."""

from __future__ import annotations

import hashlib
import struct

import pytest
import requests
import responses
from allauth.socialaccount.models import SocialAccount
from django.core.cache import cache
from django.core.files.storage import storages
from django.urls import reverse

from django_trakt.conf import LIBRARY_USER_AGENT
from django_trakt.exceptions import ImageRefused
from django_trakt.internal.pages import image_fetch, images
from django_trakt.internal.pages.image_fetch import fetch_image, sniff_image_type
from django_trakt.testing.images import avatar_png, poster_png
from tests.conftest import link_user

pytestmark = pytest.mark.django_db

#: Hosts the tests' fake DNS knows; every other host is a public address.
ADDRESSES = {
    "internal.trakt.test": ["10.0.0.7"],
    "loopback.trakt.test": ["127.0.0.1"],
    "metadata.trakt.test": ["169.254.169.254"],
    "mapped.trakt.test": ["::ffff:127.0.0.1"],
    "mixed.trakt.test": ["93.184.216.34", "192.168.1.10"],
}
ALLOWED_HOSTS = ["trakt.test", "walter-r2.trakt.test", ".trakt.test"]
PNG = poster_png("sample")
JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF\x00" + b"\x00" * 40
GIF = b"GIF89a" + b"\x01\x00\x01\x00\x00\x00\x00;"
WEBP = b"RIFF" + struct.pack("<I", 30) + b"WEBPVP8 " + b"\x00" * 22


def fake_dns(host: str) -> list[str]:
    return ADDRESSES.get(host, ["93.184.216.34"])


@pytest.fixture(autouse=True)
def image_settings(settings, tmp_path):
    """Images stored under a temporary MEDIA_ROOT; the emulator's host allowed; no real DNS."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.TRAKT_IMAGE_HOSTS = ALLOWED_HOSTS
    settings.TRAKT_IMAGE_RESOLVER = fake_dns
    cache.clear()
    yield settings
    cache.clear()


def with_avatar(user, url: str | None) -> SocialAccount:
    account = SocialAccount.objects.get(user=user, provider="trakt")
    if url is None:
        account.extra_data["user"].pop("images", None)
    else:
        account.extra_data["user"]["images"] = {"avatar": {"full": url}}
    account.save()
    return account


def avatar_path(account: SocialAccount, source: str) -> str:
    return reverse("django_trakt:avatar", args=[account.pk, images.avatar_key(account.pk, source)])


def is_default(response, kind: str = images.AVATAR) -> bool:
    return (
        response.status_code == 200
        and response["Content-Type"] == "image/png"
        and response.content == images.default_image(kind)
    )


def calls_to(rsps, host: str) -> list:
    return [call for call in rsps.calls if requests.utils.urlparse(call.request.url).hostname == host]


# -- what is an image ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (GIF, "image/gif"),
        (WEBP, "image/webp"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", None),
        (b"<!doctype html><html>", None),
        (b"RIFF\x00\x00\x00\x00WAVE", None),
        (b"", None),
    ],
    ids=["png", "jpeg", "gif", "webp", "svg", "html", "riff-wave", "empty"],
)
def test_sniff_image_type_by_magic_bytes(data, expected):
    assert sniff_image_type(data) == expected


@pytest.mark.parametrize("body", [JPEG, GIF, WEBP], ids=["jpeg", "gif", "webp"])
def test_fetch_accepts_each_image_type_whatever_content_type_says(web, body):
    _trakt, rsps = web
    rsps.add(responses.GET, "https://walter-r2.trakt.test/x", body=body, content_type="text/plain")
    assert fetch_image("https://walter-r2.trakt.test/x") == (body, sniff_image_type(body))


def test_fetch_sends_user_agent_and_no_trakt_credentials(web):
    trakt, _rsps = web
    content, content_type = fetch_image("https://trakt.test/images/avatars/wanda.png")
    assert (content, content_type) == (avatar_png("wanda"), "image/png")
    (request,) = trakt.requests_to("/images/avatars/wanda.png")
    assert request.headers["User-Agent"] == LIBRARY_USER_AGENT
    assert "trakt-api-key" not in request.headers and "Authorization" not in request.headers


def test_fetch_follows_redirect_within_allowed_hosts(web):
    _trakt, rsps = web
    rsps.add(
        responses.GET,
        "https://walter.trakt.test/r/ok",
        status=302,
        headers={"Location": "https://walter-r2.trakt.test/p"},
    )
    rsps.add(responses.GET, "https://walter-r2.trakt.test/p", body=PNG)
    assert fetch_image("https://walter.trakt.test/r/ok") == (PNG, "image/png")


def test_schemeless_trakt_image_url_is_fetched_over_https(web):
    _trakt, rsps = web
    rsps.add(responses.GET, "https://walter-r2.trakt.test/images/p.png", body=PNG)
    assert fetch_image("walter-r2.trakt.test/images/p.png") == (PNG, "image/png")


def test_default_resolver_refuses_loopback(settings):
    settings.TRAKT_IMAGE_RESOLVER = None
    settings.TRAKT_IMAGE_HOSTS = ["localhost"]
    with pytest.raises(ImageRefused, match="non-public"):
        fetch_image("https://localhost/a.png")


def test_resolver_setting_accepts_a_dotted_path(settings):
    settings.TRAKT_IMAGE_RESOLVER = "tests.test_images.fake_dns"
    with pytest.raises(ImageRefused, match="non-public"):
        fetch_image("https://internal.trakt.test/a.png")


# -- refusals: every one falls back to the default image ---------------------------------------------

EVIL = "https://evil.example/a.png"


def _redirect(rsps, to: str) -> str:
    rsps.add(responses.GET, "https://walter.trakt.test/r/hop", status=302, headers={"Location": to})
    return "https://walter.trakt.test/r/hop"


REFUSALS = {
    "http": (lambda rsps: "http://trakt.test/images/avatars/wanda.png", "https only"),
    "host-not-allowed": (lambda rsps: EVIL, "not in TRAKT_IMAGE_HOSTS"),
    "port": (lambda rsps: "https://trakt.test:8443/images/avatars/wanda.png", "port 8443"),
    "credentials": (lambda rsps: "https://user:pw@trakt.test/images/avatars/wanda.png", "credentials"),
    "redirect-other-host": (lambda rsps: _redirect(rsps, EVIL), "'evil.example' is not in"),
    "redirect-to-http": (lambda rsps: _redirect(rsps, "http://trakt.test/images/avatars/wanda.png"), "https only"),
    "redirect-private-address": (
        lambda rsps: _redirect(rsps, "https://internal.trakt.test/a.png"),
        "'internal.trakt.test' resolves to a non-public",
    ),
    "loopback-address": (lambda rsps: "https://loopback.trakt.test/a.png", "non-public"),
    "link-local-metadata": (lambda rsps: "https://metadata.trakt.test/latest/meta-data", "non-public"),
    "ipv4-mapped-loopback": (lambda rsps: "https://mapped.trakt.test/a.png", "non-public"),
    "one-private-address-of-several": (lambda rsps: "https://mixed.trakt.test/a.png", "non-public"),
}


def _serve_everywhere(rsps) -> None:
    """Hosts that must never be asked answer with a valid image, so only the guard can refuse."""
    for host in ("evil.example", "internal.trakt.test", "loopback.trakt.test", "metadata.trakt.test"):
        rsps.add(responses.GET, f"https://{host}/a.png", body=PNG)
    for host in ("mapped.trakt.test", "mixed.trakt.test"):
        rsps.add(responses.GET, f"https://{host}/a.png", body=PNG)


@pytest.mark.parametrize(("make_url", "reason"), REFUSALS.values(), ids=REFUSALS.keys())
def test_refused_avatar_falls_back_to_default_and_never_reaches_host(web, client, make_url, reason):
    trakt, rsps = web
    _serve_everywhere(rsps)
    source = make_url(rsps)
    with pytest.raises(ImageRefused, match=reason):
        fetch_image(source)
    user, _token = link_user(trakt)
    account = with_avatar(user, source)
    response = client.get(avatar_path(account, source))
    assert is_default(response)
    for host in ("evil.example", "internal.trakt.test", "loopback.trakt.test", "metadata.trakt.test"):
        assert calls_to(rsps, host) == []
    assert calls_to(rsps, "mapped.trakt.test") == [] and calls_to(rsps, "mixed.trakt.test") == []
    assert trakt.requests_to(r"/images/.*") == []  # http, odd port, credentials: not even the right host


BAD_ANSWERS = {
    "oversized-with-length": (
        lambda rsps: rsps.add(responses.GET, "https://walter.trakt.test/big", body=PNG + b"\0" * 5000),
        "larger than",
    ),
    "oversized-streamed": (
        lambda rsps: rsps.add(
            responses.GET, "https://walter.trakt.test/big", body=PNG + b"\0" * 5000, auto_calculate_content_length=False
        ),
        "larger than",
    ),
    "not-an-image": (
        lambda rsps: rsps.add(
            responses.GET, "https://walter.trakt.test/big", body=b"<html>hello</html>", content_type="image/png"
        ),
        "not a PNG",
    ),
    "svg": (
        lambda rsps: rsps.add(
            responses.GET,
            "https://walter.trakt.test/big",
            body=b"<svg onload='alert(1)'/>",
            content_type="image/svg+xml",
        ),
        "not a PNG",
    ),
    "http-404": (
        lambda rsps: rsps.add(responses.GET, "https://walter.trakt.test/big", status=404, body=PNG),
        "HTTP 404",
    ),
    "redirect-loop": (
        lambda rsps: rsps.add(responses.GET, "https://walter.trakt.test/big", status=301, headers={"Location": "/big"}),
        "too many image redirects",
    ),
    "redirect-without-location": (
        lambda rsps: rsps.add(responses.GET, "https://walter.trakt.test/big", status=302),
        "without a Location",
    ),
    "timeout": (
        lambda rsps: rsps.add(responses.GET, "https://walter.trakt.test/big", body=requests.ReadTimeout("slow")),
        "ReadTimeout",
    ),
    "connection-error": (
        lambda rsps: rsps.add(responses.GET, "https://walter.trakt.test/big", body=requests.ConnectionError("refused")),
        "ConnectionError",
    ),
}


@pytest.mark.parametrize(("answer", "reason"), BAD_ANSWERS.values(), ids=BAD_ANSWERS.keys())
def test_bad_image_answer_falls_back_to_default(web, client, settings, answer, reason, monkeypatch):
    monkeypatch.setattr(image_fetch, "IMAGE_MAX_BYTES", 1000)
    trakt, rsps = web
    answer(rsps)
    source = "https://walter.trakt.test/big"
    with pytest.raises(ImageRefused, match=reason):
        fetch_image(source)
    user, _token = link_user(trakt)
    account = with_avatar(user, source)
    response = client.get(avatar_path(account, source))
    assert is_default(response)
    assert response["Cache-Control"] == "public, max-age=900"
    assert not storages["default"].exists(images.storage_name(source, images.AVATAR))


def test_refused_fetch_is_not_retried_until_retry_after(web, client, settings, monkeypatch):
    trakt, rsps = web
    rsps.add(responses.GET, "https://walter.trakt.test/broken", body=b"nope")
    user, _token = link_user(trakt)
    account = with_avatar(user, "https://walter.trakt.test/broken")
    path = avatar_path(account, "https://walter.trakt.test/broken")
    assert is_default(client.get(path)) and is_default(client.get(path))
    assert len(calls_to(rsps, "walter.trakt.test")) == 1
    monkeypatch.setattr(images, "IMAGE_RETRY_AFTER", 0)
    cache.clear()
    assert is_default(client.get(path))
    assert len(calls_to(rsps, "walter.trakt.test")) == 2


# -- the avatar view ---------------------------------------------------------------------------------


def test_avatar_view_fetches_once_stores_and_serves_with_cache_headers(web, client):
    trakt, _rsps = web
    user, _token = link_user(trakt, "avatarista")
    source = "https://trakt.test/images/avatars/avatarista.png"
    account = with_avatar(user, source)
    path = images.avatar_url(account)
    assert path == avatar_path(account, source) and path.startswith("/trakt/avatar/")
    trakt.reset_requests()

    response = client.get(path)
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert response.content == avatar_png("avatarista")
    assert response["Cache-Control"] == "private, max-age=604800"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["ETag"] == '"' + hashlib.sha256(source.encode()).hexdigest()[:32] + '"'
    assert response.has_header("Last-Modified")
    name = f"django_trakt/avatars/{hashlib.sha256(source.encode()).hexdigest()}"
    with storages["default"].open(name, "rb") as stored:
        assert stored.read() == avatar_png("avatarista")

    again = client.get(path)
    assert again.content == avatar_png("avatarista") and again.has_header("Last-Modified")
    assert len(trakt.requests_to(r"/images/.*")) == 1  # served from storage the second time
    assert client.get(path, HTTP_IF_NONE_MATCH=response["ETag"]).status_code == 304
    assert client.head(path).status_code == 200


def test_avatar_url_changes_with_the_profile_and_old_url_gives_default(web, client):
    trakt, _rsps = web
    user, _token = link_user(trakt, "changer")
    old = with_avatar(user, "https://trakt.test/images/avatars/changer.png")
    old_path = images.avatar_url(old)
    assert client.get(old_path).content == avatar_png("changer")
    new = with_avatar(user, "https://trakt.test/images/avatars/renamed.png")
    new_path = images.avatar_url(new)
    assert new_path != old_path
    assert client.get(new_path).content == avatar_png("renamed")
    assert is_default(client.get(old_path))
    assert len(trakt.requests_to(r"/images/.*")) == 2


def test_avatar_view_with_forged_key_or_unknown_account_gives_default_without_fetching(web, client):
    trakt, _rsps = web
    user, _token = link_user(trakt)
    account = with_avatar(user, "https://trakt.test/images/avatars/x.png")
    assert is_default(client.get(reverse("django_trakt:avatar", args=[account.pk, "0" * 24])))
    assert is_default(client.get(reverse("django_trakt:avatar", args=[account.pk + 1000, "0" * 24])))
    assert trakt.requests_to(r"/images/.*") == []
    assert client.post(images.avatar_url(account)).status_code == 405


def test_avatar_stored_in_configured_storage_alias(web, client, settings, monkeypatch):
    settings.STORAGES = {
        **settings.STORAGES,
        "trakt_images": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    settings.TRAKT_IMAGE_STORAGE = "trakt_images"
    monkeypatch.setattr(images, "IMAGE_PREFIX", "cached/trakt")
    trakt, _rsps = web
    user, _token = link_user(trakt, "stored")
    source = "https://trakt.test/images/avatars/stored.png"
    response = client.get(images.avatar_url(with_avatar(user, source)))
    assert response.content == avatar_png("stored")
    name = f"cached/trakt/avatars/{hashlib.sha256(source.encode()).hexdigest()}"
    assert storages["trakt_images"].exists(name) and not storages["default"].exists(name)


# -- posters --------------------------------------------------------------------------------------------


def test_poster_view_serves_signed_source_and_refuses_forged_token(web, client):
    trakt, _rsps = web
    token = images.poster_token("https://trakt.test/images/posters/movie-1.png")
    assert "trakt.test" not in token
    response = client.get(reverse("django_trakt:poster", args=[token]))
    assert response.status_code == 200 and response.content == poster_png("movie-1")
    forged = images.poster_token("https://trakt.test/images/posters/movie-2.png")[:-2] + "xx"
    assert is_default(client.get(reverse("django_trakt:poster", args=[forged])), images.POSTER)
    assert len(trakt.requests_to(r"/images/.*")) == 1


def test_poster_token_is_empty_for_a_url_that_would_be_refused():
    assert images.poster_token("http://trakt.test/p.png") == ""
    assert images.poster_token("https://evil.example/p.png") == ""
    assert images.poster_token(None) == ""


# -- the provider ------------------------------------------------------------------------------------------


def test_provider_avatar_url_is_local_never_trakts(web):
    trakt, _rsps = web
    user, _token = link_user(trakt, "prov")
    account = with_avatar(user, "https://trakt.test/images/avatars/prov.png")
    url = account.get_provider_account().get_avatar_url()
    assert url == images.avatar_url(account) and "trakt.test" not in url
    assert with_avatar(user, None).get_provider_account().get_avatar_url() is None
    assert with_avatar(user, "https://evil.example/a.png").get_provider_account().get_avatar_url() is None
