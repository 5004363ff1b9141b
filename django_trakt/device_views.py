"""Linking by code: Trakt's device flow as three pages of the site (``site_urls``).

For sites Trakt cannot redirect to (a media server on a home network): a signed-in
user starts (``device_start``), sees a short code and the address where to enter it on
any device (``device_pending``), and the page polls ``device_poll`` until they approve
or deny. The result is the same linked ``SocialAccount`` and ``TraktToken`` as the
redirect flow: the account is connected through allauth (``SocialLogin.connect``, or
``lookup`` when it was linked before), whose signals make ``receivers`` store the token.

The device code is a bearer for polling: it stays in the session, never in a page,
a URL, a JSON answer, a cache key or a log line.

Trakt bans apps that send it bursts, so the pages never turn a user's clicks (or a
script's requests) into one:

* ``device_start`` asks Trakt for at most ``TRAKT_DEVICE_START_LIMIT`` codes per user per
  ``TRAKT_DEVICE_START_PERIOD``, one at a time; beyond that the page says how long to wait.
* ``device_poll`` calls Trakt at most once per call, never before the interval Trakt asked
  for, and only while holding the code's lock, so that concurrent polls of one code (two
  tabs, a script) make at most one call per interval. The interval and the last answer are
  kept per code in the cache (``TRAKT_CACHE``), where every request sees them, and not only
  in the session, which concurrent requests each read before any of them writes it back.

Without a working cache neither can be counted, so the pages ask Trakt nothing then.
A Trakt approval this site does not keep (the account is another user's, the site's
adapter refused it) is revoked at Trakt, so no token it issued stays live unseen.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import math
from dataclasses import dataclass
from typing import Any

from allauth.account.adapter import get_adapter as get_account_adapter
from allauth.account.decorators import reauthentication_required
from allauth.socialaccount.adapter import get_adapter
from allauth.socialaccount.helpers import complete_social_login
from allauth.socialaccount.providers.base import AuthProcess, ProviderException
from django.contrib.auth.decorators import login_required
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.utils.functional import Promise
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

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
from django_trakt.links import pending as pending_grants
from django_trakt.models import TraktToken
from django_trakt.views import TraktOAuth2Adapter, account_of_another_user

logger = logging.getLogger(__name__)

#: Where the pending code lives in the session.
SESSION_KEY = "django_trakt_device"
#: The longest wait between two polls, however often Trakt says "slow down".
MAX_INTERVAL = 60.0
#: What a start is told to wait while another start of the same user is asking Trakt.
START_BUSY_WAIT = 5
#: Prefix of the cache keys: per user for starts, per code (a digest, never the code) for polls.
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
    LINKED = "linked"  # done: the account is linked
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


def _pending(request: HttpRequest) -> dict[str, Any] | None:
    """The signed-in user's pending code, or ``None`` (dropping one that is not theirs)."""
    pending = request.session.get(SESSION_KEY)
    if not isinstance(pending, dict):
        return None
    if pending.get("user") != str(request.user.pk) or not isinstance(pending.get("device_code"), str):
        request.session.pop(SESSION_KEY, None)
        return None
    return pending


def _save(request: HttpRequest, pending: dict[str, Any]) -> None:
    request.session[SESSION_KEY] = pending


def _drop(request: HttpRequest) -> None:
    request.session.pop(SESSION_KEY, None)


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


def _starts_key(request: HttpRequest) -> str:
    return f"{CACHE_PREFIX}:starts:{request.user.pk}"


def _spend_start(request: HttpRequest, now: float) -> int:
    """Count one start against the user's budget: 0 if it may ask Trakt, else the seconds to wait.

    The budget is a sliding window of start times (by ``clock.now``, so tests can move it),
    read and written under the user's start lock. Every start that asks Trakt counts,
    whether Trakt then answers or not: the budget is about calls, not codes.
    """
    key = _starts_key(request)
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


def _code_key(pending: dict[str, Any], part: str) -> str:
    # A digest: the device code is a bearer secret and cache keys show up in a cache's own tools.
    digest = hashlib.sha256(str(pending["device_code"]).encode()).hexdigest()[:32]
    return f"{CACHE_PREFIX}:{part}:{digest}"


def _seconds_left(pending: dict[str, Any], now: float) -> int:
    return max(1, math.ceil(float(pending["expires_at"]) - now) + 60)


def _share(pending: dict[str, Any], now: float) -> None:
    """Publish when the code may be polled next, and the last answer, to every request."""
    state = {key: pending.get(key) for key in ("next_poll_at", "interval", "status", "message")}
    cache_call("set", _code_key(pending, "state"), state, _seconds_left(pending, now))


def _share_final(pending: dict[str, Any], outcome: PollAnswer, now: float) -> None:
    # A concurrent poll that read the session before this one dropped the code gets the same
    # answer from here instead of polling a spent code.
    cache_call("set", _code_key(pending, "state"), {"outcome": outcome.as_json()}, _seconds_left(pending, now))


def _shared(pending: dict[str, Any]) -> PollAnswer | None:
    """Bring ``pending`` up to what other requests learnt about its code; their final answer, if any."""
    state = cache_call("get", _code_key(pending, "state"))
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


def _wait_message(seconds: int) -> str:
    return ngettext(
        "You have asked for several codes in a short time. Please wait %(seconds)d second and try again.",
        "You have asked for several codes in a short time. Please wait %(seconds)d seconds and try again.",
        seconds,
    ) % {"seconds": seconds}


def _busy_message(seconds: int) -> str:
    return ngettext(
        "A code is already being requested for you. Please wait %(seconds)d second and try again.",
        "A code is already being requested for you. Please wait %(seconds)d seconds and try again.",
        seconds,
    ) % {"seconds": seconds}


def _safe_next(request: HttpRequest, value: str | None) -> str:
    if value and url_has_allowed_host_and_scheme(
        value, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return value
    return ""


# -- views -----------------------------------------------------------------------------------


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
@reauthentication_required(allow_get=True, app="allauth.socialaccount")
def device_start(request: HttpRequest) -> HttpResponse:
    """GET: the "Link with a code" button. POST: ask Trakt for a code, then show it."""
    if request.method != "POST":
        return _render_start(request, next_url=_safe_next(request, request.GET.get("next")))
    next_url = _safe_next(request, request.POST.get("next"))
    try:
        app = get_trakt_app(request)
    except TraktConfigurationError:
        logger.error("Linking by code failed: no Trakt app is configured (see check django_trakt.E002)")
        return _render_start(request, error=NOT_CONFIGURED, next_url=next_url)
    lock_key = _starts_key(request) + ":lock"
    ticket, locked = take_lock(lock_key, _lock_seconds())
    if locked is None:
        # The cache is down (it was logged): the budget cannot be counted, so Trakt is not asked.
        return _render_start(request, error=START_FAILED, next_url=next_url, status=503)
    if not locked:
        # A double click, or a script: one start of this user at a time asks Trakt.
        return _render_wait(request, _busy_message(START_BUSY_WAIT), START_BUSY_WAIT, next_url)
    try:
        now = clock.now()
        wait = _spend_start(request, now)
        if wait:
            logger.info("Linking by code: user %s is over the start budget, not asking Trakt", request.user.pk)
            return _render_wait(request, _wait_message(wait), wait, next_url)
        try:
            authorization = device.request_device_code(client_id=app.client_id)
        except TraktForbidden as err:
            if _app_refused(app, err):
                return _render_start(request, error=APP_REFUSED, next_url=next_url, status=503)
            logger.warning("Trakt did not hand out a device code: %s", type(err).__name__)
            return _render_start(request, error=START_FAILED, next_url=next_url)
        except TraktError as err:
            logger.warning("Trakt did not hand out a device code: %s", type(err).__name__)
            return _render_start(request, error=START_FAILED, next_url=next_url)
    finally:
        release_lock(lock_key, ticket)
    now = clock.now()
    _save(
        request,
        {
            "user": str(request.user.pk),
            "device_code": authorization.device_code,
            "user_code": authorization.user_code,
            "verification_url": authorization.verification_url,
            "expires_at": now + authorization.expires_in,
            "interval": authorization.interval,
            # Trakt wants the interval waited before the first poll too.
            "next_poll_at": now + authorization.interval,
            "next": next_url,
            "message": str(WAITING),
        },
    )
    return redirect("django_trakt:device_pending")


@never_cache
@login_required
@require_GET
def device_pending(request: HttpRequest) -> HttpResponse:
    """The code, where to enter it, and a page that completes by itself."""
    pending = _pending(request)
    if pending is None:
        return redirect("django_trakt:device_start")
    now = clock.now()
    if _shared(pending) is not None:
        # Another request already finished this code: its poll gives the answer.
        pending["next_poll_at"] = now
    context = {
        "user_code": pending["user_code"],
        "verification_url": pending["verification_url"],
        "verification_link": device.verification_link(pending["verification_url"], pending["user_code"]),
        "expires_in_minutes": max(0, math.ceil((float(pending["expires_at"]) - now) / 60)),
        "message": pending.get("message") or WAITING,
        "retry_in": _retry_in(pending, now),
        "interval": pending["interval"],
    }
    return render(request, "django_trakt/device_pending.html", context)


@never_cache
@login_required
@require_POST
def device_poll(request: HttpRequest) -> HttpResponse:
    """One check with Trakt: JSON for the page's script, a redirect (or a page) without it."""
    outcome = _poll(request)
    if _wants_json(request):
        return JsonResponse(outcome.as_json())
    if outcome.redirect:
        return HttpResponseRedirect(outcome.redirect)
    if outcome.final:
        return _render_start(request, error=outcome.message)
    return redirect("django_trakt:device_pending")


def _wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def _render_start(request: HttpRequest, *, error: Any = None, next_url: str = "", status: int = 200) -> HttpResponse:
    return render(request, "django_trakt/device_start.html", {"error": error, "next": next_url}, status=status)


def _render_wait(request: HttpRequest, message: str, seconds: int, next_url: str) -> HttpResponse:
    """The start page again, saying how long to wait; 429, as Trakt would have answered."""
    response = _render_start(request, error=message, next_url=next_url, status=429)
    response["Retry-After"] = str(seconds)
    return response


# -- one poll ----------------------------------------------------------------------------------


def _poll(request: HttpRequest) -> PollAnswer:
    pending = _pending(request)
    if pending is None:
        return PollAnswer(PollStatus.NONE, NOTHING_PENDING, final=True)
    now = clock.now()
    if now >= float(pending["expires_at"]):
        _drop(request)
        return PollAnswer(PollStatus.EXPIRED, FINAL_MESSAGES[DeviceStatus.EXPIRED], final=True)
    finished = _shared(pending)
    if finished is not None:
        _drop(request)
        return finished
    if now < float(pending["next_poll_at"]):
        return _repeat(pending, now)
    try:
        app = get_trakt_app(request)
    except TraktConfigurationError:
        logger.error("Linking by code failed: no Trakt app is configured (see check django_trakt.E002)")
        _drop(request)
        return PollAnswer(PollStatus.ERROR, NOT_CONFIGURED, final=True)
    lock_key = _code_key(pending, "lock")
    ticket, locked = take_lock(lock_key, _lock_seconds())
    if not locked:
        # Another request is asking Trakt about this code right now (or the cache is down):
        # answer as before, and look again in a moment.
        outcome = _repeat(pending, now)
        outcome.retry_in = max(outcome.retry_in, 1)
        return outcome
    try:
        # Read again under the lock: the poll that held it before may have just asked Trakt.
        finished = _shared(pending)
        if finished is not None:
            _drop(request)
            return finished
        if now < float(pending["next_poll_at"]):
            return _repeat(pending, now)
        # Claim this interval before asking, so that even a poll whose lock expired under
        # it (a hung request) cannot make a second call in it.
        pending["next_poll_at"] = now + float(pending["interval"])
        _share(pending, now)
        outcome = _ask_trakt(request, app, pending, now)
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


def _ask_trakt(request: HttpRequest, app: Any, pending: dict[str, Any], now: float) -> PollAnswer:
    """The one call to Trakt of a poll (with the code's lock held), and what its answer means."""
    interval = float(pending["interval"])
    try:
        answer = device.poll_device_token(
            client_id=app.client_id, client_secret=app.secret, device_code=pending["device_code"]
        )
    except TraktForbidden as err:
        if _app_refused(app, err):
            # Every later poll would get the same 403 until the code expires: end it now.
            _drop(request)
            return PollAnswer(PollStatus.APP_REFUSED, APP_REFUSED, final=True)
        # A Cloudflare block: not the user's answer, keep the code, try again.
        logger.warning("Trakt device token poll failed, will retry: %s", type(err).__name__)
        pending["next_poll_at"] = now + max(interval, 1.0)
        outcome = _waiting(pending, now, status=PollStatus.UNAVAILABLE, message=UNAVAILABLE)
        _save(request, pending)
        return outcome
    except (TraktTransportError, TraktServerError) as err:
        # An outage is not the user's answer: keep the code, try again.
        logger.warning("Trakt device token poll failed, will retry: %s", type(err).__name__)
        pending["next_poll_at"] = now + max(interval, 1.0)
        outcome = _waiting(pending, now, status=PollStatus.UNAVAILABLE, message=UNAVAILABLE)
        _save(request, pending)
        return outcome
    except TraktError as err:
        logger.warning(
            "Trakt device token poll failed: %s (HTTP %s)", type(err).__name__, getattr(err, "status_code", "-")
        )
        _drop(request)
        return PollAnswer(PollStatus.ERROR, LINK_FAILED, final=True)
    if answer.status is DeviceStatus.PENDING:
        pending["next_poll_at"] = now + interval
        outcome = _waiting(pending, now)
        _save(request, pending)
        return outcome
    if answer.status is DeviceStatus.SLOW_DOWN:
        interval = min(max(interval * 2, 1.0), MAX_INTERVAL)
        wait = max(interval, min(answer.retry_after or 0.0, MAX_INTERVAL))
        pending["interval"] = interval
        pending["next_poll_at"] = now + wait
        outcome = _waiting(pending, now, status=PollStatus.SLOW_DOWN, message=SLOW_DOWN)
        _save(request, pending)
        return outcome
    _drop(request)
    if answer.status is not DeviceStatus.APPROVED or answer.grant is None or answer.answer is None:
        logger.info("Linking by code ended at Trakt: %s", answer.status)
        return PollAnswer(PollStatus(answer.status), FINAL_MESSAGES[answer.status], final=True)
    return _complete(request, app, answer.answer, answer.grant, next_url=str(pending.get("next") or ""))


def _app_refused(app: Any, err: TraktForbidden) -> bool:
    """Whether a 403 means Trakt refuses the site's app itself (deleted or disabled), not Cloudflare.

    Trakt deletes apps without OAuth sessions (trakt/trakt-api#691) and then answers every
    call with a 403; a Cloudflare block is a 403 too. Asking once with the app's credentials
    alone (:func:`oauth.credentials_accepted`) tells them apart. The operator gets an ERROR
    naming the cause; no secret or code is in it.
    """
    if oauth.credentials_accepted(client_id=app.client_id, client_secret=app.secret) is not False:
        return False
    logger.error("Linking by code stopped: %s %s", oauth.app_refused(err.status_code), "No link was changed.")
    return True


class _NotCompleted(Exception):
    """allauth answered with something other than a redirect: undo what the attempt wrote."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__("allauth did not complete the connect")
        self.response = response


def _complete(request: HttpRequest, app: Any, answer: TokenAnswer, grant: TokenGrant, *, next_url: str) -> PollAnswer:
    """Approved: connect the Trakt account to the signed-in user through allauth.

    ``complete_social_login`` with the connect process is allauth's public way to finish a
    login built outside its views: it runs the lookup, the site's ``pre_social_login`` hook
    and signal, the connect (with its reauthentication rule) and its messages, and answers
    with a response. That response is what the poll reports; the only refusal of our own is
    the shared "linked to another user" check (``views.account_of_another_user``), made
    first so that the JSON can say so and the grant is revoked.
    """
    try:
        profile = http.get_user_settings(app.client_id, grant.access_token)
        provider = get_adapter(request).get_provider(request, PROVIDER_ID)
        sociallogin = provider.sociallogin_from_response(request, profile)
    except (TraktError, ProviderException) as err:
        logger.warning("Trakt approved a device code, but the profile failed: %s", type(err).__name__)
        _revoke_unkept(app, grant)
        return PollAnswer(PollStatus.ERROR, LINK_FAILED, final=True)
    token = TraktOAuth2Adapter(request).parse_token(answer)
    if app.pk:
        token.app = app
    sociallogin.token = token
    sociallogin.state = {"process": AuthProcess.CONNECT, "next": next_url}
    uid = sociallogin.account.uid
    other = account_of_another_user(request, sociallogin)
    if other is not None:
        logger.warning("Trakt account %s is linked to another user; device link refused", other.pk)
        _revoke_unkept(app, grant)
        return PollAnswer(PollStatus.OTHER_USER, OTHER_USER, final=True)
    try:
        with transaction.atomic():
            response = complete_social_login(request, sociallogin)
            if not _is_redirect(response):
                # A page instead of a redirect: the site's adapter answered in its place
                # (ImmediateHttpResponse), or allauth refused. Nothing of this attempt stays,
                # as when a hook refuses before anything is written.
                raise _NotCompleted(response)
    except _NotCompleted as refusal:
        logger.info("The site did not accept a Trakt account linked by code (HTTP %s)", refusal.response.status_code)
        _revoke_unkept(app, grant)
        return PollAnswer(PollStatus.REFUSED, REFUSED, final=True)
    except IntegrityError:
        logger.warning("Trakt account linked concurrently; device link refused")
        _revoke_unkept(app, grant)
        return PollAnswer(PollStatus.OTHER_USER, OTHER_USER, final=True)
    target = response["Location"]
    if _kept(request, uid, grant):
        logger.info("Linked Trakt account %s to user %s by code", sociallogin.account.pk, request.user.pk)
        name = str(sociallogin.account.get_provider_account())
        return PollAnswer(
            PollStatus.LINKED, _("Your Trakt account %(name)s is linked.") % {"name": name}, final=True, redirect=target
        )
    if _reauthenticating(request, target):
        # allauth keeps the login (tokens sealed) in the session and connects it once the
        # user has confirmed who they are. Noted as pending meanwhile: revoked at Trakt if
        # they never do (TRAKT_PENDING_SIGNUP_MAX_AGE), settled when the link stores it.
        logger.info("Linking by code waits for user %s to reauthenticate", request.user.pk)
        pending_grants.note(request, grant.access_token)
        return PollAnswer(PollStatus.REAUTHENTICATE, REAUTHENTICATE, final=True, redirect=target)
    # Redirected without a link: allauth refused the connect (its message says why) or the
    # site's adapter sent the user elsewhere.
    _revoke_unkept(app, grant)
    if account_of_another_user(request, sociallogin) is not None:
        return PollAnswer(PollStatus.OTHER_USER, OTHER_USER, final=True, redirect=target)
    logger.info("The site did not accept a Trakt account linked by code")
    return PollAnswer(PollStatus.REFUSED, REFUSED, final=True, redirect=target)


def _is_redirect(response: HttpResponse) -> bool:
    return 300 <= response.status_code < 400 and response.has_header("Location")


@sensitive_variables()
def _kept(request: HttpRequest, uid: str, grant: TokenGrant) -> bool:
    """Whether the signed-in user's link of ``uid`` now holds this grant's token."""
    token = TraktToken.objects.filter(account__provider=PROVIDER_ID, account__uid=uid).select_related("account").first()
    return token is not None and token.account.user_id == request.user.pk and token.access_token == grant.access_token


def _reauthenticating(request: HttpRequest, location: str) -> bool:
    """Whether allauth sent the user to confirm who they are (its connect asks when required)."""
    methods = get_account_adapter(request).get_reauthentication_methods(request.user)
    return any(location == method.get("url") for method in methods)


def _revoke_unkept(app: Any, grant: Any) -> None:
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
