from django.contrib import admin
from django.urls import include, path

from example import views

urlpatterns = [
    path("", views.home, name="home"),
    path("profile/", views.profile, name="profile"),
    path("accounts/", include("allauth.urls")),
    path("trakt/", include("django_trakt.site_urls")),
    path("admin/", admin.site.urls),
]
