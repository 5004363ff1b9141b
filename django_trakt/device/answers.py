"""What a poll of a code means for the page or the app: a status, a message, what comes next."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from django_trakt.internal.api.device import DeviceStatus

WAITING = _("Waiting for you to approve on Trakt…")
SLOW_DOWN = _("Trakt asked us to slow down; checking less often.")
UNAVAILABLE = _("Trakt is temporarily unavailable; still trying.")
FINAL_MESSAGES = {
    DeviceStatus.INVALID: _("Trakt does not know this code. Please start again."),
    DeviceStatus.USED: _("This code has already been used. Please start again."),
    DeviceStatus.EXPIRED: _("The code has expired. Please start again."),
    DeviceStatus.DENIED: _("The request was denied on Trakt. Nothing was linked."),
}
NOT_CONFIGURED = _("Linking with Trakt is not configured on this site.")
START_FAILED = _("Trakt is temporarily unavailable. Please try again in a moment.")
NOTHING_PENDING = _("No linking by code is in progress.")
LINK_FAILED = _("Trakt approved, but the link could not be completed. Please start again.")
OTHER_USER = _("This Trakt account is already linked to another user of this site.")
APP_REFUSED = _(
    "Trakt refused this site's Trakt app (it may have been deleted or disabled at Trakt). "
    "Nothing was linked; the site's operator has to fix this."
)
REFUSED = _("This site did not accept that Trakt account.")
REAUTHENTICATE = _("Please confirm it is you to finish linking your Trakt account.")


class PollStatus(enum.StrEnum):
    """The ``status`` of a poll's JSON answer (the page's script reads it)."""

    PENDING = "pending"  # waiting for the person to approve
    SLOW_DOWN = DeviceStatus.SLOW_DOWN.value  # Trakt asked us to poll less often
    UNAVAILABLE = "unavailable"  # Trakt did not answer; still trying
    TOO_MANY = "too_many_requests"  # the poll budget is spent: Trakt was not asked; still waiting
    LINKED = "linked"  # done: the account is linked (the pages)
    AUTHENTICATED = "authenticated"  # done: allauth's login ran (headless: signed in, or its signup pending)
    # Final without a link:
    NONE = "none"  # no code is pending
    INVALID = DeviceStatus.INVALID.value
    USED = DeviceStatus.USED.value
    EXPIRED = DeviceStatus.EXPIRED.value
    DENIED = DeviceStatus.DENIED.value
    ERROR = "error"  # the site or Trakt failed; start again
    APP_REFUSED = "app_refused"  # Trakt refuses the site's app itself (deleted or disabled)
    OTHER_USER = "other_user"  # the Trakt account is another user's
    REFUSED = "refused"  # the site's adapter refused the account
    REAUTHENTICATE = "reauthenticate"  # allauth wants the password again first


def poll_status(value: Any, default: PollStatus) -> PollStatus:
    """A status read back from the session or the cache (a string there), ``default`` if unknown."""
    try:
        return PollStatus(value)
    except ValueError:
        return default


@dataclass
class PollAnswer:
    """What one poll means for the page: a status, a message, and what comes next."""

    status: PollStatus
    message: str | Promise
    final: bool = False
    redirect: str | None = None
    retry_in: int = 0
    interval: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "message": str(self.message),
            "final": self.final,
            "redirect": self.redirect,
            "retry_in": self.retry_in,
            "interval": self.interval,
        }


def poll_wait_message(seconds: int) -> str:
    return ngettext(
        "Trakt has been asked about codes a lot just now; checking again in %(seconds)d second.",
        "Trakt has been asked about codes a lot just now; checking again in %(seconds)d seconds.",
        seconds,
    ) % {"seconds": seconds}


def start_wait_message(seconds: int) -> str:
    return ngettext(
        "You have asked for several codes in a short time. Please wait %(seconds)d second and try again.",
        "You have asked for several codes in a short time. Please wait %(seconds)d seconds and try again.",
        seconds,
    ) % {"seconds": seconds}


def site_busy_message(seconds: int) -> str:
    return ngettext(
        "Many codes have been asked for on this site just now. Please wait %(seconds)d second and try again.",
        "Many codes have been asked for on this site just now. Please wait %(seconds)d seconds and try again.",
        seconds,
    ) % {"seconds": seconds}


def busy_message(seconds: int) -> str:
    return ngettext(
        "A code is already being requested for you. Please wait %(seconds)d second and try again.",
        "A code is already being requested for you. Please wait %(seconds)d seconds and try again.",
        seconds,
    ) % {"seconds": seconds}
