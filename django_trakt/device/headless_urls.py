"""Sign in by code through the headless API, under allauth's headless prefix::

    path("_allauth/", include("django_trakt.device.headless_urls")),
    path("_allauth/", include("allauth.headless.urls")),

gives ``/_allauth/{browser,app}/v1/auth/provider/trakt/code`` and ``.../code/poll`` for each
client of ``HEADLESS_CLIENTS``, as allauth builds its own (``allauth.headless.urls``).
URL names: ``django_trakt_headless:app:code_start`` ...
"""

from allauth.headless import app_settings
from allauth.headless.constants import Client
from django.urls import URLPattern, URLResolver, include, path

from django_trakt.device.headless import CodePollView, CodeStartView

app_name = "django_trakt_headless"


def build_urlpatterns(client: Client) -> list[URLPattern | URLResolver]:
    # as_api_view marks the request as headless for this client (the app client's
    # X-Session-Token session, the browser client's CSRF cookie), like allauth's views.
    return [
        path("v1/auth/provider/trakt/code", CodeStartView.as_api_view(client=client), name="code_start"),
        path("v1/auth/provider/trakt/code/poll", CodePollView.as_api_view(client=client), name="code_poll"),
    ]


urlpatterns: list[URLPattern | URLResolver] = [
    path(f"{client.value}/", include((build_urlpatterns(client), app_name), namespace=client.value))
    for client in (Client.BROWSER, Client.APP)
    if client in app_settings.CLIENTS
]
