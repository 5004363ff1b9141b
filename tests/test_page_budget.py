"""Pages are no amplifier: the budgets of Trakt calls that renders may send, and the negative cache.

A public ``{% trakt_watchlist name %}`` fed by visitor input would otherwise cost a Trakt
call per distinct name, type or sort. Calls are counted at the local Trakt
(``trakt.requests_to``); the clock is the watchlist's (``clock``), put at the start of a
budget window so that a test never straddles two windows by accident.
"""

from __future__ import annotations

import logging

import pytest
from django.core.cache import caches
from django.http import HttpRequest, HttpResponse
from django.template import RequestContext, Template
from django.urls import path

from django_trakt.internal.pages import page_budget, watchlist, watchlist_items
from django_trakt.internal.pages.page_budget import PUBLIC_SCOPE, spend_page_call
from django_trakt.internal.pages.watchlist import get_watchlist
from django_trakt.internal.pages.watchlist_items import WatchlistError

pytestmark = pytest.mark.django_db

PUBLIC = r"/users/.*"

OWN_LIST = r"/sync/watchlist/.*"
ACTIVITIES = "/sync/last_activities"
PERIOD = 300
BUSY_HTML = "The watchlist cannot be shown right now."
BROKEN_CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "broken": {"BACKEND": "tests.conftest.BrokenCache"},
}


# -- pages that show whatever watchlist the visitor asks for (what the budgets protect) ----------


def public_page(request: HttpRequest) -> HttpResponse:
    template = Template("{% load trakt %}{% trakt_watchlist name type=kind sort=sort %}")
    values = {key: request.GET.get(key, default) for key, default in (("name", ""), ("kind", "all"), ("sort", "rank"))}
    return HttpResponse(template.render(RequestContext(request, values)))


def own_page(request: HttpRequest) -> HttpResponse:
    template = Template("{% load trakt %}{% trakt_watchlist request.user type=kind %}")
    return HttpResponse(template.render(RequestContext(request, {"kind": request.GET.get("kind", "all")})))


urlpatterns = [path("public/", public_page), path("own/", own_page)]


@pytest.fixture
def pages(settings):
    """This module's two pages as the site's URLs.

    Through the ``settings`` fixture, never ``override_settings`` around it: overrides
    made by the two are undone in the wrong order, and the URLconf would outlive the test.
    """
    settings.ROOT_URLCONF = __name__


@pytest.fixture
def window(clock):
    """The watchlist's clock, at the very start of a budget window of the default period."""
    clock.now = float((int(clock.now // PERIOD) + 1) * PERIOD)
    return clock


@pytest.fixture
def people(trakt):
    """150 public Trakt users with one movie each: ``person0`` ... ``person149``."""
    names = [f"person{number}" for number in range(150)]
    for name in names:
        trakt.add_user(name)
        trakt.add_watchlist_item(name, "movie", title=f"Film of {name}", year=2000)
    trakt.reset_requests()
    return names


@pytest.fixture
def viewer(trakt, linked):
    user, _token = linked()
    trakt.add_watchlist_item(user.username, "movie", title="Heat", year=1995)
    trakt.add_watchlist_item(user.username, "show", title="The Wire", year=2002)
    trakt.reset_requests()
    return user


def titles(result) -> list[str]:
    return [item.display_title for item in result]


# -- the site-wide budget of public lists ---------------------------------------------------------


def test_100_public_usernames_in_one_minute_cost_only_the_budget(
    pages, client, trakt, people, window, settings, monkeypatch
):
    monkeypatch.setattr(page_budget, "PAGE_CALL_BUDGET", 10)
    bodies = []
    for name in people[:100]:
        response = client.get("/public/", {"name": name})
        assert response.status_code == 200
        bodies.append(response.content.decode())
        window.advance(0.6)  # 100 renders over one minute
    assert len(trakt.requests_to(PUBLIC)) == 10
    assert all(f"Film of person{number}" in bodies[number] for number in range(10))
    assert all(BUSY_HTML in body and "Film of" not in body for body in bodies[10:])


def test_default_budget_caps_a_flood_of_public_usernames_at_100_per_five_minutes(trakt, people, window):
    results = []
    for name in people:  # 150 distinct names within one minute
        results.append(get_watchlist(name))
        window.advance(0.4)
    assert len(trakt.requests_to(PUBLIC)) == 100
    assert [result.error for result in results[:100]] == [""] * 100
    assert {result.error for result in results[100:]} == {WatchlistError.BUSY}
    assert all(list(result) == [] and not result.stale for result in results[100:])


def test_types_and_sorts_of_one_name_all_count_against_the_budget(trakt, people, window, settings, monkeypatch):
    monkeypatch.setattr(page_budget, "PAGE_CALL_BUDGET", 5)
    asked = [
        get_watchlist("person0", type=kind, sort=sort) for kind in ("movies", "shows") for sort in watchlist_items.SORTS
    ]
    assert len(trakt.requests_to(PUBLIC)) == 5
    assert sum(result.error == WatchlistError.BUSY for result in asked) == len(asked) - 5


def test_budget_refills_when_the_period_is_over(trakt, people, window, settings, monkeypatch):
    monkeypatch.setattr(page_budget, "PAGE_CALL_BUDGET", 10)
    for name in people[:30]:
        get_watchlist(name)
    assert len(trakt.requests_to(PUBLIC)) == 10
    window.advance(PERIOD - 1)  # still the same window
    assert get_watchlist(people[30]).error == WatchlistError.BUSY
    window.advance(1)  # the next one: ten more calls, no more
    results = [get_watchlist(name) for name in people[30:60]]
    assert len(trakt.requests_to(PUBLIC)) == 20
    assert [result.error for result in results[:10]] == [""] * 10
    assert titles(results[0]) == ["Film of person30"]
    assert {result.error for result in results[10:]} == {WatchlistError.BUSY}


def test_period_setting_sets_the_window(trakt, people, window, settings, monkeypatch):
    monkeypatch.setattr(page_budget, "PAGE_CALL_BUDGET", 2)
    monkeypatch.setattr(page_budget, "PAGE_CALL_PERIOD", 60)
    for name in people[:5]:
        get_watchlist(name)
    assert len(trakt.requests_to(PUBLIC)) == 2
    window.advance(60)
    for name in people[5:10]:
        get_watchlist(name)
    assert len(trakt.requests_to(PUBLIC)) == 4


def test_spent_budget_shows_the_stale_copy_without_a_call(trakt, people, window, settings, monkeypatch):
    monkeypatch.setattr(page_budget, "PAGE_CALL_BUDGET", 3)
    assert titles(get_watchlist("person0")) == ["Film of person0"]
    window.advance(301)  # past the TTL, and into the next window
    for name in people[1:4]:
        get_watchlist(name)
    trakt.reset_requests()
    result = get_watchlist("person0")
    assert result.stale and titles(result) == ["Film of person0"] and result.error == WatchlistError.BUSY
    assert trakt.requests == []


def test_spent_budget_html_says_busy_and_shows_the_stale_copy_with_its_notice(
    pages, client, trakt, people, window, settings, monkeypatch
):
    monkeypatch.setattr(page_budget, "PAGE_CALL_BUDGET", 1)
    client.get("/public/", {"name": "person0"})
    window.advance(301)
    client.get("/public/", {"name": "person1"})  # spends the new window's only call
    stale = client.get("/public/", {"name": "person0"}).content.decode()
    empty = client.get("/public/", {"name": "person2"}).content.decode()
    assert "Film of person0" in stale and "this is the last copy we have." in stale
    assert BUSY_HTML in empty
    assert len(trakt.requests_to(PUBLIC)) == 2


def test_zero_budget_means_pages_only_show_what_is_cached(trakt, people, window, settings, monkeypatch):
    assert titles(get_watchlist("person0")) == ["Film of person0"]
    monkeypatch.setattr(page_budget, "PAGE_CALL_BUDGET", 0)
    window.advance(301)
    trakt.reset_requests()
    assert get_watchlist("person0").stale
    assert get_watchlist("person1").error == WatchlistError.BUSY
    assert trakt.requests == []


def test_a_fetch_of_several_pages_counts_each_page(trakt, window, settings, monkeypatch):
    monkeypatch.setattr(watchlist_items, "WATCHLIST_MAX_ITEMS", 250)
    trakt.add_user("long")
    trakt.fill_watchlist("long", 230)
    trakt.reset_requests()
    monkeypatch.setattr(page_budget, "PAGE_CALL_BUDGET", 2)
    # Three pages are needed; the third is not sent, and what came is not shown as the list.
    assert get_watchlist("long", type="movies", limit=250).error == WatchlistError.BUSY
    assert [r.query["page"] for r in trakt.requests_to(PUBLIC)] == ["1", "2"]
    window.advance(PERIOD)
    monkeypatch.setattr(page_budget, "PAGE_CALL_BUDGET", 3)
    assert len(get_watchlist("long", type="movies", limit=250)) == 230
    assert len(trakt.requests_to(PUBLIC)) == 5


def test_the_retry_of_a_short_429_is_a_call_too(trakt, people, window, settings, monkeypatch):
    monkeypatch.setattr("django_trakt.internal.core.clock.sleep", lambda seconds: None)
    monkeypatch.setattr(watchlist, "PAGE_RETRY_WAIT", 1)
    monkeypatch.setattr(page_budget, "PAGE_CALL_BUDGET", 1)
    trakt.rate_limit_next(PUBLIC, retry_after=1)
    assert get_watchlist("person0").error == WatchlistError.BUSY
    assert len(trakt.requests_to(PUBLIC)) == 1
    window.advance(PERIOD)
    monkeypatch.setattr(page_budget, "PAGE_CALL_BUDGET", 2)
    trakt.rate_limit_next(PUBLIC, retry_after=1)
    assert titles(get_watchlist("person0")) == ["Film of person0"]
    assert len(trakt.requests_to(PUBLIC)) == 3


def test_budget_spent_is_logged_once_per_window(trakt, people, window, settings, caplog, monkeypatch):
    monkeypatch.setattr(page_budget, "PAGE_CALL_BUDGET", 2)
    with caplog.at_level(logging.WARNING, logger="django_trakt"):
        for name in people[:20]:
            get_watchlist(name)
    assert caplog.text.count("The page budget of Trakt calls (2 per 300.0s, site-wide, public lists) is spent") == 1


# -- unknown and private names: the negative cache -------------------------------------------------


def test_unknown_username_is_not_asked_again_within_the_not_found_ttl(trakt, window):
    assert get_watchlist("nobody-here").error == WatchlistError.NOT_FOUND
    window.advance(3599)
    for kind in watchlist_items.TYPES:
        for sort in ("rank", "-added", "title"):
            assert get_watchlist("nobody-here", type=kind, sort=sort).error == WatchlistError.NOT_FOUND
    assert len(trakt.requests_to(PUBLIC)) == 1
    window.advance(1)
    assert get_watchlist("nobody-here").error == WatchlistError.NOT_FOUND
    assert len(trakt.requests_to(PUBLIC)) == 2


def test_private_user_is_negative_cached_too(trakt, window):
    trakt.add_user("secretive", private=True)
    assert get_watchlist("secretive").error == WatchlistError.PRIVATE
    window.advance(600)
    assert get_watchlist("secretive", type="movies").error == WatchlistError.PRIVATE
    assert len(trakt.requests_to(PUBLIC)) == 1


def test_visitor_cycling_random_names_costs_one_call_per_name_per_hour(pages, client, trakt, window):
    names = [f"random{number}" for number in range(40)]
    for _round in range(3):
        for name in names:
            for kind in ("movies", "shows"):
                response = client.get("/public/", {"name": name, "kind": kind})
                assert response.status_code == 200 and "There is no such Trakt user." in response.content.decode()
        window.advance(300)  # each round in a window of its own: the budget is not what stops them
    assert len(trakt.requests_to(PUBLIC)) == 40


def test_not_found_ttl_setting(trakt, window, settings, monkeypatch):
    monkeypatch.setattr(watchlist, "WATCHLIST_NOT_FOUND_TTL", 120)
    get_watchlist("nobody-here")
    window.advance(119)
    get_watchlist("nobody-here")
    assert len(trakt.requests_to(PUBLIC)) == 1
    window.advance(1)
    get_watchlist("nobody-here")
    assert len(trakt.requests_to(PUBLIC)) == 2


# -- a cache that is down, or that lost the count ----------------------------------------------------


def test_cache_down_means_no_trakt_call_and_no_500(pages, client, trakt, people, viewer, settings):
    settings.CACHES = BROKEN_CACHES
    settings.TRAKT_CACHE = "broken"
    for name in people[:20]:
        response = client.get("/public/", {"name": name})
        assert response.status_code == 200 and BUSY_HTML in response.content.decode()
    client.force_login(viewer)
    response = client.get("/own/")
    assert response.status_code == 200 and BUSY_HTML in response.content.decode()
    assert trakt.requests == []
    assert get_watchlist("person0").error == WatchlistError.UNAVAILABLE


def test_counter_lost_between_add_and_incr_is_started_again(trakt, people, window, monkeypatch):
    store = caches["default"]
    real_incr = store.incr
    lost = []

    def incr_after_eviction(key, delta=1, version=None):
        if not lost:
            lost.append(key)
            store.delete(key)  # evicted (a full locmem or memcached) right after the add
        return real_incr(key, delta, version)

    monkeypatch.setattr(store, "incr", incr_after_eviction)
    assert spend_page_call(PUBLIC_SCOPE) == WatchlistError.NONE
    assert store.get(lost[0]) == 1
    assert titles(get_watchlist("person0")) == ["Film of person0"]
    assert store.get(lost[0]) == 2


def test_cache_that_cannot_count_means_no_call(trakt, people, window, monkeypatch):
    store = caches["default"]

    def down(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(store, "incr", down)
    assert get_watchlist("person0").error == WatchlistError.UNAVAILABLE
    assert trakt.requests == []


# -- the signed-in user's own lists: a budget per user ------------------------------------------------


def test_own_list_keeps_working_while_the_public_budget_is_spent(
    pages, client, trakt, people, viewer, window, settings, monkeypatch
):
    monkeypatch.setattr(page_budget, "PAGE_CALL_BUDGET", 5)
    for name in people[:50]:
        client.get("/public/", {"name": name})
    client.force_login(viewer)
    html = client.get("/own/", {"kind": "movies"}).content.decode()
    assert "Heat" in html
    assert len(trakt.requests_to(PUBLIC)) == 5
    assert len(trakt.requests_to(ACTIVITIES)) == 1 and len(trakt.requests_to(OWN_LIST)) == 1


def test_own_lists_spend_a_budget_per_user(trakt, linked, viewer, window, settings, monkeypatch):
    monkeypatch.setattr(page_budget, "PAGE_USER_CALL_BUDGET", 3)
    assert titles(get_watchlist(viewer, type="movies")) == ["Heat"]  # last_activities + the list
    assert titles(get_watchlist(viewer, type="shows")) == ["The Wire"]  # the list (activities shared)
    assert get_watchlist(viewer, type="all").error == WatchlistError.BUSY
    assert titles(get_watchlist(viewer, type="movies")) == ["Heat"]  # cached lists cost nothing
    assert len(trakt.requests) == 3
    other, _token = linked()
    trakt.add_watchlist_item(other.username, "movie", title="Ran", year=1985)
    assert titles(get_watchlist(other, type="movies")) == ["Ran"]  # another user's budget
    window.advance(PERIOD)
    assert titles(get_watchlist(viewer, type="all")) == ["Heat", "The Wire"]


def test_signed_in_user_reloading_every_type_stays_within_their_budget(
    pages, client, trakt, viewer, window, settings, monkeypatch
):
    monkeypatch.setattr(page_budget, "PAGE_USER_CALL_BUDGET", 4)
    client.force_login(viewer)
    for _reload in range(20):
        for kind in watchlist_items.TYPES:
            assert client.get("/own/", {"kind": kind}).status_code == 200
        window.advance(2)
    assert len(trakt.requests) == 4


def test_own_lists_do_not_spend_the_public_budget(trakt, people, viewer, window, settings, monkeypatch):
    monkeypatch.setattr(page_budget, "PAGE_CALL_BUDGET", 1)
    for kind in watchlist_items.TYPES:
        assert get_watchlist(viewer, type=kind).error == ""
    assert titles(get_watchlist("person0")) == ["Film of person0"]
    assert get_watchlist("person1").error == WatchlistError.BUSY
