"""allauth's provider contract for Trakt (allauth imports this module by name)."""

from __future__ import annotations

from typing import Any, cast

from allauth.socialaccount.models import SocialLogin
from allauth.socialaccount.providers.base import ProviderException
from allauth.socialaccount.providers.oauth2.provider import OAuth2Provider
from django.http import HttpRequest

from django_trakt.conf import PROVIDER_ID
from django_trakt.links.profile import TraktProfile, trim_extra_data
from django_trakt.pages.images import avatar_url
from django_trakt.views import TraktOAuth2Adapter, TraktSocialLogin


class TraktAccount(TraktProfile):
    """allauth's account class for Trakt: the profile, plus the avatar as this site serves it."""

    def get_avatar_url(self) -> str | None:
        # Trakt forbids hotlinking its images, the avatar included: never hand out
        # the profile's image URL, only this site's copy (django_trakt.pages.image_views);
        # None when the profile has no avatar we would fetch.
        return avatar_url(self.account)


class TraktProvider(OAuth2Provider):
    id = PROVIDER_ID
    name = "Trakt"
    account_class = TraktAccount
    oauth2_adapter_class = TraktOAuth2Adapter
    # Trakt requires PKCE since its 2026 auth migration; a site can still turn it
    # off with SOCIALACCOUNT_PROVIDERS["trakt"]["OAUTH_PKCE_ENABLED"] = False.
    pkce_enabled_default = True

    def sociallogin_from_response(self, request: HttpRequest, response: Any) -> SocialLogin:
        sociallogin = super().sociallogin_from_response(request, response)
        # allauth builds a plain SocialLogin (its class is not configurable); ours only adds a
        # guard to lookup and no state, so the same object takes our class (see
        # views.TraktSocialLogin: why, and what it refuses).
        sociallogin.__class__ = TraktSocialLogin
        guarded = cast(TraktSocialLogin, sociallogin)
        guarded.trakt_request = request
        return guarded

    def extract_uid(self, data: dict[str, Any]) -> str:
        # The uuid never changes; the slug (and username) change when a user renames.
        # Falling back to the slug would make a renamed user a stranger (or worse,
        # hand their account to whoever takes the old name).
        uuid = TraktAccount.of_document(data).uuid.strip()
        if not uuid:
            raise ProviderException("Trakt's profile has no user.ids.uuid; refusing to identify the user by name.")
        return uuid

    def extract_common_fields(self, data: dict[str, Any]) -> dict[str, Any]:
        # The Trakt username, not the display name, is what the signup form offers.
        username = TraktAccount.of_document(data).username
        return {"username": username} if username else {}

    def extract_email_addresses(self, data: dict[str, Any]) -> list[Any]:
        # Trakt gives no email address; allauth's signup form asks for one.
        return []

    def extract_extra_data(self, data: dict[str, Any]) -> dict[str, Any]:
        # allauth stores this on every sign-in (replacing what was there), so trimming
        # here keeps every link to the allow-list; migration 0003 trimmed older rows.
        return trim_extra_data(data)


provider_classes = [TraktProvider]
