"""TraktClient: who may get a client, unreadable tokens, 401s, paginated lists."""

from __future__ import annotations

import datetime as dt

import pytest
from allauth.socialaccount.models import SocialAccount
from cryptography.fernet import Fernet
from django.contrib.auth.models import AnonymousUser
from django.test import override_settings

from django_trakt.exceptions import (
    TraktMalformedResponse,
    TraktNotLinked,
    TraktReauthorizationRequired,
    TraktRefreshFailed,
    TraktUnauthorized,
)
from django_trakt.internal.links.client import TraktClient
from django_trakt.models import TraktToken

pytestmark = pytest.mark.django_db

FRESH = dt.timedelta(days=6)
OTHER_KEY = Fernet.generate_key().decode()


def snapshot(token):
    token.refresh_from_db()
    return token.access_token, token.refresh_token, token.expires_at


def movie(title):
    return {"rank": 1, "type": "movie", "movie": {"title": title, "year": 2000, "ids": {"trakt": 1}}}


# -- who may get a client -----------------------------------------------------------------------


@pytest.mark.parametrize("user", [None, AnonymousUser()], ids=["none", "anonymous"])
def test_for_user_anonymous_is_not_linked(trakt, user):
    with pytest.raises(TraktNotLinked, match="anonymous"):
        TraktClient.for_user(user)
    assert trakt.requests == []


@pytest.mark.parametrize("status", [TraktToken.Status.NEEDS_REAUTH, TraktToken.Status.REVOKED])
def test_for_user_flagged_link_requires_reauthorization(trakt, linked, status):
    user, token = linked(expires_in=FRESH)
    TraktToken.objects.filter(pk=token.pk).update(status=status)
    with pytest.raises(TraktReauthorizationRequired, match="sign in with Trakt again"):
        TraktClient.for_user(user)
    assert trakt.requests == []


# -- a token the configured keys cannot read --------------------------------------------------------


def test_client_token_unreadable_after_key_change_requires_reauthorization(trakt, linked):
    user, token = linked(expires_in=FRESH)
    client = TraktClient.for_user(user)
    with override_settings(TRAKT_TOKEN_KEYS=[OTHER_KEY]), pytest.raises(TraktReauthorizationRequired) as excinfo:
        client.get("/users/settings")
    assert "decrypted" in str(excinfo.value)
    token.refresh_from_db()
    assert token.status == TraktToken.Status.UNREADABLE
    assert trakt.requests == []  # no request went out without a usable token


def test_client_link_flagged_unreadable_is_refused_while_key_is_missing(trakt, linked):
    user, _token = linked(expires_in=FRESH)
    with override_settings(TRAKT_TOKEN_KEYS=[OTHER_KEY]):
        with pytest.raises(TraktReauthorizationRequired):
            TraktClient.for_user(user).get("/users/settings")
        with pytest.raises(TraktReauthorizationRequired, match="TRAKT_TOKEN_KEYS"):
            TraktClient.for_user(user).get("/users/settings")
    assert trakt.requests == []


def test_client_link_flagged_unreadable_heals_once_key_is_back(trakt, linked):
    user, token = linked(expires_in=FRESH)
    with override_settings(TRAKT_TOKEN_KEYS=[OTHER_KEY]), pytest.raises(TraktReauthorizationRequired):
        TraktClient.for_user(user).get("/users/settings")
    # The right key is deployed again.
    assert TraktClient.for_user(user).get("/users/settings")["user"]["username"] == user.username
    token.refresh_from_db()
    assert token.status == TraktToken.Status.ACTIVE


# -- 401 answers ----------------------------------------------------------------------------------


def test_client_401_then_transient_refresh_failure_raises_refresh_failed(trakt, linked):
    user, token = linked(expires_in=FRESH)
    before = snapshot(token)
    trakt.fail_next("/users/settings", status=401, json={"error": "invalid_token"})
    trakt.fail_next("/oauth/token", status=503)
    with pytest.raises(TraktRefreshFailed, match="rejected Trakt token failed") as excinfo:
        TraktClient.for_user(user).get("/users/settings")
    assert before[0] not in str(excinfo.value) and before[1] not in str(excinfo.value)
    assert snapshot(token) == before and token.status == TraktToken.Status.ACTIVE
    assert len(trakt.requests_to("/users/settings")) == 1  # not retried with the rejected token
    assert len(trakt.requests_to("/oauth/token")) == 1


def test_app_client_401_is_raised_without_refresh(trakt, db):
    with pytest.raises(TraktUnauthorized):
        TraktClient().get("/sync/watchlist")
    assert trakt.requests_to("/oauth/token") == []
    (request,) = trakt.requests_to("/sync/watchlist")
    assert "Authorization" not in request.headers and request.headers["trakt-api-key"] == "test-client-id"


# -- paginated lists --------------------------------------------------------------------------------


def test_iter_pages_follows_pages_until_page_count(trakt, linked):
    user, _token = linked(expires_in=FRESH)
    trakt.fill_watchlist(user.username, 5)
    items = list(TraktClient.for_user(user).iter_pages("/sync/watchlist", {"sort_by": "rank"}, limit=2))
    assert [item["movie"]["title"] for item in items] == [f"Movie {n}" for n in range(1, 6)]
    requests = trakt.requests_to("/sync/watchlist")
    assert [(r.query["page"], r.query["limit"], r.query["sort_by"]) for r in requests] == [
        ("1", "2", "rank"),
        ("2", "2", "rank"),
        ("3", "2", "rank"),
    ]


def test_iter_pages_is_lazy(trakt, linked):
    user, _token = linked(expires_in=FRESH)
    trakt.fill_watchlist(user.username, 5)
    pages = TraktClient.for_user(user).iter_pages("/sync/watchlist", limit=2)
    assert [next(pages)["movie"]["title"] for _ in range(2)] == ["Movie 1", "Movie 2"]
    assert len(trakt.requests_to("/sync/watchlist")) == 1


@pytest.mark.parametrize("document", [{"error": "nope"}, "Movie 1", None], ids=["object", "string", "null"])
def test_iter_pages_non_list_page_is_malformed_response(trakt, linked, document):
    user, _token = linked(expires_in=FRESH)
    if document is None:
        trakt.fail_next("/sync/watchlist", status=200, body=b"null", headers={"Content-Type": "application/json"})
    else:
        trakt.fail_next("/sync/watchlist", status=200, json=document)
    with pytest.raises(TraktMalformedResponse, match="/sync/watchlist answer is not a list"):
        list(TraktClient.for_user(user).iter_pages("/sync/watchlist"))


@pytest.mark.parametrize("header", ["many", "", "2.5"])
def test_iter_pages_unreadable_page_count_stops_after_that_page(trakt, linked, header):
    user, _token = linked(expires_in=FRESH)
    trakt.fill_watchlist(user.username, 5)
    trakt.fail_next(
        "/sync/watchlist", status=200, json=[movie("Only page")], headers={"X-Pagination-Page-Count": header}
    )
    items = list(TraktClient.for_user(user).iter_pages("/sync/watchlist", limit=1))
    assert [item["movie"]["title"] for item in items] == ["Only page"]
    assert len(trakt.requests_to("/sync/watchlist")) == 1


# -- the account's profile --------------------------------------------------------------------------


def test_profile_url_without_slug_is_none(db, django_user_model):
    user = django_user_model.objects.create_user("noslug")
    account = SocialAccount.objects.create(
        user=user, provider="trakt", uid="uuid-noslug", extra_data={"user": {"username": "NoSlug", "ids": {}}}
    )
    assert account.get_profile_url() is None
    assert str(account.get_provider_account()) == "NoSlug"
