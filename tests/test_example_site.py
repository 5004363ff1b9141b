"""The example site's profile page: avatar, movie and show watchlists, re-authorization banner."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from allauth.socialaccount.models import SocialAccount
from django.core.cache import cache

from django_trakt.models import TraktToken
from tests.test_template_tags import assert_no_trakt_image_urls

pytestmark = pytest.mark.django_db

EXAMPLE = Path(__file__).resolve().parent.parent / "example_project"
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))


@pytest.fixture
def site(settings, client):
    """The example's URLs and templates on the test settings; the local Trakt in-process."""
    settings.ROOT_URLCONF = "example.urls"
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [str(EXAMPLE / "example" / "templates")]}]
    cache.clear()
    yield client
    cache.clear()


@pytest.fixture
def member(trakt, linked, site):
    user, token = linked("member")
    account = SocialAccount.objects.get(user=user)
    account.extra_data["user"]["images"] = {"avatar": {"full": "https://secure.gravatar.com/avatar/abc?s=256"}}
    account.save()
    trakt.add_watchlist_item("member", "movie", title="Heat", year=1995)
    trakt.add_watchlist_item("member", "show", title="The Wire", year=2002)
    site.force_login(user)
    trakt.reset_requests()
    return user, token, account


def profile(client) -> str:
    response = client.get("/profile/")
    assert response.status_code == 200
    html = response.content.decode()
    assert_no_trakt_image_urls(html)
    return html


def test_profile_shows_avatar_and_movie_and_show_watchlists(member, site, trakt):
    _user, _token, account = member
    html = profile(site)
    assert f'src="/trakt/avatar/{account.pk}/' in html and 'width="96"' in html
    assert '<div class="trakt-watchlist" data-type="movies">' in html and ">Heat</a>" in html
    assert '<div class="trakt-watchlist" data-type="shows">' in html and ">The Wire</a>" in html
    assert "Sign in with Trakt again" not in html
    assert trakt.requests_to(r"/images/.*") == []


def test_profile_second_view_makes_no_request_to_trakt(member, site, trakt):
    first = profile(site)
    trakt.reset_requests()
    second = profile(site)
    assert trakt.requests == []
    assert second.count(">Heat</a>") == first.count(">Heat</a>") == 1


FAILURES = {
    "down": lambda t: t.fail_next(r"/sync/", status=503, times=9),
    "slow": lambda t: t.timeout_next(r"/sync/", times=9),
    "429": lambda t: t.rate_limit_next(r"/sync/", retry_after=900, times=9),
}


@pytest.mark.parametrize("inject", FAILURES.values(), ids=FAILURES.keys())
def test_profile_renders_empty_state_when_trakt_fails(member, site, trakt, inject):
    inject(trakt)
    html = profile(site)
    assert html.count("The watchlist cannot be shown right now.") == 2


@pytest.mark.parametrize("inject", FAILURES.values(), ids=FAILURES.keys())
def test_profile_renders_last_copy_when_trakt_fails(member, site, trakt, settings, inject):
    profile(site)
    settings.TRAKT_WATCHLIST_TTL = 0
    inject(trakt)
    html = profile(site)
    assert ">Heat</a>" in html and ">The Wire</a>" in html
    assert html.count("this is the last copy we have") == 2


def test_profile_banner_when_link_needs_signing_in_again(member, site):
    _user, token, _account = member
    TraktToken.objects.filter(pk=token.pk).update(status=TraktToken.Status.NEEDS_REAUTH)
    html = profile(site)
    assert "Your Trakt link has stopped working." in html
    assert html.count("Sign in with Trakt again to see this watchlist.") == 2
