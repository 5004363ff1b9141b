"""django-trakt's settings: one table, read through one accessor.

``trakt_settings.CACHE`` reads ``TRAKT_CACHE``, ``trakt_settings.TIMEOUT`` reads
``SOCIALACCOUNT_PROVIDERS["trakt"]["TIMEOUT"]``: every name in :data:`SETTINGS`, read from
``django.conf.settings`` on each access (never cached at import), so ``override_settings``
in tests and per-environment settings just work.

These are the settings a site tunes: its keys, Trakt's hosts, its cache, task backend and
storage, and timeouts that depend on its infrastructure. The numbers a site has no reason
to change (budgets, lock times, backoffs, limits) are constants beside the code that uses
them, with their reason; the settings that used to hold them are listed in
``checks/settings.py`` (``REMOVED``), which warns while a site still sets one.

Connection settings live with allauth's own provider settings, in
``SOCIALACCOUNT_PROVIDERS["trakt"]``; allauth's own keys there (``APP``, ``SCOPE``...) are
allauth's to read and check. The token keys are a top-level setting because they are a
secret of the site, not of the provider.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings

from django_trakt import __version__
from django_trakt.conf.values import (
    PROVIDER,
    PROVIDER_ID,
    SETTING_PREFIX,
    Number,
    Setting,
    TokenKeys,
    entry_of,
    import_callable,
    is_header_value,
    is_http_url,
    is_origins,
    is_str,
    is_strings,
    is_token_keys,
    no_callable,
    number,
    origin_of,
)

__all__ = [
    "PROVIDER",
    "PROVIDER_ID",
    "SETTINGS",
    "SETTING_PREFIX",
    "Number",
    "Setting",
    "get_trakt_app",
    "origin_of",
    "trakt_settings",
]

DEFAULT_AUTH_URL = "https://auth.trakt.tv"
DEFAULT_API_URL = "https://api.trakt.tv"
DEFAULT_WEB_URL = "https://trakt.tv"
DEFAULT_TIMEOUT = 10.0
LIBRARY_USER_AGENT = f"django-trakt/{__version__}"
DEFAULT_IMAGE_HOSTS = ("walter.trakt.tv", "walter-r2.trakt.tv", "media.trakt.tv", "secure.gravatar.com")


# -- what the app uses, from the value in force (``Setting.clean``)


def _resolver(value: Any) -> Any:
    # A path that does not import (check E102) leaves the default: DNS, which the fetch's
    # public-address rules then guard.
    return import_callable(value) if isinstance(value, str) else value


def _host(default: str) -> Callable[[Any], str]:
    return lambda value: str(value or default).rstrip("/")


def _user_agent(value: Any) -> str:
    # Trakt requires a User-Agent and blocks requests without one. A site's own product
    # token ("mysite/2.1") goes first; the library always names itself too, so Trakt can
    # tell which client code made the request.
    site_agent = str(value).strip()
    return f"{site_agent} {LIBRARY_USER_AGENT}" if site_agent else LIBRARY_USER_AGENT


def _image_hosts(value: Any) -> list[str]:
    hosts = [value] if isinstance(value, str) else value
    return [host.strip().lower() for host in hosts if host.strip()]


def _development_origins(value: Any) -> frozenset[str]:
    # The local Trakt serves images over plain http on loopback, which the image fetch
    # refuses everywhere else. Only a development site (DEBUG) trusts these origins; check
    # E005 refuses the setting under ``check --deploy``.
    if not settings.DEBUG:
        return frozenset()
    origins = (origin_of(origin) for origin in value)
    return frozenset(origin for origin in origins if origin)


SETTINGS: dict[str, Setting] = {
    setting.name: setting
    for setting in (
        # -- the site's secret (docs/operations.md "Keys")
        TokenKeys(
            "TOKEN_KEYS",  # Fernet keys; the first encrypts, all decrypt
            "a list or tuple of Fernet keys (the first encrypts), or one key as a string",
            is_token_keys,
            example='[os.environ["TRAKT_TOKEN_KEY"]]',
            secret=True,
        ),
        # -- where Trakt is, and how long to wait for it: SOCIALACCOUNT_PROVIDERS["trakt"]
        Setting(
            "AUTH_URL",  # OAuth endpoints (authorize, token, revoke, device)
            "an http:// or https:// URL",
            is_http_url,
            DEFAULT_AUTH_URL,
            provider_key=True,
            clean=_host(DEFAULT_AUTH_URL),
        ),
        Setting(
            "API_URL",  # the data API (/users/..., /sync/...)
            "an http:// or https:// URL",
            is_http_url,
            DEFAULT_API_URL,
            provider_key=True,
            clean=_host(DEFAULT_API_URL),
        ),
        Setting(
            "WEB_URL",  # Trakt's website, for links to profiles and titles
            "an http:// or https:// URL",
            is_http_url,
            DEFAULT_WEB_URL,
            provider_key=True,
            clean=_host(DEFAULT_WEB_URL),
        ),
        Setting(
            "USER_AGENT",  # the site's product token, sent before the library's
            "a string without line breaks or control characters",
            is_header_value,
            "",
            example='"mysite/2.1"',
            provider_key=True,
            clean=_user_agent,
        ),
        Setting(
            "REDIRECT_URI",  # what refreshes send outside a request ("": built from the Site)
            "a string (a redirect URI registered with the Trakt app)",
            is_str,
            "",
            example='"https://example.com/accounts/trakt/login/callback/"',
            provider_key=True,
            clean=lambda value: str(value).strip(),
        ),
        # Seconds to wait for Trakt (connect and read), outside page renders.
        number("TIMEOUT", DEFAULT_TIMEOUT, exclusive=True, provider_key=True),
        # -- pages (docs/templates.md)
        Setting(
            "CACHE",  # watchlists, backoffs, budgets, image failures
            "the name of a cache in CACHES",
            is_str,
            "default",
            missing=entry_of("CACHES"),
            clean=lambda value: value or "default",
        ),
        # Seconds a fetched watchlist is shown without asking Trakt: freshness against calls.
        number("WATCHLIST_TTL", 300.0),
        # Seconds per Trakt request made while a page renders: how long the site lets a page wait.
        number("PAGE_TIMEOUT", 3.0, minimum=0.1),
        Setting(
            "IMAGE_HOSTS",  # where images may be fetched from (".example.com": any subdomain)
            "a list, tuple or set of host names (or one host name as a string)",
            lambda value: is_strings(value, one_string=True, containers=(list, tuple, set, frozenset)),
            DEFAULT_IMAGE_HOSTS,
            example='["walter-r2.trakt.tv", ".example.com"]',
            clean=_image_hosts,
        ),
        Setting(
            "IMAGE_STORAGE",  # where fetched avatars and posters are kept
            "the name of a storage in STORAGES",
            is_str,
            "default",
            missing=entry_of("STORAGES"),
            clean=lambda value: value or "default",
        ),
        Setting(
            "IMAGE_RESOLVER",  # host -> IP addresses, for tests (their workers too); None: DNS
            "a callable (host -> IP addresses) or the dotted path of one",
            lambda value: isinstance(value, str) or callable(value),
            example='"myproject.testing.fake_dns" (or None, the default: DNS)',
            missing=no_callable,
            clean=_resolver,
        ),
        # Development only: honoured with DEBUG on, refused by check E005 under --deploy.
        Setting(
            "DEVELOPMENT_IMAGE_ORIGINS",
            "a list or tuple of origins (scheme://host:port, no path)",
            is_origins,
            (),
            example='["http://127.0.0.1:8765"] (the local Trakt; DEBUG only)',
            clean=_development_origins,
        ),
        # -- background work (README "Background work")
        Setting(
            "TASK_BACKEND",  # alias in TASKS; None: in process. Whether it is usable is check E004's.
            "the name of a backend in TASKS, or None",
            is_str,
            None,
            example='"default"',
            clean=lambda value: (value.strip() or None) if value is not None else None,
        ),
        Setting(
            "TASK_QUEUE",
            "a string (a queue name)",
            is_str,
            "default",
            clean=lambda value: value or "default",
        ),
        # Refreshes per second all task workers together send (0: no limit): the share of the
        # Trakt app's rate limit the site gives its refreshes.
        number("REFRESH_RATE", 20.0),
    )
}
"""Every setting django-trakt reads, by the name ``trakt_settings`` gives it."""


class TraktSettings:
    """django-trakt's settings by name (``trakt_settings.CACHE``); see :data:`SETTINGS` and README "Settings"."""

    @property
    def provider_settings(self) -> dict[str, Any]:
        """``SOCIALACCOUNT_PROVIDERS["trakt"]``; empty when it is unset or no dict (check E101)."""
        providers = getattr(settings, "SOCIALACCOUNT_PROVIDERS", None) or {}
        provider = providers.get(PROVIDER_ID) if isinstance(providers, dict) else None
        return dict(provider) if isinstance(provider, dict) else {}

    def written(self, setting: Setting) -> Any:
        """What the site wrote for ``setting``; None when it is unset."""
        if setting.provider_key:
            return self.provider_settings.get(setting.name)
        return getattr(settings, setting.where, None)

    def __getattr__(self, name: str) -> Any:
        setting = SETTINGS.get(name)
        if setting is None:
            raise AttributeError(f"django-trakt has no setting {name!r}")
        return setting.clean(setting.read(self.written(setting)))


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
