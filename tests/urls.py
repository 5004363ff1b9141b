from django.contrib import admin
from django.urls import include, path

from tests import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("trakt/", include("django_trakt.site_urls")),
    path("test/settings-then-fail/", views.settings_then_fail),
    path("test/settings/", views.settings_ok),
]
