"""Typed access to django-trakt's settings.

Every value is read from ``django.conf.settings`` on each access (never cached at
import), so ``override_settings`` in tests and per-environment settings just work.

Connection settings live with allauth's own provider settings, in
``SOCIALACCOUNT_PROVIDERS["trakt"]``; the token keys are a top-level setting because
they are a secret of the site, not of the provider.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from django_trakt import __version__
from django_trakt.core.numbers import finite_number

PROVIDER_ID = "trakt"

DEFAULT_AUTH_URL = "https://auth.trakt.tv"
DEFAULT_API_URL = "https://api.trakt.tv"
DEFAULT_WEB_URL = "https://trakt.tv"
DEFAULT_TIMEOUT = 10.0
LIBRARY_USER_AGENT = f"django-trakt/{__version__}"


# -- what each setting must be: one table, read through by the properties below at run time
# and by the system checks (settings_checks.py), which report every value ``valid`` refuses.
# At run time a refused value never crashes a page: the default stands in for it (a number
# below its minimum is raised to it, as before), and the check is what makes the mistake loud.


@dataclass(frozen=True)
class Setting:
    """One setting: its name, the check id reporting a wrong value, and what a right one is."""

    name: str  # a Django setting (TRAKT_*), or a key of SOCIALACCOUNT_PROVIDERS["trakt"]
    check_id: str
    expected: str  # completes "<name> must be ..." in the check's message
    valid: Callable[[Any], bool]  # None (unset) never reaches it
    default: Any = None
    example: str = ""  # a right value for the check's hint ("" : the default's repr)
    secret: bool = False  # the check never shows the value (keys, client secrets)
    alias_of: str = ""  # the value names an entry of this dict setting (CACHES, STORAGES)

    def read(self, value: Any) -> Any:
        """The value in force at run time: the default when it is unset or refused."""
        return self.default if value is None or not self.valid(value) else value


@dataclass(frozen=True)
class Number(Setting):
    """A number of seconds or a count, at least ``minimum`` (or above it, when ``exclusive``)."""

    minimum: float = 0
    exclusive: bool = False
    integer: bool = False

    def read(self, value: Any) -> Any:
        # Numeric strings ("300") are still understood at run time (they always were); the
        # check reports them, since a string is where a typo or an unconverted environment
        # value hides. Below the minimum: the minimum, as before; a minimum that is itself
        # refused (a timeout of 0) cannot stand in, so the default does.
        number = finite_number(value)
        if number is None:
            return self.default
        if number < self.minimum or (self.exclusive and number == self.minimum):
            number = self.default if self.exclusive else self.minimum
        return int(number) if self.integer else float(number)


def _number(
    name: str, check_id: str, default: float, minimum: float = 0, *, integer: bool = False, exclusive: bool = False
) -> Number:
    kind = "an integer" if integer else "a number (int or float)"
    bound = f"greater than {minimum:g}" if exclusive else f"{minimum:g} or more"

    def valid(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            return False  # True is an int to Python, never a count to a reader of settings.py
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return value > minimum if exclusive else value >= minimum

    return Number(
        name, check_id, f"{kind}, {bound}", valid, default, minimum=minimum, exclusive=exclusive, integer=integer
    )


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    if not value:
        return True  # empty: the default host, as when unset
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _is_header_value(value: Any) -> bool:
    # A CR or LF in a header value makes requests refuse every request to Trakt.
    return isinstance(value, str) and value.isprintable()


def _is_strings(
    value: Any, *, one_string: bool = False, containers: tuple[type[Collection[Any]], ...] = (list, tuple)
) -> bool:
    if one_string and isinstance(value, str):
        return True
    return isinstance(value, containers) and all(isinstance(item, str) for item in value)


def _is_token_keys(value: Any) -> bool:
    # The order matters (the first key encrypts), so a set is refused; each key's form is
    # checked by django_trakt.E001.
    return isinstance(value, (str, bytes, list, tuple))


def _is_resolver(value: Any) -> bool:
    if isinstance(value, str):
        from django.utils.module_loading import import_string

        try:
            return callable(import_string(value))
        except ImportError:
            return False
    return callable(value)


def origin_of(url: Any) -> str | None:
    """``scheme://host:port`` of an http(s) URL, the port always written out; None for anything else."""
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return None
    host = parts.hostname.rstrip(".").lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{port or (443 if parts.scheme == 'https' else 80)}"


def _is_origins(value: Any) -> bool:
    # Origins only: a path, query or credentials would suggest a narrower trust than is given.
    return _is_strings(value) and all(
        origin_of(item) is not None and urlsplit(item.strip()).path in ("", "/") and not urlsplit(item).query
        for item in value
    )


_APP_STRINGS = ("name", "provider_id", "client_id", "secret", "key")


def _is_app(value: Any) -> bool:
    """allauth's app dict: ``client_id``, ``secret`` (and ``name``, ``key``...) strings, ``settings`` a dict."""
    return (
        isinstance(value, dict)
        and all(isinstance(value[field], str) for field in _APP_STRINGS if field in value)
        and isinstance(value.get("settings", {}), dict)
    )


def _is_apps(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(_is_app(app) for app in value)


def _is_verified_email(value: Any) -> bool:
    # allauth raises ImproperlyConfigured on anything else (adapter.is_email_verified).
    return isinstance(value, bool) or (isinstance(value, list) and all(isinstance(item, str) for item in value))


def _is_auth_params(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


DEFAULT_IMAGE_HOSTS = ("walter.trakt.tv", "walter-r2.trakt.tv", "media.trakt.tv", "secure.gravatar.com")

SETTINGS: dict[str, Setting] = {
    setting.name: setting
    for setting in (
        Setting(
            "TRAKT_TOKEN_KEYS",
            "django_trakt.E101",
            "a list or tuple of Fernet keys (the first encrypts), or one key as a string",
            _is_token_keys,
            example='[os.environ["TRAKT_TOKEN_KEY"]]',
            secret=True,
        ),
        Setting(
            "TRAKT_CACHE", "django_trakt.E102", "the name of a cache in CACHES", _is_str, "default", alias_of="CACHES"
        ),
        _number("TRAKT_WATCHLIST_TTL", "django_trakt.E103", 300.0),
        _number("TRAKT_WATCHLIST_STALE_TTL", "django_trakt.E104", 7 * 24 * 3600.0, minimum=1),
        _number("TRAKT_WATCHLIST_MAX_ITEMS", "django_trakt.E105", 100, minimum=1, integer=True),
        _number("TRAKT_PAGE_TIMEOUT", "django_trakt.E106", 3.0, minimum=0.1),
        _number("TRAKT_PAGE_RETRY_WAIT", "django_trakt.E107", 0.0),
        _number("TRAKT_FAILURE_BACKOFF", "django_trakt.E108", 60.0),
        Setting(
            "TRAKT_IMAGE_HOSTS",
            "django_trakt.E109",
            "a list, tuple or set of host names (or one host name as a string)",
            lambda value: _is_strings(value, one_string=True, containers=(list, tuple, set, frozenset)),
            DEFAULT_IMAGE_HOSTS,
            example='["walter-r2.trakt.tv", ".example.com"]',
        ),
        _number("TRAKT_IMAGE_MAX_BYTES", "django_trakt.E110", 2 * 1024 * 1024, minimum=1, integer=True),
        _number("TRAKT_IMAGE_TIMEOUT", "django_trakt.E111", 5.0, minimum=0.1),
        _number("TRAKT_IMAGE_MAX_REDIRECTS", "django_trakt.E112", 3, integer=True),
        Setting(
            "TRAKT_IMAGE_STORAGE",
            "django_trakt.E113",
            "the name of a storage in STORAGES",
            _is_str,
            "default",
            alias_of="STORAGES",
        ),
        Setting("TRAKT_IMAGE_PREFIX", "django_trakt.E114", "a string (a folder name)", _is_str, "django_trakt"),
        _number("TRAKT_IMAGE_MAX_AGE", "django_trakt.E115", 7 * 24 * 3600, integer=True),
        _number("TRAKT_IMAGE_RETRY_AFTER", "django_trakt.E116", 900.0),
        Setting(
            "TRAKT_IMAGE_RESOLVER",
            "django_trakt.E117",
            "a callable (host -> IP addresses) or the dotted path of one that imports",
            _is_resolver,
            example='"myproject.testing.fake_dns" (or None, the default: DNS)',
        ),
        _number("TRAKT_DEVICE_START_LIMIT", "django_trakt.E118", 5, minimum=1, integer=True),
        _number("TRAKT_DEVICE_START_PERIOD", "django_trakt.E119", 600.0, minimum=1),
        _number("TRAKT_PAGE_CALL_BUDGET", "django_trakt.E120", 100, integer=True),
        _number("TRAKT_PAGE_USER_CALL_BUDGET", "django_trakt.E121", 100, integer=True),
        _number("TRAKT_PAGE_CALL_PERIOD", "django_trakt.E122", 300.0, minimum=1),
        _number("TRAKT_WATCHLIST_NOT_FOUND_TTL", "django_trakt.E123", 3600.0),
        _number("TRAKT_PENDING_SIGNUP_MAX_AGE", "django_trakt.E124", 3600.0, minimum=60),
        # Whether the alias names a usable backend is check E004's (it needs the backend).
        Setting(
            "TRAKT_TASK_BACKEND",
            "django_trakt.E125",
            "the name of a backend in TASKS, or None",
            _is_str,
            None,
            example='"default"',
        ),
        Setting("TRAKT_TASK_QUEUE", "django_trakt.E126", "a string (a queue name)", _is_str, "default"),
        _number("TRAKT_REFRESH_RATE", "django_trakt.E127", 20.0),
        _number("TRAKT_TASK_RETRIES", "django_trakt.E128", 3, integer=True),
        # Development only: honoured with DEBUG on, refused by check E005 under --deploy.
        Setting(
            "TRAKT_DEVELOPMENT_IMAGE_ORIGINS",
            "django_trakt.E129",
            "a list or tuple of origins (scheme://host:port, no path)",
            _is_origins,
            (),
            example='["http://127.0.0.1:8765"] (the local Trakt; DEBUG only)',
        ),
    )
}
"""Every ``TRAKT_*`` setting the app reads."""

PROVIDERS_CHECK_ID = "django_trakt.E130"  # SOCIALACCOUNT_PROVIDERS["trakt"] itself is no dict

PROVIDER_KEYS: dict[str, Setting] = {
    setting.name: setting
    for setting in (
        Setting("AUTH_URL", "django_trakt.E131", "an http:// or https:// URL", _is_http_url, DEFAULT_AUTH_URL),
        Setting("API_URL", "django_trakt.E132", "an http:// or https:// URL", _is_http_url, DEFAULT_API_URL),
        Setting("WEB_URL", "django_trakt.E133", "an http:// or https:// URL", _is_http_url, DEFAULT_WEB_URL),
        Setting(
            "USER_AGENT",
            "django_trakt.E134",
            "a string without line breaks or control characters",
            _is_header_value,
            "",
            example='"mysite/2.1"',
        ),
        Setting(
            "REDIRECT_URI",
            "django_trakt.E135",
            "a string (a redirect URI registered with the Trakt app)",
            _is_str,
            "",
            example='"https://example.com/accounts/trakt/login/callback/"',
        ),
        _number("TIMEOUT", "django_trakt.E136", DEFAULT_TIMEOUT, exclusive=True),
        # allauth's own keys, read by allauth for this provider (allauth.socialaccount:
        # adapter._build_apps_from_settings, OAuth2Provider, the adapter's email rules,
        # providers.registry).
        Setting(
            "APP",
            "django_trakt.E137",
            'a dict of strings ({"client_id": ..., "secret": ...}; "settings" a dict)',
            _is_app,
            example='{"client_id": os.environ["TRAKT_CLIENT_ID"], "secret": os.environ["TRAKT_CLIENT_SECRET"]}',
            secret=True,
        ),
        Setting(
            "APPS",
            "django_trakt.E138",
            'a list or tuple of dicts, each like "APP"',
            _is_apps,
            example='[{"client_id": ..., "secret": ...}]',
            secret=True,
        ),
        Setting("OAUTH_PKCE_ENABLED", "django_trakt.E139", "True or False", _is_bool, True),
        Setting(
            "SCOPE", "django_trakt.E140", "a list or tuple of strings", _is_strings, example="[] (Trakt has no scopes)"
        ),
        Setting(
            "AUTH_PARAMS",
            "django_trakt.E141",
            "a dict of strings to strings",
            _is_auth_params,
            example='{"prompt": "login"}',
        ),
        Setting(
            "VERIFIED_EMAIL",
            "django_trakt.E142",
            "True, False or a list of email domains",
            _is_verified_email,
            False,
        ),
        Setting("EMAIL_AUTHENTICATION", "django_trakt.E143", "True or False", _is_bool, False),
        Setting(
            "provider_class",
            "django_trakt.E144",
            "the dotted path of a provider class, as a string",
            _is_str,
            example='"myproject.providers.MyTraktProvider"',
        ),
    )
}
"""Every key of ``SOCIALACCOUNT_PROVIDERS["trakt"]`` that django-trakt or allauth reads."""


class TraktSettings:
    """Settings of django-trakt with their defaults; see README "Settings"."""

    @property
    def provider_settings(self) -> dict[str, Any]:
        providers = getattr(settings, "SOCIALACCOUNT_PROVIDERS", None) or {}
        provider = providers.get(PROVIDER_ID) if isinstance(providers, dict) else None
        # Anything but a dict is django_trakt.E130; the defaults stand in meanwhile.
        return dict(provider) if isinstance(provider, dict) else {}

    def _provider(self, key: str) -> Any:
        return PROVIDER_KEYS[key].read(self.provider_settings.get(key))

    @staticmethod
    def _setting(name: str) -> Any:
        return SETTINGS[name].read(getattr(settings, name, None))

    def _url(self, key: str) -> str:
        return str(self._provider(key) or PROVIDER_KEYS[key].default).rstrip("/")

    @property
    def AUTH_URL(self) -> str:
        """Host of Trakt's OAuth endpoints (authorize, token, revoke, device)."""
        return self._url("AUTH_URL")

    @property
    def API_URL(self) -> str:
        """Host of Trakt's data API (``/users/...``, ``/sync/...``)."""
        return self._url("API_URL")

    @property
    def WEB_URL(self) -> str:
        """Trakt's website, for links to profiles and titles."""
        return self._url("WEB_URL")

    @property
    def USER_AGENT(self) -> str:
        """The User-Agent sent to Trakt.

        Trakt requires one and blocks requests without it. A site's own product
        token (``"mysite/2.1"``) goes first; the library always names itself too,
        so Trakt can tell which client code made the request.
        """
        site_agent = str(self._provider("USER_AGENT")).strip()
        if not site_agent:
            return LIBRARY_USER_AGENT
        return f"{site_agent} {LIBRARY_USER_AGENT}"

    @property
    def REDIRECT_URI(self) -> str:
        """The redirect URI refreshes send outside a request ("" means: built from the Site).

        It must be one of the redirect URIs registered with the Trakt app.
        """
        return str(self._provider("REDIRECT_URI")).strip()

    @property
    def TIMEOUT(self) -> float:
        """Seconds to wait for Trakt (connect and read) before giving up."""
        return float(self._provider("TIMEOUT"))

    @property
    def TOKEN_KEYS(self) -> list[str | bytes] | None:
        """``TRAKT_TOKEN_KEYS``: Fernet keys; the first encrypts, all decrypt."""
        keys = getattr(settings, "TRAKT_TOKEN_KEYS", None)
        if keys is None:
            return None
        if isinstance(keys, (str, bytes)):
            return [keys]
        try:
            return list(keys)
        except TypeError:
            # Not a list (django_trakt.E101): kept as one key, which crypto refuses as
            # malformed. Falling back to the keys derived from SECRET_KEY would encrypt new
            # tokens with a key the site never chose, lost once the setting is fixed.
            return [keys]

    # -- template tags, watchlist cache, self-hosted images (docs/templates.md) -----------

    @property
    def CACHE(self) -> str:
        """``TRAKT_CACHE``: alias of the Django cache holding watchlists (and image failures)."""
        return str(self._setting("TRAKT_CACHE") or "default")

    @property
    def WATCHLIST_TTL(self) -> float:
        """``TRAKT_WATCHLIST_TTL``: seconds a fetched watchlist is shown without asking Trakt."""
        return float(self._setting("TRAKT_WATCHLIST_TTL"))

    @property
    def WATCHLIST_STALE_TTL(self) -> float:
        """``TRAKT_WATCHLIST_STALE_TTL``: seconds the last good copy is kept for when Trakt fails."""
        return float(self._setting("TRAKT_WATCHLIST_STALE_TTL"))

    @property
    def WATCHLIST_MAX_ITEMS(self) -> int:
        """``TRAKT_WATCHLIST_MAX_ITEMS``: most items a watchlist tag fetches (its ``limit`` is capped)."""
        return int(self._setting("TRAKT_WATCHLIST_MAX_ITEMS"))

    @property
    def PAGE_TIMEOUT(self) -> float:
        """``TRAKT_PAGE_TIMEOUT``: seconds per Trakt request made while a page renders."""
        return float(self._setting("TRAKT_PAGE_TIMEOUT"))

    @property
    def PAGE_RETRY_WAIT(self) -> float:
        """``TRAKT_PAGE_RETRY_WAIT``: longest ``Retry-After`` a render waits out (0: never sleeps)."""
        return float(self._setting("TRAKT_PAGE_RETRY_WAIT"))

    @property
    def FAILURE_BACKOFF(self) -> float:
        """``TRAKT_FAILURE_BACKOFF``: seconds renders stop asking Trakt about a list after a failure."""
        return float(self._setting("TRAKT_FAILURE_BACKOFF"))

    @property
    def IMAGE_HOSTS(self) -> list[str]:
        """``TRAKT_IMAGE_HOSTS``: hosts images may be fetched from (``".example.com"``: any subdomain)."""
        # The default: where Trakt serves avatars and posters from (docs/templates.md, "Images").
        hosts = self._setting("TRAKT_IMAGE_HOSTS")
        if isinstance(hosts, str):
            hosts = [hosts]
        return [host.strip().lower() for host in hosts if host.strip()]

    @property
    def IMAGE_MAX_BYTES(self) -> int:
        """``TRAKT_IMAGE_MAX_BYTES``: largest image accepted from Trakt's hosts."""
        return int(self._setting("TRAKT_IMAGE_MAX_BYTES"))

    @property
    def IMAGE_TIMEOUT(self) -> float:
        """``TRAKT_IMAGE_TIMEOUT``: seconds for a whole image download, redirects included."""
        return float(self._setting("TRAKT_IMAGE_TIMEOUT"))

    @property
    def IMAGE_MAX_REDIRECTS(self) -> int:
        """``TRAKT_IMAGE_MAX_REDIRECTS``: redirects followed (each one checked again)."""
        return int(self._setting("TRAKT_IMAGE_MAX_REDIRECTS"))

    @property
    def IMAGE_STORAGE(self) -> str:
        """``TRAKT_IMAGE_STORAGE``: alias in ``STORAGES`` where fetched images are kept."""
        return str(self._setting("TRAKT_IMAGE_STORAGE") or "default")

    @property
    def IMAGE_PREFIX(self) -> str:
        """``TRAKT_IMAGE_PREFIX``: folder of the fetched images inside that storage."""
        return str(self._setting("TRAKT_IMAGE_PREFIX") or "django_trakt").strip("/")

    @property
    def IMAGE_MAX_AGE(self) -> int:
        """``TRAKT_IMAGE_MAX_AGE``: ``Cache-Control`` max-age of a served image."""
        return int(self._setting("TRAKT_IMAGE_MAX_AGE"))

    @property
    def IMAGE_RETRY_AFTER(self) -> float:
        """``TRAKT_IMAGE_RETRY_AFTER``: seconds the default image stands in after a failed fetch."""
        return float(self._setting("TRAKT_IMAGE_RETRY_AFTER"))

    @property
    def IMAGE_RESOLVER(self) -> Any:
        """``TRAKT_IMAGE_RESOLVER``: ``host -> IP addresses`` callable (or dotted path); None: DNS."""
        # A path that does not import, or a value that is no callable (django_trakt.E117),
        # leaves the default: DNS, which the fetch's public-address rules then guard.
        resolver = self._setting("TRAKT_IMAGE_RESOLVER")
        if isinstance(resolver, str):
            from django.utils.module_loading import import_string

            return import_string(resolver)
        return resolver

    @property
    def DEVELOPMENT_IMAGE_ORIGINS(self) -> frozenset[str]:
        """``TRAKT_DEVELOPMENT_IMAGE_ORIGINS`` as ``scheme://host:port``: empty unless ``DEBUG``.

        The local Trakt serves images over plain http on loopback, which the image fetch
        refuses everywhere else. Only a development site (DEBUG) trusts these origins;
        check E005 refuses the setting under ``check --deploy``.
        """
        if not settings.DEBUG:
            return frozenset()
        origins = (origin_of(origin) for origin in self._setting("TRAKT_DEVELOPMENT_IMAGE_ORIGINS"))
        return frozenset(origin for origin in origins if origin)

    # -- linking by code (README "Linking by code") -----------------------------------------

    @property
    def DEVICE_START_LIMIT(self) -> int:
        """``TRAKT_DEVICE_START_LIMIT``: codes one user may ask Trakt for per ``TRAKT_DEVICE_START_PERIOD``."""
        return int(self._setting("TRAKT_DEVICE_START_LIMIT"))

    @property
    def DEVICE_START_PERIOD(self) -> float:
        """``TRAKT_DEVICE_START_PERIOD``: seconds over which ``TRAKT_DEVICE_START_LIMIT`` is counted."""
        return float(self._setting("TRAKT_DEVICE_START_PERIOD"))

    # -- what pages may spend at Trakt (docs/templates.md "Public watchlists safely") -----------

    @property
    def PAGE_CALL_BUDGET(self) -> int:
        """``TRAKT_PAGE_CALL_BUDGET``: Trakt calls all renders of public lists may send per period, site-wide."""
        return int(self._setting("TRAKT_PAGE_CALL_BUDGET"))

    @property
    def PAGE_USER_CALL_BUDGET(self) -> int:
        """``TRAKT_PAGE_USER_CALL_BUDGET``: Trakt calls renders of one user's own lists may send per period."""
        return int(self._setting("TRAKT_PAGE_USER_CALL_BUDGET"))

    @property
    def PAGE_CALL_PERIOD(self) -> float:
        """``TRAKT_PAGE_CALL_PERIOD``: seconds of the window both page budgets are counted over."""
        return float(self._setting("TRAKT_PAGE_CALL_PERIOD"))

    @property
    def WATCHLIST_NOT_FOUND_TTL(self) -> float:
        """``TRAKT_WATCHLIST_NOT_FOUND_TTL``: seconds an unknown or private Trakt username is not asked again."""
        return float(self._setting("TRAKT_WATCHLIST_NOT_FOUND_TTL"))

    @property
    def PENDING_SIGNUP_MAX_AGE(self) -> float:
        """``TRAKT_PENDING_SIGNUP_MAX_AGE``: seconds a sign-in's unstored grant waits before it is revoked."""
        return float(self._setting("TRAKT_PENDING_SIGNUP_MAX_AGE"))

    # -- background work on the site's task queue (README "Background work") -----------------

    @property
    def TASK_BACKEND(self) -> str | None:
        """``TRAKT_TASK_BACKEND``: alias in ``TASKS`` that runs the app's background tasks; None: in process."""
        alias = self._setting("TRAKT_TASK_BACKEND")
        return (alias.strip() or None) if alias is not None else None

    @property
    def TASK_QUEUE(self) -> str:
        """``TRAKT_TASK_QUEUE``: the queue of that backend the app's tasks are enqueued on."""
        return str(self._setting("TRAKT_TASK_QUEUE") or "default")

    @property
    def REFRESH_RATE(self) -> float:
        """``TRAKT_REFRESH_RATE``: refreshes per second all task workers together send (0: no limit)."""
        return float(self._setting("TRAKT_REFRESH_RATE"))

    @property
    def TASK_RETRIES(self) -> int:
        """``TRAKT_TASK_RETRIES``: times a refresh task that failed for a passing reason is enqueued again."""
        return int(self._setting("TRAKT_TASK_RETRIES"))


trakt_settings = TraktSettings()


def get_trakt_app(request: Any = None) -> Any:
    """The site's Trakt app (allauth ``SocialApp``: ``client_id``, ``secret``).

    From ``SOCIALACCOUNT_PROVIDERS["trakt"]["APP"]`` or a ``SocialApp`` row, the
    way allauth finds it; outside a request (commands, tasks) ``request`` is None.
    """
    from allauth.socialaccount.adapter import get_adapter
    from allauth.socialaccount.models import SocialApp

    from django_trakt.exceptions import TraktConfigurationError

    try:
        return get_adapter().get_app(request, provider=PROVIDER_ID)
    except SocialApp.DoesNotExist as err:
        raise TraktConfigurationError(
            'No Trakt app is configured: set SOCIALACCOUNT_PROVIDERS["trakt"]["APP"] or add a SocialApp.'
        ) from err
