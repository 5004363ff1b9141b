"""``manage.py trakt_redirect_uri`` prints exactly the ``redirect_uri`` the login sends to Trakt."""

from __future__ import annotations

from io import StringIO
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.sites.models import Site
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import modify_settings, override_settings
from django.urls import reverse

from django_trakt.links.redirect_uri import trakt_callback_url

pytestmark = pytest.mark.django_db  # allauth's login view reads the sites table

# For the test that runs without allauth's URLs (ROOT_URLCONF=__name__).
urlpatterns: list = []


def command(*args, **options):
    out, err = StringIO(), StringIO()
    call_command("trakt_redirect_uri", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def printed_url(*args, **options):
    out, _err = command(*args, **options)
    assert out.endswith("\n") and out.count("\n") == 1  # only the URL, so it can be piped
    return out.strip()


def login_redirect_uri(client, **extra):
    """The redirect_uri of the authorize redirect that allauth's login sends."""
    response = client.post(reverse("trakt_login"), **extra)
    assert response.status_code == 302
    (redirect_uri,) = parse_qs(urlsplit(response["Location"]).query)["redirect_uri"]
    return redirect_uri


def test_redirect_uri_command_matches_login_over_http(client):
    sent = login_redirect_uri(client)
    assert sent == "http://testserver/accounts/trakt/login/callback/"
    assert printed_url("--host", "testserver") == sent
    assert printed_url("--host", "testserver", "--http") == sent


def test_redirect_uri_command_matches_login_over_https(client):
    sent = login_redirect_uri(client, secure=True)
    assert sent == "https://testserver/accounts/trakt/login/callback/"
    assert printed_url("--host", "testserver", "--https") == sent


@override_settings(ACCOUNT_DEFAULT_HTTP_PROTOCOL="https")
def test_redirect_uri_command_matches_login_with_https_protocol_setting(client):
    sent = login_redirect_uri(client)  # a plain-HTTP request: allauth still sends https
    assert sent == "https://testserver/accounts/trakt/login/callback/"
    assert printed_url("--host", "testserver") == sent
    out, err = command("--host", "testserver", "--http")
    assert out.strip() == sent
    assert "ACCOUNT_DEFAULT_HTTP_PROTOCOL is 'https'" in err


@override_settings(SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"), ALLOWED_HOSTS=["media.example.com"])
def test_redirect_uri_command_matches_login_behind_tls_proxy(client):
    sent = login_redirect_uri(client, headers={"X-Forwarded-Proto": "https", "Host": "media.example.com"})
    assert sent == "https://media.example.com/accounts/trakt/login/callback/"
    assert printed_url("--host", "media.example.com", "--https") == sent


@override_settings(ALLOWED_HOSTS=["nas.local"])
def test_redirect_uri_command_keeps_the_port(client):
    sent = login_redirect_uri(client, headers={"Host": "nas.local:8000"})
    assert printed_url("--host", "nas.local:8000") == sent == "http://nas.local:8000/accounts/trakt/login/callback/"


def test_redirect_uri_command_uses_current_site_without_host(client):
    Site.objects.filter(pk=1).update(domain="testserver")
    Site.objects.clear_cache()
    assert printed_url() == login_redirect_uri(client)
    with override_settings(ACCOUNT_DEFAULT_HTTP_PROTOCOL="https"):
        assert printed_url() == login_redirect_uri(client) == "https://testserver/accounts/trakt/login/callback/"


def test_redirect_uri_command_explains_placeholder_site_domain():
    Site.objects.filter(pk=1).update(domain="example.com")  # Django's default Site
    Site.objects.clear_cache()
    assert Site.objects.get_current().domain == "example.com"
    with pytest.raises(CommandError, match=r"placeholder domain 'example\.com'.*or pass --host"):
        command()
    with override_settings(ALLOWED_HOSTS=["example.com"]):
        out, err = command()
    assert out.strip() == "http://example.com/accounts/trakt/login/callback/"
    assert "placeholder domain 'example.com'" in err


@modify_settings(INSTALLED_APPS={"remove": ["django.contrib.sites"]})
def test_redirect_uri_command_without_sites_framework_asks_for_host():
    with pytest.raises(CommandError, match=r"sites framework is not installed.*--host"):
        command()
    assert printed_url("--host", "localhost") == "http://localhost/accounts/trakt/login/callback/"


@pytest.mark.parametrize(
    ("host", "error"),
    [
        ("https://media.example.com/", r"not a URL: use --host media\.example\.com --https"),
        ("http://media.example.com", r"not a URL: use --host media\.example\.com --http"),
        ("media.example.com/accounts", "is not a host name"),
        ("media example", "is not a host name"),
        ("", "is not a host name"),
        ("bad_host!", "not a valid host name"),
        ("other.example", r"'other\.example' is not in ALLOWED_HOSTS"),
    ],
)
def test_redirect_uri_command_rejects_bad_host(host, error):
    with pytest.raises(CommandError, match=error):
        command("--host", host)


def test_redirect_uri_command_warns_about_http_for_public_host():
    with override_settings(ALLOWED_HOSTS=["media.example.com"]):
        out, err = command("--host", "media.example.com")
    assert out.startswith("http://")
    assert "Trakt asks for HTTPS" in err and "ACCOUNT_DEFAULT_HTTP_PROTOCOL" in err
    _out, quiet = command("--host", "localhost")
    assert quiet == ""  # loopback over http is the normal development setup


@override_settings(ROOT_URLCONF=__name__)
def test_redirect_uri_command_without_allauth_urls_says_so():
    with pytest.raises(CommandError, match=r"include\('allauth\.urls'\)"):
        command("--host", "localhost")


def test_redirect_uri_function_agrees_with_login_for_a_real_request(client, rf):
    request = rf.get("/", secure=True)
    assert trakt_callback_url(request) == login_redirect_uri(client, secure=True)
