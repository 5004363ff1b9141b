"""Admin for linked Trakt accounts. It never shows, edits or searches a token.

Django's ``autodiscover`` imports this package, which registers:

- ``token_admin.TraktTokenAdmin``: every link, its state, filters and search; read-only, with the
  two actions of ``actions.py`` ("Refresh now", "Revoke and unlink");
- ``social_account_admin.TraktSocialAccountAdmin``: allauth's ``SocialAccount`` admin with a
  read-only inline of the link's state, when allauth's own admin class is the one registered.

``display.py`` holds what both show of a link (expiry marker, advice, shared columns). The
public name is :class:`TraktTokenInline`, for a site that registers its own SocialAccount admin.
"""

from django_trakt.admin import token_admin  # noqa: F401 - registers the TraktToken admin
from django_trakt.admin.social_account_admin import TraktTokenInline

__all__ = ["TraktTokenInline"]
