from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from example import views

urlpatterns = [
    path("", views.home, name="home"),
    path("profile/", views.profile, name="profile"),
    # An app's side of signing in by code, in plain JavaScript against the headless API.
    path("tv/", views.tv, name="tv"),
    path("accounts/", include("allauth.urls")),
    path("trakt/", include("django_trakt.site_urls")),
    path("_allauth/", include("django_trakt.device.headless_urls")),
    path("_allauth/", include("allauth.headless.urls")),
    path("admin/", admin.site.urls),
    # Browsers ask for /favicon.ico on pages that name no icon (the admin's): never a 404.
    path("favicon.ico", RedirectView.as_view(url=static("example/favicon.svg"), permanent=True)),
]
