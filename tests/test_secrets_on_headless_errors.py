"""No token on a debug page or in an error report of the headless sign-ins (issue 21, item 3).

allauth's provider-token endpoint holds the app's token in plain in its own frames
(``ProviderTokenInput.clean``'s ``token``), where ``sensitive_variables`` cannot reach. So
``verify_token`` lets nothing but allauth's ``ValidationError`` out: a forced failure inside
it (or a 400-digit ``expires_in``, which once overflowed ``float()``) is a 400, logged
without the token, never a 500 page. A failure after it, in allauth's login (a site's
receiver), still is a 500: its DEBUG page and the admins' HTML report
(``AdminEmailHandler(include_html=True)``) are rendered here and searched for every token.
The sign-in by code is checked the same way.
"""

from __future__ import annotations

import logging

import pytest
from allauth.socialaccount.signals import social_account_updated
from django.core import mail
from django.test import Client
from django.utils.log import AdminEmailHandler

from django_trakt import provider
from django_trakt.models import TraktToken
from tests.test_device import moving_clock
from tests.test_headless import headless_site  # noqa: F401  (the headless site, autouse)
from tests.test_headless_code import App
from tests.test_headless_token import issued, provider_token, sign_up_with_token

pytestmark = pytest.mark.django_db

APP_API = "/_allauth/app/v1"


def every_token(trakt, *extra: dict) -> set[str]:
    """The tokens Trakt issued so far and those an app sent."""
    found = {value for pair in trakt.active_tokens() for value in (pair.access_token, pair.refresh_token) if value}
    for token in extra:
        found |= {token[key] for key in ("access_token", "refresh_token") if token.get(key)}
    return found


@pytest.fixture
def admin_mail(settings):
    """The admins' error mails with the HTML report (every frame's variables) attached."""
    settings.ADMINS = [("Admin", "admin@example.com")]
    handler = AdminEmailHandler(include_html=True)
    handler.setLevel(logging.ERROR)
    request_logger = logging.getLogger("django.request")
    request_logger.addHandler(handler)
    try:
        yield mail.outbox
    finally:
        request_logger.removeHandler(handler)


def html_reports(outbox) -> str:
    """The HTML reports of every mail sent (one per 500: DEBUG on or off, the handler mails)."""
    reports = []
    for message in outbox:
        if message.to != ["admin@example.com"] or not message.alternatives:
            continue  # allauth's own mails (an address to confirm), a 500 logged without its exception
        ((html, mimetype),) = message.alternatives
        assert mimetype == "text/html"
        reports.append(html)
    assert len(reports) == 2  # the 500 with DEBUG on, and with DEBUG off
    return "\n".join(reports)


def failing_receiver(**kwargs):
    raise RuntimeError("the site's own receiver fails")


# -- inside verify_token: allauth's 400, never a 500 -----------------------------------------------


@pytest.mark.parametrize("debug", [True, False], ids=["debug-page", "error-report"])
def test_a_failure_inside_verify_token_is_allauths_400_without_a_token(trakt, settings, caplog, admin_mail, debug):
    caplog.set_level(logging.DEBUG)
    settings.DEBUG = debug
    token = issued(trakt)

    def broken_trakt_client(client_id, access_token):
        raise RuntimeError(f"the transport broke while holding {access_token}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(provider.http, "get_user_settings", broken_trakt_client)
        response = provider_token(Client(raise_request_exception=False), token)
    assert response.status_code == 400, response.content  # not the technical 500 page
    (error,) = response.json()["errors"]
    assert (error["code"], error["param"]) == ("token_check_failed", "token")
    assert admin_mail == []  # nothing for a report to print
    assert "RuntimeError in broken_trakt_client" in caplog.text  # the operator learns what and where
    for secret in every_token(trakt, token):
        assert secret not in response.content.decode()
        assert secret not in caplog.text
    assert TraktToken.objects.count() == 0


def test_a_400_digit_expires_in_signs_in_with_an_unknown_expiry(trakt, settings, caplog):
    caplog.set_level(logging.DEBUG)
    settings.DEBUG = True
    token = {**issued(trakt), "expires_in": 10**400}  # float() of it once raised OverflowError: a 500
    client = Client(raise_request_exception=False)
    done = sign_up_with_token(client, trakt, token)
    assert done.status_code == 200, done.content
    stored = TraktToken.objects.get()
    assert stored.access_token == token["access_token"] and stored.expires_at is None
    for secret in every_token(trakt, token):
        assert secret not in caplog.text


@pytest.mark.parametrize(
    "expires_in",
    ["1e999", "NaN", -(10**400), [10**400], {"seconds": 10**400}],
    ids=["string-1e999", "string-nan", "minus-400-digits", "list", "object"],
)
def test_odd_numbers_from_the_app_are_no_500(trakt, settings, expires_in):
    settings.DEBUG = True
    token = {**issued(trakt), "expires_in": expires_in, "created_at": expires_in}
    response = provider_token(Client(raise_request_exception=False), token)
    assert response.status_code == 401, response.content  # allauth's pending signup, as for any token


# -- after verify_token: a 500 whose page and report hold no token ---------------------------------


def test_a_500_after_a_token_sign_in_shows_no_token_on_the_debug_page_or_in_the_report(trakt, settings, admin_mail):
    first = issued(trakt)
    assert sign_up_with_token(Client(), trakt, first).status_code == 200
    second = issued(trakt)  # a returning user signs in again: allauth updates the account
    social_account_updated.connect(failing_receiver, dispatch_uid="tests.failing_receiver")
    try:
        settings.DEBUG = True
        page = provider_token(Client(raise_request_exception=False), second)
        settings.DEBUG = False
        reported = provider_token(Client(raise_request_exception=False), issued(trakt))
    finally:
        social_account_updated.disconnect(dispatch_uid="tests.failing_receiver")
    assert page.status_code == 500 and reported.status_code == 500
    debug_page = page.content.decode()
    assert "Local vars" in debug_page or "Local Vars" in debug_page  # the technical page, with frames
    assert "the site&#x27;s own receiver fails" in debug_page
    report = html_reports(admin_mail)
    assert "Local vars" in report or "Local Vars" in report
    assert "ProviderTokenView" in report  # allauth's frames are in it
    for secret in every_token(trakt, first, second):
        assert secret not in debug_page
        assert secret not in report


def test_a_500_after_a_sign_in_by_code_shows_no_token_on_the_debug_page_or_in_the_report(
    trakt, settings, admin_mail, monkeypatch
):
    clock = moving_clock(trakt, monkeypatch)
    try:
        assert sign_up_with_token(Client(), trakt, issued(trakt)).status_code == 200  # a returning user
        social_account_updated.connect(failing_receiver, dispatch_uid="tests.failing_receiver")
        answers = []
        for debug in (True, False):
            settings.DEBUG = debug
            app = App()
            app.client = Client(raise_request_exception=False)
            started = app.start()["data"]
            trakt.approve_device(started["user_code"], "Watcher")
            clock.advance(started["interval"])
            poll = f"{APP_API}/auth/provider/trakt/code/poll"
            answers.append(app.client.post(poll, HTTP_X_SESSION_TOKEN=app.session_token))
    finally:
        social_account_updated.disconnect(dispatch_uid="tests.failing_receiver")
    page, reported = answers
    assert page.status_code == 500 and reported.status_code == 500
    debug_page = page.content.decode()
    assert "Local vars" in debug_page or "Local Vars" in debug_page
    report = html_reports(admin_mail)
    assert "_complete_login" in report
    for secret in every_token(trakt):
        assert secret not in debug_page
        assert secret not in report
    assert settings.TRAKT_CLIENT_SECRET not in report
