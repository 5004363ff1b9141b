"""Refreshing one token at its edges: unknown expiry, gone or unreadable links, no refresh
token, no sites framework, retries running out."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.fernet import Fernet
from django.test import modify_settings, override_settings

from django_trakt import signals
from django_trakt.exceptions import TraktSiteMisconfigured
from django_trakt.links.client import TraktClient
from django_trakt.links.refresh import Outcome, refresh_token, refresh_with_retries
from django_trakt.models import TraktToken

pytestmark = pytest.mark.django_db

EXPIRED = -dt.timedelta(hours=1)


def snapshot(token):
    token.refresh_from_db()
    return token.access_token_encrypted, token.refresh_token_encrypted, token.expires_at, token.status


def unknown_expiry(token):
    TraktToken.objects.filter(pk=token.pk).update(expires_at=None)
    token.refresh_from_db()
    return token


# -- unknown expiry --------------------------------------------------------------------------------


def test_refresh_unknown_expiry_is_never_due(trakt, linked):
    _user, token = linked()
    unknown_expiry(token)
    result = refresh_token(token, within=dt.timedelta(days=3650))
    assert result.outcome is Outcome.NOT_DUE and result.detail == "not due"
    assert trakt.requests_to("/oauth/token") == []


def test_refresh_unknown_expiry_is_refreshed_when_forced(trakt, linked):
    _user, token = linked()
    unknown_expiry(token)
    assert refresh_token(token, force=True).outcome is Outcome.REFRESHED
    token.refresh_from_db()
    assert token.expires_at is not None and trakt.is_access_token_valid(token.access_token)


def test_client_unknown_expiry_uses_stored_token_without_refreshing(trakt, linked):
    user, token = linked()
    unknown_expiry(token)
    assert TraktClient.for_user(user).get("/users/settings")["user"]["username"] == user.username
    assert trakt.requests_to("/oauth/token") == []
    (request,) = trakt.requests_to("/users/settings")
    assert request.headers["Authorization"] == f"Bearer {token.access_token}"


# -- links that are gone or cannot be read --------------------------------------------------------


def test_refresh_link_deleted_meanwhile_is_not_due_and_not_retried(trakt, linked):
    _user, token = linked(expires_in=EXPIRED)
    pk = token.pk
    token.account.delete()  # unlinked between the batch's query and the refresh
    waits = []
    result = refresh_with_retries(pk, sleep=waits.append)
    assert result.outcome is Outcome.NOT_DUE and result.token is None
    assert waits == [] and trakt.requests_to("/oauth/token") == []


def test_refresh_undecryptable_token_fails_without_retry_or_request(trakt, linked):
    _user, token = linked(expires_in=EXPIRED)
    before = snapshot(token)
    waits = []
    with override_settings(TRAKT_TOKEN_KEYS=[Fernet.generate_key().decode()]):
        result = refresh_with_retries(token, sleep=waits.append)
    assert result.outcome is Outcome.FAILED and not result.retryable
    assert "TRAKT_TOKEN_KEYS" in result.detail
    assert waits == [] and trakt.requests_to("/oauth/token") == []
    after = snapshot(token)
    assert after[:3] == before[:3]  # the ciphertext is left exactly as it was
    assert after[3] == TraktToken.Status.UNREADABLE


def test_refresh_without_stored_refresh_token_needs_reauth_without_request(trakt, linked):
    _user, token = linked(expires_in=EXPIRED)
    TraktToken.objects.filter(pk=token.pk).update(refresh_token_encrypted="")
    reasons = []
    signals.token_needs_reauthorization.connect(
        lambda sender, token, reason, **kw: reasons.append(reason), weak=False, dispatch_uid="edges-no-refresh"
    )
    try:
        result = refresh_token(token)
    finally:
        signals.token_needs_reauthorization.disconnect(dispatch_uid="edges-no-refresh")
    assert result.outcome is Outcome.NEEDS_REAUTH and "no refresh token is stored" in result.detail
    assert reasons == [result.detail]
    assert trakt.requests_to("/oauth/token") == []
    token.refresh_from_db()
    assert token.status == TraktToken.Status.NEEDS_REAUTH and "no refresh token" in token.last_error


# -- configuration --------------------------------------------------------------------------------


@modify_settings(INSTALLED_APPS={"remove": ["django.contrib.sites"]})
def test_refresh_without_sites_framework_fails_with_clear_reason(trakt, linked):
    _user, token = linked(expires_in=EXPIRED)
    before = snapshot(token)
    with pytest.raises(TraktSiteMisconfigured, match=r"add django\.contrib\.sites .*REDIRECT_URI") as caught:
        refresh_token(token)
    assert caught.value.setting == "INSTALLED_APPS"
    assert trakt.requests_to("/oauth/token") == []  # the refresh token was not spent
    assert snapshot(token) == before


# -- retries running out ----------------------------------------------------------------------------


def test_refresh_with_retries_5xx_exhausted_returns_failure_after_backoff(trakt, linked):
    _user, token = linked(expires_in=EXPIRED)
    before = snapshot(token)
    trakt.fail_next("/oauth/token", status=503, times=10)
    waits = []
    result = refresh_with_retries(token, server_error_retries=3, backoff=0.5, sleep=waits.append)
    assert result.outcome is Outcome.FAILED and result.retryable
    assert waits == [0.5, 1.0, 2.0]
    assert len(trakt.requests_to("/oauth/token")) == 4
    assert snapshot(token) == before


def test_refresh_with_retries_429_exhausted_returns_failure_with_retry_after(trakt, linked):
    _user, token = linked(expires_in=EXPIRED)
    trakt.rate_limit_next("/oauth/token", retry_after=2, times=10)
    waits = []
    result = refresh_with_retries(token, server_error_retries=2, sleep=waits.append)
    assert result.outcome is Outcome.FAILED and result.retry_after == 2
    assert waits == [2.0, 2.0] and len(trakt.requests_to("/oauth/token")) == 3


def test_refresh_with_retries_non_retryable_failure_is_not_retried(trakt, linked):
    # A 403 (Cloudflare block, bad API key) will not get better in a second.
    _user, token = linked(expires_in=EXPIRED)
    trakt.cloudflare_next("/oauth/token", status=403, times=10)
    waits = []
    result = refresh_with_retries(token, sleep=waits.append)
    assert result.outcome is Outcome.FAILED and not result.retryable
    assert waits == [] and len(trakt.requests_to("/oauth/token")) == 1
