"""Shared fixtures: the local Trakt in-process, bound to the test settings' hosts."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import time

import pytest
import responses
from allauth.socialaccount.models import SocialAccount
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.cache.backends.base import BaseCache
from django.db.models.signals import post_migrate
from django.utils import timezone

from django_trakt.internal.api.tokens import grant_from_response
from django_trakt.internal.core import clock as app_clock
from django_trakt.models import TraktToken
from django_trakt.testing import TraktEmulator

# Under pytest-xdist (tests/run.py) each worker has a Redis database of its own for the RQ
# tests (tests/test_tasks_rq.py, tests/rq_settings.py flush theirs): gw0 -> 12 ... gw3 -> 15.
# Read before those modules are imported; tests/run.py starts at most four workers.
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _XDIST_WORKER.startswith("gw") and "TRAKT_TEST_REDIS_URL" not in os.environ:
    os.environ["TRAKT_TEST_REDIS_URL"] = f"redis://127.0.0.1:6379/{12 + int(_XDIST_WORKER[2:]) % 4}"

CALLBACK_URL = "http://testserver/accounts/trakt/login/callback/"
# Outside a request (the refresh command), allauth builds the callback URL from the
# sites framework. Django's default Site is the placeholder example.com, which a refresh
# refuses (TraktSiteMisconfigured): the test database's Site is "testserver", set after
# every migrate and every flush of a transactional test.
SITE_DOMAIN = "testserver"
SITE_CALLBACK_URL = CALLBACK_URL


def pytest_addoption(parser):
    parser.addoption(
        "--database-tests-only",
        action="store_true",
        help="Run only the tests that use the database under test (the django_db marker or a database "
        "fixture). tests/run.py's PostgreSQL pass uses it: every other test would repeat the SQLite pass "
        "exactly (pure functions, sites on SQLite files of their own, packaging).",
    )


def uses_database_under_test(item) -> bool:
    # pytest-django's database fixtures (db, transactional_db, live_server ...) all go through
    # django_db_setup; the django_db marker requests them when the test runs; Django's own
    # test cases (allauth's provider suite) open the database themselves.
    from django.test import TransactionTestCase

    test_class = getattr(item, "cls", None)
    return (
        item.get_closest_marker("django_db") is not None
        or "django_db_setup" in getattr(item, "fixturenames", ())
        or (test_class is not None and issubclass(test_class, TransactionTestCase))
    )


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--database-tests-only"):
        return
    kept = [item for item in items if uses_database_under_test(item)]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if not uses_database_under_test(item)])
        items[:] = kept


def _site_for_tests(sender, using="default", **kwargs):
    from django.contrib.sites.models import Site

    Site.objects.using(using).update_or_create(
        pk=settings.SITE_ID, defaults={"domain": SITE_DOMAIN, "name": "Test site"}
    )


post_migrate.connect(_site_for_tests, dispatch_uid="tests.site_for_tests")


def make_emulator() -> TraktEmulator:
    hosts = settings.SOCIALACCOUNT_PROVIDERS["trakt"]
    emulator = TraktEmulator(auth_url=hosts["AUTH_URL"], api_url=hosts["API_URL"], web_url=hosts["WEB_URL"])
    emulator.add_app(
        settings.TRAKT_CLIENT_ID,
        settings.TRAKT_CLIENT_SECRET,
        name="Test site",
        redirect_uris=[CALLBACK_URL],
    )
    emulator.add_user("Watcher", name="Wanda Watcher")
    return emulator


@pytest.fixture(autouse=True)
def _empty_cache():
    """Every test starts and ends with an empty cache (watchlists, backoffs, image failures)."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def trakt():
    """A fresh local Trakt with the test site's app and one user, answering in-process."""
    emulator = make_emulator()
    with emulator.mock():
        yield emulator


_serial = itertools.count(1)


def link_user(trakt: TraktEmulator, username: str | None = None, *, expires_in: dt.timedelta | None = None):
    """A site user linked to a (new) Trakt user, with tokens Trakt really issued.

    ``expires_in`` overrides the stored expiry (negative: already expired).
    """
    username = username or f"viewer{next(_serial)}"
    trakt_user = trakt.add_user(username)
    user = get_user_model().objects.create_user(username, f"{username}@example.com", "pw")
    account = SocialAccount.objects.create(
        user=user,
        provider="trakt",
        uid=trakt_user.uuid,
        extra_data={"user": {"username": username, "ids": {"slug": trakt_user.slug, "uuid": trakt_user.uuid}}},
    )
    token = TraktToken.objects.store_grant(
        account, grant_from_response(trakt.issue_tokens(username, settings.TRAKT_CLIENT_ID))
    )
    if expires_in is not None:
        TraktToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() + expires_in)
        token.refresh_from_db()
    return user, token


@pytest.fixture
def linked(trakt, db):
    """Factory: ``linked(expires_in=-timedelta(hours=1))`` -> (user, TraktToken)."""

    def make(username: str | None = None, *, expires_in: dt.timedelta | None = None):
        return link_user(trakt, username, expires_in=expires_in)

    return make


class Clock:
    """The app's clock (django_trakt.internal.core.clock.now), moved by hand instead of sleeping."""

    def __init__(self) -> None:
        self.now = time.time()

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(app_clock, "now", lambda: fake.now)
    return fake


@pytest.fixture
def web():
    """The local Trakt in-process, plus ``responses`` for hand-made image hosts."""
    emulator = make_emulator()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps, emulator.mock(rsps):
        yield emulator, rsps


class BrokenCache(BaseCache):
    """A cache backend that is down (a Redis that went away): ``"tests.conftest.BrokenCache"``."""

    def __init__(self, location, params):
        super().__init__(params)

    def _down(self, *args, **kwargs):
        raise ConnectionError("cache down")

    get = set = add = delete = _down


@pytest.fixture
def member(client, db):
    """A signed-in user of the site, not linked to Trakt yet."""
    user = get_user_model().objects.create_user("member", "member@example.com", "pw")
    client.force_login(user)
    return user


@pytest.fixture
def fast(trakt):
    """The local Trakt with a device interval of 0: every poll may ask."""
    trakt.device_interval = 0
    return trakt
