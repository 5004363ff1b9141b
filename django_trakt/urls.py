"""allauth's URL contract: allauth includes this module for each installed provider."""

from allauth.socialaccount.providers.oauth2.urls import default_urlpatterns

from django_trakt.provider import TraktProvider

urlpatterns = default_urlpatterns(TraktProvider)
