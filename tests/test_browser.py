"""The whole journey in a real browser: Chromium, the example site and the local Trakt.

The example site runs as a real ``runserver`` process on loopback (its own SQLite
database in a temporary directory); the local Trakt is served from this process, so the
test can look at what it recorded (the revoke). Debian's Chromium is driven through
Playwright's sync API. A screenshot of every step is kept in
``test-artifacts/browser/`` (git-ignored), with the site's log.

Skipped when ``/usr/bin/chromium`` or the ``playwright`` package is missing, except
under ``CI=true``, where that fails: CI must run it (``.ci/run`` installs Chromium).
It uses its own database, so it runs the same in the SQLite and the PostgreSQL pass.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from django_trakt.testing import TraktEmulator
from django_trakt.testing.demo import DEMO_WATCHLIST, seed_demo_user
from django_trakt.testing.images import avatar_png

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium's own connections (updates, sync)
# are refused on a closed network and can stall the start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 20_000  # per browser action or navigation
SITE_START_TIMEOUT = 30.0  # seconds for runserver to listen
CALLBACK_PATH = "/accounts/trakt/login/callback/"
APP_NAME = "django-trakt example"
DEMO_USER = "demo"
PASSWORD = "a-Long-passphrase-4-the-browser-test"
# A Trakt or Gravatar image URL must never reach the browser (Trakt forbids hotlinking).
FORBIDDEN_IMAGE_HOSTS = ("trakt.tv", "gravatar.com")

if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

pytestmark = pytest.mark.browser


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_browser() -> None:
    """Skip without Chromium or Playwright on a developer machine; fail under CI."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[test]')")
    if missing:
        reason = "browser test needs " + " and ".join(missing)
        if under_ci():
            pytest.fail(f"{reason}: CI must run the browser test")
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def example_settings() -> Any:
    from example import settings  # the example's own module: its client id and secret

    return settings


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def artifacts() -> Iterator[Path]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    yield ARTIFACTS
    print(f"\nScreenshots of every page: {ARTIFACTS}")  # shown with -s, and in the log of a failure


@pytest.fixture(scope="module")
def site_port() -> int:
    return free_port()


def make_local_trakt(site_port: int) -> TraktEmulator:
    """A fresh local Trakt with the example's app (exact redirect URI) and the demo user, as run.py starts it."""
    config = example_settings()
    emulator = TraktEmulator()
    emulator.add_app(
        config.LOCAL_CLIENT_ID,
        config.LOCAL_CLIENT_SECRET,
        name=APP_NAME,
        redirect_uris=[f"http://127.0.0.1:{site_port}{CALLBACK_PATH}"],
    )
    seed_demo_user(emulator, DEMO_USER)  # with an avatar and the demo watchlist
    return emulator


@pytest.fixture(scope="module")
def local_trakt(site_port: int) -> Iterator[tuple[TraktEmulator, str]]:
    """The local Trakt on loopback, served from this process."""
    require_browser()  # before any process is started
    emulator = make_local_trakt(site_port)
    with emulator.serve(port=0) as server:
        yield emulator, server.url


def site_env(database: Path, trakt_url: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TRAKT_", "DJANGO_")) and key not in ("DATABASE_URL", "LOCAL_TRAKT_URL")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="example.settings",
        DJANGO_DEBUG="1",  # runserver serves the static files (the default avatar)
        DATABASE_URL=f"sqlite:///{database}",
        LOCAL_TRAKT_URL=trakt_url,
        PYTHONUNBUFFERED="1",
    )
    return env


def prepare_database(database: Path) -> None:
    """What run.py does before it serves: migrate, and create the demo admin."""
    manage = [sys.executable, str(EXAMPLE / "manage.py")]
    env = site_env(database, "http://127.0.0.1:9")  # no Trakt is asked here
    for command in (["migrate", "--noinput", "-v", "0"], ["example_admin"]):
        done = subprocess.run([*manage, *command], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr


@contextlib.contextmanager
def running_site(port: int, database: Path, trakt_url: str, log_path: Path) -> Iterator[str]:
    """``manage.py runserver`` on ``port`` with ``database``, pointed at the local Trakt at ``trakt_url``."""
    manage = [sys.executable, str(EXAMPLE / "manage.py")]
    with log_path.open("a") as log:
        process = subprocess.Popen(
            [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"],
            env=site_env(database, trakt_url),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + SITE_START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"the example site exited ({process.returncode}):\n{log_path.read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"the example site did not listen within {SITE_START_TIMEOUT}s:\n{log_path.read_text()}")
            time.sleep(0.1)  # polling for the port, nothing else
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def example_site(local_trakt, site_port: int, artifacts: Path, tmp_path_factory) -> Iterator[str]:
    """The example site on the free port, its own migrated SQLite database, pointed at the local Trakt."""
    _emulator, trakt_url = local_trakt
    database = tmp_path_factory.mktemp("example-site") / "db.sqlite3"
    prepare_database(database)
    log_path = artifacts / "example-site.log"
    log_path.write_text("")
    with running_site(site_port, database, trakt_url, log_path) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=60_000
        )
        try:
            yield chromium
        finally:
            chromium.close()


class Visitor:
    """One browser context (a visitor with their own cookies), its page and what it requested."""

    def __init__(self, browser: Any, site_url: str, trakt_url: str, artifacts: Path) -> None:
        self.site_url = site_url
        self.trakt_url = trakt_url
        self.artifacts = artifacts
        self.context = browser.new_context(base_url=site_url, viewport={"width": 1000, "height": 900})
        self.context.set_default_timeout(TIMEOUT_MS)
        self.context.set_default_navigation_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.requests: list[tuple[str, str, str]] = []  # (method, resource type, url)
        self.page.on(
            "request", lambda request: self.requests.append((request.method, request.resource_type, request.url))
        )

    def screenshot(self, name: str, *, styled: bool = True) -> None:
        """A full-page screenshot; ``styled``: the page is one of the site's, in its look."""
        if styled:
            self.assert_styled()
        self.page.screenshot(path=str(self.artifacts / f"{name}.png"), full_page=True)

    def assert_styled(self) -> None:
        """The site's stylesheet applies: its page colour, its header, and no browser-default button."""
        look = self.page.evaluate(
            """() => ({
                page: getComputedStyle(document.body).backgroundColor,
                header: !!document.querySelector("header.site-header"),
                plain: Array.from(document.querySelectorAll("main button, main a.button"))
                    .filter((button) => button.offsetParent !== null)
                    .filter((button) => ["rgb(239, 239, 239)", "rgb(240, 240, 240)", "rgba(0, 0, 0, 0)"]
                        .includes(getComputedStyle(button).backgroundColor)
                        && !button.classList.contains("link"))
                    .map((button) => button.outerHTML.slice(0, 120)),
                plainInputs: Array.from(document.querySelectorAll(
                    "main input[type=text], main input[type=email], main input[type=password]"))
                    .filter((input) => getComputedStyle(input).borderTopStyle === "inset")
                    .map((input) => input.outerHTML.slice(0, 120)),
            })"""
        )
        assert look["plainInputs"] == [], (self.page.url, look["plainInputs"])
        assert look["page"] == "rgb(245, 245, 247)" and look["header"], (self.page.url, look)
        assert look["plain"] == [], (self.page.url, look["plain"])

    def assert_images_self_hosted(self) -> list[dict[str, Any]]:
        """Every ``<img>`` on the page comes from the site itself and has loaded."""
        self.page.wait_for_function("() => Array.from(document.images).every((image) => image.complete)")
        found = self.page.evaluate(
            "() => Array.from(document.images).map((image) => ({src: image.currentSrc || image.src,"
            " width: image.naturalWidth, alt: image.alt, cls: image.className}))"
        )
        for image in found:
            assert image["src"].startswith(self.site_url + "/"), image
            assert not image["src"].startswith(self.trakt_url), image
            assert not any(host in image["src"] for host in FORBIDDEN_IMAGE_HOSTS), image
            assert image["width"] > 0, f"image did not load: {image}"
        return found

    def fetch(self, url: str) -> bytes:
        """The body the site serves at ``url``, fetched with this visitor's cookies; must be a 200."""
        response = self.context.request.get(url)
        assert response.status == 200, (url, response.status)
        return response.body()

    def assert_only_consent_pages_from_trakt(self) -> None:
        """The browser met the local Trakt only on its consent page: no image, script or API call."""
        for method, resource_type, url in self.requests:
            if url.startswith(self.trakt_url + "/"):
                assert resource_type == "document", (method, resource_type, url)
                assert url.split("?", 1)[0] == f"{self.trakt_url}/oauth/authorize", url
            if resource_type == "image":
                assert url.startswith(self.site_url + "/"), url

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visitor_factory(request, browser, example_site: str, local_trakt, artifacts: Path) -> Iterator[Any]:
    _emulator, trakt_url = local_trakt
    visitors: list[Visitor] = []
    failed_before = request.session.testsfailed

    def make() -> Visitor:
        visitor = Visitor(browser, example_site, trakt_url, artifacts)
        visitors.append(visitor)
        return visitor

    yield make
    for number, visitor in enumerate(visitors, 1):
        if request.session.testsfailed > failed_before:  # the page as the failure left it
            with contextlib.suppress(Exception):
                visitor.screenshot(f"failed-{request.node.name}-{number}", styled=False)
        visitor.close()


def sign_in_with_trakt(visitor: Visitor, home_shot: str, consent_shot: str) -> Any:
    """From the home page to the local Trakt's consent page; returns the page."""
    page = visitor.page
    response = page.goto("/")
    assert response is not None and response.status == 200
    assert page.get_by_role("heading", name="django-trakt example").is_visible()
    visitor.screenshot(home_shot)

    page.get_by_role("button", name="Sign in with Trakt").click()
    page.wait_for_url(f"{visitor.trakt_url}/oauth/authorize?*")
    assert page.get_by_role("heading", name=f"Authorize {APP_NAME}").is_visible()
    assert page.get_by_role("button", name="Approve").is_visible()
    assert page.get_by_role("button", name="Deny").is_visible()
    assert page.get_by_label("Sign in as").input_value() == DEMO_USER
    visitor.screenshot(consent_shot, styled=False)  # the local Trakt's page
    return page


# -- the journeys ---------------------------------------------------------------------------------


def test_new_visitor_signs_up_sees_profile_and_disconnects(visitor_factory, local_trakt):
    trakt, _trakt_url = local_trakt
    visitor = visitor_factory()
    page = sign_in_with_trakt(visitor, "01-home", "02-trakt-consent")
    assert trakt.active_tokens(DEMO_USER) == []

    # Approve: back on the site, allauth's signup form asks for an email address.
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url("**/accounts/3rdparty/signup/")
    assert page.get_by_role("heading", name="Sign Up").is_visible()
    assert page.locator("input[name=username]").input_value() == DEMO_USER
    page.locator("input[name=email]").fill("demo@example.com")
    visitor.screenshot("03-signup-form")

    page.get_by_role("button", name="Sign Up").click()
    page.wait_for_url("**/profile/")
    (pair,) = trakt.active_tokens(DEMO_USER)  # the tokens the site holds
    assert page.get_by_role("heading", name=f"Hello, {DEMO_USER}").is_visible()
    assert page.locator("#trakt-profile").inner_text() == DEMO_USER
    movies = page.locator('.trakt-watchlist[data-type="movies"] li').all_inner_texts()
    shows = page.locator('.trakt-watchlist[data-type="shows"] li').all_inner_texts()
    for item in DEMO_WATCHLIST:
        if item["kind"] in ("movie", "show"):
            listed = movies if item["kind"] == "movie" else shows
            assert any(item["title"] in text for text in listed), (item["title"], listed)
    avatar = page.locator("img.trakt-avatar")
    assert avatar.count() == 1
    shown = visitor.assert_images_self_hosted()
    (avatar_image,) = (image for image in shown if "trakt-avatar" in image["cls"])
    assert avatar_image["alt"] == DEMO_USER
    # The example trusts its local Trakt's images (TRAKT_DEVELOPMENT_IMAGE_ORIGINS, DEBUG):
    # the avatar and the posters are the local Trakt's PNGs, fetched, stored and served by
    # the site's image views, not its default images.
    assert re.search(r"/trakt/avatar/\d+/", avatar_image["src"]), avatar_image
    assert visitor.fetch(avatar_image["src"]) == avatar_png(DEMO_USER)
    posters = [image for image in shown if "trakt-poster" in image["cls"]]
    assert posters, shown
    assert all("/trakt/poster/" in image["src"] for image in posters), posters
    poster = visitor.fetch(posters[0]["src"])
    assert poster.startswith(b"\x89PNG") and poster != visitor.fetch("/static/django_trakt/default-poster.png")
    assert struct.unpack(">II", poster[16:24]) == (40, 60)  # the local Trakt's 2:3 poster PNG (IHDR)
    visitor.screenshot("04-profile")

    # Disconnect on allauth's connections page: a social-only account has no password,
    # so allauth refuses to remove its last way in, and the example's page says why ...
    page.get_by_role("link", name="Connections", exact=True).click()
    page.wait_for_url("**/accounts/3rdparty/")
    with page.expect_navigation():  # nothing ticked: the page says what to do
        page.get_by_role("button", name="Remove").click()
    assert page.get_by_role("alert").get_by_text("Tick the account to remove, then press Remove.").is_visible()
    visitor.screenshot("05a-remove-nothing-ticked")
    page.get_by_role("radio", name=DEMO_USER).check()
    visitor.screenshot("05-connections")
    with page.expect_navigation() as refused:
        page.get_by_role("button", name="Remove").click()
    assert refused.value is not None and refused.value.status == 200
    assert page.get_by_role("radio", name=DEMO_USER).is_visible()
    assert page.get_by_role("alert").get_by_text("Your account has no password set up.").is_visible()
    visitor.screenshot("06-remove-refused-no-password")
    assert trakt.requests_to("/oauth/revoke") == []
    assert trakt.is_access_token_valid(pair.access_token)

    # ... so the user sets one, as the profile page suggests to Trakt-only accounts.
    page.get_by_role("link", name="Profile").click()
    page.get_by_role("link", name="set a password").click()
    page.wait_for_url("**/accounts/password/set/")
    page.locator("input[name=password1]").fill(PASSWORD)
    page.locator("input[name=password2]").fill(PASSWORD)
    visitor.screenshot("07-set-password")
    page.get_by_role("button", name="Set Password").click()
    page.wait_for_url(lambda url: "/accounts/password/set/" not in url)
    assert page.get_by_text("Password successfully set.").is_visible()
    visitor.screenshot("08-password-set")
    for path, heading, shot in (
        ("/accounts/email/", "Email Addresses", "08a-email"),
        ("/accounts/password/change/", "Change Password", "08b-password-change"),
    ):
        page.goto(path)
        assert page.get_by_role("heading", name=heading).is_visible()
        visitor.screenshot(shot)

    page.get_by_role("link", name="Connections", exact=True).click()
    page.wait_for_url("**/accounts/3rdparty/")
    page.get_by_role("radio", name=DEMO_USER).check()
    with page.expect_navigation():
        page.get_by_role("button", name="Remove").click()
    assert page.get_by_text("The third-party account has been disconnected.").is_visible()
    assert page.get_by_text("You currently have no third-party accounts connected to this account.").is_visible()
    visitor.screenshot("09-disconnected")

    # The local Trakt recorded the revoke, and the token is dead there.
    assert len(trakt.requests_to("/oauth/revoke", "POST")) == 1
    assert pair.access_token in trakt.revoked_tokens
    assert not trakt.is_access_token_valid(pair.access_token)
    assert trakt.active_tokens(DEMO_USER) == []

    page.goto("/profile/")
    assert page.get_by_text("No Trakt account linked.").is_visible()
    visitor.assert_images_self_hosted()

    # Linking by code: django-trakt's own pages, in the example's layout (its navigation).
    page.get_by_role("link", name="link with a code").click()
    page.wait_for_url("**/trakt/device/")
    assert page.get_by_role("heading", name="Link your Trakt account with a code").is_visible()
    assert page.get_by_role("link", name="Connections", exact=True).is_visible()
    visitor.screenshot("09a-device-start")
    page.get_by_role("button", name="Link with a code").click()
    page.wait_for_url("**/trakt/device/pending/")
    assert page.get_by_role("heading", name="Enter this code on Trakt").is_visible()
    assert page.locator("#trakt-device-user-code").inner_text().strip()
    assert page.get_by_role("link", name="Profile").is_visible()
    visitor.screenshot("09b-device-pending")

    page.goto("/accounts/logout/")  # allauth's confirmation page
    assert page.get_by_role("heading", name="Sign Out").is_visible()
    visitor.screenshot("09c-sign-out-confirm")
    page.goto("/profile/")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{visitor.site_url}/")
    assert page.get_by_role("button", name="Sign in with Trakt").is_visible()
    visitor.screenshot("10-signed-out")

    # The pages a visitor meets when something is off, each with a way on.
    page.goto("/accounts/login/")
    assert page.get_by_role("heading", name="Sign In").is_visible()
    visitor.screenshot("10a-sign-in")
    response = page.goto("/no-such-page/")
    assert response is not None and response.status == 404
    assert page.get_by_role("heading", name="This page does not exist").is_visible()
    assert page.get_by_role("link", name="Go to the home page").is_visible()
    visitor.screenshot("10b-not-found")
    response = page.goto(f"{CALLBACK_PATH}?code=forged&state=forged")
    assert response is not None and response.status == 401
    assert page.get_by_role("heading", name="Third-Party Login Failure").is_visible()
    assert page.get_by_role("button", name="Sign in with Trakt again").is_visible()
    visitor.screenshot("10c-sign-in-failed")
    visitor.assert_only_consent_pages_from_trakt()
    # The browser asked for a favicon on the way, and the site had one.
    assert "Not Found: /favicon.ico" not in (visitor.artifacts / "example-site.log").read_text()


def test_visitor_who_denies_consent_sees_a_friendly_error(visitor_factory, local_trakt):
    trakt, _trakt_url = local_trakt
    tokens_before = len(trakt.active_tokens())
    visitor = visitor_factory()  # a new browser context: nobody signed in
    page = sign_in_with_trakt(visitor, "11-second-visitor-home", "12-trakt-consent")

    # Trakt sends the visitor back with error=access_denied; allauth redirects to its
    # "login cancelled" page, an ordinary 200 page with a way to sign in.
    with page.expect_navigation(url="**/accounts/3rdparty/login/cancelled/") as cancelled:
        page.get_by_role("button", name="Deny").click()
    response = cancelled.value
    assert response is not None and response.status == 200
    callback = response.request.redirected_from
    assert callback is not None and CALLBACK_PATH in callback.url and "error=access_denied" in callback.url
    assert "code=" not in callback.url
    assert page.get_by_role("heading", name="Login Cancelled").is_visible()
    assert page.get_by_text("You decided to cancel logging in").is_visible()
    visitor.screenshot("13-login-cancelled")

    assert len(trakt.active_tokens()) == tokens_before
    visitor.assert_images_self_hosted()
    visitor.assert_only_consent_pages_from_trakt()


def test_admin_signs_in_with_the_demo_admin(visitor_factory):
    from example.management.commands.example_admin import PASSWORD, USERNAME

    visitor = visitor_factory()
    page = visitor.page
    page.goto("/admin/")
    page.wait_for_url("**/admin/login/?next=/admin/")
    page.locator("input[name=username]").fill(USERNAME)
    page.locator("input[name=password]").fill(PASSWORD)
    visitor.screenshot("14-admin-login", styled=False)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{visitor.site_url}/admin/")
    assert page.get_by_role("heading", name="Site administration").is_visible()
    visitor.screenshot("15-admin-index", styled=False)
    page.get_by_role("link", name="Trakt tokens").click()
    page.wait_for_url("**/admin/django_trakt/trakttoken/")
    visitor.screenshot("16-admin-trakt-tokens", styled=False)


def test_demo_user_signs_in_again_after_a_restart(browser, artifacts: Path, tmp_path_factory):
    """run.py stopped and started again: a new local Trakt, the same database; no second signup."""
    require_browser()
    port = free_port()
    database = tmp_path_factory.mktemp("restarted-site") / "db.sqlite3"
    prepare_database(database)
    log_path = artifacts / "example-site-restarted.log"
    log_path.write_text("")

    def visit(trakt_url: str, site_url: str) -> Visitor:
        return Visitor(browser, site_url, trakt_url, artifacts)

    first_uuid = None
    for start in ("first", "second"):
        emulator = make_local_trakt(port)  # a new local Trakt at every start, as run.py's
        with emulator.serve(port=0) as server, running_site(port, database, server.url, log_path) as site_url:
            visitor = visit(server.url, site_url)
            try:
                page = sign_in_with_trakt(visitor, f"17-{start}-start-home", f"18-{start}-start-consent")
                page.get_by_role("button", name="Approve").click()
                if start == "first":
                    first_uuid = emulator.get_user(DEMO_USER).uuid
                    page.wait_for_url("**/accounts/3rdparty/signup/")
                    page.locator("input[name=email]").fill("demo@example.com")
                    page.get_by_role("button", name="Sign Up").click()
                page.wait_for_url("**/profile/")  # the second time straight here: no signup form
                assert page.get_by_role("heading", name=f"Hello, {DEMO_USER}").is_visible()
                assert page.get_by_text("A user with that username already exists").count() == 0
                visitor.screenshot(f"19-{start}-start-profile")
                page.get_by_role("button", name="Sign out").click()
                page.wait_for_url(f"{site_url}/")
                visitor.assert_only_consent_pages_from_trakt()
            except Exception:
                with contextlib.suppress(Exception):
                    visitor.screenshot(f"failed-restart-{start}", styled=False)
                raise
            finally:
                visitor.close()
    assert emulator.get_user(DEMO_USER).uuid == first_uuid


def test_a_tv_signs_in_by_code_through_the_headless_api(visitor_factory, local_trakt):
    """The example's /tv/ page plays the app: a code, approval at the local Trakt, the signup, the
    same account on a second sign-in. Its script talks to the site only through the headless API."""
    trakt, trakt_url = local_trakt
    trakt.add_user("couch", name="Couch Potato")
    interval = trakt.device_interval
    trakt.device_interval = 1  # the script polls every interval: keep the test short
    try:
        tv = visitor_factory()
        page = tv.page
        page.goto("/")
        page.get_by_role("link", name="Sign in with a code").click()
        page.wait_for_url("**/tv/")
        assert page.get_by_role("heading", name="Sign in on your TV").is_visible()
        page.get_by_role("button", name="Get a code").click()
        user_code = page.locator("#tv-user-code")
        user_code.wait_for()
        code = user_code.inner_text().strip()
        assert code and page.locator("#tv-verification-link").inner_text() == f"{trakt_url}/activate/{code}"
        tv.screenshot("20-tv-code")

        # The person approves on another device: the local Trakt's activation page.
        phone = visitor_factory()
        phone.page.goto(page.locator("#tv-verification-link").get_attribute("href"))
        phone.page.get_by_label("Sign in as").select_option("couch")
        phone.page.get_by_role("button", name="Approve").click()
        assert phone.page.get_by_role("heading", name="Device approved").is_visible()

        # The TV's next poll: a new visitor, so allauth's signup asks for an email address.
        signup = page.locator("#tv-signup")
        signup.wait_for(state="visible")
        assert page.get_by_label("Username").input_value() == "couch"
        page.get_by_label("Email").fill("couch@example.com")
        tv.screenshot("21-tv-signup")
        page.get_by_role("button", name="Finish signing up").click()
        page.get_by_text("Signed in as couch.").wait_for()
        tv.screenshot("22-tv-signed-in")
        (pair,) = trakt.active_tokens("couch")  # the grant the site now holds
        # Only the site asked Trakt for the code and the token: the page's script never did.
        assert not any(url.startswith(trakt_url) for _method, _kind, url in tv.requests)

        # A second sign-in of the same Trakt user: straight in, the same account.
        page.reload()
        page.get_by_role("button", name="Get a code").click()
        user_code.wait_for()
        trakt.approve_device(user_code.inner_text().strip(), "couch")
        page.get_by_text("Signed in as couch.").wait_for()
        assert not signup.is_visible()
        # Trakt issued a second grant, which the site stored for the same account.
        assert len(trakt.active_tokens("couch")) == 2 and pair in trakt.active_tokens("couch")
    finally:
        trakt.device_interval = interval
