"""allauth's provider contract for Trakt (allauth imports this module by name)."""

from __future__ import annotations

from typing import Any, cast

from allauth.socialaccount.models import SocialLogin
from allauth.socialaccount.providers.base import ProviderAccount, ProviderException
from allauth.socialaccount.providers.oauth2.provider import OAuth2Provider
from django.http import HttpRequest

from django_trakt.conf import PROVIDER_ID, trakt_settings
from django_trakt.views import TraktOAuth2Adapter, TraktSocialLogin

#: The parts of Trakt's ``/users/settings`` document kept in ``SocialAccount.extra_data``
#: (as paths into it). allauth would store the whole document, which also holds the
#: account's settings (timezone, date format, cover image, ``account.token``), linked
#: services, sharing texts, limits, and personal profile fields (location, about,
#: gender, age) that nothing here reads. Kept: what this app reads and the public
#: profile a site may show or act on.
EXTRA_DATA_FIELDS: tuple[tuple[str, ...], ...] = (
    ("user", "username"),  # the account's name: admin list and search, avatar alt text, signup form
    ("user", "name"),  # the display name, for sites to show
    ("user", "private"),  # a private profile's public watchlist is refused: sites can say so up front
    ("user", "vip"),  # VIP status: higher Trakt limits, sites may offer more
    ("user", "vip_ep"),
    ("user", "joined_at"),
    ("user", "ids", "slug"),  # the profile URL (get_profile_url) and public lists
    ("user", "ids", "uuid"),  # the uid: extra_data still names the Trakt user it came from
    ("user", "ids", "trakt"),
    ("user", "images", "avatar", "full"),  # the avatar's source, fetched and served by this site
)

_SCALARS = (str, int, float, bool, type(None))


def trim_extra_data(data: Any) -> dict[str, Any]:
    """Only the :data:`EXTRA_DATA_FIELDS` of a ``/users/settings`` document, in its shape.

    A field is kept only when it is a plain value (string, number, boolean, null) where
    the document nests dicts: an unexpected object in its place would bring back
    whatever it holds.
    """
    trimmed: dict[str, Any] = {}
    for path in EXTRA_DATA_FIELDS:
        node = data
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict) or path[-1] not in node or not isinstance(node[path[-1]], _SCALARS):
            continue
        target = trimmed
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = node[path[-1]]
    return trimmed


def _profile_user(data: dict[str, Any]) -> dict[str, Any]:
    """The ``user`` object of a ``/users/settings`` document (``extra_data``)."""
    user = data.get("user") if isinstance(data, dict) else None
    return user if isinstance(user, dict) else {}


class TraktAccount(ProviderAccount):
    @property
    def trakt_user(self) -> dict[str, Any]:
        return _profile_user(self.account.extra_data)

    @property
    def username(self) -> str:
        return str(self.trakt_user.get("username") or "")

    @property
    def slug(self) -> str:
        ids = self.trakt_user.get("ids") or {}
        return str(ids.get("slug") or "")

    def get_profile_url(self) -> str | None:
        if not self.slug:
            return None
        return f"{trakt_settings.WEB_URL}/users/{self.slug}"

    def get_avatar_url(self) -> str | None:
        # Trakt forbids hotlinking its images, the avatar included: never hand out
        # the profile's image URL, only this site's copy (django_trakt.image_views);
        # None when the profile has no avatar we would fetch.
        from django_trakt.images import avatar_url

        return avatar_url(self.account)

    def to_str(self) -> str:
        return self.username or super().to_str()


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
        ids = _profile_user(data).get("ids") or {}
        uuid = ids.get("uuid") if isinstance(ids, dict) else None
        if not isinstance(uuid, str) or not uuid.strip():
            raise ProviderException("Trakt's profile has no user.ids.uuid; refusing to identify the user by name.")
        return uuid.strip()

    def extract_common_fields(self, data: dict[str, Any]) -> dict[str, Any]:
        # The Trakt username, not the display name, is what the signup form offers.
        username = _profile_user(data).get("username")
        return {"username": username} if isinstance(username, str) else {}

    def extract_email_addresses(self, data: dict[str, Any]) -> list[Any]:
        # Trakt gives no email address; allauth's signup form asks for one.
        return []

    def extract_extra_data(self, data: dict[str, Any]) -> dict[str, Any]:
        # allauth stores this on every sign-in (replacing what was there), so trimming
        # here keeps every link to the allow-list; migration 0003 trimmed older rows.
        return trim_extra_data(data)


provider_classes = [TraktProvider]
