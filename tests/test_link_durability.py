"""No link is ever lost: every pair Trakt issues is stored, whatever happens around the refresh.

Each test spends a real refresh token at the local Trakt and then checks what a user
would live with: the stored pair works at Trakt, and Trakt saw no refresh token twice
(``refresh_count(accepted=False) == 0``: a rejected one is a user who must sign in again).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError, connection, connections, transaction
from django.test import modify_settings

from django_trakt.exceptions import TraktRefreshFailed, TraktTimeout
from django_trakt.internal.links import durability
from django_trakt.internal.links.batch import refresh_due_tokens
from django_trakt.internal.links.client import TraktClient
from django_trakt.internal.links.outcomes import Outcome
from django_trakt.internal.links.refresh import refresh_token
from django_trakt.models import TraktToken
from tests import views
from tests.conftest import link_user, make_emulator

EXPIRED = -dt.timedelta(hours=1)


def assert_link_works(trakt, token: TraktToken, spent_refresh_token: str) -> None:
    token.refresh_from_db()
    assert token.status == TraktToken.Status.ACTIVE
    assert token.refresh_token != spent_refresh_token
    assert trakt.is_access_token_valid(token.access_token)
    assert trakt.refresh_count(spent_refresh_token) == 1
    assert trakt.refresh_count(accepted=False) == 0


# -- inside the caller's transaction ------------------------------------------------------------


def test_command_with_defaults_inside_a_test_transaction_refreshes_every_link(trakt, linked):
    links = [linked(expires_in=EXPIRED) for _ in range(5)]
    spent = {token.pk: token.refresh_token for _user, token in links}
    out, err = StringIO(), StringIO()
    call_command("refresh_trakt_tokens", stdout=out, stderr=err)  # default --concurrency 4
    assert "5 refreshed" in out.getvalue()
    # Not said: at the default concurrency, one at a time changes nothing anyone asked for
    # (issue 23; with --concurrency it is said once, tests/test_command_options.py).
    assert err.getvalue() == ""
    for _user, token in links:
        assert_link_works(trakt, token, spent[token.pk])


def test_batch_inside_a_callers_atomic_block_sends_nothing(trakt, linked):
    # Changed with issue 20: a refresh never joins its caller's transaction. In a test's
    # transaction the link is uncommitted (no other connection sees it), and on SQLite the
    # caller may hold the one writer lock: the refresh declines before anything is sent.
    _user, token = linked(expires_in=EXPIRED)
    spent = token.refresh_token
    with transaction.atomic():
        report = refresh_due_tokens(concurrency=8)
    assert report.refreshed == 0 and report.failed == 1 and "transaction" in report.sequential_reason
    assert trakt.requests_to("/oauth/token") == []
    assert refresh_due_tokens().refreshed == 1  # outside the caller's block
    assert_link_works(trakt, token, spent)


def _refreshes_beside_callers_transaction() -> bool:
    """PostgreSQL refreshes on a connection of its own; SQLite declines (nothing sent)."""
    return connection.vendor == "postgresql"


@pytest.fixture
def atomic_requests(monkeypatch):
    monkeypatch.setitem(connections.settings["default"], "ATOMIC_REQUESTS", True)
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    views.SEEN.clear()


def _view_raises_after_refresh_then_next_request_uses_new_pair(trakt, client, *, committed: bool):
    user, token = link_user(trakt, expires_in=EXPIRED)
    spent = token.refresh_token
    client.force_login(user)
    beside = committed and _refreshes_beside_callers_transaction()
    expected = views.ViewFailedAfterRefresh if beside else TraktRefreshFailed
    with pytest.raises(expected):
        client.get("/test/settings-then-fail/")
    assert views.SEEN == [True]  # the view ran inside its own transaction (ATOMIC_REQUESTS)
    if beside:
        # Refreshed and committed on its own connection, then the view's transaction rolled back.
        assert trakt.refresh_count(spent) == 1
    else:
        assert trakt.requests_to("/oauth/token") == []  # declined: nothing spent
        assert refresh_due_tokens().refreshed == 1  # the scheduled run refreshes it

    response = client.get("/test/settings/")
    assert response.status_code == 200 and response.content.decode() == user.username
    assert_link_works(trakt, token, spent)
    last_call = trakt.requests_to("/users/settings")[-1]
    assert last_call.headers["Authorization"] == f"Bearer {token.access_token}"


def test_view_under_atomic_requests_raises_after_refresh_in_a_test_transaction(trakt, client, db, atomic_requests):
    _view_raises_after_refresh_then_next_request_uses_new_pair(trakt, client, committed=False)


@pytest.mark.django_db(transaction=True)
def test_view_under_atomic_requests_raises_after_refresh_committed_database(trakt, client, atomic_requests):
    _view_raises_after_refresh_then_next_request_uses_new_pair(trakt, client, committed=True)


def _outer_rolls_back(refresh):
    with pytest.raises(RuntimeError), transaction.atomic():
        refresh()
        raise RuntimeError("the caller changes its mind")


def _savepoint_rolls_back_outer_commits(refresh):
    with transaction.atomic(), pytest.raises(RuntimeError), transaction.atomic():
        refresh()
        raise RuntimeError("an inner block fails")


def _unique_violation_after_refresh(refresh):
    from django.db import IntegrityError

    with pytest.raises(IntegrityError), transaction.atomic():
        refresh()
        TraktToken.objects.create(account=TraktToken.objects.get().account, access_token_encrypted="x")


CALLER_ENDINGS = {
    "outer-rolled-back": _outer_rolls_back,
    "savepoint-rolled-back-outer-commits": _savepoint_rolls_back_outer_commits,
    "database-error-in-callers-block": _unique_violation_after_refresh,
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("caller", CALLER_ENDINGS.values(), ids=CALLER_ENDINGS.keys())
def test_callers_transaction_failing_after_a_refresh_loses_nothing(trakt, caller):
    _user, token = link_user(trakt, expires_in=EXPIRED)
    spent = token.refresh_token
    results = []
    caller(lambda: results.append(refresh_token(token.pk)))
    (result,) = results
    if _refreshes_beside_callers_transaction():
        assert result.outcome is Outcome.REFRESHED  # committed on its own connection
    else:
        assert result.outcome is Outcome.FAILED and "nothing was sent" in result.detail
        assert trakt.requests_to("/oauth/token") == []
        assert refresh_token(token.pk).outcome is Outcome.REFRESHED
    assert_link_works(trakt, token, spent)


def test_manual_transaction_management_is_a_callers_transaction(trakt, linked):
    assert durability.in_callers_transaction() is False  # a TestCase's own blocks do not count
    with transaction.atomic():
        assert durability.in_callers_transaction() is True


# -- database errors after Trakt answered --------------------------------------------------------


class FailPairWrites:
    """Fails the first ``times`` writes of a refreshed pair, as a busy or flaky database would."""

    def __init__(self, times: int) -> None:
        self.times = times

    def __call__(self, execute, sql, params, many, context):
        if self.times and sql.lstrip().upper().startswith("UPDATE") and "access_token_encrypted" in sql:
            self.times -= 1
            raise OperationalError("database is locked")
        return execute(sql, params, many, context)


def test_a_save_that_fails_once_after_trakt_answered_still_stores_the_pair(trakt, linked):
    _user, token = linked(expires_in=EXPIRED)
    spent = token.refresh_token
    with connection.execute_wrapper(FailPairWrites(times=1)):
        result = refresh_token(token)
    assert result.outcome is Outcome.REFRESHED
    assert_link_works(trakt, token, spent)


@pytest.mark.django_db(transaction=True)
def test_saves_failing_for_a_while_are_retried_on_new_connections_until_stored(trakt):
    _user, token = link_user(trakt, expires_in=EXPIRED)
    spent = token.refresh_token
    opened = []
    # Each retry runs on a new connection: count the connections the writes went through.
    fail = FailPairWrites(times=5)

    def watch(execute, sql, params, many, context):
        opened.append(id(context["connection"].connection))
        return fail(execute, sql, params, many, context)

    with connection.execute_wrapper(watch):
        result = refresh_token(token)
    assert result.outcome is Outcome.REFRESHED
    assert_link_works(trakt, token, spent)
    if connection.vendor == "postgresql":  # an in-memory SQLite database is never closed
        assert len(set(opened)) >= 5


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="kills a PostgreSQL session")
def test_connection_killed_before_the_pair_is_stored_stores_it_on_a_new_one(trakt):
    _user, token = link_user(trakt, expires_in=EXPIRED)
    spent = token.refresh_token
    killed = []

    def kill_own_session(execute, sql, params, many, context):
        if not killed and sql.lstrip().upper().startswith("UPDATE") and "access_token_encrypted" in sql:
            pid = context["connection"].connection.info.backend_pid
            killer = threading.Thread(target=_terminate_backend, args=(pid,))
            killer.start()
            killer.join()
            killed.append(pid)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(kill_own_session):
        result = refresh_token(token)
    assert killed and result.outcome is Outcome.REFRESHED
    assert_link_works(trakt, token, spent)
    assert TraktToken.objects.get(pk=token.pk).refresh_claimed_by == ""


def _terminate_backend(pid: int) -> None:
    # From another thread: a connection of its own, as a failover or a PgBouncer restart would.
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        connections["default"].close()


def test_a_database_error_before_trakt_is_asked_spends_nothing(trakt, linked):
    _user, token = linked(expires_in=EXPIRED)

    def fail_lock(execute, sql, params, many, context):
        if TraktToken._meta.db_table in sql and "access_token_encrypted = " not in sql.replace('"', ""):
            raise OperationalError("database is locked")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(fail_lock):
        result = refresh_token(token)
    assert result.outcome is Outcome.FAILED and result.retryable
    assert trakt.requests_to("/oauth/token") == []
    token.refresh_from_db()
    assert token.refresh_claimed_by == ""
    assert refresh_token(token).outcome is Outcome.REFRESHED


# -- the page's budget ---------------------------------------------------------------------------


def test_timed_out_refresh_is_not_retried_at_once(trakt, linked, settings):
    from django_trakt.internal.links.retries import refresh_with_retries

    settings.SOCIALACCOUNT_PROVIDERS = {"trakt": {**settings.SOCIALACCOUNT_PROVIDERS["trakt"], "TIMEOUT": 0.2}}
    _user, token = linked(expires_in=EXPIRED)
    before = token.refresh_token_encrypted
    trakt.slow_next("/oauth/token", 0.5)
    result = refresh_with_retries(token, sleep=lambda seconds: None)
    assert result.outcome is Outcome.FAILED and not result.retryable
    # Trakt rotated the token, the answer was lost: a retry would be rejected, so none is sent.
    assert len(trakt.requests_to("/oauth/token")) == 1 and trakt.refresh_count(accepted=False) == 0
    token.refresh_from_db()
    assert token.refresh_token_encrypted == before and token.status == TraktToken.Status.ACTIVE


def test_render_keeps_a_token_that_still_works_instead_of_refreshing(trakt, linked):
    from django.template import Context, Template

    user, token = linked(expires_in=dt.timedelta(minutes=2))  # due on demand, not expired
    trakt.slow_next("/oauth/token", 3.5)  # would cost the page its budget, were it asked
    html = Template("{% load trakt %}{% trakt_watchlist user as items %}{{ items|length }}").render(
        Context({"user": user})
    )
    assert html.strip() == "0"
    assert trakt.requests_to("/oauth/token") == []
    assert trakt.is_access_token_valid(token.access_token)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs a second connection that sees the row")
def test_render_with_a_slow_token_endpoint_answers_within_its_budget_and_keeps_the_link():
    from django.template import Context, Template

    trakt = make_emulator()
    with trakt.serve() as server, _provider_hosts(server.url):
        user, token = link_user(trakt, expires_in=EXPIRED)
        spent = token.refresh_token
        trakt.slow_next("/oauth/token", 3.5)
        Template("{% load trakt %}{% trakt_watchlist user as items %}{{ items|length }}").render(
            Context({"user": user})
        )
        # The page gave up waiting (TRAKT_PAGE_TIMEOUT is 3 s) while the refresh, on its own
        # connection, still waits for Trakt's answer: it is not the page's to abandon.
        refreshing = [thread for thread in threading.enumerate() if thread.name.startswith("trakt-refresh-")]
        assert refreshing and all(thread.is_alive() for thread in refreshing)
        for thread in refreshing:
            if thread.name.startswith("trakt-refresh-"):
                thread.join(timeout=15)
        assert_link_works(trakt, token, spent)
        assert TraktClient.for_user(user).get("/users/settings")["user"]["username"] == user.username


class _provider_hosts:
    """Point the provider at a served local Trakt (settings are process-wide: threads see them)."""

    def __init__(self, url: str) -> None:
        from django.conf import settings
        from django.test import override_settings

        provider = {**settings.SOCIALACCOUNT_PROVIDERS["trakt"], "AUTH_URL": url, "API_URL": url, "WEB_URL": url}
        self._override = override_settings(SOCIALACCOUNT_PROVIDERS={"trakt": provider})

    def __enter__(self):
        self._override.enable()

    def __exit__(self, *exc_info):
        self._override.disable()


# -- site configuration faults ------------------------------------------------------------------


def _wrong_secret(trakt, settings):
    provider = settings.SOCIALACCOUNT_PROVIDERS["trakt"]
    settings.SOCIALACCOUNT_PROVIDERS = {"trakt": {**provider, "APP": {**provider["APP"], "secret": "rotated"}}}


def _invalid_client_400(trakt, settings):
    trakt.fail_next("/oauth/token", status=400, json={"error": "invalid_client"}, times=99)


def _rejected_redirect_uri(trakt, settings):
    provider = settings.SOCIALACCOUNT_PROVIDERS["trakt"]
    settings.SOCIALACCOUNT_PROVIDERS = {"trakt": {**provider, "REDIRECT_URI": "https://elsewhere.test/callback/"}}


def _disabled_app(trakt, settings):
    trakt.disable_app(settings.TRAKT_CLIENT_ID)


def _placeholder_site(trakt, settings):
    from django.contrib.sites.models import Site

    Site.objects.filter(pk=settings.SITE_ID).update(domain="example.com")
    Site.objects.clear_cache()


def _missing_site(trakt, settings):
    from django.contrib.sites.models import Site

    Site.objects.all().delete()
    Site.objects.clear_cache()


def _fix(trakt, settings, original_providers):
    from django.contrib.sites.models import Site

    settings.SOCIALACCOUNT_PROVIDERS = original_providers
    trakt.clear_failures()
    trakt.disabled_apps.clear()
    Site.objects.update_or_create(pk=settings.SITE_ID, defaults={"domain": "testserver", "name": "Test site"})
    Site.objects.clear_cache()


SITE_FAULTS = {
    "wrong-secret-401": (_wrong_secret, "client_id/secret", True),
    "invalid-client-400": (_invalid_client_400, "client_id/secret", True),
    "rejected-redirect-uri": (_rejected_redirect_uri, "REDIRECT_URI", True),
    "disabled-app-403": (_disabled_app, "HTTP 403", True),
    "placeholder-site": (_placeholder_site, "example.com", False),
    "missing-site": (_missing_site, "SITE_ID", False),
}


@pytest.mark.parametrize(("break_site", "named", "asks_trakt"), SITE_FAULTS.values(), ids=SITE_FAULTS.keys())
def test_site_fault_flags_no_link_stops_the_command_and_every_link_refreshes_after_the_fix(
    trakt, linked, settings, break_site, named, asks_trakt
):
    original_providers = settings.SOCIALACCOUNT_PROVIDERS
    links = [linked(expires_in=EXPIRED) for _ in range(3)]
    spent = {token.pk: token.refresh_token for _user, token in links}
    break_site(trakt, settings)

    with pytest.raises(CommandError) as stopped:
        call_command("refresh_trakt_tokens", stdout=StringIO(), stderr=StringIO())
    assert stopped.value.returncode == 3
    message = str(stopped.value)
    assert named in message and "\n" not in message and "No link was flagged" in message
    # Stopped at the first: at most one refresh was tried, and none was spent.
    assert len(trakt.requests_to("/oauth/token")) == (1 if asks_trakt else 0)
    assert trakt.refresh_count(accepted=None) == 0 or trakt.refresh_count(accepted=False) == 0
    for _user, token in links:
        token.refresh_from_db()
        assert token.status == TraktToken.Status.ACTIVE and token.refresh_token == spent[token.pk]

    _fix(trakt, settings, original_providers)
    out = StringIO()
    call_command("refresh_trakt_tokens", stdout=out, stderr=StringIO())
    assert "3 refreshed" in out.getvalue() and "0 failed" in out.getvalue()
    for _user, token in links:
        assert_link_works(trakt, token, spent[token.pk])


@modify_settings(INSTALLED_APPS={"remove": ["django.contrib.sites"]})
def test_without_the_sites_framework_the_command_names_both_fixes(trakt, linked):
    linked(expires_in=EXPIRED)
    with pytest.raises(CommandError, match=r"django\.contrib\.sites.*REDIRECT_URI") as stopped:
        call_command("refresh_trakt_tokens", stdout=StringIO(), stderr=StringIO())
    assert stopped.value.returncode == 3


def test_redirect_uri_setting_lets_refresh_work_without_sites(trakt, linked, settings):
    from tests.conftest import CALLBACK_URL

    provider = settings.SOCIALACCOUNT_PROVIDERS["trakt"]
    settings.SOCIALACCOUNT_PROVIDERS = {"trakt": {**provider, "REDIRECT_URI": CALLBACK_URL}}
    _user, token = linked(expires_in=EXPIRED)
    spent = token.refresh_token
    with modify_settings(INSTALLED_APPS={"remove": ["django.contrib.sites"]}):
        assert refresh_token(token).outcome is Outcome.REFRESHED
    assert trakt.requests_to("/oauth/token")[-1].json["redirect_uri"] == CALLBACK_URL
    assert_link_works(trakt, token, spent)


def test_a_403_for_one_user_while_the_app_is_fine_flags_nothing(trakt, linked):
    _user, token = linked(expires_in=EXPIRED)
    trakt.fail_next("/oauth/token", status=403, body="<html>blocked</html>")
    result = refresh_token(token)
    assert result.outcome is Outcome.FAILED
    token.refresh_from_db()
    assert token.status == TraktToken.Status.ACTIVE
    # The app check asked Trakt with the site's credentials only.
    probe = trakt.requests_to("/oauth/revoke")[-1].json
    assert probe["client_id"] == "test-client-id" and probe["token"] == "django-trakt-credentials-check"


def test_a_bare_401_with_the_app_accepted_is_the_users_grant(trakt, linked):
    _user, token = linked(expires_in=EXPIRED)
    trakt.fail_next("/oauth/token", status=401)
    assert refresh_token(token).outcome is Outcome.NEEDS_REAUTH


def test_site_fault_from_the_client_flags_nothing(trakt, linked, settings):
    from django_trakt.exceptions import TraktSiteMisconfigured

    user, token = linked(expires_in=EXPIRED)
    _wrong_secret(trakt, settings)
    with pytest.raises(TraktSiteMisconfigured):
        TraktClient.for_user(user).get("/users/settings")
    token.refresh_from_db()
    assert token.status == TraktToken.Status.ACTIVE


# -- disconnect during a refresh -------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_disconnect_racing_a_refresh_leaves_no_live_pair_at_trakt():
    from django_trakt.internal.links.revocation import unlink

    trakt = make_emulator()
    with trakt.serve() as server, _provider_hosts(server.url):
        user, token = link_user(trakt, expires_in=EXPIRED)
        trakt.slow_next("/oauth/token", 1.0)
        outcome: list[Outcome] = []

        def refresh():
            try:
                outcome.append(refresh_token(token.pk).outcome)
            finally:
                connections["default"].close()

        refresher = threading.Thread(target=refresh)
        refresher.start()
        deadline = time.monotonic() + 5
        while not trakt.requests_to("/oauth/token") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert trakt.requests_to("/oauth/token"), "the refresh never reached Trakt"
        # Changed with issue 20: the row lock is held only while the claim is written, not
        # while Trakt answers; the unlink goes ahead and the refresh, finding the link gone,
        # revokes the pair Trakt gave it (nobody holds it).
        unlink(token.account)
        refresher.join(timeout=15)
        assert outcome == [Outcome.NOT_DUE]
        assert trakt.active_tokens(user.username) == []
        assert not TraktToken.objects.filter(pk=token.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_threaded_command_stops_at_the_first_site_fault_after_one_request(trakt, settings):
    links = [link_user(trakt, expires_in=EXPIRED) for _ in range(6)]
    _wrong_secret(trakt, settings)
    with pytest.raises(CommandError) as stopped:
        call_command("refresh_trakt_tokens", "--concurrency", "4", stdout=StringIO(), stderr=StringIO())
    assert stopped.value.returncode == 3
    assert len(trakt.requests_to("/oauth/token")) == 1
    assert all(token.status == TraktToken.Status.ACTIVE for token in TraktToken.objects.all())
    assert len(links) == TraktToken.objects.count()


# -- a whole answer within its deadline -------------------------------------------------------------


def test_a_trickled_refresh_answer_ends_at_its_deadline_and_its_token_is_not_sent_again(db):
    from django.conf import settings
    from django.test import override_settings

    trakt = make_emulator()
    with trakt.serve() as server, _provider_hosts(server.url):
        provider = settings.SOCIALACCOUNT_PROVIDERS["trakt"]
        # Nested, so leaving it restores the served hosts' override, and that one the original.
        with override_settings(SOCIALACCOUNT_PROVIDERS={"trakt": {**provider, "TIMEOUT": 1.0}}):
            _user, token = link_user(trakt, expires_in=EXPIRED)
            spent = token.refresh_token
            trakt.trickle_next("/oauth/token", 0.1)  # about 30 s for the whole answer, no read ever waits 1 s
            started = time.monotonic()
            result = refresh_token(token)
            took = time.monotonic() - started
            assert result.outcome is Outcome.FAILED and "in time" in result.detail and took < 2.0
            assert trakt.refresh_count(spent) == 1  # Trakt acted on it: the answer is what was lost
            token.refresh_from_db()
            assert token.refresh_token == spent and token.refresh_claimed_by  # the claim stands
            again = refresh_token(token, force=True)
        assert again.outcome is Outcome.NOT_DUE and trakt.refresh_count(spent, accepted=None) == 1


def test_a_trickled_api_answer_ends_at_the_clients_deadline(db):
    trakt = make_emulator()
    with trakt.serve() as server, _provider_hosts(server.url):
        user, _token = link_user(trakt)
        trakt.trickle_next("/users/settings", 0.1)
        started = time.monotonic()
        with pytest.raises(TraktTimeout):
            TraktClient.for_user(user, timeout=0.5).get("/users/settings")
        assert time.monotonic() - started < 1.5
