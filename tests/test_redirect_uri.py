"""``manage.py trakt_redirect_uri`` prints exactly the ``redirect_uri`` the login sends to Trakt."""

from __future__ import annotations

from io import StringIO
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.sites.models import Site
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.test import modify_settings, override_settings
from django.urls import reverse

from django_trakt.internal.links.redirect_uri import trakt_callback_url

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


# -- manage.py trakt_redirect_uri: the current site cannot be used ----------------------------------------


def redirect_uri_command(**options):
    out, err = StringIO(), StringIO()
    call_command("trakt_redirect_uri", stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def fresh_sites():
    Site.objects.clear_cache()
    yield
    Site.objects.clear_cache()


def test_redirect_uri_command_without_site_id_asks_for_host(settings, fresh_sites):
    del settings.SITE_ID
    with pytest.raises(CommandError, match=r"cannot tell the current site .*; pass --host"):
        redirect_uri_command()


def test_redirect_uri_command_with_missing_site_row(settings, fresh_sites):
    settings.SITE_ID = 999
    with pytest.raises(CommandError, match="The Site of SITE_ID does not exist"):
        redirect_uri_command()


def test_redirect_uri_command_before_migrate(fresh_sites):
    table = connection.ops.quote_name(Site._meta.db_table)
    moved = connection.ops.quote_name(Site._meta.db_table + "_elsewhere")
    with pytest.raises(CommandError, match=r"run manage\.py migrate first"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table} RENAME TO {moved}")
        redirect_uri_command()
    assert Site.objects.get(pk=1).domain == "testserver"  # the rename was rolled back


def test_redirect_uri_command_with_blank_site_domain(fresh_sites):
    Site.objects.filter(pk=1).update(domain="   ")
    with pytest.raises(CommandError, match="empty domain"):
        redirect_uri_command()


@override_settings(ALLOWED_HOSTS=["example.com"])
def test_redirect_uri_command_quiet_with_verbosity_zero(fresh_sites):
    Site.objects.filter(pk=1).update(domain="example.com")  # Django's default Site
    Site.objects.clear_cache()
    out, err = redirect_uri_command(verbosity=0)
    assert out == "http://example.com/accounts/trakt/login/callback/\n"
    assert err == ""
    _out, noisy = redirect_uri_command()
    assert "placeholder domain" in noisy  # the same run at verbosity 1 has notes
