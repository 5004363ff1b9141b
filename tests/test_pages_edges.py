"""Leftover edges of what site owners and their users see: watchlist documents and caching,
the template tags' failure modes, a site without the app's URLs, the redirect-URI command's
site problems, the admin's messages, revocation crashes and the callback check."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from allauth.socialaccount.models import SocialAccount
from django.contrib.sites.models import Site
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.template import Context, Template
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from django_trakt import checks, signals
from django_trakt.admin import expiry_marker
from django_trakt.models import TraktToken
from django_trakt.pages import watchlist
from django_trakt.pages.watchlist import WatchlistItem, get_watchlist

pytestmark = pytest.mark.django_db

#: For the tests of a site whose URLconf lacks django_trakt.site_urls and allauth.urls.
urlpatterns: list = []

OWN_LIST = r"/sync/watchlist/.*"
ACTIVITIES = "/sync/last_activities"
CHANGELIST = reverse("admin:django_trakt_trakttoken_changelist")


@pytest.fixture
def viewer(trakt, linked):
    user, _token = linked()
    trakt.add_watchlist_item(user.username, "movie", title="Heat", year=1995)
    trakt.add_watchlist_item(user.username, "movie", title="Alien", year=1979)
    trakt.reset_requests()
    return user


def render(source: str, **context) -> str:
    return Template("{% load trakt %}" + source).render(Context(context))


def titles(result) -> list[str]:
    return [item.display_title for item in result]


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


def test_empty_watchlist_is_falsy_in_templates(trakt, linked, viewer):
    empty_user, _token = linked()
    template = "{% trakt_watchlist who as items %}{% if items %}{{ items|length }} to watch{% else %}nothing{% endif %}"
    assert render(template, who=empty_user) == "nothing"
    assert render(template, who=viewer) == "2 to watch"


def test_posters_sent_as_text_or_thumbs_are_used_and_others_left_out(trakt, viewer, settings):
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
    result = get_watchlist(viewer, type="movies")
    posters = {item.title: item.poster_url for item in result}
    assert posters["text"].startswith("/trakt/poster/") and posters["thumb"].startswith("/trakt/poster/")
    assert posters["text"] != posters["thumb"]
    assert posters["fanart"] == "" and posters["broken"] == ""


def test_movie_or_show_without_title_is_left_out(trakt, viewer):
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
    result = get_watchlist(viewer, type="all")
    assert titles(result) == ["Heat", "Lost: Season 3"]
    assert result.items[1].url == "https://trakt.test/shows/lost/seasons/3"


@override_settings(TRAKT_WATCHLIST_MAX_ITEMS=3)
def test_limit_that_is_not_a_number_shows_up_to_the_maximum(trakt, linked):
    user, _token = linked()
    trakt.fill_watchlist(user.username, 5)
    assert render('{% trakt_watchlist user limit="lots" as items %}{{ items|length }}', user=user) == "3"
    (request,) = trakt.requests_to(OWN_LIST)
    assert request.query["limit"] == "3"


# -- caching edges ----------------------------------------------------------------------------------


def test_cache_outage_never_breaks_a_watchlist(trakt, viewer, settings, caplog):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "broken": {"BACKEND": "tests.conftest.BrokenCache"},
    }
    settings.TRAKT_CACHE = "broken"
    first = get_watchlist(viewer, type="movies")
    # No cache, no budget to count Trakt calls in: the page asks Trakt nothing rather than
    # risk a burst, and shows its empty state (tests/test_page_budget.py has the rest).
    assert titles(first) == [] and first.error == "unavailable"
    assert "The Trakt cache 'broken' failed on get" in caplog.text
    assert titles(get_watchlist(viewer, type="movies")) == []
    assert trakt.requests_to(OWN_LIST) == []


@pytest.mark.parametrize(
    "activities",
    [[], {"watchlist": {"updated_at": None}}, {"watchlist": "recently"}],
    ids=["not-an-object", "no-updated-at", "watchlist-not-an-object"],
)
def test_unusable_last_activities_answer_fetches_the_list_again(trakt, viewer, clock, activities):
    assert titles(get_watchlist(viewer, type="movies")) == ["Heat", "Alien"]
    trakt.add_watchlist_item(viewer.username, "movie", title="Ran", year=1985)
    clock.advance(301)
    trakt.fail_next(ACTIVITIES, status=200, json=activities)
    result = get_watchlist(viewer, type="movies")
    assert titles(result) == ["Heat", "Alien", "Ran"] and not result.stale
    assert len(trakt.requests_to(OWN_LIST)) == 2


def test_list_being_refreshed_by_another_request_is_served_as_is(trakt, viewer, clock):
    assert titles(get_watchlist(viewer, type="movies")) == ["Heat", "Alien"]
    trakt.reset_requests()
    clock.advance(301)
    cache.add(watchlist.cache_key(f"user:{viewer.pk}", "movies", "rank", "asc") + ":lock", True)
    result = get_watchlist(viewer, type="movies")
    assert titles(result) == ["Heat", "Alien"] and not result.stale and result.error == ""
    assert trakt.requests == []


def test_zero_failure_backoff_asks_trakt_again_on_the_next_render(trakt, viewer, settings):
    settings.TRAKT_FAILURE_BACKOFF = 0
    trakt.fail_next(OWN_LIST, status=503)
    assert get_watchlist(viewer, type="movies").error == "unavailable"
    assert titles(get_watchlist(viewer, type="movies")) == ["Heat", "Alien"]
    assert len(trakt.requests_to(OWN_LIST)) == 2


# -- template tags that go wrong ---------------------------------------------------------------------


class Profile:
    @property
    def owner(self):
        raise RuntimeError("a bug in the site's model")


def test_watchlist_tag_argument_that_raises_is_the_sites_own_error(db, trakt):
    # The tag is a simple_tag: Django resolves its arguments, and a site's property that
    # raises fails the page as it would in {{ profile.owner }}, unchanged (a bug of the
    # site is not one of Trakt's failures, which the tag turns into the empty state).
    with pytest.raises(RuntimeError, match="a bug in the site's model"):
        render("{% trakt_watchlist profile.owner %}", profile=Profile())
    assert trakt.requests == []


def test_watchlist_tag_argument_that_is_missing_renders_the_empty_state(db, trakt):
    # Django resolves a missing attribute to "" (string_if_invalid): no user, no name.
    html = render("{% trakt_watchlist profile.nobody %}", profile=Profile())
    assert "The watchlist cannot be shown right now." in html
    assert trakt.requests == []


def test_watchlist_tag_with_missing_template_renders_nothing_and_keeps_the_page(viewer, caplog):
    html = render('before|{% trakt_watchlist user template="nowhere/missing.html" %}|after', user=viewer)
    assert html == "before||after"
    assert "The Trakt watchlist template nowhere/missing.html could not be rendered" in caplog.text


def test_site_without_the_apps_urls_shows_default_avatar_and_posters(trakt, viewer, settings, caplog):
    settings.ROOT_URLCONF = __name__  # through the fixture only: mixing it with override_settings leaks
    settings.TRAKT_IMAGE_HOSTS = ["trakt.test"]
    account = SocialAccount.objects.get(user=viewer)
    account.extra_data["user"]["images"] = {"avatar": {"full": "https://trakt.test/images/avatars/x.png"}}
    account.save()
    avatar = render("{% trakt_avatar user %}", user=viewer)
    posters = render('{% trakt_watchlist user type="movies" posters=True %}', user=viewer)
    assert 'src="/static/django_trakt/default-avatar.png"' in avatar
    assert posters.count('src="/static/django_trakt/default-poster.png"') == 2
    assert "/trakt/" not in avatar + posters
    assert "django_trakt.site_urls is not included in the URLconf" in caplog.text


# -- manage.py trakt_redirect_uri: the current site cannot be used ----------------------------------------


def redirect_uri_command(**options):
    out, err = StringIO(), StringIO()
    call_command("trakt_redirect_uri", stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def fresh_sites():
    Site.objects.clear_cache()
    yield
    Site.objects.clear_cache()


def test_redirect_uri_command_without_site_id_asks_for_host(settings, fresh_sites):
    del settings.SITE_ID
    with pytest.raises(CommandError, match=r"cannot tell the current site .*; pass --host"):
        redirect_uri_command()


def test_redirect_uri_command_with_missing_site_row(settings, fresh_sites):
    settings.SITE_ID = 999
    with pytest.raises(CommandError, match="The Site of SITE_ID does not exist"):
        redirect_uri_command()


def test_redirect_uri_command_before_migrate(fresh_sites):
    table = connection.ops.quote_name(Site._meta.db_table)
    moved = connection.ops.quote_name(Site._meta.db_table + "_elsewhere")
    with pytest.raises(CommandError, match=r"run manage\.py migrate first"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table} RENAME TO {moved}")
        redirect_uri_command()
    assert Site.objects.get(pk=1).domain == "testserver"  # the rename was rolled back


def test_redirect_uri_command_with_blank_site_domain(fresh_sites):
    Site.objects.filter(pk=1).update(domain="   ")
    with pytest.raises(CommandError, match="empty domain"):
        redirect_uri_command()


@override_settings(ALLOWED_HOSTS=["example.com"])
def test_redirect_uri_command_quiet_with_verbosity_zero(fresh_sites):
    Site.objects.filter(pk=1).update(domain="example.com")  # Django's default Site
    Site.objects.clear_cache()
    out, err = redirect_uri_command(verbosity=0)
    assert out == "http://example.com/accounts/trakt/login/callback/\n"
    assert err == ""
    _out, noisy = redirect_uri_command()
    assert "placeholder domain" in noisy  # the same run at verbosity 1 has notes


# -- admin -----------------------------------------------------------------------------------------------


def test_expiry_marker_states():
    now = timezone.now()
    assert expiry_marker(None, now) == ""
    assert expiry_marker(now, now) == "expired"
    assert expiry_marker(now + dt.timedelta(hours=23), now) == "expiring soon"
    assert expiry_marker(now + dt.timedelta(days=2), now) == ""


def admin_action(client, action, tokens):
    data = {"action": action, "_selected_action": [token.pk for token in tokens]}
    response = client.post(CHANGELIST, data, follow=True)
    return [str(message) for message in response.context["messages"]]


def test_refresh_now_failure_message_lists_ten_links_then_counts_the_rest(admin_client, linked, trakt):
    tokens = [linked(f"Batch{number:02d}")[1] for number in range(12)]
    trakt.fail_next("/oauth/token", status=503, times=12)
    (message,) = admin_action(admin_client, "refresh_now", tokens)
    assert message.startswith("12 Trakt links could not be refreshed; try again later. (")
    assert message.endswith(" and 2 more)")
    assert sum(f"Batch{number:02d}: " in message for number in range(12)) == 10


def test_refresh_now_reports_a_link_unlinked_meanwhile_as_not_refreshed(admin_client, linked, trakt):
    (_u1, first), (_u2, second) = linked("RaceOne"), linked("RaceTwo")
    pair = {first.pk: second, second.pk: first}

    def unlink_the_other(sender, token, **kwargs):
        # The other user disconnects Trakt while the admin's action runs.
        SocialAccount.objects.filter(pk=pair[token.pk].account_id).delete()

    signals.token_refreshed.connect(unlink_the_other, dispatch_uid="test_pages_edges_race")
    try:
        messages = admin_action(admin_client, "refresh_now", [first, second])
    finally:
        signals.token_refreshed.disconnect(dispatch_uid="test_pages_edges_race")
    refreshed, not_refreshed = messages
    assert refreshed == "1 Trakt link was refreshed."
    assert not_refreshed.startswith("1 Trakt link was not refreshed. (Race")
    assert not_refreshed.endswith(": being refreshed elsewhere, or unlinked)")
    assert TraktToken.objects.count() == 1


# -- revocation and checks ------------------------------------------------------------------------------------


def test_unexpected_crash_while_revoking_still_unlinks_and_announces(
    trakt, linked, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    def crash(**kwargs):
        raise RuntimeError("a bug while revoking")

    seen = []
    monkeypatch.setattr("django_trakt.links.revocation.oauth.revoke_token", crash)
    signals.link_revoked.connect(
        lambda sender, account, revoked_at_trakt, **kw: seen.append((account.uid, revoked_at_trakt)),
        dispatch_uid="test_pages_edges_revoked",
        weak=False,
    )
    _user, token = linked()
    account, secret = token.account, token.access_token
    try:
        with django_capture_on_commit_callbacks(execute=True):
            account.delete()
    finally:
        signals.link_revoked.disconnect(dispatch_uid="test_pages_edges_revoked")
    assert not SocialAccount.objects.filter(pk=token.account_id).exists()
    assert not TraktToken.objects.filter(pk=token.pk).exists()
    assert seen == [(account.uid, False)]
    assert f"Revoking the Trakt token of account {token.account_id} failed unexpectedly" in caplog.text
    assert secret not in caplog.text


@override_settings(ROOT_URLCONF=__name__, DEBUG=False, ACCOUNT_DEFAULT_HTTP_PROTOCOL="http", SECURE_SSL_REDIRECT=False)
def test_callback_check_quiet_when_allauth_urls_are_not_installed():
    assert checks.check_callback_https() == []
