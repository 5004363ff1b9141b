"""The production setup checks (W004, E002, W005) fire when they should and stay quiet otherwise."""

from __future__ import annotations

import os

import pytest
from allauth.socialaccount.models import SocialApp
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.test import override_settings

from django_trakt import checks

DB = ["default"]


def ids(messages):
    return [message.id for message in messages]


def trakt_ids(messages):
    return sorted(message.id for message in messages if message.id and message.id.startswith("django_trakt."))


def providers(**trakt):
    """``SOCIALACCOUNT_PROVIDERS`` with the test hosts and the given app keys for Trakt."""
    hosts = {key: value for key, value in settings.SOCIALACCOUNT_PROVIDERS["trakt"].items() if key.endswith("_URL")}
    return {"trakt": {**hosts, **trakt}}


def db_app(secret="db-secret", client_id="db-client-id", name="Trakt (database)"):  # noqa: S107
    return SocialApp.objects.create(provider="trakt", name=name, client_id=client_id, secret=secret)


# -- W004: the callback would be http:// -----------------------------------------------------------


def test_callback_check_warns_when_callback_is_http_in_production():
    with override_settings(DEBUG=False, ACCOUNT_DEFAULT_HTTP_PROTOCOL="http", SECURE_SSL_REDIRECT=False):
        messages = checks.check_callback_https()
    assert ids(messages) == ["django_trakt.W004"]
    assert "/accounts/trakt/login/callback/" in messages[0].msg
    assert 'ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https"' in messages[0].hint
    assert "SECURE_PROXY_SSL_HEADER" in messages[0].hint
    assert "trakt_redirect_uri --https" in messages[0].hint


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"ACCOUNT_DEFAULT_HTTP_PROTOCOL": "https"}, id="https-protocol"),
        pytest.param({"DEBUG": True}, id="debug"),
        pytest.param(
            {
                "SECURE_SSL_REDIRECT": True,
                "MIDDLEWARE": ["django.middleware.security.SecurityMiddleware", *settings.MIDDLEWARE],
            },
            id="ssl-redirect",
        ),
    ],
)
def test_callback_check_quiet_when_callback_is_https_or_debug(overrides):
    with override_settings(**{"DEBUG": False, "SECURE_SSL_REDIRECT": False, **overrides}):
        assert checks.check_callback_https() == []


def test_callback_check_not_quieted_by_ssl_redirect_without_security_middleware():
    with override_settings(DEBUG=False, SECURE_SSL_REDIRECT=True):
        assert ids(checks.check_callback_https()) == ["django_trakt.W004"]


def test_callback_check_runs_with_deploy_checks_only():
    with override_settings(DEBUG=False):
        assert "django_trakt.W004" in trakt_ids(run_checks(include_deployment_checks=True))
        assert "django_trakt.W004" not in trakt_ids(run_checks())
        with pytest.raises(SystemCheckError, match=r"django_trakt\.W004"):
            call_command("check", deploy=True, fail_level="WARNING")


# -- E002: no client id or secret ----------------------------------------------------------------------


def test_credentials_check_quiet_with_app_in_settings():
    assert checks.check_trakt_app_credentials(databases=DB) == []  # the test settings' APP


@pytest.mark.parametrize(
    ("app", "missing"),
    [
        ({"client_id": "id"}, "has no secret"),
        ({"client_id": "id", "secret": ""}, "has no secret"),
        ({"secret": "sekrit-value-123"}, "has no client_id"),
        ({}, "has no client_id and no secret"),
    ],
)
def test_credentials_check_errors_on_incomplete_settings_app(app, missing):
    with override_settings(SOCIALACCOUNT_PROVIDERS=providers(APP=app)):
        messages = checks.check_trakt_app_credentials()
    assert ids(messages) == ["django_trakt.E002"]
    assert messages[0].msg.startswith(f'SOCIALACCOUNT_PROVIDERS["trakt"]["APP"] {missing}')
    assert "sekrit-value-123" not in messages[0].msg + messages[0].hint


def test_credentials_check_names_incomplete_entry_of_apps():
    apps = [{"client_id": "a", "secret": "s"}, {"client_id": "b"}]
    with override_settings(SOCIALACCOUNT_PROVIDERS=providers(APPS=apps, APP={"client_id": "x", "secret": "y"})):
        messages = checks.check_trakt_app_credentials()
    assert ids(messages) == ["django_trakt.E002"]
    assert messages[0].msg.startswith('SOCIALACCOUNT_PROVIDERS["trakt"]["APPS"][1] has no secret')


@pytest.mark.django_db
def test_credentials_check_errors_when_neither_settings_nor_database_have_app():
    with override_settings(SOCIALACCOUNT_PROVIDERS=providers()):
        messages = checks.check_trakt_app_credentials(databases=DB)
    assert ids(messages) == ["django_trakt.E002"]
    assert "trakt_redirect_uri" in messages[0].hint and 'os.environ.get("TRAKT_CLIENT_SECRET", "")' in messages[0].hint


@pytest.mark.django_db
def test_credentials_check_errors_when_database_app_has_no_secret():
    db_app(secret="")
    with override_settings(SOCIALACCOUNT_PROVIDERS=providers()):
        assert ids(checks.check_trakt_app_credentials(databases=DB)) == ["django_trakt.E002"]


@pytest.mark.django_db
def test_credentials_check_quiet_with_app_in_database():
    db_app()
    with override_settings(SOCIALACCOUNT_PROVIDERS=providers()):
        assert checks.check_trakt_app_credentials(databases=DB) == []


def test_credentials_check_does_not_touch_database_unless_allowed():
    # No django_db mark: any query would fail the test.
    with override_settings(SOCIALACCOUNT_PROVIDERS=providers()):
        assert checks.check_trakt_app_credentials() == []
        assert checks.check_trakt_app_credentials(databases=None) == []


def test_credentials_check_quiet_in_debug_without_the_database():
    with override_settings(DEBUG=True, SOCIALACCOUNT_PROVIDERS=providers(APP={"client_id": "id"})):
        assert checks.check_trakt_app_credentials() == []


def test_credentials_check_names_unset_environment_in_debug_with_the_database(monkeypatch):
    # The README's settings read os.environ.get(...): a shell without the exports gets empty
    # credentials, and `migrate` (which gives the checks the database) says so, in development too.
    monkeypatch.delenv("TRAKT_CLIENT_ID", raising=False)
    app = {"client_id": os.environ.get("TRAKT_CLIENT_ID", ""), "secret": "sekrit-value-123"}
    with override_settings(DEBUG=True, SOCIALACCOUNT_PROVIDERS=providers(APP=app)):
        (error,) = checks.check_trakt_app_credentials(databases=DB)
    assert error.id == "django_trakt.E002"
    assert error.msg.startswith('SOCIALACCOUNT_PROVIDERS["trakt"]["APP"] has no client_id')
    assert "export TRAKT_CLIENT_ID and TRAKT_CLIENT_SECRET" in error.hint
    assert "https://developer.trakt.tv" in error.hint
    assert "sekrit-value-123" not in error.msg + error.hint


@pytest.mark.django_db
def test_credentials_check_fails_deploy_check_with_database():
    with (
        override_settings(SOCIALACCOUNT_PROVIDERS=providers()),
        pytest.raises(SystemCheckError, match=r"django_trakt\.E002"),
    ):
        call_command("check", deploy=True, databases=DB)


# -- W005: the secret lives in the database -----------------------------------------------------------


@pytest.mark.django_db
def test_secret_check_warns_about_secret_in_database_row():
    db_app(name="Trakt")
    messages = checks.check_secret_in_database(databases=DB)
    assert ids(messages) == ["django_trakt.W005"]
    assert "SocialApp 'Trakt'" in messages[0].msg
    assert "db-secret" not in messages[0].msg and "db-secret" not in messages[0].hint
    assert 'os.environ.get("TRAKT_CLIENT_SECRET", "")' in messages[0].hint
    assert "delete the SocialApp row" in messages[0].hint


@pytest.mark.django_db
def test_secret_check_quiet_without_secret_in_database():
    assert checks.check_secret_in_database(databases=DB) == []  # the app is in the settings
    db_app(secret="")
    SocialApp.objects.create(provider="github", name="GitHub", client_id="gh", secret="not ours")
    assert checks.check_secret_in_database(databases=DB) == []


@pytest.mark.django_db
def test_secret_check_quiet_in_debug_or_without_database():
    db_app()
    with override_settings(DEBUG=True):
        assert checks.check_secret_in_database(databases=DB) == []
    assert checks.check_secret_in_database() == []


@pytest.mark.django_db
def test_secret_check_runs_with_deploy_and_database_checks():
    db_app()
    assert "django_trakt.W005" in trakt_ids(run_checks(include_deployment_checks=True, databases=DB))
    assert "django_trakt.W005" not in trakt_ids(run_checks(include_deployment_checks=True))
    assert "django_trakt.W005" not in trakt_ids(run_checks(databases=DB))


# -- before migrate ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_database_checks_quiet_when_table_is_missing():
    table = connection.ops.quote_name(SocialApp._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {connection.ops.quote_name('moved_away')}")  # rolled back
    with override_settings(SOCIALACCOUNT_PROVIDERS=providers()):
        assert checks.check_trakt_app_credentials(databases=DB) == []
        assert checks.check_secret_in_database(databases=DB) == []
    # The failed query did not break the test's transaction (PostgreSQL would refuse any further query).
    assert get_user_model().objects.count() == 0


def test_existing_checks_still_pass_for_recommended_settings():
    # The new checks are deployment checks: the plain check stays clean.
    call_command("check", fail_level="WARNING")


# -- W006 / W007: what the scheduled refresh needs ----------------------------------------------------


def test_refresh_uri_check_warns_without_sites_framework():
    from django.test import modify_settings

    with modify_settings(INSTALLED_APPS={"remove": ["django.contrib.sites"]}):
        (warning,) = checks.check_refresh_redirect_uri()
    assert warning.id == "django_trakt.W006" and "django.contrib.sites" in warning.msg
    assert "REDIRECT_URI" in warning.hint


def test_refresh_uri_check_warns_without_site_id(settings):
    del settings.SITE_ID
    (warning,) = checks.check_refresh_redirect_uri()
    assert warning.id == "django_trakt.W006" and "SITE_ID" in warning.msg


def test_refresh_uri_checks_quiet_with_a_redirect_uri_setting(settings):
    from django.test import modify_settings

    settings.SOCIALACCOUNT_PROVIDERS = providers(
        REDIRECT_URI="https://media.example.org/accounts/trakt/login/callback/"
    )
    with modify_settings(INSTALLED_APPS={"remove": ["django.contrib.sites"]}):
        assert checks.check_refresh_redirect_uri() == []
        assert checks.check_refresh_site_domain(databases=DB) == []


@pytest.mark.django_db
@pytest.mark.parametrize("domain", ["example.com", "www.example.com:8000", "  "])
def test_site_domain_check_warns_on_a_placeholder_domain(domain):
    from django.contrib.sites.models import Site

    Site.objects.filter(pk=settings.SITE_ID).update(domain=domain)
    (warning,) = checks.check_refresh_site_domain(databases=DB)
    assert warning.id == "django_trakt.W007"
    assert checks.check_refresh_site_domain(databases=None) == []  # may not read the database


@pytest.mark.django_db
def test_site_domain_check_warns_on_a_missing_site_and_is_quiet_on_a_real_one():
    from django.contrib.sites.models import Site

    assert checks.check_refresh_site_domain(databases=DB) == []  # "testserver"
    Site.objects.all().delete()
    (warning,) = checks.check_refresh_site_domain(databases=DB)
    assert "does not exist" in warning.msg


@pytest.mark.django_db
def test_site_domain_check_runs_without_deploy_when_given_the_database():
    from django.contrib.sites.models import Site

    Site.objects.filter(pk=settings.SITE_ID).update(domain="example.com")
    assert "django_trakt.W007" in ids(run_checks(databases=DB))
    assert "django_trakt.W007" in ids(run_checks(databases=DB, include_deployment_checks=True))


# -- W008: unproven addresses at Trakt signups -------------------------------------------------------


def test_email_verification_check_warns_in_production_unless_mandatory(settings):
    settings.ACCOUNT_EMAIL_VERIFICATION = "optional"
    (warning,) = checks.check_email_verification()
    assert warning.id == "django_trakt.W008" and "pre-hijack" in warning.msg
    assert "django_trakt.W008" in trakt_ids(run_checks(include_deployment_checks=True))
    assert "django_trakt.W008" not in trakt_ids(run_checks())
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"
    assert checks.check_email_verification() == []
    settings.ACCOUNT_EMAIL_VERIFICATION = "optional"
    settings.DEBUG = True
    assert checks.check_email_verification() == []
