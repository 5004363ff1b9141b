"""The redirect URI ("callback URL") this site sends to Trakt, built by allauth itself.

Trakt redirects only to a URI registered exactly, so the one to register is the one
allauth puts into the authorize redirect: the provider adapter's
``get_callback_url()``, i.e. ``allauth.utils.build_absolute_uri`` on the
``trakt_callback`` URL. It takes the host and scheme from the request (behind a proxy:
``SECURE_PROXY_SSL_HEADER``), and forces ``https`` when
``ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https"``. With a request (a site's page) or none (a
refresh: the current ``Site``) it is that method; for a host given by name (the management
command, the system check) the same rule is applied to the host without making a request up
(:func:`trakt_callback_url_for_host`), and tests hold both to what the login sends.
"""

from __future__ import annotations

import re

from allauth.account import app_settings as account_settings
from allauth.socialaccount.providers.oauth2.views import OAuth2Adapter
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError
from django.http import HttpRequest
from django.urls import reverse

from django_trakt.conf import PROVIDER_ID, trakt_settings
from django_trakt.exceptions import TraktSiteMisconfigured

#: The domain Django's sites framework creates by default: a Site still on it cannot be
#: the host registered with Trakt.
PLACEHOLDER_DOMAIN = "example.com"


#: A host as a Host header carries it: a name or an IPv4 address, or an IPv6 address in
#: brackets, with an optional port.
_HOST = re.compile(r"^(?P<domain>[a-z0-9.-]+|\[[a-f0-9]*:[a-f0-9.:]+\])(?::(?P<port>[0-9]+))?$")


def split_host(host: str) -> tuple[str, str]:
    """``(domain, port)`` of a host header, lowercased (``("", "")`` when it is not one)."""
    match = _HOST.match(host.strip().lower())
    if match is None:
        return "", ""
    domain = match["domain"]
    return (domain if domain.startswith("[") else domain.removesuffix(".")), match["port"] or ""


class TraktCallbackAdapter(OAuth2Adapter):
    """allauth's OAuth2 adapter for Trakt as far as the callback URL goes.

    ``views.TraktOAuth2Adapter`` (the sign-in) builds on this class, so the redirect URI a
    refresh sends and the one the sign-in sent are built by the same code, and the link
    lifecycle needs nothing of the sign-in's views.
    """

    provider_id = PROVIDER_ID


def trakt_callback_url(request: HttpRequest | None = None) -> str:
    """The redirect URI allauth sends to Trakt when the login starts from ``request``.

    With ``request=None`` allauth builds it from the sites framework (the current
    ``Site``'s domain and ``ACCOUNT_DEFAULT_HTTP_PROTOCOL``) and raises
    ``ImproperlyConfigured`` when the sites framework is not installed.
    """
    adapter = TraktCallbackAdapter(request)
    # allauth's OAuth2Adapter.get_callback_url does not use the app.
    return str(adapter.get_callback_url(request, None))


def trakt_callback_url_for_host(host: str, *, secure: bool = False, validate_host: bool = True) -> str:
    """The redirect URI for a login started at ``host`` (``"example.com"``, ``"nas.local:8000"``).

    ``secure`` says whether that request reaches Django over HTTPS (directly, or as
    recognised through ``SECURE_PROXY_SSL_HEADER``). Built as allauth's
    ``OAuth2Adapter.get_callback_url`` builds it from a request (``build_absolute_uri`` of the
    ``trakt_callback`` path, then the adapter's ``redirect_uri_protocol`` or
    ``ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https"`` over the request's scheme), without making a
    request up; ``tests/test_redirect_uri.py`` holds it to the URL the login really sends.
    Like a real request, a host that is not in ``ALLOWED_HOSTS`` is refused
    (``DisallowedHost``), unless ``validate_host`` is false.
    """
    host = host.strip()
    if validate_host:
        allowed_host(host)
    protocol = TraktCallbackAdapter.redirect_uri_protocol
    if not protocol and account_settings.DEFAULT_HTTP_PROTOCOL == "https":
        protocol = "https"
    scheme = protocol or ("https" if secure else "http")
    return f"{scheme}://{host}{reverse(f'{PROVIDER_ID}_callback')}"


def allowed_host(host: str) -> str:
    """``host`` if Django would serve a request for it (``ALLOWED_HOSTS``), else ``DisallowedHost``.

    The rule is Django's own, ``HttpRequest.get_host()`` (wildcards, and with ``DEBUG`` the
    loopback names when ``ALLOWED_HOSTS`` is empty), asked of a bare ``HttpRequest`` that
    carries nothing but the Host header.
    """
    probe = HttpRequest()
    probe.META["HTTP_HOST"] = host
    return probe.get_host()


def refresh_redirect_uri() -> str:
    """The redirect URI a refresh sends outside a request (the command, a task, the admin).

    Trakt's refresh grant wants a redirect URI registered with the app. It is
    ``SOCIALACCOUNT_PROVIDERS["trakt"]["REDIRECT_URI"]`` when set, else the callback URL
    allauth builds from the current ``Site``. Every way this cannot work is a fault of the
    site's configuration, raised as :class:`TraktSiteMisconfigured` *before* Trakt is asked,
    so no refresh token is spent and no link is flagged for it.
    """
    configured = trakt_settings.REDIRECT_URI
    if configured:
        return configured
    if not apps.is_installed("django.contrib.sites"):
        raise TraktSiteMisconfigured(
            "Refreshing Trakt tokens outside a request needs the redirect URI: add django.contrib.sites to "
            'INSTALLED_APPS (with SITE_ID), or set SOCIALACCOUNT_PROVIDERS["trakt"]["REDIRECT_URI"].',
            setting="INSTALLED_APPS",
        )
    from django.contrib.sites.models import Site

    try:
        domain = Site.objects.get_current().domain.strip()
    except ImproperlyConfigured as err:
        raise TraktSiteMisconfigured(
            "Refreshing Trakt tokens outside a request needs SITE_ID (the sites framework cannot tell the "
            'current site), or SOCIALACCOUNT_PROVIDERS["trakt"]["REDIRECT_URI"].',
            setting="SITE_ID",
        ) from err
    except Site.DoesNotExist as err:
        raise TraktSiteMisconfigured(
            "The Site of SITE_ID does not exist: create it (admin, Sites) with the site's real domain.",
            setting="SITE_ID",
        ) from err
    except DatabaseError as err:
        raise TraktSiteMisconfigured(
            "The sites table cannot be read: run manage.py migrate.", setting="SITE_ID"
        ) from err
    if not domain or split_host(domain)[0] in (PLACEHOLDER_DOMAIN, f"www.{PLACEHOLDER_DOMAIN}"):
        raise TraktSiteMisconfigured(
            f"The current Site's domain is {domain or 'empty'!r}, not this site's: set it (admin, Sites) to the "
            'host registered with Trakt, or set SOCIALACCOUNT_PROVIDERS["trakt"]["REDIRECT_URI"].',
            setting="Site domain",
        )
    return trakt_callback_url()
