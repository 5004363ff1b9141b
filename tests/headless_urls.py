"""URLs of a site whose frontend is a single-page app using allauth's headless API.

What ``allauth.urls`` gives with ``HEADLESS_ONLY = True`` (only the providers' login and
callback views, no allauth pages), spelled out: allauth.urls reads HEADLESS_ONLY when it
is imported, and the rest of the suite has already imported it in its headed form.
"""

from allauth.urls import build_provider_urlpatterns
from django.urls import include, path

urlpatterns = [
    path("accounts/", include(build_provider_urlpatterns())),
    # Sign in by code (django_trakt.device.headless_urls), beside allauth's own headless URLs.
    path("_allauth/", include("django_trakt.device.headless_urls")),
    path("_allauth/", include("allauth.headless.urls")),
]
