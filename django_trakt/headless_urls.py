"""Deprecated home of the headless sign-in by code's URLconf: include ``django_trakt.device.headless_urls``.

Kept for one release so that a site's ``include("django_trakt.headless_urls")`` goes on working.
"""

import warnings

from django_trakt.device.headless_urls import app_name, build_urlpatterns, urlpatterns

warnings.warn(
    'include("django_trakt.headless_urls") is deprecated: include("django_trakt.device.headless_urls") '
    "(the old path goes in the next release).",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["app_name", "build_urlpatterns", "urlpatterns"]
