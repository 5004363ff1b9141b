"""Refreshing a token: every outcome, through the function, the command and the client."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import modify_settings, override_settings
from django.utils import timezone

from django_trakt import signals
from django_trakt.exceptions import (
    TraktNotLinked,
    TraktReauthorizationRequired,
    TraktRefreshFailed,
    TraktSiteMisconfigured,
)
from django_trakt.internal.links.client import TraktClient
from django_trakt.internal.links.outcomes import Outcome
from django_trakt.internal.links.refresh import refresh_token
from django_trakt.internal.links.retries import refresh_with_retries
from django_trakt.models import TraktToken

pytestmark = pytest.mark.django_db

EXPIRED = -dt.timedelta(hours=1)
FRESH = dt.timedelta(days=6)


def snapshot(token):
    token.refresh_from_db()
    return token.access_token, token.refresh_token, token.expires_at


# Each injected failure, the outcome it must give, and whether the link is flagged.
REJECTIONS = {
    "invalid_grant": lambda t: t.fail_next("/oauth/token", status=400, json={"error": "invalid_grant"}),
    "empty-400": lambda t: t.fail_next("/oauth/token", status=400, body=b""),
    "401": lambda t: t.fail_next("/oauth/token", status=401, json={"error": "invalid_token"}),
}
# Failures after which Trakt cannot have refreshed: the next run simply tries again.
NOT_ACTED = {
    "5xx": lambda t: t.fail_next("/oauth/token", status=503, times=5),
    "429": lambda t: t.rate_limit_next("/oauth/token", retry_after=600, times=5),
}
# Failures after which Trakt may have refreshed (the answer was lost): the token is not sent again.
ANSWER_LOST = {
    "timeout": lambda t: t.timeout_next("/oauth/token", times=5),
    "malformed-json": lambda t: t.malformed_next("/oauth/token", times=5),
}
TRANSIENT = {**NOT_ACTED, **ANSWER_LOST}


# -- the function ----------------------------------------------------------------------------


def test_refresh_stores_new_pair_and_old_refresh_token_is_spent(trakt, linked):
    _user, token = linked(expires_in=EXPIRED)
    old_access, old_refresh, _ = snapshot(token)
    seen = []
    signals.token_refreshed.connect(lambda sender, token, **kw: seen.append(token.pk), weak=False, dispatch_uid="t1")
    try:
        result = refresh_token(token)
    finally:
        signals.token_refreshed.disconnect(dispatch_uid="t1")
    assert result.outcome is Outcome.REFRESHED
    access, refresh, expires_at = snapshot(token)
    assert access != old_access and refresh != old_refresh
    assert trakt.is_access_token_valid(access) and not trakt.is_access_token_valid(old_access)
    assert expires_at > dt.datetime.now(dt.UTC) + dt.timedelta(days=6)
    assert token.last_refreshed_at is not None and seen == [token.pk]
    (request,) = trakt.requests_to("/oauth/token")
    assert request.json["grant_type"] == "refresh_token" and request.json["refresh_token"] == old_refresh
    assert request.json["client_secret"] == "test-client-secret"
    assert request.headers["trakt-api-key"] == "test-client-id" and "Authorization" not in request.headers


def test_refresh_not_due_sends_nothing(trakt, linked):
    _user, token = linked(expires_in=FRESH)
    before = snapshot(token)
    assert refresh_token(token).outcome is Outcome.NOT_DUE
    assert snapshot(token) == before and trakt.requests_to("/oauth/token") == []


@pytest.mark.parametrize("inject", REJECTIONS.values(), ids=REJECTIONS.keys())
def test_refresh_rejected_flags_link_and_keeps_token(trakt, linked, inject):
    _user, token = linked(expires_in=EXPIRED)
    before = snapshot(token)
    inject(trakt)
    reasons = []
    signals.token_needs_reauthorization.connect(
        lambda sender, token, reason, **kw: reasons.append(reason), weak=False, dispatch_uid="t2"
    )
    try:
        assert refresh_token(token).outcome is Outcome.NEEDS_REAUTH
    finally:
        signals.token_needs_reauthorization.disconnect(dispatch_uid="t2")
    assert snapshot(token) == before
    assert token.status == TraktToken.Status.NEEDS_REAUTH and token.last_error and reasons
    # Not retried until the user signs in again.
    assert refresh_token(token, force=True).outcome is Outcome.NEEDS_REAUTH
    assert len(trakt.requests_to("/oauth/token")) == 1


@pytest.mark.parametrize("inject", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_refresh_transient_failure_changes_nothing_stored(trakt, linked, inject):
    _user, token = linked(expires_in=EXPIRED)
    before = snapshot(token)
    inject(trakt)
    result = refresh_token(token)
    assert result.outcome is Outcome.FAILED and result.transient
    assert snapshot(token) == before
    assert token.status == TraktToken.Status.ACTIVE
    assert before[0] not in result.detail and before[1] not in result.detail


@pytest.mark.parametrize("inject", NOT_ACTED.values(), ids=NOT_ACTED.keys())
def test_refresh_failure_trakt_did_not_act_on_is_tried_again_next_run(trakt, linked, inject):
    _user, token = linked(expires_in=EXPIRED)
    inject(trakt)
    assert refresh_token(token).outcome is Outcome.FAILED
    token.refresh_from_db()
    assert token.refresh_claimed_by == "" and token.refresh_claim_until is None  # released
    trakt.clear_failures()
    assert refresh_token(token).outcome is Outcome.REFRESHED  # the next run succeeds


@pytest.mark.parametrize("inject", ANSWER_LOST.values(), ids=ANSWER_LOST.keys())
def test_refresh_whose_answer_was_lost_never_sends_the_token_again(trakt, linked, inject):
    # Changed with issue 20: a lost answer may hide a refresh Trakt accepted; sending the
    # same token again would be a reuse (and may revoke the grant), so its claim stands.
    _user, token = linked(expires_in=EXPIRED)
    spent = token.refresh_token
    inject(trakt)
    refresh_token(token)
    trakt.clear_failures()
    token.refresh_from_db()
    assert token.refresh_claimed_by and token.refresh_claim_until > timezone.now()
    again = refresh_token(token, force=True)
    assert again.outcome is Outcome.NOT_DUE and "claimed" in again.detail
    # Once the claim lapses the link is checked with its access token, still not refreshed.
    TraktToken.objects.filter(pk=token.pk).update(refresh_claim_until=timezone.now() - dt.timedelta(seconds=1))
    checked = refresh_token(token, force=True)
    assert checked.outcome is Outcome.NOT_DUE and "not sent again" in checked.detail
    assert trakt.requests_to("/users/settings")[-1].headers["Authorization"] == f"Bearer {token.access_token}"
    assert [r.json["refresh_token"] for r in trakt.requests_to("/oauth/token")] == [spent]
    token.refresh_from_db()
    assert token.status == TraktToken.Status.ACTIVE and token.refresh_claim_until > timezone.now()


def test_lapsed_claim_whose_access_token_trakt_refuses_flags_the_link(trakt, linked):
    _user, token = linked(expires_in=EXPIRED)
    spent = token.refresh_token
    trakt.slow_next("/oauth/token", 0.2)  # in-process: Trakt refreshes, the answer is lost
    with override_settings(
        SOCIALACCOUNT_PROVIDERS={"trakt": {**settings.SOCIALACCOUNT_PROVIDERS["trakt"], "TIMEOUT": 0.1}}
    ):
        assert refresh_token(token).outcome is Outcome.FAILED
    assert trakt.refresh_count(spent) == 1
    TraktToken.objects.filter(pk=token.pk).update(refresh_claim_until=timezone.now() - dt.timedelta(seconds=1))
    reasons = []
    signals.token_needs_reauthorization.connect(
        lambda sender, token, reason, **kw: reasons.append(reason), weak=False, dispatch_uid="lapsed"
    )
    try:
        result = refresh_token(token)
    finally:
        signals.token_needs_reauthorization.disconnect(dispatch_uid="lapsed")
    assert result.outcome is Outcome.NEEDS_REAUTH and reasons and "never stored" in reasons[0]
    token.refresh_from_db()
    assert token.status == TraktToken.Status.NEEDS_REAUTH and token.refresh_claimed_by == ""
    assert trakt.refresh_count(spent, accepted=None) == 1  # never presented twice


def test_refresh_429_reports_retry_after(trakt, linked):
    _user, token = linked(expires_in=EXPIRED)
    trakt.rate_limit_next("/oauth/token", retry_after=42)
    assert refresh_token(token).retry_after == 42


# -- the command ----------------------------------------------------------------------------


def run(*args):
    out = StringIO()
    call_command("refresh_trakt_tokens", "--concurrency", "1", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_command_refreshes_due_links_only(trakt, linked):
    _u1, due = linked(expires_in=dt.timedelta(hours=2))
    _u2, later = linked(expires_in=FRESH)
    due_before, later_before = snapshot(due), snapshot(later)
    output = run()
    assert "1 refreshed, 1 not due, 0 need re-authorization, 0 failed" in output
    assert snapshot(due) != due_before and snapshot(later) == later_before


def test_command_within_option_widens_margin(trakt, linked):
    _user, _token = linked(expires_in=dt.timedelta(days=2))
    assert "0 refreshed, 1 not due" in run()
    assert "1 refreshed, 0 not due" in run("--within", "3d")
    assert trakt.refresh_count() == 1


def test_command_force_dry_run_user_and_limit(trakt, linked):
    u1, t1 = linked(expires_in=FRESH)
    _u2, t2 = linked(expires_in=FRESH)
    before = snapshot(t1), snapshot(t2)
    dry = run("--force", "--dry-run")
    assert "Dry run: 2 links would be refreshed" in dry and (snapshot(t1), snapshot(t2)) == before
    assert "1 refreshed" in run("--force", "--user", u1.username)
    assert snapshot(t1) != before[0] and snapshot(t2) == before[1]
    assert "1 refreshed" in run("--force", "--limit", "1")
    assert trakt.refresh_count() == 2


def test_command_lists_each_link_at_verbosity_2(trakt, linked):
    user, _token = linked(expires_in=EXPIRED)
    output = run("-v", "2")
    assert f"{user.username}: refreshed" in output


@pytest.mark.parametrize("inject", REJECTIONS.values(), ids=REJECTIONS.keys())
def test_command_needs_reauth_is_reported_and_exits_zero(trakt, linked, inject):
    _user, token = linked(expires_in=EXPIRED)
    before = snapshot(token)
    inject(trakt)
    assert "0 refreshed, 0 not due, 1 need re-authorization, 0 failed" in run()
    assert snapshot(token) == before and token.status == TraktToken.Status.NEEDS_REAUTH
    # A flagged link is not looked at again.
    assert "0 refreshed, 0 not due, 0 need re-authorization, 0 failed" in run()


@pytest.mark.parametrize("inject", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_command_transient_failure_exits_nonzero_and_keeps_token(trakt, linked, inject, monkeypatch):
    monkeypatch.setattr("django_trakt.internal.core.clock.sleep", lambda seconds: None)
    _user, token = linked(expires_in=EXPIRED)
    before = snapshot(token)
    inject(trakt)
    with pytest.raises(CommandError) as excinfo:
        run()
    assert excinfo.value.returncode == 1
    assert "0 refreshed, 0 not due, 0 need re-authorization, 1 failed" in str(excinfo.value)
    assert snapshot(token) == before and token.status == TraktToken.Status.ACTIVE


def test_command_retries_5xx_with_backoff_then_succeeds(trakt, linked, monkeypatch):
    waits = []
    monkeypatch.setattr("django_trakt.internal.core.clock.sleep", waits.append)
    linked(expires_in=EXPIRED)
    trakt.fail_next("/oauth/token", status=502, times=2)
    assert "1 refreshed" in run()
    assert waits == [1.0, 2.0] and len(trakt.requests_to("/oauth/token")) == 3


def test_command_honours_short_retry_after_and_leaves_long_one(trakt, linked, monkeypatch):
    waits = []
    monkeypatch.setattr("django_trakt.internal.core.clock.sleep", waits.append)
    linked(expires_in=EXPIRED)
    trakt.rate_limit_next("/oauth/token", retry_after=3)
    assert "1 refreshed" in run()
    assert waits == [3.0]
    linked(expires_in=EXPIRED)
    trakt.rate_limit_next("/oauth/token", retry_after=3600)
    with pytest.raises(CommandError, match="1 failed"):
        run("--max-retry-after", "60")
    assert waits == [3.0]  # an hour is not waited out: left for the next run


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--within", "soon"], "argument --within: expected a duration"),
        (["--limit", "0"], "argument --limit: must be a positive whole number"),
        (["--concurrency", "-2"], "argument --concurrency: must be a positive whole number"),
        (["--concurrency", "500"], "at most 64"),
        (["--max-rate", "fast"], "argument --max-rate: must be a positive number"),
        (["--user", "nobody"], "No user 'nobody'"),
    ],
)
def test_command_bad_option_is_a_clear_error(trakt, args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)


def test_command_without_trakt_app_is_a_clear_error(trakt, linked, settings):
    linked(expires_in=EXPIRED)
    settings.SOCIALACCOUNT_PROVIDERS = {"trakt": {"AUTH_URL": "https://auth.trakt.test"}}
    with pytest.raises(CommandError, match="No Trakt app is configured"):
        run()


# -- on demand: TraktClient.for_user ---------------------------------------------------------


def test_client_uses_valid_token_without_refreshing(trakt, linked):
    user, token = linked(expires_in=FRESH)
    settings_doc = TraktClient.for_user(user).get("/users/settings")
    assert settings_doc["user"]["username"] == user.username
    assert trakt.requests_to("/oauth/token") == []
    (request,) = trakt.requests_to("/users/settings")
    assert request.headers["Authorization"] == f"Bearer {token.access_token}"


def test_client_refreshes_expired_token_first(trakt, linked):
    user, token = linked(expires_in=EXPIRED)
    old_access = token.access_token
    TraktClient.for_user(user).get("/users/settings")
    token.refresh_from_db()
    assert token.access_token != old_access
    (request,) = trakt.requests_to("/users/settings")
    assert request.headers["Authorization"] == f"Bearer {token.access_token}"


def test_client_on_401_refreshes_once_and_retries_once(trakt, linked):
    user, _token = linked(expires_in=FRESH)
    trakt.fail_next("/users/settings", status=401, json={"error": "invalid_token"})
    assert TraktClient.for_user(user).get("/users/settings")["user"]["username"] == user.username
    assert len(trakt.requests_to("/oauth/token")) == 1
    assert len(trakt.requests_to("/users/settings")) == 2


def test_client_on_401_after_another_process_refreshed_uses_new_token(trakt, linked):
    user, token = linked(expires_in=FRESH)
    client = TraktClient.for_user(user)
    refresh_token(token, force=True)  # "another process"
    assert client.get("/users/settings")["user"]["username"] == user.username
    assert trakt.refresh_count() == 1  # no second refresh was spent


@pytest.mark.parametrize("inject", REJECTIONS.values(), ids=REJECTIONS.keys())
def test_client_rejected_refresh_raises_reauthorization_required(trakt, linked, inject):
    user, token = linked(expires_in=EXPIRED)
    before = snapshot(token)
    inject(trakt)
    with pytest.raises(TraktReauthorizationRequired):
        TraktClient.for_user(user).get("/users/settings")
    assert snapshot(token) == before and token.status == TraktToken.Status.NEEDS_REAUTH
    with pytest.raises(TraktReauthorizationRequired):
        TraktClient.for_user(user)


@pytest.mark.parametrize("inject", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_client_transient_refresh_failure_raises_and_keeps_token(trakt, linked, inject):
    user, token = linked(expires_in=EXPIRED)
    before = snapshot(token)
    inject(trakt)
    with pytest.raises(TraktRefreshFailed):
        TraktClient.for_user(user).get("/users/settings")
    assert snapshot(token) == before and token.status == TraktToken.Status.ACTIVE


def test_client_on_demand_refresh_gets_the_full_timeout_not_the_clients(trakt, linked, monkeypatch):
    from django_trakt.internal.api import http

    timeouts = []
    real_send = http.send

    def recording_send(method, url, **kwargs):
        timeouts.append((url.rsplit("/", 2)[-2:], kwargs.get("timeout")))
        return real_send(method, url, **kwargs)

    monkeypatch.setattr("django_trakt.internal.api.oauth.send", recording_send)
    monkeypatch.setattr("django_trakt.internal.links.client.send", recording_send)
    user, _token = linked(expires_in=EXPIRED)
    TraktClient.for_user(user, timeout=1.5).get("/users/settings")
    # A refresh cut short may have rotated the token at Trakt already: it always gets the
    # TIMEOUT setting (None here); the client's short budget is for API calls only.
    assert timeouts == [(["oauth", "token"], None), (["users", "settings"], 1.5)]


def test_client_for_user_without_link_is_typed_error(trakt, db, django_user_model):
    user = django_user_model.objects.create_user("nolink")
    with pytest.raises(TraktNotLinked):
        TraktClient.for_user(user)


def stored_state(token):
    token.refresh_from_db()
    return token.access_token_encrypted, token.refresh_token_encrypted, token.expires_at, token.status


def unknown_expiry(token):
    TraktToken.objects.filter(pk=token.pk).update(expires_at=None)
    token.refresh_from_db()
    return token


# -- unknown expiry --------------------------------------------------------------------------------


def test_refresh_unknown_expiry_is_due_and_learns_it(trakt, linked):
    # Changed with issue 20: such a link was never refreshed by the command; a refresh learns the expiry.
    _user, token = linked()
    unknown_expiry(token)
    assert "1 refreshed" in run()
    token.refresh_from_db()
    assert token.expires_at is not None and trakt.is_access_token_valid(token.access_token)
    assert "0 refreshed" in run()


def test_refresh_unknown_expiry_is_refreshed_when_forced(trakt, linked):
    _user, token = linked()
    unknown_expiry(token)
    assert refresh_token(token, force=True).outcome is Outcome.REFRESHED
    token.refresh_from_db()
    assert token.expires_at is not None and trakt.is_access_token_valid(token.access_token)


def test_client_unknown_expiry_refreshes_once_then_uses_the_new_token(trakt, linked):
    # Changed with issue 20 (an unknown expiry is due): one refresh, which learns the expiry.
    user, token = linked()
    unknown_expiry(token)
    for _ in range(2):
        assert TraktClient.for_user(user).get("/users/settings")["user"]["username"] == user.username
    assert len(trakt.requests_to("/oauth/token")) == 1
    token.refresh_from_db()
    assert token.expires_at is not None
    assert trakt.requests_to("/users/settings")[-1].headers["Authorization"] == f"Bearer {token.access_token}"


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
    before = stored_state(token)
    waits = []
    with override_settings(TRAKT_TOKEN_KEYS=[Fernet.generate_key().decode()]):
        result = refresh_with_retries(token, sleep=waits.append)
    assert result.outcome is Outcome.FAILED and not result.retryable
    assert "TRAKT_TOKEN_KEYS" in result.detail
    assert waits == [] and trakt.requests_to("/oauth/token") == []
    after = stored_state(token)
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
    before = stored_state(token)
    with pytest.raises(TraktSiteMisconfigured, match=r"add django\.contrib\.sites .*REDIRECT_URI") as caught:
        refresh_token(token)
    assert caught.value.setting == "INSTALLED_APPS"
    assert trakt.requests_to("/oauth/token") == []  # the refresh token was not spent
    assert stored_state(token) == before


# -- retries running out ----------------------------------------------------------------------------


def test_refresh_with_retries_5xx_exhausted_returns_failure_after_backoff(trakt, linked):
    _user, token = linked(expires_in=EXPIRED)
    before = stored_state(token)
    trakt.fail_next("/oauth/token", status=503, times=10)
    waits = []
    result = refresh_with_retries(token, server_error_retries=3, backoff=0.5, sleep=waits.append)
    assert result.outcome is Outcome.FAILED and result.retryable
    assert waits == [0.5, 1.0, 2.0]
    assert len(trakt.requests_to("/oauth/token")) == 4
    assert stored_state(token) == before


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


def test_command_names_undecryptable_links_on_every_run(trakt, linked):
    linked(expires_in=EXPIRED)
    with override_settings(TRAKT_TOKEN_KEYS=[Fernet.generate_key().decode()]):
        for _run in range(2):  # the second run finds the link flagged already, and still says so
            err = StringIO()
            with pytest.raises(CommandError, match="1 failed"):
                call_command("refresh_trakt_tokens", "--concurrency", "1", stdout=StringIO(), stderr=err)
            assert "1 links cannot be decrypted with TRAKT_TOKEN_KEYS" in err.getvalue()


# -- queries per token -----------------------------------------------------------------------------


def _statements(run):
    """The SQL statements ``run()`` sends on the default connection (autocommit: no test transaction)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from django_trakt.internal.links.redirect_uri import refresh_redirect_uri

    refresh_redirect_uri()  # the current Site, read once per process (Django caches it)
    with CaptureQueriesContext(connection) as captured:
        outcome = run()
    # Transaction control (SQLite's BEGIN, a COMMIT) is the transactions', not a query of the refresh.
    control = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")
    return outcome, [query["sql"] for query in captured.captured_queries if not query["sql"].startswith(control)]


@pytest.mark.django_db(transaction=True)
def test_a_batch_refresh_is_three_statements_lock_claim_and_compare_and_set(trakt, linked):
    from django_trakt.conf import get_trakt_app
    from django_trakt.internal.links.locks import has_row_locks

    _user, token = linked(expires_in=EXPIRED)
    spent = token.refresh_token
    app = get_trakt_app()
    result, sql = _statements(lambda: refresh_token(token.pk, app=app, skip_locked=True))
    assert result.outcome is Outcome.REFRESHED and trakt.refresh_count(spent) == 1
    if has_row_locks():
        # PostgreSQL: the row lock, the committed claim, the pair written over the spent token.
        lock, claim, store = sql
        assert "FOR UPDATE SKIP LOCKED" in lock
    else:
        # SQLite: its writer lock is taken by a write of the row itself, then the row is read.
        writer_lock, read, claim, store = sql
        assert writer_lock.startswith("UPDATE") and read.startswith("SELECT")
    assert claim.startswith("UPDATE") and "refresh_claimed_by" in claim
    assert store.startswith("UPDATE") and store.count("refresh_token_encrypted") == 2  # SET and WHERE


@pytest.mark.django_db(transaction=True)
def test_an_on_demand_refresh_that_may_wait_for_the_lock_bounds_the_wait_in_one_more_statement(trakt, linked):
    from django_trakt.conf import get_trakt_app
    from django_trakt.internal.links.locks import has_row_locks

    _user, token = linked(expires_in=EXPIRED)
    app = get_trakt_app()
    result, sql = _statements(lambda: refresh_token(token.pk, within=dt.timedelta(minutes=5), app=app))
    assert result.outcome is Outcome.REFRESHED
    if has_row_locks():
        bound, lock, _claim, _store = sql
        assert "lock_timeout" in bound and "FOR UPDATE" in lock and "SKIP LOCKED" not in lock


@pytest.mark.django_db(transaction=True)
def test_the_command_costs_two_statements_per_due_link(trakt, linked):
    """The claim (one UPDATE, on the row as the stream read it) and the store (one UPDATE)."""
    from django_trakt.internal.links.batch import refresh_due_tokens

    def batch_of(links: int) -> int:
        for _ in range(links):
            linked(expires_in=EXPIRED)
        report, sql = _statements(lambda: refresh_due_tokens(concurrency=1))
        assert report.refreshed == links and not report.failed
        return len(sql)

    small, large = batch_of(2), batch_of(6)
    assert large - small == 4 * 2  # the rest is the batch's own, the same for any size


# -- the claim in one statement, on the row as the caller read it ----------------------------------


def test_a_row_read_before_another_refresh_never_sends_its_spent_token(trakt, linked):
    _user, token = linked(expires_in=EXPIRED)
    stale = TraktToken.objects.get(pk=token.pk)
    spent = stale.refresh_token
    assert refresh_token(token.pk).outcome is Outcome.REFRESHED

    # Read before that refresh: the claim by the row as read finds another token and steps
    # back; under the lock the link is fresh (not due), or refreshed with its current token.
    assert refresh_token(stale).outcome is Outcome.NOT_DUE
    assert refresh_token(stale, force=True).outcome is Outcome.REFRESHED
    assert trakt.refresh_count(spent) == 1
    current = TraktToken.objects.get(pk=token.pk)
    assert current.refresh_claimed_by == "" and trakt.is_access_token_valid(current.access_token)


def test_a_row_read_while_another_refresh_held_its_claim_sends_nothing(trakt, linked):
    _user, token = linked(expires_in=EXPIRED)
    stale = TraktToken.objects.get(pk=token.pk)
    TraktToken.objects.filter(pk=token.pk).update(
        refresh_claimed_by="another process", refresh_claim_until=timezone.now() + dt.timedelta(minutes=1)
    )
    result = refresh_token(stale, force=True)
    assert result.outcome is Outcome.NOT_DUE and "claimed" in result.detail
    assert trakt.refresh_count() == 0
