"""The app's own pages, for a site to include (allauth includes ``django_trakt.urls``)::

    path("trakt/", include("django_trakt.site_urls")),

URL names are namespaced: ``django_trakt:device_start`` ...
"""

from django.urls import path

from django_trakt.device import views as device_views
from django_trakt.internal.pages import image_views

app_name = "django_trakt"

urlpatterns = [
    path("device/", device_views.device_start, name="device_start"),
    path("device/pending/", device_views.device_pending, name="device_pending"),
    path("device/poll/", device_views.device_poll, name="device_poll"),
]

# Self-hosted Trakt images (Trakt forbids hotlinking): see docs/templates.md.
urlpatterns += [
    path("avatar/<int:account_id>/<slug:key>", image_views.avatar, name="avatar"),
    path("poster/<str:token>", image_views.poster, name="poster"),
]
