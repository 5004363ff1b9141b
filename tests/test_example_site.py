"""The example site: profile page (avatar, watchlists, re-authorization banner), its layout
on allauth's and django-trakt's pages, its demo admin, and ``run.py``'s start-up checks."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from allauth.socialaccount.models import SocialAccount
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.management import call_command

from django_trakt.models import TraktToken
from django_trakt.testing import TraktEmulator
from tests.test_template_tags import assert_no_trakt_image_urls

pytestmark = pytest.mark.django_db

EXAMPLE = Path(__file__).resolve().parent.parent / "example_project"
RUN_TIMEOUT = 30  # seconds: a refused start must not get as far as installing or migrating
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))


@pytest.fixture
def site(settings, client):
    """The example's URLs and templates on the test settings; the local Trakt in-process."""
    settings.ROOT_URLCONF = "example.urls"
    settings.USES_REAL_TRAKT = False  # the example's own setting, read by its home page
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


# -- the example's layout on allauth's and django-trakt's pages ------------------------------------


def test_connections_page_says_why_the_last_login_cannot_be_removed(trakt, site):
    user = get_user_model().objects.create_user("trakt-only", "only@example.com")  # no usable password
    account = SocialAccount.objects.create(user=user, provider="trakt", uid="uuid-only", extra_data={})
    site.force_login(user)
    response = site.post("/accounts/3rdparty/", {"account": account.pk})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="connections-errors"' in html and "Your account has no password set up." in html
    assert SocialAccount.objects.filter(pk=account.pk).exists()


def test_connections_page_says_to_tick_an_account_when_none_is(member, site):
    response = site.post("/accounts/3rdparty/", {})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="connections-errors"' in html and "Tick the account to remove, then press Remove." in html
    assert SocialAccount.objects.filter(user=member[0]).exists()


def test_allauth_pages_use_the_example_look_through_allauths_elements(member, site):
    html = site.get("/accounts/3rdparty/").content.decode()
    assert '<link rel="stylesheet" href="/static/example/site.css">' in html
    assert '<nav class="manage-nav" aria-label="Account">' in html  # allauth/layouts/manage.html
    assert re.search(r'<button class="button danger" type="submit">\s*Remove\s*</button>', html)  # elements/button
    assert '<div class="field choice">' in html  # allauth/elements/field.html
    assert '<span class="badge socialaccount trakt">' in html  # allauth/elements/badge.html
    site.post("/accounts/logout/")
    signup = site.get("/accounts/signup/").content.decode()
    assert '<form class="form" method="post"' in signup and '<div class="field">' in signup  # form, fields


def test_a_failed_trakt_sign_in_offers_a_next_step(trakt, site):
    # A callback nobody started (a forged or replayed state): allauth's failure page.
    response = site.get("/accounts/trakt/login/callback/", {"code": "forged", "state": "forged"})
    assert response.status_code == 401  # allauth's status for it
    html = response.content.decode()
    assert "Third-Party Login Failure" in html and "Nothing was changed on your account." in html
    assert ">Sign in with Trakt again</button>" in html and 'href="/">Back to the home page</a>' in html


def test_unknown_page_is_the_sites_404_with_debug_on_too(site, settings):
    settings.DEBUG = True
    settings.MIDDLEWARE = ["example.middleware.NotFoundPageMiddleware", *settings.MIDDLEWARE]
    response = site.get("/no-such-page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "This page does not exist" in html and 'href="/">Go to the home page</a>' in html
    assert "Using the URLconf defined in" not in html  # not Django's debug page
    # APPEND_SLASH still redirects before anything is called missing.
    assert site.get("/profile").status_code == 301


def test_error_pages_without_debug(site, rf):
    from django.views.defaults import server_error

    response = site.get("/no-such-page/")
    assert response.status_code == 404 and "This page does not exist" in response.content.decode()
    failed = server_error(rf.get("/"))
    assert failed.status_code == 500
    assert "Something went wrong on our side" in failed.content.decode() and 'href="/">Go to the home page' in (
        failed.content.decode()
    )


def test_favicon_is_never_a_404(site):
    response = site.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"] == "/static/example/favicon.svg"
    assert (EXAMPLE / "example" / "static" / "example" / "favicon.svg").read_text().startswith("<svg")


def test_messages_show_on_the_example_pages(member, site):
    site.post("/accounts/logout/")
    html = site.get("/").content.decode()
    assert '<ul class="messages" role="status">' in html and "You have signed out." in html


def test_device_pages_have_the_site_layout(trakt, site, linked):
    user, _token = linked("coder")
    SocialAccount.objects.filter(user=user).delete()  # not linked yet: the page offers a code
    site.force_login(user)
    html = site.get("/trakt/device/").content.decode()
    assert "<title>Link your Trakt account with a code</title>" in html
    assert 'href="/profile/">Profile</a>' in html and 'href="/accounts/3rdparty/">Connections</a>' in html
    assert 'id="trakt-device-start"' in html


# -- the demo admin --------------------------------------------------------------------------------


def example_admin(**options) -> str:
    from example.management.commands.example_admin import Command

    out = io.StringIO()
    call_command(Command(), stdout=out, **options)
    return out.getvalue()


def test_example_admin_is_created_once_and_says_how_to_sign_in(db):
    from example.management.commands.example_admin import PASSWORD, USERNAME

    first = example_admin(site="http://127.0.0.1:8000")
    assert f"Created the superuser '{USERNAME}'." in first
    assert f"http://127.0.0.1:8000/admin/ as '{USERNAME}', password '{PASSWORD}'" in first
    admin = get_user_model().objects.get(username=USERNAME)
    assert admin.is_superuser and admin.is_staff and admin.check_password(PASSWORD)

    second = example_admin()
    assert "Created" not in second and f"password '{PASSWORD}'" in second
    admin.set_password("changed-by-the-owner")
    admin.save()
    assert "with the password you set" in example_admin() and PASSWORD not in example_admin()
    assert get_user_model().objects.filter(username=USERNAME).count() == 1


# -- the local Trakt's users keep their uuid across restarts ---------------------------------------


def test_local_trakt_gives_a_user_the_same_uuid_at_every_start():
    first, second = TraktEmulator().add_user("demo"), TraktEmulator().add_user("Demo")
    assert first.uuid == second.uuid and len(first.uuid) == 40
    assert TraktEmulator().add_user("other").uuid != first.uuid
    assert TraktEmulator().add_user("demo", uuid="f" * 40).uuid == "f" * 40  # an explicit uuid still wins


def test_local_trakt_never_gives_two_users_the_same_uuid():
    emulator = TraktEmulator()
    renamed = emulator.add_user("alice")
    emulator.rename_user(renamed, "alicia")
    assert emulator.add_user("alice").uuid != renamed.uuid


# -- run.py refuses to start on a taken port -------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_example(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("TRAKT_")}
    return subprocess.run(
        [sys.executable, str(EXAMPLE / "run.py")],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )


@pytest.mark.parametrize("taken", ["local Trakt", "example site"])
def test_run_py_fails_fast_when_a_port_is_taken(taken):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        trakt_port, site_port = (busy, free_port()) if taken == "local Trakt" else (free_port(), busy)
        result = run_example(LOCAL_TRAKT_PORT=str(trakt_port), EXAMPLE_SITE_ADDR=f"127.0.0.1:{site_port}")
    variable = "LOCAL_TRAKT_PORT" if taken == "local Trakt" else "EXAMPLE_SITE_ADDR"
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip() == f"Port {busy} is in use (the {taken}): stop what uses it or set {variable}"
    assert result.stdout == ""  # nothing started, nothing announced
