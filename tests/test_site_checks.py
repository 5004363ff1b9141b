"""The checks for what breaks a new site (E002's missing app, E003, W007, W009, W010) run without --deploy."""

from __future__ import annotations

import pytest
from allauth.socialaccount.models import SocialApp
from django.conf import settings
from django.contrib.sites.models import Site
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.test import override_settings
from django.urls import reverse_lazy

from django_trakt import checks

DB = ["default"]
SMTP = "django.core.mail.backends.smtp.EmailBackend"


def ids(messages):
    return [message.id for message in messages]


def trakt_ids(messages):
    return sorted(message.id for message in messages if message.id and message.id.startswith("django_trakt."))


def providers(**trakt):
    """``SOCIALACCOUNT_PROVIDERS`` with the test hosts and the given app keys for Trakt."""
    hosts = {key: value for key, value in settings.SOCIALACCOUNT_PROVIDERS["trakt"].items() if key.endswith("_URL")}
    return {"trakt": {**hosts, **trakt}}


REDIRECT_URI = "https://media.example.org/accounts/trakt/login/callback/"


# -- E002: no Trakt app anywhere, in a plain check ---------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [False, True])
def test_missing_app_is_an_error_without_deploy_even_in_debug(settings, debug):
    settings.DEBUG = debug
    settings.SOCIALACCOUNT_PROVIDERS = providers()
    (error,) = checks.check_trakt_app_configured(databases=DB)
    assert error.id == "django_trakt.E002" and "SocialApp.DoesNotExist" in error.msg
    assert 'os.environ.get("TRAKT_CLIENT_SECRET", "")' in error.hint
    assert "django_trakt.E002" in trakt_ids(run_checks(databases=DB))
    with pytest.raises(SystemCheckError, match=r"django_trakt\.E002"):
        call_command("check", databases=DB)


@pytest.mark.django_db
def test_missing_app_quiet_with_app_in_settings_or_database(settings):
    assert checks.check_trakt_app_configured(databases=DB) == []  # the test settings' APP
    settings.SOCIALACCOUNT_PROVIDERS = providers()
    SocialApp.objects.create(provider="trakt", name="Trakt", client_id="id", secret="db-secret")
    assert checks.check_trakt_app_configured(databases=DB) == []


@pytest.mark.django_db
def test_missing_app_reported_once_with_deploy(settings):
    settings.SOCIALACCOUNT_PROVIDERS = providers()
    assert trakt_ids(run_checks(databases=DB, include_deployment_checks=True)).count("django_trakt.E002") == 1


def test_missing_app_quiet_unless_database_may_be_read(settings):
    # No django_db mark: any query would fail the test.
    settings.SOCIALACCOUNT_PROVIDERS = providers()
    assert checks.check_trakt_app_configured() == []
    assert "django_trakt.E002" not in trakt_ids(run_checks())


@pytest.mark.django_db
def test_missing_app_quiet_before_migrate(settings):
    settings.SOCIALACCOUNT_PROVIDERS = providers()
    table = connection.ops.quote_name(SocialApp._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {connection.ops.quote_name('moved_away')}")  # rolled back
    assert checks.check_trakt_app_configured(databases=DB) == []


def test_incomplete_settings_app_stays_a_deployment_check(settings):
    # A build step (collectstatic) may run without the secrets: only --deploy reports it.
    settings.SOCIALACCOUNT_PROVIDERS = providers(APP={"client_id": "id"})
    assert "django_trakt.E002" not in trakt_ids(run_checks())
    assert "django_trakt.E002" in trakt_ids(run_checks(include_deployment_checks=True))


# -- E003 / W007: the current Site -----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("redirect_uri", ["", REDIRECT_URI])
def test_missing_site_is_an_error_without_deploy(settings, redirect_uri):
    settings.SOCIALACCOUNT_PROVIDERS = providers(APP=settings.SOCIALACCOUNT_PROVIDERS["trakt"]["APP"])
    settings.SOCIALACCOUNT_PROVIDERS["trakt"]["REDIRECT_URI"] = redirect_uri
    Site.objects.all().delete()
    (error,) = checks.check_refresh_site_domain(databases=DB)
    assert error.id == "django_trakt.E003" and "does not exist" in error.msg and "SITE_ID" in error.hint
    with pytest.raises(SystemCheckError, match=r"django_trakt\.E003"):
        call_command("check", databases=DB)


@pytest.mark.django_db
def test_placeholder_site_warns_without_deploy():
    Site.objects.filter(pk=settings.SITE_ID).update(domain="example.com")
    (warning,) = checks.check_refresh_site_domain(databases=DB)
    assert warning.id == "django_trakt.W007" and "'example.com'" in warning.msg
    assert "django_trakt.W007" in trakt_ids(run_checks(databases=DB))


@pytest.mark.django_db
def test_placeholder_site_quiet_with_redirect_uri(settings):
    Site.objects.filter(pk=settings.SITE_ID).update(domain="example.com")
    settings.SOCIALACCOUNT_PROVIDERS = providers(
        APP=settings.SOCIALACCOUNT_PROVIDERS["trakt"]["APP"], REDIRECT_URI=REDIRECT_URI
    )
    assert checks.check_refresh_site_domain(databases=DB) == []


@pytest.mark.django_db
def test_site_checks_quiet_on_a_real_site_without_database_or_before_migrate():
    assert checks.check_refresh_site_domain(databases=DB) == []  # "testserver"
    Site.objects.all().delete()
    assert checks.check_refresh_site_domain() == []
    with connection.cursor() as cursor:
        table, moved = connection.ops.quote_name(Site._meta.db_table), connection.ops.quote_name("moved_away")
        cursor.execute(f"ALTER TABLE {table} RENAME TO {moved}")  # rolled back; PostgreSQL refuses a DROP
    assert checks.check_refresh_site_domain(databases=DB) == []


# -- W009: the signup mail goes to an SMTP server nobody configured --------------------------------------


@pytest.mark.parametrize("verification", ["mandatory", "optional"])
def test_unconfigured_smtp_warns_in_development(settings, verification):
    settings.DEBUG = True
    settings.EMAIL_BACKEND = SMTP
    settings.EMAIL_HOST = "localhost"
    settings.ACCOUNT_EMAIL_VERIFICATION = verification
    (warning,) = checks.check_signup_mail_delivery()
    assert warning.id == "django_trakt.W009" and repr(verification) in warning.msg
    assert "console.EmailBackend" in warning.hint
    assert "django_trakt.W009" in trakt_ids(run_checks())


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"DEBUG": False}, id="production"),
        pytest.param({"ACCOUNT_EMAIL_VERIFICATION": "none"}, id="no-verification"),
        pytest.param({"EMAIL_HOST": "smtp.example.org"}, id="configured-host"),
        pytest.param({"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}, id="console"),
    ],
)
def test_unconfigured_smtp_quiet_otherwise(overrides):
    base = {"DEBUG": True, "EMAIL_BACKEND": SMTP, "EMAIL_HOST": "localhost", "ACCOUNT_EMAIL_VERIFICATION": "optional"}
    with override_settings(**{**base, **overrides}):
        assert checks.check_signup_mail_delivery() == []


@pytest.mark.parametrize(
    ("mailer", "warns"),
    [
        pytest.param({"BACKEND": SMTP}, True, id="smtp-defaults"),
        pytest.param({"BACKEND": SMTP, "OPTIONS": {"host": "localhost"}}, True, id="smtp-localhost"),
        pytest.param({"BACKEND": SMTP, "OPTIONS": {"host": "smtp.example.org"}}, False, id="smtp-configured"),
        pytest.param({"BACKEND": "django.core.mail.backends.console.EmailBackend"}, False, id="console"),
    ],
)
def test_unconfigured_smtp_read_from_mailers(mailer, warns):
    # Django 6.1's MAILERS replaces EMAIL_BACKEND/EMAIL_HOST (and forbids them beside it):
    # when a site defines it, its "default" mailer is what sends the signup mail.
    with override_settings(DEBUG=True, ACCOUNT_EMAIL_VERIFICATION="mandatory", MAILERS={"default": mailer}):
        found = checks.check_signup_mail_delivery()
    if not warns:
        assert found == []
        return
    (warning,) = found
    assert warning.id == "django_trakt.W009" and 'MAILERS["default"]' in warning.msg
    assert '"BACKEND"' in warning.hint and "console.EmailBackend" in warning.hint


# -- W010: LOGIN_REDIRECT_URL leads nowhere ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        pytest.param("/accounts/profile/", "404", id="django-default"),
        pytest.param("/nowhere/?next=1", "404", id="path-with-query"),
        pytest.param("no_such_view", "NoReverseMatch", id="unknown-name"),
        pytest.param("django_trakt:nope", "NoReverseMatch", id="unknown-namespaced-name"),
    ],
)
def test_login_redirect_warns_when_it_leads_nowhere(settings, value, shown):
    settings.LOGIN_REDIRECT_URL = value
    (warning,) = checks.check_login_redirect_url()
    assert warning.id == "django_trakt.W010" and shown in warning.msg and repr(value) in warning.msg
    assert 'LOGIN_REDIRECT_URL = "/"' in warning.hint
    assert "django_trakt.W010" in trakt_ids(run_checks())


def test_login_redirect_warns_on_a_lazy_url_that_does_not_reverse(settings):
    settings.LOGIN_REDIRECT_URL = reverse_lazy("no_such_view")
    assert ids(checks.check_login_redirect_url()) == ["django_trakt.W010"]


@pytest.mark.parametrize(
    "value",
    [
        "/accounts/email/",
        "/accounts/email/?tab=1#top",
        "account_email",
        "django_trakt:device_start",
        reverse_lazy("account_email"),
        "https://other.example.org/welcome/",
        "//cdn.example.org/welcome/",
        "./welcome/",
        "welcome/",
        "",
    ],
)
def test_login_redirect_quiet_when_it_resolves_or_is_not_ours(settings, value):
    settings.LOGIN_REDIRECT_URL = value
    assert checks.check_login_redirect_url() == []


def test_login_redirect_strips_the_forced_script_name(settings):
    settings.FORCE_SCRIPT_NAME = "/media"
    settings.LOGIN_REDIRECT_URL = "/media/accounts/email/"
    assert checks.check_login_redirect_url() == []
    settings.LOGIN_REDIRECT_URL = "/media/accounts/profile/"
    assert ids(checks.check_login_redirect_url()) == ["django_trakt.W010"]


@pytest.mark.parametrize("urlconf", ["tests.no_such_urls_module", None])
def test_login_redirect_quiet_when_urlconf_cannot_be_loaded(settings, urlconf):
    settings.ROOT_URLCONF = urlconf
    settings.LOGIN_REDIRECT_URL = "/accounts/profile/"
    assert checks.check_login_redirect_url() == []


# -- the test settings ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_test_settings_pass_plain_check_with_database():
    call_command("check", fail_level="WARNING")
    call_command("check", fail_level="WARNING", databases=DB)
