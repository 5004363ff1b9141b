"""The app handles what the real Trakt sends (issue 14), through its public surface.

Cloudflare's HTML 429 with ``Retry-After: 300`` (trakt/trakt-api#909), image URLs without
a scheme, sorts outside the contract, the device link with the code filled in, a Trakt app
deleted at Trakt (a 403 to every call, #691), and the empty 400 of a refresh token from
before Trakt's migration (#888).
"""

from __future__ import annotations

import datetime as dt
import logging
from io import StringIO

import pytest
import requests
from django.conf import settings
from django.core.management import CommandError, call_command
from django.template import Context, Template, TemplateSyntaxError

from django_trakt import signals
from django_trakt.exceptions import TraktRateLimited
from django_trakt.internal.links.client import TraktClient
from django_trakt.internal.links.outcomes import Outcome
from django_trakt.internal.links.refresh import refresh_token
from django_trakt.internal.links.retries import refresh_with_retries
from django_trakt.internal.pages import images
from django_trakt.internal.pages.watchlist import get_watchlist
from django_trakt.internal.pages.watchlist_items import WatchlistError
from django_trakt.models import TraktToken
from django_trakt.testing.images import avatar_png, poster_png
from tests.test_device import JSON, PENDING, POLL, START, moving_clock, start_linking, token_polls

pytestmark = pytest.mark.django_db

EXPIRED = -dt.timedelta(hours=1)


def stored(token: TraktToken) -> tuple[str, str]:
    token.refresh_from_db()
    return token.access_token, token.refresh_token


def run_refresh(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("refresh_trakt_tokens", "--concurrency", "1", "--no-color", *args, stdout=out, stderr=StringIO())
    except CommandError as err:
        return err.returncode, str(err)
    return 0, out.getvalue()


# -- Cloudflare's HTML 429 ------------------------------------------------------------------------


def test_html_429_on_refresh_defers_the_batch_and_loses_no_token(trakt, linked):
    links = [linked(expires_in=EXPIRED)[1] for _ in range(3)]
    before = [stored(token) for token in links]
    trakt.cloudflare_next("/oauth/token", status=429)

    status, message = run_refresh()

    assert status == 1 and "0 refreshed" in message and "3 failed" in message
    # Only the first link asked Trakt: it said to wait 300 s, longer than the run waits (30 s).
    assert len(trakt.requests_to("/oauth/token")) == 1
    assert [stored(token) for token in links] == before
    first = TraktToken.objects.get(pk=links[0].pk)
    assert first.status == TraktToken.Status.ACTIVE
    assert first.last_error == "Trakt answered HTTP 429: an HTML page from cloudflare, not Trakt's JSON"
    assert "<" not in first.last_error  # the page's markup is not stored
    # Nothing was spent: the next run refreshes every link with the stored refresh tokens.
    assert run_refresh()[1].startswith("3 refreshed")
    assert all(trakt.refresh_count(refresh) == 1 for _access, refresh in before)


def test_html_429_on_refresh_is_waited_out_when_the_operator_allows_that_long(trakt, linked):
    _user, token = linked(expires_in=EXPIRED)
    trakt.cloudflare_next("/oauth/token", status=429)
    waits: list[float] = []

    result = refresh_with_retries(token, max_retry_after=300, sleep=waits.append)

    assert result.outcome is Outcome.REFRESHED and waits == [300.0]
    assert len(trakt.requests_to("/oauth/token")) == 2


def test_html_429_on_an_api_call_is_a_rate_limit_never_parsed_as_json(trakt, linked):
    user, _token = linked()
    trakt.cloudflare_next("/users/settings", status=429)
    with pytest.raises(TraktRateLimited) as raised:
        TraktClient.for_user(user).get("/users/settings")
    assert raised.value.retry_after == 300.0
    assert str(raised.value) == "Trakt answered HTTP 429: an HTML page from cloudflare, not Trakt's JSON"


def test_html_429_on_a_page_backs_off_for_the_retry_after(trakt, linked, clock):
    user, _token = linked()
    trakt.add_watchlist_item(user.username, "movie", title="Heat", year=1995)
    trakt.cloudflare_next("/sync/", status=429, times=1)
    result = get_watchlist(user, type="movies")
    assert result.error == WatchlistError.RATE_LIMITED and list(result) == []
    asked = len(trakt.requests)
    clock.advance(299)
    assert get_watchlist(user, type="movies").error == WatchlistError.RATE_LIMITED
    assert len(trakt.requests) == asked  # Trakt's five minutes are respected
    clock.advance(2)
    assert [item.title for item in get_watchlist(user, type="movies")] == ["Heat"]


def test_the_local_trakts_rate_limit_reaches_a_page_as_rate_limited(trakt, linked, clock):
    user, _token = linked()
    trakt.get_limit = 0  # every GET is over the limit: the API's JSON 429
    result = get_watchlist(user, type="movies")
    assert result.error == WatchlistError.RATE_LIMITED
    (request,) = trakt.requests_to("/sync/last_activities")
    assert request.status == 429


# -- image URLs without a scheme --------------------------------------------------------------------


@pytest.fixture
def image_hosts(settings, tmp_path):
    """The local Trakt's host allowed for images, a fresh image storage, no real DNS."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.TRAKT_IMAGE_HOSTS = ["trakt.test"]
    settings.TRAKT_IMAGE_RESOLVER = lambda host: ["93.184.216.34"]
    return settings


def test_schemeless_poster_urls_are_fetched_over_https_by_the_poster_view(trakt, linked, client, image_hosts):
    user, _token = linked()
    movie = trakt.add_watchlist_item(user.username, "movie", title="Heat", year=1995)
    (item,) = get_watchlist(user, type="movies", limit=1)
    sent = trakt.requests_to(r"/sync/watchlist/movies/rank/asc")[0]
    assert sent.query["extended"] == "images"
    assert item.poster_url.startswith("/trakt/poster/")

    response = client.get(item.poster_url)

    assert response.status_code == 200 and response.content == poster_png(f"movie-{movie.media['ids']['trakt']}")
    (fetched,) = trakt.requests_to(r"/images/posters/.*")
    assert fetched.url == f"https://trakt.test/images/posters/movie-{movie.media['ids']['trakt']}.png"


def test_schemeless_avatar_url_is_normalised_to_https_before_the_guarded_fetch(trakt, linked, client, image_hosts):
    user, _token = linked()
    account = user.socialaccount_set.get(provider="trakt")
    account.extra_data["user"]["images"] = {"avatar": {"full": f"//trakt.test/images/avatars/{user.username}.png"}}
    account.save()
    url = images.avatar_url(account)
    assert url
    assert client.get(url).content == avatar_png(user.username)
    (fetched,) = trakt.requests_to(r"/images/avatars/.*")
    assert fetched.url == f"https://trakt.test/images/avatars/{user.username}.png"


# -- watchlist sorts outside the contract -----------------------------------------------------------


@pytest.mark.parametrize("sort", ["my_rating", "random", "-random", "best"])
def test_unknown_sort_in_debug_is_a_template_error_naming_the_allowed_sorts(trakt, linked, settings, sort):
    settings.DEBUG = True
    user, _token = linked()
    template = Template("{% load trakt %}{% trakt_watchlist user sort=sort %}")
    with pytest.raises(TemplateSyntaxError) as raised:
        template.render(Context({"user": user, "sort": sort}))
    assert str(raised.value) == (
        f"trakt_watchlist: unknown sort {sort!r}; use one of rank, added, title, released, runtime, popularity, "
        "percentage, votes (a leading '-' sorts descending, e.g. '-added')"
    )
    assert trakt.requests == []  # Trakt was not asked


def test_unknown_sort_in_production_falls_back_to_rank_with_a_warning(trakt, linked, settings, caplog):
    settings.DEBUG = False
    user, _token = linked()
    trakt.add_watchlist_item(user.username, "movie", title="Heat", year=1995)
    template = Template(
        '{% load trakt %}{% trakt_watchlist user sort="my_rating" as items %}'
        "{% for item in items %}{{ item.title }}{% endfor %}"
    )
    with caplog.at_level(logging.WARNING, logger="django_trakt.templatetags.trakt"):
        assert template.render(Context({"user": user})) == "Heat"
    assert trakt.requests_to(r"/sync/watchlist/all/rank/asc")  # never /my_rating/
    assert not trakt.requests_to(r"/sync/watchlist/.*/my_rating/.*")
    (record,) = [r for r in caplog.records if r.name == "django_trakt.templatetags.trakt"]
    assert record.levelno == logging.WARNING and "unknown sort 'my_rating'" in record.getMessage()


def test_valid_descending_sort_still_goes_to_trakt(trakt, linked, settings):
    settings.DEBUG = True
    user, _token = linked()
    Template('{% load trakt %}{% trakt_watchlist user type="movies" sort="-added" %}').render(Context({"user": user}))
    assert trakt.requests_to(r"/sync/watchlist/movies/added/desc")


# -- the device link, and a Trakt app deleted at Trakt ---------------------------------------------


def test_device_pending_page_links_to_trakt_with_the_code_filled_in(client, member, trakt):
    user_code, html = start_linking(client)
    link = f"https://auth.trakt.test/activate/{user_code}"
    assert f'href="{link}"' in html
    (device,) = trakt.requests_to("/oauth/device/code")
    assert device.status == 200
    # The link opens Trakt's activation page with the code already in its field.
    page = requests.get(link, timeout=5)
    assert f'value="{user_code}"' in page.text


def test_device_poll_403_of_a_deleted_app_ends_the_flow_with_a_message_for_the_operator(
    client, member, trakt, monkeypatch, caplog
):
    clock = moving_clock(trakt, monkeypatch)
    start_linking(client)
    trakt.disable_app(settings.TRAKT_CLIENT_ID)  # Trakt deleted the idle app (trakt/trakt-api#691)
    clock.advance(trakt.device_interval)

    with caplog.at_level(logging.ERROR, logger="django_trakt.device.approval"):
        answer = client.post(POLL, headers=JSON).json()

    assert answer["status"] == "app_refused" and answer["final"] is True
    assert "deleted or disabled at Trakt" in answer["message"]
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "HTTP 403" in error.getMessage() and "deleted" in error.getMessage()
    # The code is dropped: the next poll asks Trakt nothing and says nothing is pending.
    asked = len(token_polls(trakt))
    clock.advance(60)
    assert client.post(POLL, headers=JSON).json()["status"] == "none"
    assert len(token_polls(trakt)) == asked
    assert client.get(PENDING)["Location"] == START


def test_device_poll_cloudflare_403_with_a_working_app_keeps_trying(client, member, trakt, monkeypatch):
    clock = moving_clock(trakt, monkeypatch)
    start_linking(client)
    trakt.cloudflare_next("/oauth/device/token")
    clock.advance(trakt.device_interval)
    answer = client.post(POLL, headers=JSON).json()
    assert answer["status"] == "unavailable" and answer["final"] is False
    # The app was asked about once with its credentials alone (no user's token in it).
    (probe,) = trakt.requests_to("/oauth/revoke")
    assert probe.json["token"] == "django-trakt-credentials-check"


def test_device_start_with_a_deleted_app_says_so_and_logs_an_error(client, member, trakt, caplog):
    trakt.disable_app(settings.TRAKT_CLIENT_ID)
    with caplog.at_level(logging.ERROR, logger="django_trakt.device.approval"):
        response = client.post(START)
    assert response.status_code == 503
    assert "deleted or disabled at Trakt" in response.content.decode()
    assert any(r.levelno == logging.ERROR and "HTTP 403" in r.getMessage() for r in caplog.records)
    assert client.get(PENDING)["Location"] == START


# -- the empty 400 of a refresh token from before Trakt's migration ---------------------------------


def test_legacy_refresh_token_needs_reauthorization_and_nothing_else_is_lost(trakt, linked):
    _user, token = linked(expires_in=EXPIRED)
    _other_user, other = linked(expires_in=EXPIRED)
    legacy = trakt.issue_tokens(token.account.extra_data["user"]["username"], settings.TRAKT_CLIENT_ID, legacy=True)
    # A link stored before the migration: its refresh token is one Trakt no longer exchanges.
    token.access_token, token.refresh_token = legacy["access_token"], legacy["refresh_token"]
    token.save()
    reasons: list[str] = []

    def receiver(sender, token, reason, **kwargs):
        reasons.append(reason)

    signals.token_needs_reauthorization.connect(receiver)
    try:
        status, message = run_refresh()
    finally:
        signals.token_needs_reauthorization.disconnect(receiver)

    assert status == 0 and "1 refreshed" in message and "1 need re-authorization" in message
    token.refresh_from_db()
    assert token.status == TraktToken.Status.NEEDS_REAUTH
    assert "empty answer" in token.last_error and "migration" in token.last_error
    assert reasons == [token.last_error]
    assert token.refresh_token == legacy["refresh_token"]  # kept as it was, not retried
    other.refresh_from_db()
    assert other.status == TraktToken.Status.ACTIVE  # the other link refreshed: not a site fault
    assert refresh_token(token, force=True).outcome is Outcome.NEEDS_REAUTH
    assert trakt.refresh_count(legacy["refresh_token"], accepted=False) == 1  # a flagged link is not sent again
