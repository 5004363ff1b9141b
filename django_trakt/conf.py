"""Typed access to django-trakt's settings.

Every value is read from ``django.conf.settings`` on each access (never cached at
import), so ``override_settings`` in tests and per-environment settings just work.

Connection settings live with allauth's own provider settings, in
``SOCIALACCOUNT_PROVIDERS["trakt"]``; the token keys are a top-level setting because
they are a secret of the site, not of the provider.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from django_trakt import __version__

PROVIDER_ID = "trakt"

DEFAULT_AUTH_URL = "https://auth.trakt.tv"
DEFAULT_API_URL = "https://api.trakt.tv"
DEFAULT_WEB_URL = "https://trakt.tv"
DEFAULT_TIMEOUT = 10.0
LIBRARY_USER_AGENT = f"django-trakt/{__version__}"


class TraktSettings:
    """Settings of django-trakt with their defaults; see README "Settings"."""

    @property
    def provider_settings(self) -> dict[str, Any]:
        providers = getattr(settings, "SOCIALACCOUNT_PROVIDERS", None) or {}
        return dict(providers.get(PROVIDER_ID) or {})

    def _url(self, key: str, default: str) -> str:
        return str(self.provider_settings.get(key) or default).rstrip("/")

    @property
    def AUTH_URL(self) -> str:
        """Host of Trakt's OAuth endpoints (authorize, token, revoke, device)."""
        return self._url("AUTH_URL", DEFAULT_AUTH_URL)

    @property
    def API_URL(self) -> str:
        """Host of Trakt's data API (``/users/...``, ``/sync/...``)."""
        return self._url("API_URL", DEFAULT_API_URL)

    @property
    def WEB_URL(self) -> str:
        """Trakt's website, for links to profiles and titles."""
        return self._url("WEB_URL", DEFAULT_WEB_URL)

    @property
    def USER_AGENT(self) -> str:
        """The User-Agent sent to Trakt.

        Trakt requires one and blocks requests without it. A site's own product
        token (``"mysite/2.1"``) goes first; the library always names itself too,
        so Trakt can tell which client code made the request.
        """
        site_agent = str(self.provider_settings.get("USER_AGENT") or "").strip()
        if not site_agent:
            return LIBRARY_USER_AGENT
        return f"{site_agent} {LIBRARY_USER_AGENT}"

    @property
    def REDIRECT_URI(self) -> str:
        """The redirect URI refreshes send outside a request ("" means: built from the Site).

        It must be one of the redirect URIs registered with the Trakt app.
        """
        return str(self.provider_settings.get("REDIRECT_URI") or "").strip()

    @property
    def TIMEOUT(self) -> float:
        """Seconds to wait for Trakt (connect and read) before giving up."""
        return float(self.provider_settings.get("TIMEOUT") or DEFAULT_TIMEOUT)

    @property
    def TOKEN_KEYS(self) -> list[str | bytes] | None:
        """``TRAKT_TOKEN_KEYS``: Fernet keys; the first encrypts, all decrypt."""
        keys = getattr(settings, "TRAKT_TOKEN_KEYS", None)
        if keys is None:
            return None
        if isinstance(keys, (str, bytes)):
            return [keys]
        return list(keys)

    # -- template tags, watchlist cache, self-hosted images (docs/templates.md) -----------

    @staticmethod
    def _number(name: str, default: float, minimum: float = 0) -> float:
        value = getattr(settings, name, None)
        try:
            return max(minimum, float(value)) if value is not None else default
        except (TypeError, ValueError):
            return default

    @property
    def CACHE(self) -> str:
        """``TRAKT_CACHE``: alias of the Django cache holding watchlists (and image failures)."""
        return str(getattr(settings, "TRAKT_CACHE", None) or "default")

    @property
    def WATCHLIST_TTL(self) -> float:
        """``TRAKT_WATCHLIST_TTL``: seconds a fetched watchlist is shown without asking Trakt."""
        return self._number("TRAKT_WATCHLIST_TTL", 300.0)

    @property
    def WATCHLIST_STALE_TTL(self) -> float:
        """``TRAKT_WATCHLIST_STALE_TTL``: seconds the last good copy is kept for when Trakt fails."""
        return self._number("TRAKT_WATCHLIST_STALE_TTL", 7 * 24 * 3600.0, minimum=1)

    @property
    def WATCHLIST_MAX_ITEMS(self) -> int:
        """``TRAKT_WATCHLIST_MAX_ITEMS``: most items a watchlist tag fetches (its ``limit`` is capped)."""
        return int(self._number("TRAKT_WATCHLIST_MAX_ITEMS", 100, minimum=1))

    @property
    def PAGE_TIMEOUT(self) -> float:
        """``TRAKT_PAGE_TIMEOUT``: seconds per Trakt request made while a page renders."""
        return self._number("TRAKT_PAGE_TIMEOUT", 3.0, minimum=0.1)

    @property
    def PAGE_RETRY_WAIT(self) -> float:
        """``TRAKT_PAGE_RETRY_WAIT``: longest ``Retry-After`` a render waits out (0: never sleeps)."""
        return self._number("TRAKT_PAGE_RETRY_WAIT", 0.0)

    @property
    def FAILURE_BACKOFF(self) -> float:
        """``TRAKT_FAILURE_BACKOFF``: seconds renders stop asking Trakt about a list after a failure."""
        return self._number("TRAKT_FAILURE_BACKOFF", 60.0)

    @property
    def IMAGE_HOSTS(self) -> list[str]:
        """``TRAKT_IMAGE_HOSTS``: hosts images may be fetched from (``".example.com"``: any subdomain)."""
        hosts = getattr(settings, "TRAKT_IMAGE_HOSTS", None)
        if hosts is None:
            # Where Trakt serves avatars and posters from (docs/templates.md, "Images").
            return ["walter.trakt.tv", "walter-r2.trakt.tv", "media.trakt.tv", "secure.gravatar.com"]
        if isinstance(hosts, str):
            hosts = [hosts]
        return [str(host).strip().lower() for host in hosts if str(host).strip()]

    @property
    def IMAGE_MAX_BYTES(self) -> int:
        """``TRAKT_IMAGE_MAX_BYTES``: largest image accepted from Trakt's hosts."""
        return int(self._number("TRAKT_IMAGE_MAX_BYTES", 2 * 1024 * 1024, minimum=1))

    @property
    def IMAGE_TIMEOUT(self) -> float:
        """``TRAKT_IMAGE_TIMEOUT``: seconds for a whole image download, redirects included."""
        return self._number("TRAKT_IMAGE_TIMEOUT", 5.0, minimum=0.1)

    @property
    def IMAGE_MAX_REDIRECTS(self) -> int:
        """``TRAKT_IMAGE_MAX_REDIRECTS``: redirects followed (each one checked again)."""
        return int(self._number("TRAKT_IMAGE_MAX_REDIRECTS", 3))

    @property
    def IMAGE_STORAGE(self) -> str:
        """``TRAKT_IMAGE_STORAGE``: alias in ``STORAGES`` where fetched images are kept."""
        return str(getattr(settings, "TRAKT_IMAGE_STORAGE", None) or "default")

    @property
    def IMAGE_PREFIX(self) -> str:
        """``TRAKT_IMAGE_PREFIX``: folder of the fetched images inside that storage."""
        return str(getattr(settings, "TRAKT_IMAGE_PREFIX", None) or "django_trakt").strip("/")

    @property
    def IMAGE_MAX_AGE(self) -> int:
        """``TRAKT_IMAGE_MAX_AGE``: ``Cache-Control`` max-age of a served image."""
        return int(self._number("TRAKT_IMAGE_MAX_AGE", 7 * 24 * 3600))

    @property
    def IMAGE_RETRY_AFTER(self) -> float:
        """``TRAKT_IMAGE_RETRY_AFTER``: seconds the default image stands in after a failed fetch."""
        return self._number("TRAKT_IMAGE_RETRY_AFTER", 900.0)

    @property
    def IMAGE_RESOLVER(self) -> Any:
        """``TRAKT_IMAGE_RESOLVER``: ``host -> IP addresses`` callable (or dotted path); None: DNS."""
        resolver = getattr(settings, "TRAKT_IMAGE_RESOLVER", None)
        if isinstance(resolver, str):
            from django.utils.module_loading import import_string

            return import_string(resolver)
        return resolver

    # -- linking by code (README "Linking by code") -----------------------------------------

    @property
    def DEVICE_START_LIMIT(self) -> int:
        """``TRAKT_DEVICE_START_LIMIT``: codes one user may ask Trakt for per ``TRAKT_DEVICE_START_PERIOD``."""
        return int(self._number("TRAKT_DEVICE_START_LIMIT", 5, minimum=1))

    @property
    def DEVICE_START_PERIOD(self) -> float:
        """``TRAKT_DEVICE_START_PERIOD``: seconds over which ``TRAKT_DEVICE_START_LIMIT`` is counted."""
        return self._number("TRAKT_DEVICE_START_PERIOD", 600.0, minimum=1)

    # -- what pages may spend at Trakt (docs/templates.md "Public watchlists safely") -----------

    @property
    def PAGE_CALL_BUDGET(self) -> int:
        """``TRAKT_PAGE_CALL_BUDGET``: Trakt calls all renders of public lists may send per period, site-wide."""
        return int(self._number("TRAKT_PAGE_CALL_BUDGET", 100))

    @property
    def PAGE_USER_CALL_BUDGET(self) -> int:
        """``TRAKT_PAGE_USER_CALL_BUDGET``: Trakt calls renders of one user's own lists may send per period."""
        return int(self._number("TRAKT_PAGE_USER_CALL_BUDGET", 100))

    @property
    def PAGE_CALL_PERIOD(self) -> float:
        """``TRAKT_PAGE_CALL_PERIOD``: seconds of the window both page budgets are counted over."""
        return self._number("TRAKT_PAGE_CALL_PERIOD", 300.0, minimum=1)

    @property
    def WATCHLIST_NOT_FOUND_TTL(self) -> float:
        """``TRAKT_WATCHLIST_NOT_FOUND_TTL``: seconds an unknown or private Trakt username is not asked again."""
        return self._number("TRAKT_WATCHLIST_NOT_FOUND_TTL", 3600.0)

    @property
    def PENDING_SIGNUP_MAX_AGE(self) -> float:
        """``TRAKT_PENDING_SIGNUP_MAX_AGE``: seconds a sign-in's unstored grant waits before it is revoked."""
        return self._number("TRAKT_PENDING_SIGNUP_MAX_AGE", 3600.0, minimum=60)

    # -- background work on the site's task queue (README "Background work") -----------------

    @property
    def TASK_BACKEND(self) -> str | None:
        """``TRAKT_TASK_BACKEND``: alias in ``TASKS`` that runs the app's background tasks; None: in process."""
        alias = getattr(settings, "TRAKT_TASK_BACKEND", None)
        return (str(alias).strip() or None) if alias is not None else None

    @property
    def TASK_QUEUE(self) -> str:
        """``TRAKT_TASK_QUEUE``: the queue of that backend the app's tasks are enqueued on."""
        return str(getattr(settings, "TRAKT_TASK_QUEUE", None) or "default")

    @property
    def REFRESH_RATE(self) -> float:
        """``TRAKT_REFRESH_RATE``: refreshes per second all task workers together send (0: no limit)."""
        return self._number("TRAKT_REFRESH_RATE", 20.0)

    @property
    def TASK_RETRIES(self) -> int:
        """``TRAKT_TASK_RETRIES``: times a refresh task that failed for a passing reason is enqueued again."""
        return int(self._number("TRAKT_TASK_RETRIES", 3))


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
