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
