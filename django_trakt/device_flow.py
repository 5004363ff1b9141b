"""Trakt's device flow for the site: one implementation behind linking and signing in by code.

Two flows use it: the device pages (``device_views``: a signed-in user links an account)
and the headless API (``headless_views``: an app signs a visitor in). A :class:`CodeFlow`
says where its code waits in the session, whose it is, which start budget it spends and
what Trakt's approval does; the rest is here once.

The device code is a bearer for polling: it stays in the session, never in a page,
a URL, a JSON answer, a cache key or a log line.

Trakt bans apps that send it bursts, so neither flow ever turns clicks (or a script's
requests) into one:

* :func:`start` asks Trakt for at most ``TRAKT_DEVICE_START_LIMIT`` codes per client (a
  user, or for anonymous sign-ins a client address, IPv6 by its /64) per
  ``TRAKT_DEVICE_START_PERIOD``, one at a time, and the whole site for at most
  ``sign_in_budgets.CODE_STARTS``; beyond that it says how long to wait.
* :func:`poll` calls Trakt at most once per call, never before the interval Trakt asked
  for, and only while holding the code's lock, so that concurrent polls of one code (two
  tabs, a script) make at most one call per interval. The interval and the last answer are
  kept per code in the cache (``TRAKT_CACHE``), where every request sees them, and not only
  in the session, which concurrent requests each read before any of them writes it back.
  Polls are budgeted per client and site-wide too (``sign_in_budgets.CODE_POLLS``): many
  codes cannot add up to a burst.

Without a working cache neither can be counted, so Trakt is asked nothing then.
A Trakt approval the site does not keep is revoked at Trakt (:func:`revoke_unkept`), so no
token it issued stays live unseen.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from allauth.socialaccount.adapter import get_adapter
from allauth.socialaccount.models import SocialLogin
from allauth.socialaccount.providers.base import ProviderException
from django.http import HttpRequest
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.debug import sensitive_variables

from django_trakt import sign_in_budgets
from django_trakt.api import device, http, oauth
from django_trakt.api.device import DeviceStatus
from django_trakt.api.tokens import TokenAnswer, TokenGrant
from django_trakt.conf import PROVIDER_ID, get_trakt_app, trakt_settings
from django_trakt.core import clock
from django_trakt.core.cache import cache_call, release_lock, take_lock
from django_trakt.core.numbers import finite_number
from django_trakt.exceptions import (
    TraktConfigurationError,
    TraktError,
    TraktForbidden,
    TraktServerError,
    TraktTransportError,
)
from django_trakt.views import TraktOAuth2Adapter

logger = logging.getLogger(__name__)

#: The longest wait between two polls, however often Trakt says "slow down".
MAX_INTERVAL = 60.0
#: What a start is told to wait while another start of the same budget is asking Trakt.
START_BUSY_WAIT = 5
#: Prefix of the cache keys: per budget (user or address) for starts, per code (a digest, never
#: the code) for polls.
CACHE_PREFIX = "django_trakt:device"

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


def _poll_status(value: Any, default: PollStatus) -> PollStatus:
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


# -- the pending code, in the session --------------------------------------------------------


@dataclass(frozen=True)
class CodeFlow:
    """One use of Trakt's device flow: where its code waits, whose it is, and what approval does.

    The pages link an account to the signed-in user (``device_views``); the headless API signs
    a visitor in (``headless_views``). Everything between asking for a code and Trakt's
    approval (budgets, locks, intervals, Trakt's answers) is the same, and lives here once.
    """

    #: The session key of the pending code.
    session_key: str
    #: Who may poll it: a pending code of another owner in the session is dropped.
    owner: Callable[[HttpRequest], str]
    #: Whom the budgets count a request against: the signed-in user (pages), the client
    #: address (the headless sign-in, where nobody is signed in yet).
    client: Callable[[HttpRequest], str]
    #: Trakt approved: finish with ``(request, app, answer, grant, pending)``.
    complete: Callable[[HttpRequest, Any, TokenAnswer, TokenGrant, dict[str, Any]], PollAnswer]
    #: For log lines.
    label: str = "Linking by code"


def pending_code(request: HttpRequest, flow: CodeFlow) -> dict[str, Any] | None:
    """The flow's pending code in this session, or ``None`` (dropping one that is not the owner's)."""
    pending = request.session.get(flow.session_key)
    if not isinstance(pending, dict):
        return None
    if pending.get("user") != flow.owner(request) or not isinstance(pending.get("device_code"), str):
        request.session.pop(flow.session_key, None)
        return None
    return pending


def save(request: HttpRequest, flow: CodeFlow, pending: dict[str, Any]) -> None:
    request.session[flow.session_key] = pending


def drop(request: HttpRequest, flow: CodeFlow) -> None:
    request.session.pop(flow.session_key, None)


def _retry_in(pending: dict[str, Any], now: float) -> int:
    return max(0, math.ceil(float(pending["next_poll_at"]) - now))


def _waiting(
    pending: dict[str, Any], now: float, status: PollStatus = PollStatus.PENDING, message: Any = WAITING
) -> PollAnswer:
    """Not done yet: remember what the page last said, and say when to ask again."""
    pending["status"] = str(status)
    pending["message"] = str(message)
    return PollAnswer(status, message, retry_in=_retry_in(pending, now), interval=float(pending["interval"]))


# -- budgets and locks, in the cache (shared by every request and process) --------------------


def _lock_seconds() -> int:
    """How long a lock lives if its holder dies: longer than the Trakt calls made while holding it.

    A poll may make three (the token, the profile, a revoke), each up to ``TIMEOUT`` to
    connect and again to read; a lock that expired under a live holder would let a second
    request call Trakt alongside it.
    """
    return math.ceil(trakt_settings.TIMEOUT * 6) + 5


def _spend_start(key: str, now: float) -> int:
    """Count one start against the budget ``key``: 0 if it may ask Trakt, else the seconds to wait.

    The budget is a sliding window of start times (by ``clock.now``, so tests can move it),
    read and written under the budget's start lock. Every start that asks Trakt counts,
    whether Trakt then answers or not: the budget is about calls, not codes.
    """
    period = trakt_settings.DEVICE_START_PERIOD
    stored = cache_call("get", key)
    times = [finite_number(value) for value in stored] if isinstance(stored, list) else []
    recent = sorted(value for value in times if value is not None and value > now - period)
    limit = trakt_settings.DEVICE_START_LIMIT
    if len(recent) >= limit:
        # The oldest start that keeps the window full leaves it at this time.
        return max(1, math.ceil(recent[-limit] + period - now))
    cache_call("set", key, [*recent, now], math.ceil(period) + 1)
    return 0


def code_key(pending: dict[str, Any], part: str) -> str:
    # A digest: the device code is a bearer secret and cache keys show up in a cache's own tools.
    digest = hashlib.sha256(str(pending["device_code"]).encode()).hexdigest()[:32]
    return f"{CACHE_PREFIX}:{part}:{digest}"


def _seconds_left(pending: dict[str, Any], now: float) -> int:
    return max(1, math.ceil(float(pending["expires_at"]) - now) + 60)


def _share(pending: dict[str, Any], now: float) -> None:
    """Publish when the code may be polled next, and the last answer, to every request."""
    state = {key: pending.get(key) for key in ("next_poll_at", "interval", "status", "message")}
    cache_call("set", code_key(pending, "state"), state, _seconds_left(pending, now))


def _share_final(pending: dict[str, Any], outcome: PollAnswer, now: float) -> None:
    # A concurrent poll that read the session before this one dropped the code gets the same
    # answer from here instead of polling a spent code.
    cache_call("set", code_key(pending, "state"), {"outcome": outcome.as_json()}, _seconds_left(pending, now))


def shared(pending: dict[str, Any]) -> PollAnswer | None:
    """Bring ``pending`` up to what other requests learnt about its code; their final answer, if any."""
    state = cache_call("get", code_key(pending, "state"))
    if not isinstance(state, dict):
        return None
    final = state.get("outcome")
    if isinstance(final, dict):
        return PollAnswer(
            status=_poll_status(final.get("status"), PollStatus.ERROR),
            message=str(final.get("message") or LINK_FAILED),
            final=True,
            redirect=final.get("redirect") if isinstance(final.get("redirect"), str) else None,
        )
    next_poll_at = finite_number(state.get("next_poll_at"))
    interval = finite_number(state.get("interval"))
    if next_poll_at is not None and interval is not None and next_poll_at >= float(pending["next_poll_at"]):
        pending["next_poll_at"] = next_poll_at
        pending["interval"] = interval
        pending["status"] = str(_poll_status(state.get("status"), PollStatus.PENDING))
        pending["message"] = str(state.get("message") or WAITING)
    return None


def _poll_wait_message(seconds: int) -> str:
    return ngettext(
        "Trakt has been asked about codes a lot just now; checking again in %(seconds)d second.",
        "Trakt has been asked about codes a lot just now; checking again in %(seconds)d seconds.",
        seconds,
    ) % {"seconds": seconds}


def _wait_message(seconds: int) -> str:
    return ngettext(
        "You have asked for several codes in a short time. Please wait %(seconds)d second and try again.",
        "You have asked for several codes in a short time. Please wait %(seconds)d seconds and try again.",
        seconds,
    ) % {"seconds": seconds}


def _site_busy_message(seconds: int) -> str:
    return ngettext(
        "Many codes have been asked for on this site just now. Please wait %(seconds)d second and try again.",
        "Many codes have been asked for on this site just now. Please wait %(seconds)d seconds and try again.",
        seconds,
    ) % {"seconds": seconds}


def _busy_message(seconds: int) -> str:
    return ngettext(
        "A code is already being requested for you. Please wait %(seconds)d second and try again.",
        "A code is already being requested for you. Please wait %(seconds)d seconds and try again.",
        seconds,
    ) % {"seconds": seconds}


# -- a start -----------------------------------------------------------------------------------


class StartError(enum.StrEnum):
    """Why a start did not give a code (each page or endpoint says it its own way)."""

    NOT_CONFIGURED = "not_configured"  # no Trakt app on this site
    CACHE_DOWN = "cache_down"  # the budget cannot be counted: Trakt is not asked
    BUSY = "busy"  # another start of the same budget is asking Trakt right now
    TOO_MANY = "too_many_requests"  # over the start budget
    APP_REFUSED = "app_refused"  # Trakt refuses the site's app itself
    UNAVAILABLE = "unavailable"  # Trakt did not hand out a code


@dataclass
class Started:
    """A start's result: the pending code saved in the session, or an error and a wait."""

    pending: dict[str, Any] | None = None
    error: StartError | None = None
    message: str | Promise = ""
    retry_after: int = 0


def start(request: HttpRequest, flow: CodeFlow, **extra: Any) -> Started:
    """Ask Trakt for a code, within the start budget; save it in the session (``extra`` with it)."""
    try:
        app = get_trakt_app(request)
    except TraktConfigurationError:
        logger.error("%s failed: no Trakt app is configured (see check django_trakt.E002)", flow.label)
        return Started(error=StartError.NOT_CONFIGURED, message=NOT_CONFIGURED)
    budget = f"{CACHE_PREFIX}:starts:{flow.client(request)}"
    lock_key = budget + ":lock"
    ticket, locked = take_lock(lock_key, _lock_seconds())
    if locked is None:
        # The cache is down (it was logged): the budget cannot be counted, so Trakt is not asked.
        return Started(error=StartError.CACHE_DOWN, message=START_FAILED)
    if not locked:
        # A double click, or a script: one start per budget at a time asks Trakt.
        return Started(error=StartError.BUSY, message=_busy_message(START_BUSY_WAIT), retry_after=START_BUSY_WAIT)
    try:
        now = clock.now()
        wait = _spend_start(budget, now)
        if wait:
            logger.info("%s: over the start budget, not asking Trakt", flow.label)
            return Started(error=StartError.TOO_MANY, message=_wait_message(wait), retry_after=wait)
        # Then the site's: many clients (one script, many addresses) must not add up to a burst.
        site = sign_in_budgets.spend_site_wide(sign_in_budgets.CODE_STARTS)
        if site.refused_by == "cache":
            return Started(error=StartError.CACHE_DOWN, message=START_FAILED)
        if not site.allowed:
            return Started(error=StartError.TOO_MANY, message=_site_busy_message(site.wait), retry_after=site.wait)
        try:
            authorization = device.request_device_code(client_id=app.client_id)
        except TraktForbidden as err:
            if app_refused(app, err):
                return Started(error=StartError.APP_REFUSED, message=APP_REFUSED)
            logger.warning("Trakt did not hand out a device code: %s", type(err).__name__)
            return Started(error=StartError.UNAVAILABLE, message=START_FAILED)
        except TraktError as err:
            logger.warning("Trakt did not hand out a device code: %s", type(err).__name__)
            return Started(error=StartError.UNAVAILABLE, message=START_FAILED)
    finally:
        release_lock(lock_key, ticket)
    now = clock.now()
    pending = {
        "user": flow.owner(request),
        "device_code": authorization.device_code,
        "user_code": authorization.user_code,
        "verification_url": authorization.verification_url,
        "expires_at": now + authorization.expires_in,
        "interval": authorization.interval,
        # Trakt wants the interval waited before the first poll too.
        "next_poll_at": now + authorization.interval,
        "message": str(WAITING),
        **extra,
    }
    save(request, flow, pending)
    return Started(pending=pending)


def retry_in(pending: dict[str, Any], now: float) -> int:
    """Seconds until the pending code may be polled again."""
    return _retry_in(pending, now)


def poll(request: HttpRequest, flow: CodeFlow) -> PollAnswer:
    """One poll of the flow's pending code: at most one call to Trakt, never before its interval."""
    pending = pending_code(request, flow)
    if pending is None:
        return PollAnswer(PollStatus.NONE, NOTHING_PENDING, final=True)
    now = clock.now()
    if now >= float(pending["expires_at"]):
        drop(request, flow)
        return PollAnswer(PollStatus.EXPIRED, FINAL_MESSAGES[DeviceStatus.EXPIRED], final=True)
    finished = shared(pending)
    if finished is not None:
        drop(request, flow)
        return finished
    if now < float(pending["next_poll_at"]):
        return _repeat(pending, now)
    try:
        app = get_trakt_app(request)
    except TraktConfigurationError:
        logger.error("%s failed: no Trakt app is configured (see check django_trakt.E002)", flow.label)
        drop(request, flow)
        return PollAnswer(PollStatus.ERROR, NOT_CONFIGURED, final=True)
    lock_key = code_key(pending, "lock")
    ticket, locked = take_lock(lock_key, _lock_seconds())
    if not locked:
        # Another request is asking Trakt about this code right now (or the cache is down):
        # answer as before, and look again in a moment.
        outcome = _repeat(pending, now)
        outcome.retry_in = max(outcome.retry_in, 1)
        return outcome
    try:
        # Read again under the lock: the poll that held it before may have just asked Trakt.
        finished = shared(pending)
        if finished is not None:
            drop(request, flow)
            return finished
        if now < float(pending["next_poll_at"]):
            return _repeat(pending, now)
        spent = sign_in_budgets.spend(sign_in_budgets.CODE_POLLS, flow.client(request))
        if not spent.allowed:
            # No call: the code is kept as it was and may be polled once the budget refills.
            logger.info("%s: over the poll budget (%s), not asking Trakt", flow.label, spent.refused_by)
            if spent.refused_by == "cache":
                return PollAnswer(PollStatus.UNAVAILABLE, UNAVAILABLE, retry_in=5, interval=float(pending["interval"]))
            wait = max(spent.wait, _retry_in(pending, now))
            return PollAnswer(
                PollStatus.TOO_MANY, _poll_wait_message(wait), retry_in=wait, interval=float(pending["interval"])
            )
        # Claim this interval before asking, so that even a poll whose lock expired under
        # it (a hung request) cannot make a second call in it.
        pending["next_poll_at"] = now + float(pending["interval"])
        _share(pending, now)
        outcome = _ask_trakt(request, flow, app, pending, now)
        if outcome.final:
            _share_final(pending, outcome, now)
        else:
            _share(pending, now)
        return outcome
    finally:
        release_lock(lock_key, ticket)


def _repeat(pending: dict[str, Any], now: float) -> PollAnswer:
    """Too early: repeat the last answer without asking Trakt (which would say 429)."""
    status = _poll_status(pending.get("status"), PollStatus.PENDING)
    return _waiting(pending, now, status=status, message=pending.get("message") or WAITING)


def _ask_trakt(request: HttpRequest, flow: CodeFlow, app: Any, pending: dict[str, Any], now: float) -> PollAnswer:
    """The one call to Trakt of a poll (with the code's lock held), and what its answer means."""
    interval = float(pending["interval"])
    try:
        answer = device.poll_device_token(
            client_id=app.client_id, client_secret=app.secret, device_code=pending["device_code"]
        )
    except TraktForbidden as err:
        if app_refused(app, err):
            # Every later poll would get the same 403 until the code expires: end it now.
            drop(request, flow)
            return PollAnswer(PollStatus.APP_REFUSED, APP_REFUSED, final=True)
        # A Cloudflare block: not the user's answer, keep the code, try again.
        logger.warning("Trakt device token poll failed, will retry: %s", type(err).__name__)
        pending["next_poll_at"] = now + max(interval, 1.0)
        outcome = _waiting(pending, now, status=PollStatus.UNAVAILABLE, message=UNAVAILABLE)
        save(request, flow, pending)
        return outcome
    except (TraktTransportError, TraktServerError) as err:
        # An outage is not the user's answer: keep the code, try again.
        logger.warning("Trakt device token poll failed, will retry: %s", type(err).__name__)
        pending["next_poll_at"] = now + max(interval, 1.0)
        outcome = _waiting(pending, now, status=PollStatus.UNAVAILABLE, message=UNAVAILABLE)
        save(request, flow, pending)
        return outcome
    except TraktError as err:
        logger.warning(
            "Trakt device token poll failed: %s (HTTP %s)", type(err).__name__, getattr(err, "status_code", "-")
        )
        drop(request, flow)
        return PollAnswer(PollStatus.ERROR, LINK_FAILED, final=True)
    if answer.status is DeviceStatus.PENDING:
        pending["next_poll_at"] = now + interval
        outcome = _waiting(pending, now)
        save(request, flow, pending)
        return outcome
    if answer.status is DeviceStatus.SLOW_DOWN:
        interval = min(max(interval * 2, 1.0), MAX_INTERVAL)
        wait = max(interval, min(answer.retry_after or 0.0, MAX_INTERVAL))
        pending["interval"] = interval
        pending["next_poll_at"] = now + wait
        outcome = _waiting(pending, now, status=PollStatus.SLOW_DOWN, message=SLOW_DOWN)
        save(request, flow, pending)
        return outcome
    drop(request, flow)
    if answer.status is not DeviceStatus.APPROVED or answer.grant is None or answer.answer is None:
        logger.info("%s ended at Trakt: %s", flow.label, answer.status)
        return PollAnswer(PollStatus(answer.status), FINAL_MESSAGES[answer.status], final=True)
    return flow.complete(request, app, answer.answer, answer.grant, pending)


def app_refused(app: Any, err: TraktForbidden) -> bool:
    """Whether a 403 means Trakt refuses the site's app itself (deleted or disabled), not Cloudflare.

    Trakt deletes apps without OAuth sessions (trakt/trakt-api#691) and then answers every
    call with a 403; a Cloudflare block is a 403 too. Asking once with the app's credentials
    alone (:func:`sign_in_budgets.app_refused_by_trakt`, at most once a minute) tells them
    apart. The operator gets an ERROR
    naming the cause; no secret or code is in it.
    """
    if not sign_in_budgets.app_refused_by_trakt(app):
        return False
    logger.error(
        "Sign-in or linking by code stopped: %s %s", oauth.app_refused(err.status_code), "No link was changed."
    )
    return True


def revoke_unkept(app: Any, grant: Any) -> None:
    """Revoke at Trakt the token of an approval this site does not keep.

    Nothing here stores it, so nothing could revoke it later: left alone, it would stay a
    live grant to the person's Trakt account, in no one's hands but listed as this app's.
    Never raises; a failure is logged without the token (the token expires by itself).
    """
    try:
        oauth.revoke_token(client_id=app.client_id, client_secret=app.secret, token=grant.access_token)
    except TraktError as err:
        logger.warning(
            "Trakt did not revoke the token of a device link that was not kept: %s (HTTP %s)",
            type(err).__name__,
            getattr(err, "status_code", "-"),
        )
        return
    logger.info("Revoked at Trakt the token of a device link that was not kept")


@sensitive_variables()
def approved_login(
    request: HttpRequest, app: Any, answer: TokenAnswer, grant: TokenGrant, *, state: dict[str, Any]
) -> SocialLogin | None:
    """The allauth login of an approved code, built as the redirect flow builds one; None if it cannot be.

    The profile is read with the new token (``/users/settings``), the token is sealed by the
    sign-in's adapter (``TraktOAuth2Adapter.parse_token``). When the profile fails, the
    grant is revoked at Trakt (nothing will hold it) and None comes back, logged.
    """
    try:
        profile = http.get_user_settings(app.client_id, grant.access_token)
        provider = get_adapter(request).get_provider(request, PROVIDER_ID)
        sociallogin = provider.sociallogin_from_response(request, profile)
    except (TraktError, ProviderException) as err:
        logger.warning("Trakt approved a code, but the profile failed: %s", type(err).__name__)
        revoke_unkept(app, grant)
        return None
    token = TraktOAuth2Adapter(request).parse_token(answer)
    if app.pk:
        token.app = app
    sociallogin.token = token
    sociallogin.state = state
    return sociallogin
