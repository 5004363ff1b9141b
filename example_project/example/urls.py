from django.contrib import admin
from django.urls import include, path

from example import views

urlpatterns = [
    path("", views.home, name="home"),
    path("profile/", views.profile, name="profile"),
    # An app's side of signing in by code, in plain JavaScript against the headless API.
    path("tv/", views.tv, name="tv"),
    path("accounts/", include("allauth.urls")),
    path("trakt/", include("django_trakt.site_urls")),
    path("_allauth/", include("django_trakt.headless_urls")),
    path("_allauth/", include("allauth.headless.urls")),
    path("admin/", admin.site.urls),
]
