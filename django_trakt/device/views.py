"""Linking by code: Trakt's device flow as three pages of the site (``django_trakt.site_urls``).

For sites Trakt cannot redirect to (a media server on a home network): a signed-in
user starts (``device_start``), sees a short code and the address where to enter it on
any device (``device_pending``), and the page polls ``device_poll`` until they approve
or deny. The result is the same linked ``SocialAccount`` and ``TraktToken`` as the
redirect flow: the account is connected through allauth (``SocialLogin.connect``, or
``lookup`` when it was linked before), whose signals make ``receivers`` store the token.

The device code is a bearer for polling: it stays in the session, never in a page,
a URL, a JSON answer, a cache key or a log line.

The code, its budgets and Trakt's answers are handled by :mod:`.flow` (shared with the
headless sign-in by code, :mod:`.headless`). Trakt bans apps that send it bursts, so the
pages never turn a user's clicks (or a script's requests) into one:

* ``device_start`` asks Trakt for at most ``flow.DEVICE_START_LIMIT`` codes per user per
  ``flow.DEVICE_START_PERIOD``, one at a time; beyond that the page says how long to wait.
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

import logging
import math
from typing import Any

from allauth.account.adapter import get_adapter as get_account_adapter
from allauth.account.decorators import reauthentication_required
from allauth.socialaccount.helpers import complete_social_login
from allauth.socialaccount.providers.base import AuthProcess
from django.contrib.auth.decorators import login_required
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from django_trakt.conf import PROVIDER_ID
from django_trakt.device import flow as device_flow
from django_trakt.device.answers import (
    LINK_FAILED,
    OTHER_USER,
    REAUTHENTICATE,
    REFUSED,
    WAITING,
    PollAnswer,
    PollStatus,
)
from django_trakt.device.approval import approved_login, revoke_unkept
from django_trakt.device.flow import CodeFlow, StartError
from django_trakt.device.pending import PendingCode
from django_trakt.internal.api import device
from django_trakt.internal.api.tokens import TokenAnswer, TokenGrant
from django_trakt.internal.core import clock
from django_trakt.internal.links import pending as pending_grants
from django_trakt.models import TraktToken
from django_trakt.views import account_of_another_user

logger = logging.getLogger(__name__)

#: Where the pending code lives in the session.
SESSION_KEY = "django_trakt_device"


def _owner(request: HttpRequest) -> str:
    return str(request.user.pk)


def _client(request: HttpRequest) -> str:
    # Budgets per user: the pages are for signed-in users.
    return str(request.user.pk)


def _complete_connect(
    request: HttpRequest, app: Any, answer: TokenAnswer, grant: TokenGrant, pending: PendingCode
) -> PollAnswer:
    return _complete(request, app, answer, grant, next_url=pending.next)


#: Linking by code: the signed-in user's code, their start budget, a connect on approval.
FLOW = CodeFlow(
    session_key=SESSION_KEY, owner=_owner, client=_client, complete=_complete_connect, label="Linking by code"
)


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
    started = device_flow.start(request, FLOW, next_url=next_url)
    if started.error in (StartError.BUSY, StartError.TOO_MANY):
        return _render_wait(request, str(started.message), started.retry_after, next_url)
    if started.error is not None:
        # What the page always answered: 503 when the site cannot work (cache, app), else 200.
        status = 503 if started.error in (StartError.CACHE_DOWN, StartError.APP_REFUSED) else 200
        return _render_start(request, error=started.message, next_url=next_url, status=status)
    return redirect("django_trakt:device_pending")


@never_cache
@login_required
@require_GET
def device_pending(request: HttpRequest) -> HttpResponse:
    """The code, where to enter it, and a page that completes by itself."""
    pending = device_flow.pending_code(request, FLOW)
    if pending is None:
        return redirect("django_trakt:device_start")
    now = clock.now()
    if pending.catch_up() is not None:
        # Another request already finished this code: its poll gives the answer.
        pending.next_poll_at = now
    context = {
        "user_code": pending.user_code,
        "verification_url": pending.verification_url,
        "verification_link": device.verification_link(pending.verification_url, pending.user_code),
        "expires_in_minutes": max(0, math.ceil(pending.expires_in(now) / 60)),
        "message": pending.message or WAITING,
        "retry_in": pending.retry_in(now),
        "interval": pending.interval,
    }
    return render(request, "django_trakt/device_pending.html", context)


@never_cache
@login_required
@require_POST
def device_poll(request: HttpRequest) -> HttpResponse:
    """One check with Trakt: JSON for the page's script, a redirect (or a page) without it."""
    outcome = device_flow.poll(request, FLOW)
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
    state = {"process": AuthProcess.CONNECT, "next": next_url}
    sociallogin = approved_login(request, app, answer, grant, state=state)
    if sociallogin is None:
        return PollAnswer(PollStatus.ERROR, LINK_FAILED, final=True)
    uid = sociallogin.account.uid
    other = account_of_another_user(request, sociallogin)
    if other is not None:
        logger.warning("Trakt account %s is linked to another user; device link refused", other.pk)
        revoke_unkept(app, grant)
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
        revoke_unkept(app, grant)
        return PollAnswer(PollStatus.REFUSED, REFUSED, final=True)
    except IntegrityError:
        logger.warning("Trakt account linked concurrently; device link refused")
        revoke_unkept(app, grant)
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
        # they never do (pending.PENDING_SIGNUP_MAX_AGE), settled when the link stores it.
        logger.info("Linking by code waits for user %s to reauthenticate", request.user.pk)
        pending_grants.note(request, grant.access_token)
        return PollAnswer(PollStatus.REAUTHENTICATE, REAUTHENTICATE, final=True, redirect=target)
    # Redirected without a link: allauth refused the connect (its message says why) or the
    # site's adapter sent the user elsewhere.
    revoke_unkept(app, grant)
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
