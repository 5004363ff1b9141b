"""The token admin's two actions, "Refresh now" and "Revoke and unlink", as Django's action
functions: what each does to the selected links, and what it tells the staff member.

Their permissions name methods of the token admin (``has_refresh_permission``,
``has_unlink_permission``), as Django's action ``permissions`` require.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from django_trakt.admin.display import link_name
from django_trakt.exceptions import TraktConfigurationError, TraktSiteMisconfigured
from django_trakt.internal.links.outcomes import Outcome
from django_trakt.internal.links.refresh import refresh_token
from django_trakt.internal.links.revocation import unlink
from django_trakt.models import TraktToken

#: How many per-link reasons an action's message lists before "and N more".
_MAX_DETAILS = 10


def _with_details(message: str, details: list[str]) -> str:
    if not details:
        return message
    shown = "; ".join(details[:_MAX_DETAILS])
    if len(details) > _MAX_DETAILS:
        shown += " " + str(_("and %(count)d more") % {"count": len(details) - _MAX_DETAILS})
    return f"{message} ({shown})"


@admin.action(description=_("Refresh now"), permissions=["refresh"])
def refresh_now(modeladmin: admin.ModelAdmin[TraktToken], request: HttpRequest, queryset: QuerySet[TraktToken]) -> None:
    details: dict[Outcome, list[str]] = defaultdict(list)
    for token in queryset:
        try:
            result = refresh_token(token, force=True)
        except TraktSiteMisconfigured as err:
            # The site's configuration, not a link's: stop at the first and say what to fix.
            modeladmin.message_user(request, f"{err} {err.NO_LINK_FLAGGED}", messages.ERROR)
            break
        except TraktConfigurationError as err:
            modeladmin.message_user(request, str(err), messages.ERROR)
            break
        details[result.outcome].append(f"{link_name(token)}: {result.detail}")
        # The admin's history says who refreshed which link, and what came of it.
        modeladmin.log_change(request, token, f"Refresh now: {result.outcome.value}")
    for outcome, (say, level) in _REFRESH_MESSAGES.items():
        if count := len(details[outcome]):
            message = say(count) % {"count": count}
            if outcome is not Outcome.REFRESHED:  # the links that need a look are named
                message = _with_details(message, details[outcome])
            modeladmin.message_user(request, message, level)


#: What "Refresh now" says of each outcome, in this order: the message for a count (ngettext
#: written out, so makemessages finds each plural) and its level.
_REFRESH_MESSAGES: dict[Outcome, tuple[Callable[[int], str], int]] = {
    Outcome.REFRESHED: (
        lambda n: ngettext("%(count)d Trakt link was refreshed.", "%(count)d Trakt links were refreshed.", n),
        messages.SUCCESS,
    ),
    Outcome.NEEDS_REAUTH: (
        lambda n: ngettext(
            "%(count)d Trakt link needs its user to sign in with Trakt again.",
            "%(count)d Trakt links need their users to sign in with Trakt again.",
            n,
        ),
        messages.WARNING,
    ),
    Outcome.FAILED: (
        lambda n: ngettext(
            "%(count)d Trakt link could not be refreshed; try again later.",
            "%(count)d Trakt links could not be refreshed; try again later.",
            n,
        ),
        messages.ERROR,
    ),
    Outcome.NOT_DUE: (
        lambda n: ngettext("%(count)d Trakt link was not refreshed.", "%(count)d Trakt links were not refreshed.", n),
        messages.INFO,
    ),
}


@admin.action(description=_("Revoke and unlink"), permissions=["unlink"])
def revoke_and_unlink(
    modeladmin: admin.ModelAdmin[TraktToken], request: HttpRequest, queryset: QuerySet[TraktToken]
) -> TemplateResponse | None:
    tokens = list(queryset.select_related("account__user"))
    if request.POST.get("post") != "yes":
        return _confirm_unlink(modeladmin, request, tokens)
    confirmed: list[str] = []
    unconfirmed: list[str] = []
    for token in tokens:
        name = link_name(token)
        revoked = unlink(token.account)
        (confirmed if revoked else unconfirmed).append(name)
        _log_unlink(request, token, revoked)
    if confirmed:
        message = ngettext(
            "%(count)d Trakt link was unlinked and revoked at Trakt.",
            "%(count)d Trakt links were unlinked and revoked at Trakt.",
            len(confirmed),
        ) % {"count": len(confirmed)}
        modeladmin.message_user(request, message, messages.SUCCESS)
    if unconfirmed:
        message = ngettext(
            "%(count)d Trakt link was unlinked, but Trakt did not confirm the revocation (see the logs).",
            "%(count)d Trakt links were unlinked, but Trakt did not confirm the revocation (see the logs).",
            len(unconfirmed),
        ) % {"count": len(unconfirmed)}
        modeladmin.message_user(request, _with_details(message, unconfirmed), messages.WARNING)
    return None


def _confirm_unlink(
    modeladmin: admin.ModelAdmin[TraktToken], request: HttpRequest, tokens: list[TraktToken]
) -> TemplateResponse:
    opts = modeladmin.opts
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": _("Revoke and unlink Trakt accounts?"),
        "subtitle": None,
        "opts": opts,
        "app_label": opts.app_label,
        "tokens": tokens,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "media": modeladmin.media,
    }
    request.current_app = modeladmin.admin_site.name
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
