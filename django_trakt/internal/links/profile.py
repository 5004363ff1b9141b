"""A Trakt user's profile as this app keeps it: ``SocialAccount.extra_data``.

The one place that knows the shape of Trakt's ``/users/settings`` document: what is
kept of it (:func:`trim_extra_data`) and how each part is read (:class:`TraktProfile`,
the base of the provider's account class). Imported by every layer (template tags
included), so it imports nothing above the models.
"""

from __future__ import annotations

from typing import Any

from allauth.socialaccount.providers.base import ProviderAccount

from django_trakt.conf import PROVIDER_ID, trakt_settings

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


def trakt_accounts_of(user: Any) -> Any:
    """The user's Trakt ``SocialAccount`` rows, first linked first (none for anonymous users)."""
    from allauth.socialaccount.models import SocialAccount

    if user is None or not getattr(user, "is_authenticated", False):
        return SocialAccount.objects.none()
    return SocialAccount.objects.filter(user_id=user.pk, provider=PROVIDER_ID).order_by("pk")


def trakt_account_of(user: Any) -> Any:
    """ "The user's Trakt account": the first they linked, or None. Every page and client uses this one."""
    return trakt_accounts_of(user).only("pk", "uid", "provider", "extra_data").first()


#: Database lookups into ``SocialAccount.extra_data`` (for filters and ``values_list``),
#: the query-side twins of :class:`TraktProfile`'s properties.
USERNAME_LOOKUP = "extra_data__user__username"
AVATAR_LOOKUP = "extra_data__user__images__avatar__full"


class TraktProfile(ProviderAccount):
    """A Trakt ``SocialAccount`` as a profile: the one reader of ``extra_data``.

    The base of the provider's account class (``provider.TraktAccount``, which adds the
    avatar URL, served by this site's image views); this one needs nothing above the
    models, so every layer can read a profile.

    ``extra_data`` is the trimmed ``/users/settings`` document (:func:`trim_extra_data`).
    Everything that shows or uses a part of it (admin, template tags, images, the
    signup form, the uid) goes through these properties, so its shape is known here
    only. :meth:`of_document` reads a document not stored yet (a sign-in's answer) or a
    ``values_list`` of ``extra_data``.
    """

    @classmethod
    def of_document(cls, document: Any) -> TraktProfile:
        from allauth.socialaccount.models import SocialAccount

        return cls(SocialAccount(provider=PROVIDER_ID, extra_data=document if isinstance(document, dict) else {}))

    @property
    def trakt_user(self) -> dict[str, Any]:
        """The ``user`` object of the profile (``{}`` when it has none)."""
        data = getattr(self.account, "extra_data", None)
        user = data.get("user") if isinstance(data, dict) else None
        return user if isinstance(user, dict) else {}

    def _text(self, *path: str) -> str:
        node: Any = self.trakt_user
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        # As stored (a URL is matched against the database as written), blank as "".
        return node if isinstance(node, str) and node.strip() else ""

    @property
    def username(self) -> str:
        return self._text("username")

    @property
    def slug(self) -> str:
        return self._text("ids", "slug")

    @property
    def uuid(self) -> str:
        """Trakt's permanent id of the user (the account's uid); ``""`` when missing."""
        return self._text("ids", "uuid")

    @property
    def avatar_source(self) -> str | None:
        """The avatar's URL as Trakt wrote it (maybe without a scheme), or None."""
        return self._text("images", "avatar", "full") or None

    def get_profile_url(self) -> str | None:
        if not self.slug:
            return None
        return f"{trakt_settings.WEB_URL}/users/{self.slug}"

    def to_str(self) -> str:
        return self.username or super().to_str()
