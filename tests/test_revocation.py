"""Removing a Trakt link revokes its token at Trakt; a failed revoke never blocks the user."""

from __future__ import annotations

import logging

import pytest
from allauth.socialaccount.models import SocialAccount
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import override_settings
from django.urls import reverse

from django_trakt import __version__, checks, signals
from django_trakt.internal.api.tokens import grant_from_response
from django_trakt.internal.links.revocation import revoke_at_trakt, unlink
from django_trakt.models import TraktToken

pytestmark = pytest.mark.django_db

User = get_user_model()

FAILURES = {
    "5xx": lambda t: t.fail_next("/oauth/revoke", status=503),
    "timeout": lambda t: t.timeout_next("/oauth/revoke"),
    "cloudflare-403": lambda t: t.cloudflare_next("/oauth/revoke"),
    "401": lambda t: t.fail_next("/oauth/revoke", status=401, json={"error": "invalid_client"}),
}


@pytest.fixture
def revocations():
    """Every ``link_revoked`` sent during the test, as (account uid, revoked_at_trakt)."""
    seen = []

    def receiver(sender, account, revoked_at_trakt, **kwargs):
        assert sender is TraktToken
        seen.append((account.uid, revoked_at_trakt))

    signals.link_revoked.connect(receiver, dispatch_uid="test_revocation")
    yield seen
    signals.link_revoked.disconnect(dispatch_uid="test_revocation")


def secrets_of(token):
    return [token.access_token, token.refresh_token, token.access_token_encrypted, token.refresh_token_encrypted]


def disconnect(client, user, account):
    client.force_login(user)
    return client.post(reverse("socialaccount_connections"), {"account": account.pk})


def assert_unlinked(account):
    assert not SocialAccount.objects.filter(pk=account.pk).exists()
    assert not TraktToken.objects.filter(account_id=account.pk).exists()


# -- allauth's connections page --------------------------------------------------------------


def test_disconnect_from_connections_page_revokes_at_trakt_and_removes_rows(
    client, trakt, linked, revocations, django_capture_on_commit_callbacks
):
    user, token = linked()
    account, access, refresh = token.account, token.access_token, token.refresh_token
    with django_capture_on_commit_callbacks(execute=True):
        response = disconnect(client, user, account)
    assert response.status_code == 302 and response["Location"] == reverse("socialaccount_connections")

    (revoke,) = trakt.requests_to("/oauth/revoke")
    assert revoke.method == "POST"
    assert revoke.json == {"token": access, "client_id": "test-client-id", "client_secret": "test-client-secret"}
    assert revoke.headers["Content-Type"] == "application/json"
    assert revoke.headers["trakt-api-key"] == "test-client-id"
    assert revoke.headers["trakt-api-version"] == "2"
    assert revoke.headers["User-Agent"] == f"django-trakt/{__version__}"
    assert "Authorization" not in revoke.headers
    assert revoke.url.startswith("https://auth.trakt.test/")
    # The whole authorization is dead at Trakt: the refresh token went with the access token.
    assert not trakt.is_access_token_valid(access)
    assert {access, refresh} <= trakt.revoked_tokens
    assert_unlinked(account)
    assert User.objects.filter(pk=user.pk).exists()
    assert revocations == [(account.uid, True)]


def test_revoke_runs_after_the_commit_not_inside_the_transaction(
    client, trakt, linked, django_capture_on_commit_callbacks
):
    user, token = linked()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        disconnect(client, user, token.account)
        # The row is deleted in the transaction, but Trakt has not been called yet.
        assert not TraktToken.objects.filter(pk=token.pk).exists()
        assert trakt.requests_to("/oauth/revoke") == []
    assert len(callbacks) == 1
    callbacks[0]()
    assert len(trakt.requests_to("/oauth/revoke")) == 1


def test_rolled_back_delete_revokes_nothing(trakt, linked, revocations, django_capture_on_commit_callbacks):
    _user, token = linked()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        try:
            with transaction.atomic():
                token.account.delete()
                raise RuntimeError("something later in the request failed")
        except RuntimeError:
            pass
    assert callbacks == []
    assert trakt.requests_to("/oauth/revoke") == []
    assert TraktToken.objects.filter(pk=token.pk).exists()
    assert trakt.is_access_token_valid(token.access_token)
    assert revocations == []


def test_refused_disconnect_keeps_link_and_revokes_nothing(client, trakt, linked, django_capture_on_commit_callbacks):
    user, token = linked()
    user.set_unusable_password()  # the Trakt link is the only way to sign in
    user.save()
    with django_capture_on_commit_callbacks(execute=True):
        response = disconnect(client, user, token.account)
    assert response.status_code == 200  # the form, with allauth's error
    assert TraktToken.objects.filter(pk=token.pk).exists()
    assert trakt.requests_to("/oauth/revoke") == []


@pytest.mark.parametrize("inject", FAILURES.values(), ids=FAILURES.keys())
def test_failing_revoke_still_unlinks_and_logs_without_token(
    client, trakt, linked, revocations, caplog, inject, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.DEBUG)
    user, token = linked()
    account, secrets = token.account, secrets_of(token)
    inject(trakt)
    with django_capture_on_commit_callbacks(execute=True):
        response = disconnect(client, user, account)
    assert response.status_code == 302
    assert len(trakt.requests_to("/oauth/revoke")) == 1
    assert_unlinked(account)
    assert revocations == [(account.uid, False)]
    assert f"Trakt did not revoke the token of account {account.pk}" in caplog.text
    for secret in secrets:
        assert secret not in caplog.text


def test_undecryptable_token_still_unlinks_without_calling_trakt(
    trakt, linked, revocations, caplog, django_capture_on_commit_callbacks
):
    _user, token = linked()
    account = token.account
    with (
        override_settings(TRAKT_TOKEN_KEYS=[Fernet.generate_key().decode()]),
        django_capture_on_commit_callbacks(execute=True),
    ):
        account.delete()
    assert trakt.requests_to("/oauth/revoke") == []
    assert_unlinked(account)
    assert revocations == [(account.uid, False)]
    assert "cannot be decrypted" in caplog.text


def test_missing_trakt_app_still_unlinks(trakt, linked, revocations, settings, django_capture_on_commit_callbacks):
    _user, token = linked()
    account = token.account
    providers = {
        "trakt": {key: value for key, value in settings.SOCIALACCOUNT_PROVIDERS["trakt"].items() if key != "APP"}
    }
    with override_settings(SOCIALACCOUNT_PROVIDERS=providers), django_capture_on_commit_callbacks(execute=True):
        account.delete()
    assert trakt.requests_to("/oauth/revoke") == []
    assert_unlinked(account)
    assert revocations == [(account.uid, False)]


def test_malformed_keys_at_revoke_time_still_unlink(trakt, linked, revocations, django_capture_on_commit_callbacks):
    _user, token = linked()
    account = token.account
    with override_settings(TRAKT_TOKEN_KEYS=["not-a-key"]), django_capture_on_commit_callbacks(execute=True):
        account.delete()
    assert trakt.requests_to("/oauth/revoke") == []
    assert_unlinked(account)
    assert revocations == [(account.uid, False)]


def test_failing_link_revoked_receiver_does_not_break_the_disconnect(
    client, trakt, linked, caplog, django_capture_on_commit_callbacks
):
    def broken(sender, **kwargs):
        raise RuntimeError("a site's receiver is broken")

    signals.link_revoked.connect(broken, dispatch_uid="test_broken_receiver")
    user, token = linked()
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = disconnect(client, user, token.account)
    finally:
        signals.link_revoked.disconnect(dispatch_uid="test_broken_receiver")
    assert response.status_code == 302
    assert len(trakt.requests_to("/oauth/revoke")) == 1
    assert_unlinked(token.account)
    assert "A link_revoked receiver" in caplog.text and "a site's receiver is broken" in caplog.text


# -- other ways a link goes away ---------------------------------------------------------------


def test_deleting_the_user_revokes_every_trakt_link(trakt, linked, revocations, django_capture_on_commit_callbacks):
    user, token = linked()
    second = SocialAccount.objects.create(user=user, provider="trakt", uid="second-uuid", extra_data={})
    other_data = trakt.issue_tokens("Watcher", "test-client-id")
    TraktToken.objects.store_grant(second, grant_from_response(other_data))
    with django_capture_on_commit_callbacks(execute=True):
        user.delete()
    revoked = {request.json["token"] for request in trakt.requests_to("/oauth/revoke")}
    assert revoked == {token.access_token, other_data["access_token"]}
    assert SocialAccount.objects.count() == 0 and TraktToken.objects.count() == 0
    assert sorted(revocations) == sorted([(token.account.uid, True), ("second-uuid", True)])


def test_trakt_link_without_stored_token_is_removed_quietly(trakt, revocations, django_capture_on_commit_callbacks):
    user = User.objects.create_user("plain", "plain@example.com", "pw")
    account = SocialAccount.objects.create(user=user, provider="trakt", uid="no-token", extra_data={})
    with django_capture_on_commit_callbacks(execute=True):
        account.delete()
    assert trakt.requests_to("/oauth/revoke") == []
    assert revocations == [("no-token", False)]


def test_other_providers_are_left_alone(trakt, revocations, django_capture_on_commit_callbacks):
    user = User.objects.create_user("plain", "plain@example.com", "pw")
    account = SocialAccount.objects.create(user=user, provider="github", uid="42", extra_data={})
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        account.delete()
    assert callbacks == [] and revocations == []
    assert trakt.requests_to("/oauth/revoke") == []


# -- the functions ----------------------------------------------------------------------------------


def test_unlink_revokes_exactly_once_and_reports_confirmation(
    trakt, linked, revocations, django_capture_on_commit_callbacks
):
    _user, token = linked()
    account, access = token.account, token.access_token
    with django_capture_on_commit_callbacks(execute=True):
        assert unlink(account) is True
    assert [request.json["token"] for request in trakt.requests_to("/oauth/revoke")] == [access]
    assert_unlinked(account)
    assert revocations == [(account.uid, True)]


def test_unlink_reports_unconfirmed_revoke_and_still_unlinks(
    trakt, linked, revocations, django_capture_on_commit_callbacks
):
    _user, token = linked()
    account = token.account
    trakt.fail_next("/oauth/revoke", status=500)
    with django_capture_on_commit_callbacks(execute=True):
        assert unlink(account) is False
    assert len(trakt.requests_to("/oauth/revoke")) == 1
    assert_unlinked(account)
    assert revocations == [(account.uid, False)]


def test_unlink_refuses_other_providers(db):
    user = User.objects.create_user("plain", "plain@example.com", "pw")
    account = SocialAccount.objects.create(user=user, provider="github", uid="42", extra_data={})
    with pytest.raises(ValueError, match="github"):
        unlink(account)
    assert SocialAccount.objects.filter(pk=account.pk).exists()


def test_revoke_at_trakt_keeps_the_row(trakt, linked):
    _user, token = linked()
    assert revoke_at_trakt(token) is True
    assert not trakt.is_access_token_valid(token.access_token)
    assert TraktToken.objects.filter(pk=token.pk).exists()
    trakt.fail_next("/oauth/revoke", status=502)
    assert revoke_at_trakt(token) is False


# -- revocation and checks ------------------------------------------------------------------------------------


def test_unexpected_crash_while_revoking_still_unlinks_and_announces(
    trakt, linked, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    def crash(**kwargs):
        raise RuntimeError("a bug while revoking")

    seen = []
    monkeypatch.setattr("django_trakt.internal.links.revocation.oauth.revoke_token", crash)
    signals.link_revoked.connect(
        lambda sender, account, revoked_at_trakt, **kw: seen.append((account.uid, revoked_at_trakt)),
        dispatch_uid="test_revocation_crash",
        weak=False,
    )
    _user, token = linked()
    account, secret = token.account, token.access_token
    try:
        with django_capture_on_commit_callbacks(execute=True):
            account.delete()
    finally:
        signals.link_revoked.disconnect(dispatch_uid="test_revocation_crash")
    assert not SocialAccount.objects.filter(pk=token.account_id).exists()
    assert not TraktToken.objects.filter(pk=token.pk).exists()
    assert seen == [(account.uid, False)]
    assert f"Revoking the Trakt token of account {token.account_id} failed unexpectedly" in caplog.text
    assert secret not in caplog.text


@override_settings(ROOT_URLCONF=__name__, DEBUG=False, ACCOUNT_DEFAULT_HTTP_PROTOCOL="http", SECURE_SSL_REDIRECT=False)
def test_callback_check_quiet_when_allauth_urls_are_not_installed():
    assert checks.check_callback_https() == []
