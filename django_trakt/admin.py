"""Admin for linked Trakt accounts. It never shows, edits or searches a token."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from django_trakt.models import TraktToken


@admin.register(TraktToken)
class TraktTokenAdmin(admin.ModelAdmin):
    list_display = ("account_user", "trakt_username", "status", "expires_at", "last_refreshed_at", "updated_at")
    list_filter = ("status",)
    list_select_related = ("account__user",)
    search_fields = ("account__extra_data__user__username", "account__user__username", "account__user__email")
    # Only metadata: the *_encrypted columns are not listed, so they are never rendered.
    fields = (
        "account",
        "status",
        "token_type",
        "scope",
        "expires_at",
        "last_refreshed_at",
        "last_error",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields
    ordering = ("expires_at",)

    @admin.display(description=_("user"), ordering="account__user")
    def account_user(self, token: TraktToken) -> Any:
        return token.account.user

    @admin.display(description=_("Trakt username"))
    def trakt_username(self, token: TraktToken) -> str:
        return str(token.account)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Tokens come from Trakt's consent, never from a form.
        return False
