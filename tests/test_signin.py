"""Sign in with Trakt end to end: Django's test client against the local Trakt."""

from __future__ import annotations

import base64
import hashlib
import logging
from urllib.parse import parse_qs, urlsplit

import pytest
from allauth.socialaccount.models import SocialAccount, SocialToken
from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import override_settings
from django.urls import reverse

from django_trakt import __version__
from django_trakt.models import TraktToken

pytestmark = pytest.mark.django_db

User = get_user_model()


def start(client, **data):
    """POST to the provider's login view (allauth's default) -> the authorize URL."""
    response = client.post(reverse("trakt_login"), data)
    assert response.status_code == 302
    return response["Location"]


def sign_in(client, trakt, username=None, decision="approve", **data):
    callback = trakt.authorize(start(client, **data), username=username, decision=decision)
    return client.get(callback)


def signup_form(client, response, email="wanda@example.com", username=None):
    assert response.status_code == 302 and response["Location"] == reverse("socialaccount_signup")
    page = client.get(reverse("socialaccount_signup"))
    assert page.status_code == 200
    data = {"email": email}
    if username is not None:
        data["username"] = username
    else:
        data["username"] = page.context["form"].initial.get("username", "")
    return page, client.post(reverse("socialaccount_signup"), data)


def only_token():
    return TraktToken.objects.select_related("account").get()


def assert_nothing_saved():
    assert SocialAccount.objects.count() == 0
    assert TraktToken.objects.count() == 0
    assert User.objects.count() == 0


# -- the authorize redirect --------------------------------------------------------------


def test_login_redirects_to_auth_host_with_state_and_s256_challenge(client, trakt):
    url = urlsplit(start(client))
    query = parse_qs(url.query)
    assert f"{url.scheme}://{url.netloc}{url.path}" == "https://auth.trakt.test/oauth/authorize"
    assert query["response_type"] == ["code"]
    assert query["client_id"] == ["test-client-id"]
    assert query["redirect_uri"] == ["http://testserver/accounts/trakt/login/callback/"]
    assert query["state"][0]
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43
    assert "scope" not in query


def test_pkce_can_be_turned_off_the_allauth_way(client, settings):
    providers = {"trakt": {**settings.SOCIALACCOUNT_PROVIDERS["trakt"], "OAUTH_PKCE_ENABLED": False}}
    with override_settings(SOCIALACCOUNT_PROVIDERS=providers):
        query = parse_qs(urlsplit(start(client)).query)
    assert "code_challenge" not in query and query["state"][0]


def test_hosts_are_read_at_run_time(client, settings):
    providers = {"trakt": {**settings.SOCIALACCOUNT_PROVIDERS["trakt"], "AUTH_URL": "https://auth.staging.example/"}}
    with override_settings(SOCIALACCOUNT_PROVIDERS=providers):
        assert start(client).startswith("https://auth.staging.example/oauth/authorize?")


# -- the three flows ---------------------------------------------------------------------


def test_new_user_signs_up_with_email_and_trakt_username(client, trakt):
    response = sign_in(client, trakt)
    page, done = signup_form(client, response)
    # The form suggests the Trakt username (not the display name) and asks for an email.
    assert page.context["form"].initial["username"] == "Watcher"
    assert "Wanda Watcher" not in str(page.context["form"].initial)
    assert page.context["form"].fields["email"].required
    assert done.status_code == 302

    account = SocialAccount.objects.get()
    user = account.user
    assert (user.username, user.email) == ("Watcher", "wanda@example.com")
    assert account.uid == trakt.get_user("Watcher").uuid
    assert account.extra_data["user"]["username"] == "Watcher"
    assert str(account.get_provider_account()) == "Watcher"
    assert account.get_profile_url() == "https://trakt.test/users/watcher"
    assert account.get_avatar_url() is None  # never a hotlink to Trakt's images

    token = only_token()
    assert token.account == account and token.status == TraktToken.Status.ACTIVE
    assert trakt.is_access_token_valid(token.access_token)
    assert token.expires_at is not None and token.token_type == "bearer"


def test_new_user_token_is_written_only_when_account_is_saved(client, trakt):
    response = sign_in(client, trakt)
    assert response["Location"] == reverse("socialaccount_signup")
    assert TraktToken.objects.count() == 0 and SocialAccount.objects.count() == 0
    signup_form(client, response)
    assert TraktToken.objects.count() == 1


def test_token_exchange_request_is_json_with_verifier_headers_and_no_basic_auth(client, trakt):
    authorize_url = start(client)
    challenge = parse_qs(urlsplit(authorize_url).query)["code_challenge"][0]
    client.get(trakt.authorize(authorize_url))

    (exchange,) = trakt.requests_to("/oauth/token")
    assert exchange.method == "POST"
    assert exchange.headers["Content-Type"] == "application/json"
    assert "Authorization" not in exchange.headers
    body = exchange.json
    assert body["grant_type"] == "authorization_code"
    assert body["client_id"] == "test-client-id" and body["client_secret"] == "test-client-secret"
    assert body["redirect_uri"] == "http://testserver/accounts/trakt/login/callback/"
    verifier_hash = base64.urlsafe_b64encode(hashlib.sha256(body["code_verifier"].encode()).digest())
    assert verifier_hash.rstrip(b"=").decode() == challenge

    for recorded in (exchange, *trakt.requests_to("/users/settings")):
        assert recorded.headers["trakt-api-version"] == "2"
        assert recorded.headers["trakt-api-key"] == "test-client-id"
        assert recorded.headers["User-Agent"] == f"django-trakt/{__version__}"
    (profile,) = trakt.requests_to("/users/settings")
    assert profile.headers["Authorization"].startswith("Bearer ")


def test_site_user_agent_goes_first_and_library_is_still_named(client, trakt, settings):
    providers = {"trakt": {**settings.SOCIALACCOUNT_PROVIDERS["trakt"], "USER_AGENT": "mysite/2.1"}}
    with override_settings(SOCIALACCOUNT_PROVIDERS=providers):
        sign_in(client, trakt)
    (exchange,) = trakt.requests_to("/oauth/token")
    assert exchange.headers["User-Agent"] == f"mysite/2.1 django-trakt/{__version__}"


def test_returning_user_after_rename_finds_same_account_and_tokens_are_replaced(client, trakt):
    signup_form(client, sign_in(client, trakt))
    first = only_token()
    first_access, first_refresh = first.access_token, first.refresh_token
    client.logout()

    trakt.rename_user("Watcher", "Wanda")
    response = sign_in(client, trakt, username="Wanda")
    assert response.status_code == 302 and response["Location"] != reverse("socialaccount_signup")
    assert response.wsgi_request.user.is_authenticated

    account = SocialAccount.objects.get()
    assert User.objects.count() == 1
    assert account.extra_data["user"]["ids"]["slug"] == "wanda"
    assert account.get_profile_url() == "https://trakt.test/users/wanda"
    token = only_token()
    assert token.pk == first.pk
    assert token.access_token != first_access and token.refresh_token != first_refresh
    assert trakt.is_access_token_valid(token.access_token)


def test_returning_user_sign_in_clears_needs_reauthorization(client, trakt):
    signup_form(client, sign_in(client, trakt))
    TraktToken.objects.update(status=TraktToken.Status.NEEDS_REAUTH, last_error="invalid_grant")
    client.logout()
    sign_in(client, trakt)
    token = only_token()
    assert token.status == TraktToken.Status.ACTIVE and token.last_error == ""


def test_signed_in_user_connects_trakt(client, trakt):
    user = User.objects.create_user("existing", "existing@example.com", "pw")
    client.force_login(user)
    response = sign_in(client, trakt, process="connect")
    assert response.status_code == 302
    account = SocialAccount.objects.get()
    assert account.user == user and User.objects.count() == 1
    token = only_token()
    assert token.account == account and trakt.is_access_token_valid(token.access_token)


def test_connecting_trakt_account_of_another_user_is_refused_and_leaves_their_link(client, trakt):
    signup_form(client, sign_in(client, trakt))
    owner_token = only_token()
    access, refresh = owner_token.access_token, owner_token.refresh_token
    client.logout()
    intruder = User.objects.create_user("intruder", "intruder@example.com", "pw")
    client.force_login(intruder)
    response = sign_in(client, trakt, process="connect")
    assert response.status_code == 302
    account = SocialAccount.objects.get()
    assert account.user.username == "Watcher"  # still the owner's
    after = only_token()
    assert (after.access_token, after.refresh_token) == (access, refresh)


@override_settings(SOCIALACCOUNT_STORE_TOKENS=True)
def test_connecting_another_users_trakt_account_writes_nothing_of_theirs_and_revokes_the_grant(client, trakt):
    """allauth's lookup would overwrite the owner's extra_data and SocialToken before its connect
    step refuses: the refusal comes before that lookup, so none of the owner's rows change."""
    signup_form(client, sign_in(client, trakt))
    owner_account = SocialAccount.objects.get()
    # A profile the intruder's connect would replace (Trakt answers the current one).
    marked = {**owner_account.extra_data, "user": {**owner_account.extra_data["user"], "name": "as stored"}}
    SocialAccount.objects.filter(pk=owner_account.pk).update(extra_data=marked)
    owner_token = only_token()
    access, refresh, expiry = owner_token.access_token, owner_token.refresh_token, owner_token.expires_at
    allauth_token = SocialToken.objects.values("token", "token_secret", "expires_at").get()
    client.logout()
    intruder = User.objects.create_user("intruder", "intruder@example.com", "pw")
    client.force_login(intruder)
    trakt.reset_requests()

    response = sign_in(client, trakt, process="connect")

    assert response.status_code == 302 and response["Location"] == reverse("socialaccount_connections")
    page = client.get(response["Location"]).content.decode()
    assert "The third-party account is already connected to a different account." in page
    account = SocialAccount.objects.get()
    assert account.pk == owner_account.pk and account.user.username == "Watcher"
    assert account.extra_data == marked
    after = only_token()
    assert (after.access_token, after.refresh_token, after.expires_at) == (access, refresh, expiry)
    assert after.status == TraktToken.Status.ACTIVE
    assert SocialToken.objects.values("token", "token_secret", "expires_at").get() == allauth_token
    # The grant Trakt issued to the intruder's connect is nobody's: revoked at Trakt at once.
    assert len(trakt.requests_to("/oauth/revoke")) == 1
    assert [pair.access_token for pair in trakt.active_tokens()] == [access]


# -- bad input: a clear error page, nothing saved ------------------------------------------


def assert_auth_error(response):
    assert response.status_code < 500  # allauth answers 401 with its error page
    assert "Third-Party Login Failure" in response.content.decode()
    assert_nothing_saved()


def test_denied_consent_shows_cancelled_page_and_saves_nothing(client, trakt):
    response = sign_in(client, trakt, decision="deny")
    assert response.status_code == 302 and response["Location"] == reverse("socialaccount_login_cancelled")
    page = client.get(response["Location"])
    assert page.status_code == 200 and "Login Cancelled" in page.content.decode()
    assert_nothing_saved()
    assert trakt.requests_to("/oauth/token") == []


def test_missing_state_is_an_authentication_error(client, trakt):
    callback = trakt.authorize(start(client))
    query = parse_qs(urlsplit(callback).query)
    assert_auth_error(client.get(reverse("trakt_callback"), {"code": query["code"][0]}))
    assert trakt.requests_to("/oauth/token") == []


def test_forged_state_is_an_authentication_error(client, trakt):
    callback = trakt.authorize(start(client))
    query = parse_qs(urlsplit(callback).query)
    assert_auth_error(client.get(reverse("trakt_callback"), {"code": query["code"][0], "state": "forged"}))
    assert trakt.requests_to("/oauth/token") == []


def test_replayed_code_is_an_authentication_error(client, trakt):
    authorize_url = start(client)
    callback = trakt.authorize(authorize_url)
    query = parse_qs(urlsplit(callback).query)
    # The first use is spent at Trakt (as if an attacker had raced the user to it).
    first = client.get(callback)
    assert first.status_code == 302
    client.logout()
    SocialAccount.objects.all().delete()
    User.objects.all().delete()
    replay_state = parse_qs(urlsplit(trakt.authorize(start(client))).query)["state"][0]
    response = client.get(reverse("trakt_callback"), {"code": query["code"][0], "state": replay_state})
    assert_auth_error(response)
    assert trakt.requests_to("/oauth/token")[-1].json["code"] == query["code"][0]


@pytest.mark.parametrize(
    "inject",
    [
        pytest.param(
            lambda t: t.fail_next("/oauth/token", status=400, json={"error": "invalid_grant"}), id="invalid_grant"
        ),
        pytest.param(lambda t: t.fail_next("/oauth/token", status=503), id="token-5xx"),
        pytest.param(lambda t: t.timeout_next("/oauth/token"), id="token-timeout"),
        pytest.param(lambda t: t.malformed_next("/oauth/token"), id="token-malformed"),
        pytest.param(lambda t: t.cloudflare_next("/oauth/token"), id="token-cloudflare-403"),
        pytest.param(lambda t: t.rate_limit_next("/oauth/token", retry_after=30), id="token-429"),
        pytest.param(lambda t: t.fail_next("/users/settings", status=502), id="profile-5xx"),
        pytest.param(lambda t: t.timeout_next("/users/settings"), id="profile-timeout"),
        pytest.param(lambda t: t.cloudflare_next("/users/settings"), id="profile-cloudflare-403"),
        pytest.param(lambda t: t.malformed_next("/users/settings"), id="profile-malformed"),
    ],
)
def test_trakt_failure_during_sign_in_is_an_authentication_error(client, trakt, inject):
    inject(trakt)
    assert_auth_error(sign_in(client, trakt))


def test_profile_without_uuid_is_an_authentication_error(client, trakt):
    trakt.get_user("Watcher").omit_uuid = True
    assert_auth_error(sign_in(client, trakt))


def test_failed_sign_in_keeps_stored_token_of_existing_link(client, trakt):
    signup_form(client, sign_in(client, trakt))
    before = only_token()
    access, refresh = before.access_token, before.refresh_token
    client.logout()
    trakt.fail_next("/users/settings", status=500)
    response = sign_in(client, trakt)
    assert response.status_code < 500 and "Third-Party Login Failure" in response.content.decode()
    after = only_token()
    assert (after.access_token, after.refresh_token) == (access, refresh)


# -- secrets stay secret -------------------------------------------------------------------


def all_database_text():
    """Every value of every column of every table, as text."""
    chunks = []
    with connection.cursor() as cursor:
        for model in apps.get_models(include_auto_created=True):
            table = model._meta.db_table
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            for row in cursor.fetchall():
                chunks.extend(str(value) for value in row)
    return "\n".join(chunks)


def test_no_table_and_no_debug_log_holds_plain_tokens(client, trakt, caplog):
    caplog.set_level(logging.DEBUG)
    signup_form(client, sign_in(client, trakt))
    client.logout()
    sign_in(client, trakt)  # a returning sign-in too
    token = only_token()
    # Every token Trakt issued during both sign-ins, not only the ones still stored.
    issued = [request.json["code"] for request in trakt.requests_to("/oauth/token")]
    issued += [value for pair in trakt.active_tokens() for value in (pair.access_token, pair.refresh_token)]
    secrets = {token.access_token, token.refresh_token, *issued}
    dump = all_database_text()
    log_text = caplog.text
    assert log_text  # DEBUG logging did capture the requests
    for secret in secrets:
        assert secret and secret not in dump
        assert secret not in log_text
    assert SocialToken.objects.count() == 0


def test_wrong_client_secret_logs_what_to_fix_while_the_page_stays_generic(client, trakt, settings, caplog):
    provider = settings.SOCIALACCOUNT_PROVIDERS["trakt"]
    settings.SOCIALACCOUNT_PROVIDERS = {"trakt": {**provider, "APP": {**provider["APP"], "secret": "rotated"}}}
    response = sign_in(client, trakt)
    assert response.status_code == 401
    page = response.content.decode()
    assert "SOCIALACCOUNT_PROVIDERS" not in page and "invalid_client" not in page
    (warning,) = [record for record in caplog.records if record.name == "django_trakt.views"]
    assert warning.levelname == "WARNING" and 'SOCIALACCOUNT_PROVIDERS["trakt"]["APP"]' in warning.getMessage()
    assert_nothing_saved()
