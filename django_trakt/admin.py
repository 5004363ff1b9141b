"""Admin for linked Trakt accounts. It never shows, edits or searches a token.

- ``TraktTokenAdmin``: every link with its user, Trakt username, status, expiry
  ("expired" / "expiring soon" at a glance), last refresh and last error; filters by
  status and expiry; search by Trakt username and the user's name or email. Read-only:
  no add form, no edit form, no plain delete (deleting only the token would leave a
  half-removed link). Two actions: "Refresh now" and "Revoke and unlink".
- allauth's ``SocialAccount`` admin gets a read-only inline with the link's state and a
  link to it, when allauth's own admin class is the one registered.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from allauth.socialaccount.admin import SocialAccountAdmin
from allauth.socialaccount.models import SocialAccount
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import F, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import formats, timezone
from django.utils.functional import Promise
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from django_trakt.conf import PROVIDER_ID
from django_trakt.exceptions import TraktConfigurationError, TraktSiteMisconfigured
from django_trakt.links.profile import USERNAME_LOOKUP, TraktProfile
from django_trakt.links.refresh import Outcome, refresh_token
from django_trakt.links.revocation import unlink
from django_trakt.models import TraktToken

#: A token expiring within this is shown as "expiring soon".
EXPIRING_SOON = dt.timedelta(hours=24)

#: How many per-link reasons an action's message lists before "and N more".
_MAX_DETAILS = 10

#: What to do about a link in each status (its page shows it; the list shows last_error).
#: An unreadable link needs a key back, a corrupted one a new sign-in: the advice differs.
#: An active link past its expiry: the renewal did not run (or could not reach Trakt).
EXPIRED_ADVICE = _(
    "The token has expired although the link is active: check that refresh_trakt_tokens runs (hourly), "
    'or use "Refresh now". The next refresh renews it without asking the user.'
)
STATUS_ADVICE: dict[str, str | Promise] = {
    TraktToken.Status.ACTIVE: _(
        "Nothing: the link works. refresh_trakt_tokens renews it before it expires; the user need not act."
    ),
    TraktToken.Status.NEEDS_REAUTH: _(
        "Trakt no longer accepts this link's tokens: the user must sign in with Trakt again."
    ),
    TraktToken.Status.REVOKED: _("The link was revoked: the user must sign in with Trakt again."),
    TraktToken.Status.UNREADABLE: _(
        "No configured key decrypts the stored token. Put the key that encrypted it back into TRAKT_TOKEN_KEYS "
        "(after the first key): the link then works again by itself, without asking the user."
    ),
    TraktToken.Status.CORRUPTED: _(
        "The stored ciphertext is damaged and no key can bring it back: the user must sign in with Trakt again."
    ),
}


def trakt_username(account: SocialAccount) -> str:
    """The Trakt username stored with the account's profile, or ``""``."""
    return TraktProfile(account).username


def expiry_marker(expires_at: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """``"expired"``, ``"expiring soon"`` (within :data:`EXPIRING_SOON`) or ``""``."""
    if expires_at is None:
        return ""
    now = now or timezone.now()
    if expires_at <= now:
        return str(_("expired"))
    if expires_at <= now + EXPIRING_SOON:
        return str(_("expiring soon"))
    return ""


def _link_name(token: TraktToken) -> str:
    return trakt_username(token.account) or str(token.account.user)


def _with_details(message: str, details: list[str]) -> str:
    if not details:
        return message
    shown = "; ".join(details[:_MAX_DETAILS])
    if len(details) > _MAX_DETAILS:
        shown += " " + str(_("and %(count)d more") % {"count": len(details) - _MAX_DETAILS})
    return f"{message} ({shown})"


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


def _datetime(value: dt.datetime) -> str:
    # One format for every date the admin shows, localised the Django way (USE_L10N, the
    # active language's SHORT_DATETIME_FORMAT, the current time zone).
    return formats.date_format(timezone.localtime(value), "SHORT_DATETIME_FORMAT")


class _TokenDisplay:
    """Columns shared by the token admin and the inline on the social account admin."""

    @admin.display(description=_("expires"), ordering="expires_at")
    def expiry(self, token: TraktToken) -> str:
        if token.expires_at is None:
            return str(_("unknown"))
        when = _datetime(token.expires_at)
        marker = expiry_marker(token.expires_at)
        if not marker:
            return when
        return format_html("{} <strong>{}</strong>", when, marker)

    @admin.display(description=_("last refreshed"), ordering="last_refreshed_at")
    def refreshed(self, token: TraktToken) -> str:
        return _datetime(token.last_refreshed_at) if token.last_refreshed_at else "-"

    @admin.display(description=_("created at"))
    def created(self, token: TraktToken) -> str:
        return _datetime(token.created_at)

    @admin.display(description=_("updated at"))
    def updated(self, token: TraktToken) -> str:
        return _datetime(token.updated_at)

    @admin.display(description=_("last error"))
    def short_last_error(self, token: TraktToken) -> str:
        return Truncator(token.last_error).chars(80)

    @admin.display(description=_("what to do"))
    def advice(self, token: TraktToken) -> str:
        if token.status == TraktToken.Status.ACTIVE and expiry_marker(token.expires_at) == "expired":
            return str(EXPIRED_ADVICE)
        return str(STATUS_ADVICE.get(token.status, ""))


@admin.register(TraktToken)
class TraktTokenAdmin(_TokenDisplay, admin.ModelAdmin):
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
    actions = ("refresh_now", "revoke_and_unlink")

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

    def has_refresh_permission(self, request: HttpRequest) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    def has_unlink_permission(self, request: HttpRequest) -> bool:
        opts = SocialAccount._meta
        return request.user.has_perm(f"{opts.app_label}.delete_{opts.model_name}")

    # -- actions ------------------------------------------------------------------------------

    @admin.action(description=_("Refresh now"), permissions=["refresh"])
    def refresh_now(self, request: HttpRequest, queryset: QuerySet[TraktToken]) -> None:
        details: dict[Outcome, list[str]] = defaultdict(list)
        for token in queryset:
            try:
                result = refresh_token(token, force=True)
            except TraktSiteMisconfigured as err:
                # The site's configuration, not a link's: stop at the first and say what to fix.
                self.message_user(request, f"{err} {err.NO_LINK_FLAGGED}", messages.ERROR)
                break
            except TraktConfigurationError as err:
                self.message_user(request, str(err), messages.ERROR)
                break
            details[result.outcome].append(f"{_link_name(token)}: {result.detail}")
            # The admin's history says who refreshed which link, and what came of it.
            self.log_change(request, token, f"Refresh now: {result.outcome.value}")
        if count := len(details[Outcome.REFRESHED]):
            self.message_user(
                request,
                ngettext("%(count)d Trakt link was refreshed.", "%(count)d Trakt links were refreshed.", count)
                % {"count": count},
                messages.SUCCESS,
            )
        if count := len(details[Outcome.NEEDS_REAUTH]):
            message = ngettext(
                "%(count)d Trakt link needs its user to sign in with Trakt again.",
                "%(count)d Trakt links need their users to sign in with Trakt again.",
                count,
            ) % {"count": count}
            self.message_user(request, _with_details(message, details[Outcome.NEEDS_REAUTH]), messages.WARNING)
        if count := len(details[Outcome.FAILED]):
            message = ngettext(
                "%(count)d Trakt link could not be refreshed; try again later.",
                "%(count)d Trakt links could not be refreshed; try again later.",
                count,
            ) % {"count": count}
            self.message_user(request, _with_details(message, details[Outcome.FAILED]), messages.ERROR)
        if count := len(details[Outcome.NOT_DUE]):
            message = ngettext(
                "%(count)d Trakt link was not refreshed.", "%(count)d Trakt links were not refreshed.", count
            ) % {"count": count}
            self.message_user(request, _with_details(message, details[Outcome.NOT_DUE]), messages.INFO)

    @admin.action(description=_("Revoke and unlink"), permissions=["unlink"])
    def revoke_and_unlink(self, request: HttpRequest, queryset: QuerySet[TraktToken]) -> TemplateResponse | None:
        tokens = list(queryset.select_related("account__user"))
        if request.POST.get("post") != "yes":
            return self._confirm_unlink(request, tokens)
        confirmed: list[str] = []
        unconfirmed: list[str] = []
        for token in tokens:
            name = _link_name(token)
            revoked = unlink(token.account)
            (confirmed if revoked else unconfirmed).append(name)
            _log_unlink(request, token, revoked)
        if confirmed:
            message = ngettext(
                "%(count)d Trakt link was unlinked and revoked at Trakt.",
                "%(count)d Trakt links were unlinked and revoked at Trakt.",
                len(confirmed),
            ) % {"count": len(confirmed)}
            self.message_user(request, message, messages.SUCCESS)
        if unconfirmed:
            message = ngettext(
                "%(count)d Trakt link was unlinked, but Trakt did not confirm the revocation (see the logs).",
                "%(count)d Trakt links were unlinked, but Trakt did not confirm the revocation (see the logs).",
                len(unconfirmed),
            ) % {"count": len(unconfirmed)}
            self.message_user(request, _with_details(message, unconfirmed), messages.WARNING)
        return None

    def _confirm_unlink(self, request: HttpRequest, tokens: list[TraktToken]) -> TemplateResponse:
        opts = self.opts
        context = {
            **self.admin_site.each_context(request),
            "title": _("Revoke and unlink Trakt accounts?"),
            "subtitle": None,
            "opts": opts,
            "app_label": opts.app_label,
            "tokens": tokens,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request,
            [
                f"admin/{opts.app_label}/{opts.model_name}/revoke_and_unlink_confirmation.html",
                f"admin/{opts.app_label}/revoke_and_unlink_confirmation.html",
            ],
            context,
        )


def _log_unlink(request: HttpRequest, token: TraktToken, revoked: bool) -> None:
    """A deletion in the admin's history (written directly: Django 4.2 to 6.1 disagree on the helpers)."""
    from django.contrib.admin.models import DELETION, LogEntry
    from django.contrib.contenttypes.models import ContentType

    LogEntry.objects.create(
        user_id=str(request.user.pk),  # the admin only runs actions for signed-in staff
        content_type=ContentType.objects.get_for_model(TraktToken),
        object_id=str(token.pk),
        object_repr=str(token)[:200],
        action_flag=DELETION,
        change_message=f"Revoke and unlink ({'revoked at Trakt' if revoked else 'Trakt did not confirm the revoke'})",
    )


class TraktTokenInline(_TokenDisplay, admin.StackedInline):
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
