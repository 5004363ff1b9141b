"""How the admin shows a link's state: the expiry marker, what to do in each status, and the
columns the token admin and the inline on allauth's social account page share."""

from __future__ import annotations

import datetime as dt

from allauth.socialaccount.models import SocialAccount
from django.contrib import admin
from django.utils import formats, timezone
from django.utils.functional import Promise
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _

from django_trakt.internal.links.profile import TraktProfile
from django_trakt.models import TraktToken

#: A token expiring within this is shown as "expiring soon".
EXPIRING_SOON = dt.timedelta(hours=24)

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


def link_name(token: TraktToken) -> str:
    """How a message names a link: its Trakt username, else its site user."""
    return trakt_username(token.account) or str(token.account.user)


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


def _datetime(value: dt.datetime) -> str:
    # One format for every date the admin shows, localised the Django way (USE_L10N, the
    # active language's SHORT_DATETIME_FORMAT, the current time zone).
    return formats.date_format(timezone.localtime(value), "SHORT_DATETIME_FORMAT")


class TokenColumns:
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
