"""allauth's ``SocialAccount`` admin, with the Trakt link's state inline.

allauth's own admin class is replaced by :class:`TraktSocialAccountAdmin` only when it is the
one registered; a site that registered its own keeps it, and can add
:class:`TraktTokenInline` to its class itself.
"""

from __future__ import annotations

from typing import Any

from allauth.socialaccount.admin import SocialAccountAdmin
from allauth.socialaccount.models import SocialAccount
from django.contrib import admin
from django.http import HttpRequest

from django_trakt.admin.display import TokenColumns
from django_trakt.conf import PROVIDER_ID
from django_trakt.models import TraktToken


class TraktTokenInline(TokenColumns, admin.StackedInline):
    """The Trakt link's state on allauth's social account page (read-only)."""

    model = TraktToken
    fk_name = "account"
    fields = ("status", "advice", "expiry", "refreshed", "short_last_error")
    readonly_fields = fields
    can_delete = False
    show_change_link = True
    extra = 0
    max_num = 0

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TraktSocialAccountAdmin(SocialAccountAdmin):
    """allauth's social account admin, with the Trakt link's state inline."""

    def get_inlines(self, request: HttpRequest, obj: Any) -> list[Any]:
        inlines = list(super().get_inlines(request, obj))
        if obj is not None and obj.provider == PROVIDER_ID:
            inlines.append(TraktTokenInline)
        return inlines


def _registered_admin(site: admin.AdminSite, model: type[Any]) -> Any:
    """The ModelAdmin ``site`` has for ``model``, or None."""
    if not site.is_registered(model):
        return None
    get_model_admin = getattr(site, "get_model_admin", None)
    if get_model_admin is not None:
        return get_model_admin(model)
    # Django 4.2 has no public accessor (AdminSite.get_model_admin is new in 5.0): its
    # registry is the only place to tell allauth's admin from a site's own. Goes with 4.2.
    return site._registry.get(model)  # pragma: no cover - Django 4.2 only


# Importing allauth.socialaccount.admin (above) has registered allauth's admin. Extend it
# only when it is allauth's own class (exactly: a subclass is a site's own): a site that
# registered its own keeps it. Replaced the documented way, unregister then register.
if type(_registered_admin(admin.site, SocialAccount)) is SocialAccountAdmin:
    admin.site.unregister(SocialAccount)
    admin.site.register(SocialAccount, TraktSocialAccountAdmin)
