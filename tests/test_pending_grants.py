"""Grants of sign-ins that no link holds are revoked at Trakt once abandoned (django_trakt.internal.links.pending)."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from django_trakt.internal.links import pending
from django_trakt.models import PendingGrant, TraktToken
from tests.test_secrets_on_errors import issued_tokens, sessions_text
from tests.test_signin import all_database_text, sign_in, signup_form

pytestmark = pytest.mark.django_db

User = get_user_model()


def age_pending(hours: float = 2) -> None:
    PendingGrant.objects.update(created_at=timezone.now() - dt.timedelta(hours=hours))


def sweep() -> str:
    out = StringIO()
    call_command("refresh_trakt_tokens", stdout=out, stderr=StringIO())
    return out.getvalue()


def test_an_abandoned_signup_holds_no_plain_token_and_its_grant_is_revoked(client, trakt):
    response = sign_in(client, trakt)
    assert response["Location"].endswith("/accounts/3rdparty/signup/")  # the visitor leaves here
    (access,) = [pair.access_token for pair in trakt.active_tokens()]
    stored = sessions_text() + all_database_text()
    for secret in issued_tokens(trakt):
        assert secret not in stored  # session and PendingGrant hold ciphertext only
    assert PendingGrant.objects.count() == 1

    assert "abandoned" not in sweep()  # not old enough yet
    assert trakt.is_access_token_valid(access)
    age_pending()
    assert "1 abandoned sign-ins revoked at Trakt" in sweep()
    (revoke,) = trakt.requests_to("/oauth/revoke")
    assert revoke.json["token"] == access and not trakt.is_access_token_valid(access)
    assert PendingGrant.objects.get().access_token_encrypted == ""  # nothing left to leak


def test_starting_over_in_the_same_session_revokes_the_abandoned_grant_at_once(client, trakt):
    sign_in(client, trakt)
    (first,) = [pair.access_token for pair in trakt.active_tokens()]
    response = sign_in(client, trakt)  # allauth drops the first pending signup
    assert not trakt.is_access_token_valid(first)
    signup_form(client, response)
    token = TraktToken.objects.get()
    assert token.status == TraktToken.Status.ACTIVE and trakt.is_access_token_valid(token.access_token)


def test_a_finished_signup_settles_its_grant_and_the_sweep_leaves_it_alone(client, trakt):
    signup_form(client, sign_in(client, trakt))
    assert PendingGrant.objects.count() == 0
    age_pending()
    sweep()
    token = TraktToken.objects.get()
    assert trakt.requests_to("/oauth/revoke") == [] and trakt.is_access_token_valid(token.access_token)


def test_a_signup_finished_after_its_grant_was_revoked_gets_a_flagged_link(client, trakt):
    response = sign_in(client, trakt)
    age_pending()
    sweep()
    signup_form(client, response)
    token = TraktToken.objects.get()
    assert token.status == TraktToken.Status.NEEDS_REAUTH and token.last_error == pending.ABANDONED
    assert User.objects.count() == 1  # the account exists; only the link asks for a new sign-in


def test_a_refused_connect_revokes_its_grant_at_once(client, trakt):
    signup_form(client, sign_in(client, trakt))
    owner = TraktToken.objects.get()
    client.logout()
    client.force_login(User.objects.create_user("intruder", "intruder@example.com", "pw"))
    sign_in(client, trakt, process="connect")
    (revoke,) = trakt.requests_to("/oauth/revoke")
    assert revoke.json["token"] != owner.access_token
    assert not trakt.is_access_token_valid(revoke.json["token"])
    assert trakt.is_access_token_valid(owner.access_token)  # the owner's link is untouched
    assert PendingGrant.objects.filter(revoked_at__isnull=True).count() == 0


def test_a_returning_sign_in_leaves_nothing_pending(client, trakt):
    signup_form(client, sign_in(client, trakt))
    client.logout()
    sign_in(client, trakt)
    assert PendingGrant.objects.count() == 0


def test_the_sweep_keeps_a_grant_trakt_did_not_confirm_for_the_next_run(client, trakt):
    sign_in(client, trakt)
    age_pending()
    trakt.fail_next("/oauth/revoke", status=503)
    assert "abandoned" not in sweep()
    assert PendingGrant.objects.filter(revoked_at__isnull=True).count() == 1
    assert "1 abandoned sign-ins revoked at Trakt" in sweep()
