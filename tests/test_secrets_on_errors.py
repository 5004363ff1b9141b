"""Secrets stay secret when things go wrong: a pending signup, a 500 at sign-in, bad keys."""

from __future__ import annotations

import json
import logging

import pytest
from allauth.socialaccount.signals import social_account_updated
from django.contrib.sessions.models import Session
from django.test import Client

from django_trakt.models import TraktToken
from tests.test_signin import all_database_text, sign_in, signup_form

pytestmark = pytest.mark.django_db


def issued_tokens(trakt) -> set[str]:
    """Every access and refresh token Trakt issued so far (still live)."""
    return {value for pair in trakt.active_tokens() for value in (pair.access_token, pair.refresh_token) if value}


def issued_secrets(trakt) -> set[str]:
    """The tokens, and the authorization codes exchanged for them."""
    return issued_tokens(trakt) | {request.json["code"] for request in trakt.requests_to("/oauth/token")}


def sessions_text() -> str:
    """Every session, decoded (a plain token in a session row is only base64 away)."""
    return "\n".join(json.dumps(session.get_decoded(), default=str) for session in Session.objects.all())


def test_a_pending_signup_keeps_no_plain_token_in_its_session(client, trakt):
    response = sign_in(client, trakt)
    assert response["Location"].endswith("/accounts/3rdparty/signup/")  # waiting for the email form
    secrets = issued_secrets(trakt)
    assert secrets and TraktToken.objects.count() == 0
    stored = sessions_text() + all_database_text()
    assert "socialaccount_sociallogin" in sessions_text()  # the pending signup is there...
    for secret in secrets:
        assert secret not in stored  # ...with its tokens sealed
    # And the signup still completes with the right tokens.
    signup_form(client, response)
    token = TraktToken.objects.get()
    assert trakt.is_access_token_valid(token.access_token)


def test_a_500_at_sign_in_shows_no_token_on_the_debug_page_or_in_the_logs(trakt, settings, caplog):
    caplog.set_level(logging.DEBUG)
    client = Client(raise_request_exception=False)
    signup_form(client, sign_in(client, trakt))
    client.logout()
    settings.DEBUG = True

    def site_bug(**kwargs):
        raise RuntimeError("the site's own receiver fails")

    social_account_updated.connect(site_bug, dispatch_uid="tests.site_bug")
    try:
        response = sign_in(client, trakt)  # a returning user
    finally:
        social_account_updated.disconnect(dispatch_uid="tests.site_bug")
    assert response.status_code == 500
    page = response.content.decode()
    assert "the site&#x27;s own receiver fails" in page or "the site's own receiver fails" in page
    assert "Local vars" in page or "Local Vars" in page  # the technical page, with frames
    # The authorization code is on the page as part of the callback URL, as Django shows every
    # request URL; it is single-use and already spent by then. The tokens are nowhere.
    for secret in issued_tokens(trakt):
        assert secret not in page
        assert secret not in caplog.text


def test_malformed_token_keys_refuse_sign_in_before_trakt_issues_a_token(client, trakt, settings):
    settings.TRAKT_TOKEN_KEYS = ["not-a-fernet-key"]
    response = sign_in(client, trakt)
    assert response.status_code == 401  # allauth's authentication error page, not a 500
    assert b"TRAKT_TOKEN_KEYS" not in response.content  # the visitor is not told the site's settings
    assert trakt.requests_to("/oauth/token") == []  # no code was exchanged: no token exists
    assert TraktToken.objects.count() == 0


def test_an_error_report_of_a_failure_holding_plain_tokens_hides_them(trakt, settings, monkeypatch):
    """What the site's admins get for a 500 with DEBUG off: the HTML report with every frame's
    variables (``AdminEmailHandler(include_html=True)``, error trackers built on it)."""
    import sys

    from django.core.signals import got_request_exception
    from django.views.debug import ExceptionReporter

    from django_trakt.internal.links import crypto

    client = Client(raise_request_exception=False)
    real_encrypt = crypto.encrypt

    def failing_encrypt(plaintext):
        real_encrypt(plaintext)
        raise RuntimeError("the storage failed with the plain token at hand")

    reports: list[str] = []

    def report(sender, request, **kwargs):
        reports.append(ExceptionReporter(request, *sys.exc_info(), is_email=True).get_traceback_html())

    monkeypatch.setattr(crypto, "encrypt", failing_encrypt)
    got_request_exception.connect(report, dispatch_uid="tests.report")
    try:
        response = sign_in(client, trakt)
    finally:
        got_request_exception.disconnect(dispatch_uid="tests.report")
    assert response.status_code == 500 and reports
    (html,) = reports
    assert "the storage failed with the plain token at hand" in html
    assert "Local Vars" in html  # frames with their variables
    for secret in issued_tokens(trakt):
        assert secret not in html
