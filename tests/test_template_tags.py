"""``{% load trakt %}``: the exact HTML of each tag, escaping, caching, and no Trakt image URL."""

from __future__ import annotations

import pytest
from allauth.socialaccount.models import SocialAccount
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.template import Context, Template, TemplateSyntaxError
from django.test import SimpleTestCase
from django.test.utils import CaptureQueriesContext

from django_trakt.internal.pages import images
from django_trakt.templatetags import trakt as trakt_tags

pytestmark = pytest.mark.django_db

#: For the tests of a site whose URLconf lacks django_trakt.site_urls and allauth.urls.
urlpatterns: list = []

#: Substrings that would mean a Trakt or Gravatar image URL reached the page.
FORBIDDEN = ("trakt.tv/", "trakt.test/images", "/images/avatars/", "/images/posters/", "gravatar.com", "walter")
DEFAULT_AVATAR = "/static/django_trakt/default-avatar.png"

_html = SimpleTestCase()


def assert_no_trakt_image_urls(html: str) -> None:
    for needle in FORBIDDEN:
        assert needle not in html, f"{needle!r} in rendered HTML"


def render(source: str, **context) -> str:
    """Render a template with the tags loaded; every output is scanned for image URLs."""
    html = Template("{% load trakt %}" + source).render(Context(context))
    assert_no_trakt_image_urls(html)
    return html


def assert_html(html: str, expected: str) -> None:
    _html.assertHTMLEqual(html, expected)


@pytest.fixture
def viewer(trakt, linked):
    user, _token = linked("viewer")
    trakt.add_watchlist_item("viewer", "movie", title="Heat", year=1995)
    trakt.add_watchlist_item("viewer", "movie", title="Alien", year=1979)
    trakt.add_watchlist_item("viewer", "show", title="The Wire", year=2002)
    trakt.reset_requests()
    return user


def set_avatar(user, url):
    account = SocialAccount.objects.get(user=user, provider="trakt")
    account.extra_data["user"]["images"] = {"avatar": {"full": url}}
    account.save()
    return account


# -- trakt_watchlist: exact HTML -----------------------------------------------------------------


def test_watchlist_tag_movie_list_html(viewer):
    html = render('{% trakt_watchlist user type="movies" %}', user=viewer)
    assert_html(
        html,
        """
        <div class="trakt-watchlist" data-type="movies">
          <ol class="trakt-watchlist-items">
            <li class="trakt-movie"><a href="https://trakt.test/movies/heat-1995">Heat</a>
              <span class="trakt-year">(1995)</span> <span class="trakt-kind">Movie</span></li>
            <li class="trakt-movie"><a href="https://trakt.test/movies/alien-1979">Alien</a>
              <span class="trakt-year">(1979)</span> <span class="trakt-kind">Movie</span></li>
          </ol>
        </div>
        """,
    )


def test_watchlist_tag_show_list_html(viewer):
    html = render('{% trakt_watchlist user type="shows" sort="title" limit=5 %}', user=viewer)
    assert_html(
        html,
        """
        <div class="trakt-watchlist" data-type="shows">
          <ol class="trakt-watchlist-items">
            <li class="trakt-show"><a href="https://trakt.test/shows/the-wire-2002">The Wire</a>
              <span class="trakt-year">(2002)</span> <span class="trakt-kind">Show</span></li>
          </ol>
        </div>
        """,
    )


def test_watchlist_tag_empty_list_html(trakt, linked):
    user, _token = linked()
    html = render('{% trakt_watchlist user type="movies" %}', user=user)
    assert_html(
        html,
        """
        <div class="trakt-watchlist" data-type="movies">
          <p class="trakt-watchlist-empty">Nothing on this watchlist yet.</p>
        </div>
        """,
    )


def test_watchlist_tag_public_username_html(trakt, db):
    trakt.add_user("pat")
    trakt.add_watchlist_item("pat", "episode", show="Lost", season=1, episode=2, title="Pilot (2)")
    html = render('{% trakt_watchlist "pat" type="episodes" %}')
    assert_html(
        html,
        """
        <div class="trakt-watchlist" data-type="episodes">
          <ol class="trakt-watchlist-items">
            <li class="trakt-episode">
              <a href="https://trakt.test/shows/lost/seasons/1/episodes/2">Lost 1x02 Pilot (2)</a>
              <span class="trakt-kind">Episode</span></li>
          </ol>
        </div>
        """,
    )


@pytest.mark.parametrize(
    ("inject", "message"),
    [
        (lambda t: t.fail_next(r"/sync/", status=503, times=3), "The watchlist cannot be shown right now."),
        (lambda t: t.rate_limit_next(r"/sync/", retry_after=60, times=3), "The watchlist cannot be shown right now."),
    ],
    ids=["down", "429"],
)
def test_watchlist_tag_failure_without_copy_html(viewer, trakt, inject, message):
    inject(trakt)
    html = render('{% trakt_watchlist user type="movies" %}', user=viewer)
    assert_html(
        html,
        f'<div class="trakt-watchlist" data-type="movies"><p class="trakt-watchlist-empty">{message}</p></div>',
    )


def test_watchlist_tag_stale_copy_html(viewer, trakt, settings):
    render('{% trakt_watchlist user type="shows" %}', user=viewer)
    settings.TRAKT_WATCHLIST_TTL = 0
    trakt.timeout_next(r"/sync/", times=3)
    html = render('{% trakt_watchlist user type="shows" %}', user=viewer)
    assert_html(
        html,
        """
        <div class="trakt-watchlist" data-type="shows">
          <p class="trakt-watchlist-notice">Trakt is not answering right now; this is the last copy we have.</p>
          <ol class="trakt-watchlist-items">
            <li class="trakt-show"><a href="https://trakt.test/shows/the-wire-2002">The Wire</a>
              <span class="trakt-year">(2002)</span> <span class="trakt-kind">Show</span></li>
          </ol>
        </div>
        """,
    )


@pytest.mark.parametrize(
    ("who", "message"),
    [
        (AnonymousUser(), "No Trakt account is linked."),
        ("nobody-at-all", "There is no such Trakt user."),
        ("", "The watchlist cannot be shown right now."),
    ],
    ids=["anonymous", "unknown-username", "missing-variable"],
)
def test_watchlist_tag_error_states_html(trakt, db, who, message):
    html = render("{% trakt_watchlist who %}", who=who)
    assert_html(
        html, f'<div class="trakt-watchlist" data-type="all"><p class="trakt-watchlist-empty">{message}</p></div>'
    )


def test_watchlist_tag_escapes_titles(trakt, linked):
    user, _token = linked()
    trakt.add_watchlist_item(user.username, "movie", title='<script>alert("x")</script>', year=2000)
    trakt.add_watchlist_item(user.username, "show", title="Tom & <b>Jerry</b>", year=1940)
    html = render("{% trakt_watchlist user %}", user=user)
    assert "<script>" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "Tom &amp; &lt;b&gt;Jerry&lt;/b&gt;" in html


def test_watchlist_tag_as_form_gives_items_for_custom_markup(viewer, trakt):
    html = render(
        '{% trakt_watchlist user type="movies" as items %}'
        "{% for item in items %}[{{ item.title }}|{{ item.year }}|{{ item.kind }}]{% endfor %}"
        "{{ items.stale }}{{ items.error|default:'ok' }}{{ items|length }}",
        user=viewer,
    )
    assert html == "[Heat|1995|movie][Alien|1979|movie]Falseok2"


def test_watchlist_tag_custom_template_argument(viewer, settings, tmp_path):
    (tmp_path / "mine.html").write_text("{% for item in watchlist %}<i>{{ item.title }}</i>{% endfor %}")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [str(tmp_path)]}]
    html = Template('{% load trakt %}{% trakt_watchlist user type="movies" template="mine.html" %}').render(
        Context({"user": viewer})
    )
    assert html == "<i>Heat</i><i>Alien</i>"


def test_watchlist_tag_with_posters_links_local_copies(viewer, trakt, settings):
    settings.TRAKT_IMAGE_HOSTS = ["trakt.test"]
    html = render('{% trakt_watchlist user type="movies" limit=1 posters=True %}', user=viewer)
    movie = trakt.get_user("viewer").watchlist[0].media
    token = images.poster_token(f"https://trakt.test/images/posters/movie-{movie['ids']['trakt']}.png")
    assert token
    assert_html(
        html,
        f"""
        <div class="trakt-watchlist" data-type="movies">
          <ol class="trakt-watchlist-items">
            <li class="trakt-movie">
              <img class="trakt-poster" src="/trakt/poster/{token}" width="60" height="90" alt="" loading="lazy">
              <a href="https://trakt.test/movies/heat-1995">Heat</a>
              <span class="trakt-year">(1995)</span> <span class="trakt-kind">Movie</span></li>
          </ol>
        </div>
        """,
    )
    assert trakt.requests_to(r"/images/.*") == []  # the page never fetches an image itself


def test_watchlist_tag_posters_from_refused_hosts_show_default_poster(viewer):
    html = render('{% trakt_watchlist user type="movies" limit=1 posters=True %}', user=viewer)
    assert 'src="/static/django_trakt/default-poster.png"' in html


def test_watchlist_tag_second_render_with_warm_cache_makes_no_request(viewer, trakt):
    template = '{% trakt_watchlist user type="movies" %}{% trakt_watchlist user type="shows" %}'
    first = render(template, user=viewer)
    assert len(trakt.requests) == 3  # last_activities once, then one page per list
    trakt.reset_requests()
    with CaptureQueriesContext(connection) as queries:
        assert render(template, user=viewer) == first
    assert trakt.requests == [] and len(queries) == 0


def test_watchlist_tag_wrong_arguments_fail_at_compile_time():
    with pytest.raises(TemplateSyntaxError):
        Template("{% load trakt %}{% trakt_watchlist user colour='red' %}")
    with pytest.raises(TemplateSyntaxError):
        Template("{% load trakt %}{% trakt_watchlist %}")


def test_watchlist_tag_never_raises_on_unexpected_errors(viewer, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr("django_trakt.templatetags.trakt.get_watchlist", boom)
    html = render("{% trakt_watchlist user %}", user=viewer)
    assert "The watchlist cannot be shown right now." in html


# -- trakt_avatar: exact HTML --------------------------------------------------------------------


def test_avatar_tag_html_points_at_this_site(trakt, linked, settings):
    settings.TRAKT_IMAGE_HOSTS = ["trakt.test"]
    user, _token = linked("pic")
    account = set_avatar(user, "https://trakt.test/images/avatars/pic.png")
    key = images.avatar_key(account.pk, "https://trakt.test/images/avatars/pic.png")
    with CaptureQueriesContext(connection) as queries:
        html = render("{% trakt_avatar user %}", user=user)
    assert_html(
        html, f'<img class="trakt-avatar" src="/trakt/avatar/{account.pk}/{key}" width="64" height="64" alt="pic">'
    )
    assert len(queries) == 1 and trakt.requests == []
    assert render("{% trakt_avatar_url user %}", user=user) == f"/trakt/avatar/{account.pk}/{key}"


def test_avatar_tag_gravatar_profile_default_hosts(trakt, linked):
    user, _token = linked("grav")
    account = set_avatar(user, "https://secure.gravatar.com/avatar/30c2f0dfbc39e48656f40498aa871e33?r=pg&s=256")
    html = render('{% trakt_avatar user size=96 css_class="round" %}', user=user)
    assert f'src="/trakt/avatar/{account.pk}/' in html
    assert 'class="trakt-avatar round"' in html and 'width="96" height="96"' in html


@pytest.mark.parametrize(
    "avatar",
    [None, "http://trakt.test/images/avatars/a.png", "https://evil.example/a.png", ""],
    ids=["no-avatar", "http", "other-host", "blank"],
)
def test_avatar_tag_without_usable_avatar_shows_default(trakt, linked, settings, avatar):
    settings.TRAKT_IMAGE_HOSTS = ["trakt.test"]
    user, _token = linked("plain")
    if avatar is not None:
        set_avatar(user, avatar)
    html = render("{% trakt_avatar user size=32 %}", user=user)
    assert_html(html, f'<img class="trakt-avatar" src="{DEFAULT_AVATAR}" width="32" height="32" alt="plain">')


@pytest.mark.parametrize("who", [AnonymousUser(), None, ""], ids=["anonymous", "none", "missing"])
def test_avatar_tag_for_nobody_shows_default(db, who):
    html = render("{% trakt_avatar who %}", who=who)
    assert_html(html, f'<img class="trakt-avatar" src="{DEFAULT_AVATAR}" width="64" height="64" alt="">')


def test_avatar_tag_unlinked_user_and_bad_size(db, django_user_model):
    user = django_user_model.objects.create_user("solo", "solo@example.com", "pw")
    html = render('{% trakt_avatar user size="huge" %}', user=user)
    assert_html(html, f'<img class="trakt-avatar" src="{DEFAULT_AVATAR}" width="64" height="64" alt="">')


def test_avatar_tag_escapes_username_and_class(trakt, linked):
    user, _token = linked("esc")
    account = SocialAccount.objects.get(user=user)
    account.extra_data["user"]["username"] = '"><script>x</script>'
    account.save()
    html = render("{% trakt_avatar user css_class=cls %}", user=user, cls='"onload="x')
    assert "<script>" not in html and 'onload="x' not in html
    assert "&quot;&gt;&lt;script&gt;x&lt;/script&gt;" in html


def test_avatar_tag_never_raises(trakt, linked, monkeypatch):
    user, _token = linked()

    def boom(user):
        raise RuntimeError("database gone")

    monkeypatch.setattr(trakt_tags, "trakt_account_of", boom)
    assert DEFAULT_AVATAR in render("{% trakt_avatar user %}", user=user)


# -- no image URL of Trakt's anywhere ---------------------------------------------------------------


def test_no_trakt_or_gravatar_image_url_in_any_tag_output(trakt, linked, settings):
    """Real Trakt URL shapes (schemeless walter-r2 posters, a Gravatar avatar) never reach the HTML."""
    user, _token = linked("scan")
    set_avatar(user, "https://secure.gravatar.com/avatar/30c2f0dfbc39e48656f40498aa871e33?r=pg&s=256")
    poster = "walter-r2.trakt.tv/images/movies/000/001/poster/medium/abc.jpg.webp"
    document = {
        "rank": 1,
        "type": "movie",
        "listed_at": "2026-01-01T00:00:00.000Z",
        "movie": {
            "title": "Heat",
            "year": 1995,
            "ids": {"trakt": 1, "slug": "heat-1995"},
            "images": {"poster": [poster]},
        },
    }
    trakt.fail_next(r"/sync/watchlist", status=200, json=[document])
    html = render(
        '{% trakt_avatar user %}{% trakt_avatar_url user %}{% trakt_watchlist user type="movies" posters=True %}',
        user=user,
    )
    assert "/trakt/poster/" in html and "/trakt/avatar/" in html


@pytest.mark.parametrize(
    "leak",
    [
        '<img src="https://walter-r2.trakt.tv/images/users/000/001/avatars/large/x.jpg">',
        '<img src="https://secure.gravatar.com/avatar/abc?s=256">',
        '<img src="https://trakt.test/images/posters/movie-1.png">',
    ],
)
def test_the_scan_itself_catches_image_urls(leak):
    with pytest.raises(AssertionError):
        assert_no_trakt_image_urls(leak)


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
