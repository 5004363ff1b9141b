"""Watchlists under the template tags: fetching, caching, last_activities, failures, errors."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from django.core.cache import cache
from django.template import Context, Template
from django.test import override_settings

from django_trakt.exceptions import (
    TraktAccountLimit,
    TraktAccountLocked,
    TraktForbidden,
    TraktNotFound,
    TraktRateLimited,
    TraktServerError,
    TraktTimeout,
    TraktUnauthorized,
    TraktVIPOnly,
)
from django_trakt.internal.core import clock as app_clock
from django_trakt.internal.links import client as client_module
from django_trakt.internal.links.client import TraktClient
from django_trakt.internal.pages import watchlist, watchlist_items
from django_trakt.internal.pages.watchlist import get_watchlist
from django_trakt.internal.pages.watchlist_items import WatchlistError, WatchlistItem
from django_trakt.models import TraktToken

pytestmark = pytest.mark.django_db

OWN_LIST = r"/sync/watchlist/.*"
ACTIVITIES = "/sync/last_activities"


@pytest.fixture
def viewer(trakt, linked):
    """A linked site user whose Trakt watchlist has two movies and a show."""
    user, token = linked()
    trakt.add_watchlist_item(user.username, "movie", title="Heat", year=1995)
    trakt.add_watchlist_item(user.username, "movie", title="Alien", year=1979)
    trakt.add_watchlist_item(user.username, "show", title="The Wire", year=2002)
    trakt.reset_requests()
    return user, token


def titles(result):
    return [item.display_title for item in result]


# -- what is fetched and how ------------------------------------------------------------------


def test_own_watchlist_items_have_title_year_kind_and_trakt_link(trakt, viewer):
    user, token = viewer
    result = get_watchlist(user, type="movies")
    assert result.error == "" and not result.stale
    assert [(i.title, i.year, i.kind, i.kind_label) for i in result] == [
        ("Heat", 1995, "movie", "Movie"),
        ("Alien", 1979, "movie", "Movie"),
    ]
    assert result.items[0].url == "https://trakt.test/movies/heat-1995"
    (request,) = trakt.requests_to(OWN_LIST)
    assert request.path == "/sync/watchlist/movies/rank/asc"
    assert request.query["extended"] == "images"
    assert request.headers["Authorization"] == f"Bearer {token.access_token}"


def test_all_types_and_seasons_and_episodes_name_their_show(trakt, linked):
    user, _token = linked()
    trakt.add_watchlist_item(user.username, "movie", title="Heat", year=1995)
    trakt.add_watchlist_item(user.username, "show", title="Lost", year=2004)
    trakt.add_watchlist_item(user.username, "season", show="The Wire", season=2)
    trakt.add_watchlist_item(user.username, "episode", show="The Wire", season=1, episode=3, title="The Buys")
    result = get_watchlist(user, type="all")
    assert titles(result) == ["Heat", "Lost", "The Wire: Season 2", "The Wire 1x03 The Buys"]
    assert [item.kind for item in result] == ["movie", "show", "season", "episode"]
    assert result.items[2].url == "https://trakt.test/shows/the-wire/seasons/2"
    assert result.items[3].url == "https://trakt.test/shows/the-wire/seasons/1/episodes/3"
    assert titles(get_watchlist(user, type="seasons")) == ["The Wire: Season 2"]
    assert titles(get_watchlist(user, type="episodes")) == ["The Wire 1x03 The Buys"]
    assert titles(get_watchlist(user, type="shows")) == ["Lost"]


def test_sort_and_descending_sort_go_to_trakt(trakt, viewer):
    user, _token = viewer
    assert titles(get_watchlist(user, type="movies", sort="title")) == ["Alien", "Heat"]
    assert titles(get_watchlist(user, type="movies", sort="-title")) == ["Heat", "Alien"]
    assert [r.path for r in trakt.requests_to(OWN_LIST)] == [
        "/sync/watchlist/movies/title/asc",
        "/sync/watchlist/movies/title/desc",
    ]


def test_public_watchlist_by_username_needs_no_token(trakt, db):
    trakt.add_user("Public Pat")
    trakt.add_watchlist_item("Public Pat", "movie", title="Heat", year=1995)
    result = get_watchlist("Public Pat", type="movies")
    assert titles(result) == ["Heat"]
    (request,) = trakt.requests_to(r"/users/.*")
    assert request.path == "/users/public-pat/watchlist/movies/rank/asc"
    assert "Authorization" not in request.headers and request.headers["trakt-api-key"] == "test-client-id"
    assert trakt.requests_to(ACTIVITIES) == []


def test_limit_asks_for_one_page_of_that_size(trakt, linked):
    user, _token = linked()
    trakt.fill_watchlist(user.username, 25)
    result = get_watchlist(user, type="movies", limit=10)
    assert len(result) == 10
    (request,) = trakt.requests_to(OWN_LIST)
    assert (request.query["page"], request.query["limit"]) == ("1", "10")
    # A smaller limit is served from what is cached; a larger one fetches again.
    assert len(get_watchlist(user, type="movies", limit=5)) == 5
    assert len(trakt.requests_to(OWN_LIST)) == 1
    assert len(get_watchlist(user, type="movies", limit=20)) == 20
    assert len(trakt.requests_to(OWN_LIST)) == 2


def test_long_list_is_fetched_page_by_page_up_to_the_limit(trakt, linked, monkeypatch):
    monkeypatch.setattr(watchlist_items, "WATCHLIST_MAX_ITEMS", 250)
    user, _token = linked()
    trakt.fill_watchlist(user.username, 230)
    result = get_watchlist(user, type="movies", limit=None)
    assert len(result) == 230 and result.items[-1].title == "Movie 230"
    assert [r.query["page"] for r in trakt.requests_to(OWN_LIST)] == ["1", "2", "3"]


def test_limit_is_capped_by_max_items(trakt, linked, monkeypatch):
    user, _token = linked()
    trakt.fill_watchlist(user.username, 30)
    monkeypatch.setattr(watchlist_items, "WATCHLIST_MAX_ITEMS", 12)
    assert len(get_watchlist(user, type="movies", limit=1000)) == 12


def test_malformed_items_are_skipped_not_fatal(trakt, viewer):
    user, _token = viewer
    trakt.fail_next(
        OWN_LIST,
        status=200,
        json=[{"type": "movie", "movie": {"title": "Heat", "year": 1995, "ids": {"slug": "heat"}}}, {"type": "x"}, 7],
    )
    assert titles(get_watchlist(user, type="movies")) == ["Heat"]


# -- caching -------------------------------------------------------------------------------------


def test_warm_cache_makes_no_request(trakt, viewer):
    user, _token = viewer
    first = get_watchlist(user, type="movies")
    trakt.reset_requests()
    assert get_watchlist(user, type="movies") == first
    assert trakt.requests == []


def test_expired_cache_asks_last_activities_and_keeps_unchanged_list(trakt, viewer, clock):
    user, _token = viewer
    get_watchlist(user, type="movies")
    assert len(trakt.requests_to(ACTIVITIES)) == 1 and len(trakt.requests_to(OWN_LIST)) == 1
    clock.advance(301)
    assert titles(get_watchlist(user, type="movies")) == ["Heat", "Alien"]
    assert len(trakt.requests_to(ACTIVITIES)) == 2 and len(trakt.requests_to(OWN_LIST)) == 1
    # Re-stamped: fresh again without asking.
    get_watchlist(user, type="movies")
    assert len(trakt.requests) == 3


def test_expired_cache_fetches_again_when_watchlist_changed(trakt, viewer, clock):
    user, _token = viewer
    get_watchlist(user, type="movies")
    trakt.add_watchlist_item(user.username, "movie", title="Ran", year=1985)
    assert titles(get_watchlist(user, type="movies")) == ["Heat", "Alien"]  # still fresh
    clock.advance(301)
    assert titles(get_watchlist(user, type="movies")) == ["Heat", "Alien", "Ran"]
    assert len(trakt.requests_to(OWN_LIST)) == 2


def test_lists_of_one_user_share_one_last_activities_call(trakt, viewer, clock):
    user, _token = viewer
    get_watchlist(user, type="movies")
    get_watchlist(user, type="shows")
    assert len(trakt.requests_to(ACTIVITIES)) == 1
    clock.advance(301)
    get_watchlist(user, type="movies")
    get_watchlist(user, type="shows")
    assert len(trakt.requests_to(ACTIVITIES)) == 2 and len(trakt.requests_to(OWN_LIST)) == 2


def test_public_list_is_fetched_again_after_ttl(trakt, db, clock):
    trakt.add_user("pat")
    trakt.add_watchlist_item("pat", "movie", title="Heat", year=1995)
    get_watchlist("pat")
    get_watchlist("pat")
    assert len(trakt.requests) == 1
    clock.advance(301)
    get_watchlist("pat")
    assert len(trakt.requests) == 2


def test_cache_holds_no_token(trakt, viewer):
    user, token = viewer
    get_watchlist(user, type="movies")
    get_watchlist(user, type="shows")
    stored = cache._cache  # locmem: key -> pickled value
    assert stored
    for key, value in stored.items():
        assert token.access_token not in key and token.refresh_token not in key
        assert token.access_token.encode() not in value and token.refresh_token.encode() not in value


# -- failures: stale copy or empty state, never an exception, never a long wait ------------------

FAILURES = {
    "down-503": lambda t: t.fail_next(r"/sync/", status=503, times=5),
    "slow-timeout": lambda t: t.timeout_next(r"/sync/", times=5),
    "rate-limited-429": lambda t: t.rate_limit_next(r"/sync/", retry_after=600, times=5),
    "cloudflare-html": lambda t: t.cloudflare_next(r"/sync/", status=520, times=5),
    "malformed-json": lambda t: t.malformed_next(r"/sync/", times=5),
}


@pytest.mark.parametrize("inject", FAILURES.values(), ids=FAILURES.keys())
def test_trakt_failing_shows_last_good_copy(trakt, viewer, clock, inject, monkeypatch):
    user, _token = viewer
    fresh = get_watchlist(user, type="movies")
    clock.advance(24 * 3600)  # long past the TTL: the copy is kept for the stale TTL
    inject(trakt)
    waits = []
    monkeypatch.setattr(app_clock, "sleep", waits.append)
    result = get_watchlist(user, type="movies")
    assert waits == []  # a page never waits out Trakt's Retry-After (PAGE_RETRY_WAIT is 0)
    assert result.stale and result.items == fresh.items
    assert result.error in ("unavailable", "rate_limited")


@pytest.mark.parametrize("inject", FAILURES.values(), ids=FAILURES.keys())
def test_trakt_failing_without_copy_gives_empty_state(trakt, viewer, inject):
    user, _token = viewer
    inject(trakt)
    result = get_watchlist(user, type="movies")
    assert list(result) == [] and not result.stale
    assert result.error in ("unavailable", "rate_limited")


def test_429_is_not_waited_out_during_a_render_and_backs_off(trakt, viewer, monkeypatch, clock):
    user, _token = viewer
    sleeps = []
    monkeypatch.setattr("django_trakt.internal.core.clock.sleep", sleeps.append)
    trakt.rate_limit_next(r"/sync/", retry_after=1)
    assert get_watchlist(user, type="movies").error == WatchlistError.RATE_LIMITED
    assert sleeps == [] and len(trakt.requests) == 1
    # Within the backoff nothing is asked; after it, Trakt is asked again.
    assert get_watchlist(user, type="movies").error == WatchlistError.RATE_LIMITED
    assert len(trakt.requests) == 1
    clock.advance(61)
    assert titles(get_watchlist(user, type="movies")) == ["Heat", "Alien"]


def test_429_retry_after_longer_than_backoff_is_honoured(trakt, viewer, clock):
    user, _token = viewer
    trakt.rate_limit_next(r"/sync/", retry_after=600)
    get_watchlist(user, type="movies")
    clock.advance(300)
    assert get_watchlist(user, type="movies").error == WatchlistError.RATE_LIMITED
    assert len(trakt.requests) == 1
    clock.advance(301)
    assert get_watchlist(user, type="movies").error == ""


def test_tiny_retry_after_is_waited_out_when_allowed(trakt, viewer, monkeypatch):
    monkeypatch.setattr(watchlist, "PAGE_RETRY_WAIT", 1)
    user, _token = viewer
    sleeps = []
    monkeypatch.setattr("django_trakt.internal.core.clock.sleep", sleeps.append)
    trakt.rate_limit_next(OWN_LIST, retry_after=1)
    assert titles(get_watchlist(user, type="movies")) == ["Heat", "Alien"]
    assert sleeps == [1.0]


def test_failure_log_names_no_token(trakt, viewer, caplog):
    user, token = viewer
    trakt.fail_next(r"/sync/", status=503, body=token.access_token)  # even if Trakt echoed it
    with caplog.at_level(logging.DEBUG, logger="django_trakt"):
        get_watchlist(user, type="movies")
    assert "not fetched" in caplog.text
    assert token.access_token not in caplog.text and token.refresh_token not in caplog.text


def test_page_time_calls_use_page_timeout(trakt, viewer, monkeypatch):
    user, _token = viewer
    timeouts = []
    real_send = client_module.send

    def spy(*args, **kwargs):
        timeouts.append(kwargs.get("timeout"))
        return real_send(*args, **kwargs)

    monkeypatch.setattr(client_module, "send", spy)
    with override_settings(TRAKT_PAGE_TIMEOUT=1.5):
        get_watchlist(user, type="movies")
    assert timeouts == [1.5, 1.5]  # last_activities, then the list


def test_slow_trakt_over_http_gives_up_within_page_timeout(db):
    """Against a real socket: a Trakt slower than TRAKT_PAGE_TIMEOUT costs about that long."""
    from tests.conftest import make_emulator

    emulator = make_emulator()
    emulator.add_user("pat")
    emulator.add_watchlist_item("pat", "movie", title="Heat", year=1995)
    emulator.latency = 2.0
    with emulator.serve() as server:
        providers = {"trakt": {"APP": {"client_id": "test-client-id", "secret": "s"}, "API_URL": server.url}}
        with override_settings(SOCIALACCOUNT_PROVIDERS=providers, TRAKT_PAGE_TIMEOUT=0.3):
            result = get_watchlist("pat")
    # Trakt would have answered (Heat) after 2 s: the empty list is the page giving up at 0.3 s.
    assert result.error == WatchlistError.UNAVAILABLE and list(result) == []


# -- users and arguments --------------------------------------------------------------------------


def test_anonymous_and_unlinked_users_get_not_linked_without_requests(trakt, django_user_model):
    from django.contrib.auth.models import AnonymousUser

    plain = django_user_model.objects.create_user("plain", "plain@example.com", "pw")
    assert get_watchlist(AnonymousUser()).error == WatchlistError.NOT_LINKED
    assert get_watchlist(None).error == WatchlistError.NOT_LINKED
    assert get_watchlist(plain).error == WatchlistError.NOT_LINKED
    assert trakt.requests == []


def test_link_needing_reauthorization_shows_last_copy_and_says_so(trakt, viewer, clock):
    user, token = viewer
    get_watchlist(user, type="movies")
    TraktToken.objects.filter(pk=token.pk).update(status=TraktToken.Status.NEEDS_REAUTH)
    clock.advance(301)
    result = get_watchlist(user, type="movies")
    assert result.stale and titles(result) == ["Heat", "Alien"] and result.error == "reauthorize"
    assert get_watchlist(user, type="shows").error == "reauthorize"
    assert len(trakt.requests) == 2  # only the first, successful fetch


def test_public_list_of_unknown_or_private_user(trakt, db):
    trakt.add_user("secretive", private=True)
    assert get_watchlist("nobody-here").error == WatchlistError.NOT_FOUND
    assert get_watchlist("secretive").error == WatchlistError.PRIVATE


@pytest.mark.parametrize(
    "kwargs",
    [{"type": "films"}, {"sort": "best"}, {"type": None}, {"sort": 3}],
    ids=["type", "sort", "type-none", "sort-int"],
)
def test_invalid_arguments_give_invalid_without_requests(trakt, viewer, kwargs):
    user, _token = viewer
    assert get_watchlist(user, **kwargs).error == WatchlistError.INVALID
    assert trakt.requests == []


@pytest.mark.parametrize("who", ["", "   ", "!!!", 42], ids=["empty", "blank", "symbols", "int"])
def test_invalid_user_argument_gives_invalid(trakt, db, who):
    assert get_watchlist(who).error == WatchlistError.INVALID
    assert trakt.requests == []


# -- the client's error codes (what the watchlist relies on) ----------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, TraktUnauthorized),
        (403, TraktForbidden),
        (404, TraktNotFound),
        (420, TraktAccountLimit),
        (423, TraktAccountLocked),
        (426, TraktVIPOnly),
        (500, TraktServerError),
        (502, TraktServerError),
        (503, TraktServerError),
        (522, TraktServerError),
    ],
)
def test_client_maps_trakt_status_codes_to_typed_errors(trakt, status, error):
    trakt.fail_next("/users/x/watchlist", status=status, json={"error": "e"})
    with pytest.raises(error) as excinfo:
        TraktClient().get("users/x/watchlist")
    assert excinfo.value.status_code == status


def test_client_429_carries_retry_after_and_long_wait_is_not_slept(trakt, monkeypatch):
    sleeps = []
    monkeypatch.setattr("django_trakt.internal.core.clock.sleep", sleeps.append)
    trakt.rate_limit_next("/users/x", retry_after=120)
    with pytest.raises(TraktRateLimited) as excinfo:
        TraktClient().get("users/x/watchlist")
    assert excinfo.value.retry_after == 120 and sleeps == []


def test_client_short_retry_after_is_waited_once(trakt, monkeypatch):
    sleeps = []
    monkeypatch.setattr("django_trakt.internal.core.clock.sleep", sleeps.append)
    trakt.add_user("x")
    trakt.rate_limit_next("/users/x", retry_after=1)
    assert TraktClient().get("users/x/watchlist") == []
    assert sleeps == [1.0]


def test_client_timeout_is_typed(trakt):
    trakt.timeout_next("/users/x")
    with pytest.raises(TraktTimeout):
        TraktClient(timeout=0.5).get("users/x/watchlist")


# -- watchlist documents and caching, for a user with two movies -------------------------------------


@pytest.fixture
def watcher(trakt, linked):
    """A linked site user whose Trakt watchlist has two movies (Heat, Alien)."""
    user, _token = linked()
    trakt.add_watchlist_item(user.username, "movie", title="Heat", year=1995)
    trakt.add_watchlist_item(user.username, "movie", title="Alien", year=1979)
    trakt.reset_requests()
    return user


def render(source: str, **context) -> str:
    return Template("{% load trakt %}" + source).render(Context(context))


def movie(title, **fields):
    return {"type": "movie", "movie": {"title": title, "year": 2000, "ids": {"slug": f"{title}-2000"}, **fields}}


# -- watchlist documents --------------------------------------------------------------------------


def test_watchlist_item_listed_at_is_an_aware_datetime(trakt, linked):
    user, _token = linked()
    listed = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    trakt.add_watchlist_item(user.username, "movie", title="Heat", year=1995, listed_at=listed)
    (item,) = get_watchlist(user, type="movies")
    assert item.listed_at == listed
    html = render(
        "{% trakt_watchlist user as items %}{% for i in items %}{{ i.listed_at|date:'Y-m-d' }}{% endfor %}", user=user
    )
    assert html == "2024-01-02"
    assert WatchlistItem(kind="movie", title="Undated").listed_at is None


def test_empty_watchlist_is_falsy_in_templates(trakt, linked, watcher):
    empty_user, _token = linked()
    template = "{% trakt_watchlist who as items %}{% if items %}{{ items|length }} to watch{% else %}nothing{% endif %}"
    assert render(template, who=empty_user) == "nothing"
    assert render(template, who=watcher) == "2 to watch"


def test_posters_sent_as_text_or_thumbs_are_used_and_others_left_out(trakt, watcher, settings):
    settings.TRAKT_IMAGE_HOSTS = ["trakt.test"]
    trakt.fail_next(
        OWN_LIST,
        status=200,
        json=[
            movie("text", images={"poster": "https://trakt.test/images/posters/text.png"}),
            movie("thumb", images={"poster": [], "thumb": ["https://trakt.test/images/posters/thumb.png"]}),
            movie("fanart", images={"fanart": ["https://trakt.test/images/posters/fanart.png"]}),
            movie("broken", images=["https://trakt.test/images/posters/broken.png"]),
        ],
    )
    result = get_watchlist(watcher, type="movies")
    posters = {item.title: item.poster_url for item in result}
    assert posters["text"].startswith("/trakt/poster/") and posters["thumb"].startswith("/trakt/poster/")
    assert posters["text"] != posters["thumb"]
    assert posters["fanart"] == "" and posters["broken"] == ""


def test_movie_or_show_without_title_is_left_out(trakt, watcher):
    trakt.fail_next(
        OWN_LIST,
        status=200,
        json=[
            movie("Heat"),
            {"type": "movie", "movie": {"title": None, "year": 1999}},
            {"type": "show", "show": {"title": "", "year": 2001}},
            {"type": "season", "season": {"number": 3, "ids": {}}, "show": {"title": "Lost", "ids": {"slug": "lost"}}},
        ],
    )
    result = get_watchlist(watcher, type="all")
    assert titles(result) == ["Heat", "Lost: Season 3"]
    assert result.items[1].url == "https://trakt.test/shows/lost/seasons/3"


def test_limit_that_is_not_a_number_shows_up_to_the_maximum(trakt, linked, monkeypatch):
    monkeypatch.setattr(watchlist_items, "WATCHLIST_MAX_ITEMS", 3)
    user, _token = linked()
    trakt.fill_watchlist(user.username, 5)
    assert render('{% trakt_watchlist user limit="lots" as items %}{{ items|length }}', user=user) == "3"
    (request,) = trakt.requests_to(OWN_LIST)
    assert request.query["limit"] == "3"


# -- caching edges ----------------------------------------------------------------------------------


def test_cache_outage_never_breaks_a_watchlist(trakt, watcher, settings, caplog):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "broken": {"BACKEND": "tests.conftest.BrokenCache"},
    }
    settings.TRAKT_CACHE = "broken"
    first = get_watchlist(watcher, type="movies")
    # No cache, no budget to count Trakt calls in: the page asks Trakt nothing rather than
    # risk a burst, and shows its empty state (tests/test_page_budget.py has the rest).
    assert titles(first) == [] and first.error == "unavailable"
    assert "The Trakt cache 'broken' failed on get" in caplog.text
    assert titles(get_watchlist(watcher, type="movies")) == []
    assert trakt.requests_to(OWN_LIST) == []


@pytest.mark.parametrize(
    "activities",
    [[], {"watchlist": {"updated_at": None}}, {"watchlist": "recently"}],
    ids=["not-an-object", "no-updated-at", "watchlist-not-an-object"],
)
def test_unusable_last_activities_answer_fetches_the_list_again(trakt, watcher, clock, activities):
    assert titles(get_watchlist(watcher, type="movies")) == ["Heat", "Alien"]
    trakt.add_watchlist_item(watcher.username, "movie", title="Ran", year=1985)
    clock.advance(301)
    trakt.fail_next(ACTIVITIES, status=200, json=activities)
    result = get_watchlist(watcher, type="movies")
    assert titles(result) == ["Heat", "Alien", "Ran"] and not result.stale
    assert len(trakt.requests_to(OWN_LIST)) == 2


def test_list_being_refreshed_by_another_request_is_served_as_is(trakt, watcher, clock):
    assert titles(get_watchlist(watcher, type="movies")) == ["Heat", "Alien"]
    trakt.reset_requests()
    clock.advance(301)
    cache.add(watchlist.cache_key(f"user:{watcher.pk}", "movies", "rank", "asc") + ":lock", True)
    result = get_watchlist(watcher, type="movies")
    assert titles(result) == ["Heat", "Alien"] and not result.stale and result.error == ""
    assert trakt.requests == []


def test_zero_failure_backoff_asks_trakt_again_on_the_next_render(trakt, watcher, settings, monkeypatch):
    monkeypatch.setattr(watchlist, "FAILURE_BACKOFF", 0)
    trakt.fail_next(OWN_LIST, status=503)
    assert get_watchlist(watcher, type="movies").error == "unavailable"
    assert titles(get_watchlist(watcher, type="movies")) == ["Heat", "Alien"]
    assert len(trakt.requests_to(OWN_LIST)) == 2
