"""The TraktToken admin: every link with its user, Trakt username, status, expiry ("expired" /
"expiring soon" at a glance), last refresh and last error; filters by status and expiry;
search by Trakt username and the user's name or email.

Read-only: no add form, no edit form, no plain delete (deleting only the token would leave a
half-removed link). Its two actions live in ``actions.py``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from allauth.socialaccount.models import SocialAccount
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import F, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from django_trakt.admin.actions import refresh_now, revoke_and_unlink
from django_trakt.admin.display import TokenColumns, trakt_username
from django_trakt.internal.links.profile import USERNAME_LOOKUP
from django_trakt.models import TraktToken


class ExpiryFilter(admin.SimpleListFilter):
    title = _("expiry")
    parameter_name = "expiry"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            ("expired", _("Expired")),
            ("24h", _("Expiring within 24 hours")),
            ("7d", _("Expiring within 7 days")),
            ("later", _("Expiring later")),
            ("unknown", _("Unknown")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[TraktToken]) -> QuerySet[TraktToken] | None:
        now = timezone.now()
        value = self.value()
        if value == "expired":
            return queryset.filter(expires_at__lte=now)
        if value == "24h":
            return queryset.filter(expires_at__gt=now, expires_at__lte=now + dt.timedelta(hours=24))
        if value == "7d":
            return queryset.filter(expires_at__gt=now, expires_at__lte=now + dt.timedelta(days=7))
        if value == "later":
            return queryset.filter(expires_at__gt=now + dt.timedelta(days=7))
        if value == "unknown":
            return queryset.filter(expires_at__isnull=True)
        return queryset


@admin.register(TraktToken)
class TraktTokenAdmin(TokenColumns, admin.ModelAdmin):
    list_display = ("user", "trakt_username", "status", "expiry", "refreshed", "short_last_error")
    list_filter = ("status", ExpiryFilter)
    list_select_related = ("account__user",)
    search_help_text = _("Search by Trakt username, or by the user's username, name or email.")
    # Only metadata: the *_encrypted columns are never listed, so they are never rendered.
    fields = (
        "account",
        "user",
        "trakt_username",
        "status",
        "advice",
        "expiry",
        "refreshed",
        "last_error",
        "token_type",
        "scope",
        "created",
        "updated",
    )
    readonly_fields = fields
    ordering = (F("expires_at").asc(nulls_last=True), "pk")
    actions = (refresh_now, revoke_and_unlink)

    @admin.display(description=_("user"), ordering=f"account__user__{get_user_model().USERNAME_FIELD}")
    def user(self, token: TraktToken) -> Any:
        return token.account.user

    @admin.display(description=_("Trakt username"))
    def trakt_username(self, token: TraktToken) -> str:
        return trakt_username(token.account)

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        from allauth.account.adapter import get_adapter

        # The JSON key lookup works on PostgreSQL and SQLite alike; tokens are never searched.
        user_fields = [f"account__user__{name}" for name in get_adapter().get_user_search_fields()]
        return [f"account__{USERNAME_LOOKUP}", *user_fields]

    # -- read-only: tokens come from Trakt's consent, links go with "Revoke and unlink" -----

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest, action_location: Any = None) -> dict[str, Any]:
        # Django 6.1 asks per action location (and warns about overrides without the
        # parameter); older Djangos have no such parameter.
        location = () if action_location is None else (action_location,)
        actions = super().get_actions(request, *location)
        # Deleting only the token would leave the account linked without one.
        actions.pop("delete_selected", None)
        return actions

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "show_delete": False})

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None) -> Any:
        # has_delete_permission stays as Django decides, so that deleting a user or a
        # social account (which cascades to the token) is not blocked by this admin.
        raise PermissionDenied

    # -- the actions' permissions (Django looks up has_<name>_permission) -----------------------

    def has_refresh_permission(self, request: HttpRequest) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    def has_unlink_permission(self, request: HttpRequest) -> bool:
        opts = SocialAccount._meta
        return request.user.has_perm(f"{opts.app_label}.delete_{opts.model_name}")
