"""Trakt's device flow for the site: one implementation behind linking and signing in by code.

Two flows use it: the device pages (:mod:`.views`: a signed-in user links an account) and the
headless API (:mod:`.headless`: an app signs a visitor in). A :class:`CodeFlow` says where its
code waits in the session, whose it is, which start budget it spends and what Trakt's
approval does; the rest is here once.

Trakt bans apps that send it bursts, so neither flow ever turns clicks (or a script's
requests) into one:

* :func:`start` asks Trakt for at most ``DEVICE_START_LIMIT`` codes per client (a
  user, or for anonymous sign-ins a client address, IPv6 by its /64) per
  ``DEVICE_START_PERIOD``, one at a time, and the whole site for at most
  ``sign_in_budgets.CODE_STARTS``; beyond that it says how long to wait.
* :func:`poll` calls Trakt at most once per call, never before the interval Trakt asked
  for, and only while holding the code's lock, so that concurrent polls of one code (two
  tabs, a script) make at most one call per interval. The interval and the last answer are
  shared per code through the cache (:class:`.pending.PendingCode`). Polls are budgeted per
  client and site-wide too (``sign_in_budgets.CODE_POLLS``): many codes cannot add up to a
  burst.

Without a working cache neither can be counted, so Trakt is asked nothing then.
A Trakt approval the site does not keep is revoked at Trakt (:func:`.approval.revoke_unkept`),
so no token it issued stays live unseen.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from django.utils.functional import Promise

from django_trakt import sign_in_budgets
from django_trakt.conf import get_trakt_app, trakt_settings
from django_trakt.device.answers import (
    APP_REFUSED,
    FINAL_MESSAGES,
    LINK_FAILED,
    NOT_CONFIGURED,
    NOTHING_PENDING,
    SLOW_DOWN,
    START_FAILED,
    UNAVAILABLE,
    WAITING,
    PollAnswer,
    PollStatus,
    busy_message,
    poll_wait_message,
    site_busy_message,
    start_wait_message,
)
from django_trakt.device.approval import app_refused
from django_trakt.device.pending import CACHE_PREFIX, PendingCode
from django_trakt.exceptions import (
    TraktConfigurationError,
    TraktError,
    TraktForbidden,
    TraktServerError,
    TraktTransportError,
)
from django_trakt.internal.api import device
from django_trakt.internal.api.device import DeviceStatus
from django_trakt.internal.api.tokens import TokenAnswer, TokenGrant
from django_trakt.internal.core import clock
from django_trakt.internal.core.cache import cache_call, release_lock, take_lock
from django_trakt.internal.core.numbers import finite_number

logger = logging.getLogger(__name__)

#: The longest wait between two polls, however often Trakt says "slow down".
MAX_INTERVAL = 60.0
#: What a start is told to wait while another start of the same budget is asking Trakt.
START_BUSY_WAIT = 5
#: Codes one client may ask Trakt for per ``DEVICE_START_PERIOD``: a person needs one or
#: two (a code lasts ten minutes); more is a script, whose calls would count against the
#: site's Trakt app (these were the settings TRAKT_DEVICE_START_LIMIT and _PERIOD).
DEVICE_START_LIMIT = 5
DEVICE_START_PERIOD = 600.0


@dataclass(frozen=True)
class CodeFlow:
    """One use of Trakt's device flow: where its code waits, whose it is, and what approval does.

    The pages link an account to the signed-in user (:mod:`.views`); the headless API signs
    a visitor in (:mod:`.headless`). Everything between asking for a code and Trakt's
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
    complete: Callable[[HttpRequest, Any, TokenAnswer, TokenGrant, PendingCode], PollAnswer]
    #: For log lines.
    label: str = "Linking by code"


# -- the pending code, in the session --------------------------------------------------------


def pending_code(request: HttpRequest, flow: CodeFlow) -> PendingCode | None:
    """The flow's pending code in this session, or ``None`` (dropping one that is not the owner's)."""
    value = request.session.get(flow.session_key)
    if value is None:
        return None
    pending = PendingCode.from_session(value, flow.owner(request))
    if pending is None:
        request.session.pop(flow.session_key, None)
    return pending


def save(request: HttpRequest, flow: CodeFlow, pending: PendingCode) -> None:
    request.session[flow.session_key] = pending.as_session()


def drop(request: HttpRequest, flow: CodeFlow) -> None:
    request.session.pop(flow.session_key, None)


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
    period = DEVICE_START_PERIOD
    stored = cache_call("get", key)
    times = [finite_number(value) for value in stored] if isinstance(stored, list) else []
    recent = sorted(value for value in times if value is not None and value > now - period)
    limit = DEVICE_START_LIMIT
    if len(recent) >= limit:
        # The oldest start that keeps the window full leaves it at this time.
        return max(1, math.ceil(recent[-limit] + period - now))
    cache_call("set", key, [*recent, now], math.ceil(period) + 1)
    return 0


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

    pending: PendingCode | None = None
    error: StartError | None = None
    message: str | Promise = ""
    retry_after: int = 0


def start(request: HttpRequest, flow: CodeFlow, *, next_url: str = "") -> Started:
    """Ask Trakt for a code, within the start budget; save it in the session (with ``next_url``)."""
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
        return Started(error=StartError.BUSY, message=busy_message(START_BUSY_WAIT), retry_after=START_BUSY_WAIT)
    try:
        now = clock.now()
        wait = _spend_start(budget, now)
        if wait:
            logger.info("%s: over the start budget, not asking Trakt", flow.label)
            return Started(error=StartError.TOO_MANY, message=start_wait_message(wait), retry_after=wait)
        # Then the site's: many clients (one script, many addresses) must not add up to a burst.
        site = sign_in_budgets.spend_site_wide(sign_in_budgets.CODE_STARTS)
        if site.refused_by == "cache":
            return Started(error=StartError.CACHE_DOWN, message=START_FAILED)
        if not site.allowed:
            return Started(error=StartError.TOO_MANY, message=site_busy_message(site.wait), retry_after=site.wait)
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
    pending = PendingCode(
        user=flow.owner(request),
        device_code=authorization.device_code,
        user_code=authorization.user_code,
        verification_url=authorization.verification_url,
        expires_at=now + authorization.expires_in,
        interval=authorization.interval,
        # Trakt wants the interval waited before the first poll too.
        next_poll_at=now + authorization.interval,
        message=str(WAITING),
        next=next_url,
    )
    save(request, flow, pending)
    return Started(pending=pending)


# -- a poll ------------------------------------------------------------------------------------


def poll(request: HttpRequest, flow: CodeFlow) -> PollAnswer:
    """One poll of the flow's pending code: at most one call to Trakt, never before its interval."""
    pending = pending_code(request, flow)
    if pending is None:
        return PollAnswer(PollStatus.NONE, NOTHING_PENDING, final=True)
    now = clock.now()
    if now >= pending.expires_at:
        drop(request, flow)
        return PollAnswer(PollStatus.EXPIRED, FINAL_MESSAGES[DeviceStatus.EXPIRED], final=True)
    answered = _answered_without_trakt(request, flow, pending, now)
    if answered is not None:
        return answered
    try:
        app = get_trakt_app(request)
    except TraktConfigurationError:
        logger.error("%s failed: no Trakt app is configured (see check django_trakt.E002)", flow.label)
        drop(request, flow)
        return PollAnswer(PollStatus.ERROR, NOT_CONFIGURED, final=True)
    lock_key = pending.cache_key("lock")
    ticket, locked = take_lock(lock_key, _lock_seconds())
    if not locked:
        # Another request is asking Trakt about this code right now (or the cache is down):
        # answer as before, and look again in a moment.
        outcome = pending.repeat(now)
        outcome.retry_in = max(outcome.retry_in, 1)
        return outcome
    try:
        # Read again under the lock: the poll that held it before may have just asked Trakt.
        answered = _answered_without_trakt(request, flow, pending, now)
        if answered is not None:
            return answered
        spent = sign_in_budgets.spend(sign_in_budgets.CODE_POLLS, flow.client(request))
        if not spent.allowed:
            # No call: the code is kept as it was and may be polled once the budget refills.
            logger.info("%s: over the poll budget (%s), not asking Trakt", flow.label, spent.refused_by)
            if spent.refused_by == "cache":
                return PollAnswer(PollStatus.UNAVAILABLE, UNAVAILABLE, retry_in=5, interval=pending.interval)
            wait = max(spent.wait, pending.retry_in(now))
            return PollAnswer(PollStatus.TOO_MANY, poll_wait_message(wait), retry_in=wait, interval=pending.interval)
        # Claim this interval before asking, so that even a poll whose lock expired under
        # it (a hung request) cannot make a second call in it.
        pending.next_poll_at = now + pending.interval
        pending.share(now)
        outcome = _ask_trakt(request, flow, app, pending, now)
        if outcome.final:
            pending.share_final(outcome, now)
        else:
            pending.share(now)
        return outcome
    finally:
        release_lock(lock_key, ticket)


def _answered_without_trakt(
    request: HttpRequest, flow: CodeFlow, pending: PendingCode, now: float
) -> PollAnswer | None:
    """Another request's final answer, or the last answer repeated when it is too early; None: ask Trakt."""
    finished = pending.catch_up()
    if finished is not None:
        drop(request, flow)
        return finished
    if now < pending.next_poll_at:
        return pending.repeat(now)
    return None


def _ask_trakt(request: HttpRequest, flow: CodeFlow, app: Any, pending: PendingCode, now: float) -> PollAnswer:
    """The one call to Trakt of a poll (with the code's lock held), and what its answer means."""
    interval = pending.interval
    try:
        answer = device.poll_device_token(
            client_id=app.client_id, client_secret=app.secret, device_code=pending.device_code
        )
    except TraktForbidden as err:
        if app_refused(app, err):
            # Every later poll would get the same 403 until the code expires: end it now.
            drop(request, flow)
            return PollAnswer(PollStatus.APP_REFUSED, APP_REFUSED, final=True)
        # A Cloudflare block: not the user's answer, keep the code, try again.
        return _try_again(request, flow, pending, now, err)
    except (TraktTransportError, TraktServerError) as err:
        # An outage is not the user's answer: keep the code, try again.
        return _try_again(request, flow, pending, now, err)
    except TraktError as err:
        logger.warning(
            "Trakt device token poll failed: %s (HTTP %s)", type(err).__name__, getattr(err, "status_code", "-")
        )
        drop(request, flow)
        return PollAnswer(PollStatus.ERROR, LINK_FAILED, final=True)
    if answer.status is DeviceStatus.PENDING:
        pending.next_poll_at = now + interval
        outcome = pending.waiting(now)
        save(request, flow, pending)
        return outcome
    if answer.status is DeviceStatus.SLOW_DOWN:
        interval = min(max(interval * 2, 1.0), MAX_INTERVAL)
        wait = max(interval, min(answer.retry_after or 0.0, MAX_INTERVAL))
        pending.interval = interval
        pending.next_poll_at = now + wait
        outcome = pending.waiting(now, status=PollStatus.SLOW_DOWN, message=SLOW_DOWN)
        save(request, flow, pending)
        return outcome
    drop(request, flow)
    if answer.status is not DeviceStatus.APPROVED or answer.grant is None or answer.answer is None:
        logger.info("%s ended at Trakt: %s", flow.label, answer.status)
        return PollAnswer(PollStatus(answer.status), FINAL_MESSAGES[answer.status], final=True)
    return flow.complete(request, app, answer.answer, answer.grant, pending)


def _try_again(request: HttpRequest, flow: CodeFlow, pending: PendingCode, now: float, err: TraktError) -> PollAnswer:
    """Trakt did not answer about the code (an outage, a Cloudflare block): keep it, poll again."""
    logger.warning("Trakt device token poll failed, will retry: %s", type(err).__name__)
    pending.next_poll_at = now + max(pending.interval, 1.0)
    outcome = pending.waiting(now, status=PollStatus.UNAVAILABLE, message=UNAVAILABLE)
    save(request, flow, pending)
    return outcome
