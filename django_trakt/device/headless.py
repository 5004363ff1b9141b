"""Sign in by code through the site's headless API: Trakt's device flow for apps and TVs.

An app that cannot open a browser (a TV, a media-center plugin) asks the site for a code
(:class:`CodeStartView`), shows the person ``user_code`` and the verification link, and
polls the site (:class:`CodePollView`). The site polls Trakt with its own client secret
(the app never holds it), through the same code as the device pages
(:mod:`.flow`: budgets, locks, intervals, Trakt's answers). When the
person approves, allauth's login runs for the Trakt account: an existing link signs in,
a new visitor gets allauth's pending provider signup (the email address is asked through
allauth's ``/auth/provider/signup``), exactly as after the redirect flow.

Answers use allauth's headless envelopes: ``{"status", "data", "meta"}`` (``meta`` has the
app client's ``session_token`` and what the site's headless adapter adds in
``populate_response_meta``), ``{"status", "errors": [{"code", "message"}]}``, and on approval
allauth's own authentication answer (``AuthenticationResponse``). The URLs are in
:mod:`django_trakt.device.headless_urls`, beside ``allauth.headless.urls``; docs/headless.md has
the exchange.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from allauth.core.exceptions import ImmediateHttpResponse
from allauth.headless import app_settings as headless_settings
from allauth.headless.adapter import get_adapter as get_headless_adapter
from allauth.headless.base.response import AuthenticationResponse, ConflictResponse
from allauth.headless.base.views import APIView
from allauth.headless.constants import Client
from allauth.socialaccount.helpers import complete_social_login
from allauth.socialaccount.providers.base import AuthProcess
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from django_trakt import sign_in_budgets
from django_trakt.conf import PROVIDER_ID
from django_trakt.device import flow as device_flow
from django_trakt.device.answers import FINAL_MESSAGES, LINK_FAILED, PollAnswer, PollStatus
from django_trakt.device.approval import approved_login, revoke_unkept
from django_trakt.device.flow import CodeFlow, StartError
from django_trakt.device.pending import PendingCode
from django_trakt.internal.api import device
from django_trakt.internal.api.tokens import TokenAnswer, TokenGrant
from django_trakt.internal.core import clock
from django_trakt.internal.links import pending as pending_grants
from django_trakt.models import TraktToken

logger = logging.getLogger(__name__)

#: Where the pending code lives in the session (the browser's, or the app's X-Session-Token one).
SESSION_KEY = "django_trakt_headless_code"
#: allauth's headless login answers with a redirect to the state's ``next``, adding ``error``
#: when it failed; nothing follows it, it only carries that error back.
_DONE = "/"

SIGNED_IN = _("Trakt approved: allauth's login has run.")
SIGNUP_CLOSED = _("Signing up is closed on this site.")
NOT_CONFIGURED = _("Signing in with Trakt is not configured on this site.")
#: The poll statuses that end a code without a sign-in, and what they say to the app.
CLIENT_FINALS = {
    PollStatus.NONE: _("No sign-in by code is in progress: ask for a code first."),
    PollStatus.INVALID: FINAL_MESSAGES[device.DeviceStatus.INVALID],
    PollStatus.USED: FINAL_MESSAGES[device.DeviceStatus.USED],
    PollStatus.EXPIRED: FINAL_MESSAGES[device.DeviceStatus.EXPIRED],
    PollStatus.DENIED: _("The request was denied on Trakt. Nobody was signed in."),
    PollStatus.REFUSED: _("This site did not accept that Trakt account."),
}


def _owner(request: HttpRequest) -> str:
    # An anonymous visitor's code: the session (cookie or X-Session-Token) is what holds it.
    return ""


def _client(request: HttpRequest) -> str:
    # Nobody is signed in yet, and a script can open sessions at will: the budgets are per
    # client address, as allauth counts it (ALLAUTH_TRUSTED_PROXY_COUNT, IPv6 by its /64).
    return sign_in_budgets.client_of(request)


class _Refused(Exception):
    """allauth did not sign in: undo what the attempt wrote."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@sensitive_variables()
def _complete_login(
    request: HttpRequest, app: Any, answer: TokenAnswer, grant: TokenGrant, pending: PendingCode
) -> PollAnswer:
    """Approved: run allauth's login for the Trakt account, as its headless flows do.

    allauth offers no public call to finish a headless login from a view of one's own; its
    public ``complete_social_login`` does it for a ``SocialLogin`` whose state says
    ``headless`` (it hands it to the headless flow, which logs in or leaves the pending
    signup in the session and answers with a redirect naming the error, if any). The login
    is built like the redirect flow's (``TraktOAuth2Adapter``: the profile, the sealed token,
    the grant noted as pending until a link stores it); anything allauth or the site's
    adapter refuses is rolled back and its grant revoked at Trakt.
    """
    state = {"process": AuthProcess.LOGIN, "headless": True, "next": _DONE}
    sociallogin = approved_login(request, app, answer, grant, state=state)
    if sociallogin is None:
        return PollAnswer(PollStatus.ERROR, LINK_FAILED, final=True)
    try:
        with transaction.atomic():
            # A new visitor's tokens wait in the pending signup: noted like the redirect flow's.
            pending_grants.note(request, grant.access_token)
            response = complete_social_login(request, sociallogin)
            error = _error_of(response)
            if error:
                raise _Refused(error)
    except ImmediateHttpResponse as refusal:
        # The site's adapter answered in allauth's place (pre_social_login, ...).
        logger.info("The site did not accept a Trakt sign-in by code (HTTP %s)", refusal.response.status_code)
        revoke_unkept(app, grant)
        return PollAnswer(PollStatus.REFUSED, CLIENT_FINALS[PollStatus.REFUSED], final=True)
    except _Refused as refusal:
        logger.info("allauth did not sign in a Trakt account by code: %s", refusal.error)
        revoke_unkept(app, grant)
        message = SIGNUP_CLOSED if refusal.error == "signup_closed" else CLIENT_FINALS[PollStatus.REFUSED]
        return PollAnswer(PollStatus.REFUSED, message, final=True)
    except IntegrityError:
        logger.warning("Trakt account linked concurrently; sign-in by code refused")
        revoke_unkept(app, grant)
        return PollAnswer(PollStatus.REFUSED, CLIENT_FINALS[PollStatus.REFUSED], final=True)
    kept = TraktToken.objects.filter(account__provider=PROVIDER_ID, account__uid=sociallogin.account.uid).first()
    if kept is not None and kept.access_token == grant.access_token:
        logger.info("Signed in Trakt account %s by code", kept.account_id)
    else:
        logger.info("Sign-in by code of a new Trakt user: allauth's signup is pending")
    return PollAnswer(PollStatus.AUTHENTICATED, SIGNED_IN, final=True)


def _error_of(response: HttpResponse) -> str:
    """The ``error`` allauth's headless login put on its redirect; "unknown" for any other answer."""
    location = response.get("Location") if 300 <= response.status_code < 400 else None
    if location is None:
        return "unknown"
    return (parse_qs(urlsplit(location).query).get("error") or [""])[0]


#: Signing in by code: the visitor's code, a start budget per client address, allauth's login.
FLOW = CodeFlow(
    session_key=SESSION_KEY,
    owner=_owner,
    client=_client,
    complete=_complete_login,
    label="Signing in by code",
)


# -- answers in allauth's envelopes ------------------------------------------------------------


def _session_meta(request: HttpRequest) -> dict[str, Any]:
    """The app client's ``meta.session_token``, as allauth's own answers expose it.

    The app's first request has no session: the code is kept in a new one, whose token the
    app must send (``X-Session-Token``) on every poll and on the signup that may follow.
    """
    if getattr(getattr(request.allauth, "headless", None), "client", None) != Client.APP:  # type: ignore[attr-defined]
        return {}
    strategy = headless_settings.TOKEN_STRATEGY
    if not request.session.modified or request.session.is_empty():
        return {}
    token = strategy.create_session_token(request)
    return {} if token == strategy.get_session_token(request) else {"session_token": token}


def _response(request: HttpRequest, status: int, body: dict[str, Any]) -> JsonResponse:
    """``body`` in allauth's envelope: ``meta`` as allauth's own answers fill it, never cached.

    allauth's answers let the site's headless adapter add to ``meta``
    (``populate_response_meta``, its documented hook); these answers do the same, so a site's
    additions reach every answer of the headless API alike.
    """
    meta = _session_meta(request)
    populate = getattr(get_headless_adapter(), "populate_response_meta", None)
    if populate is not None:  # new in allauth 65.22; 65.21's answers have no such hook
        populate(request, meta)
    if meta:
        body["meta"] = meta
    response = JsonResponse(body, status=status)
    add_never_cache_headers(response)
    return response


def _answer(request: HttpRequest, status: int, data: dict[str, Any]) -> JsonResponse:
    return _response(request, status, {"status": status, "data": data})


def _error(request: HttpRequest, status: int, code: str, message: Any, retry_after: int = 0) -> JsonResponse:
    response = _response(request, status, {"status": status, "errors": [{"code": code, "message": str(message)}]})
    if retry_after:
        response["Retry-After"] = str(retry_after)
    return response


#: A start's errors: 429 for the budget (with Retry-After), 503 when the site cannot ask Trakt.
_START_STATUS = {
    StartError.BUSY: HTTPStatus.TOO_MANY_REQUESTS,
    StartError.TOO_MANY: HTTPStatus.TOO_MANY_REQUESTS,
    StartError.NOT_CONFIGURED: HTTPStatus.SERVICE_UNAVAILABLE,
    StartError.CACHE_DOWN: HTTPStatus.SERVICE_UNAVAILABLE,
    StartError.APP_REFUSED: HTTPStatus.SERVICE_UNAVAILABLE,
    StartError.UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
}


class CodeStartView(APIView):
    """``POST .../auth/provider/trakt/code``: a code for the person to approve on Trakt."""

    handle_json_input = False  # no input: a body, if any, is ignored

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.user.is_authenticated:
            return ConflictResponse(request)
        started = device_flow.start(request, FLOW)
        if started.pending is None:
            error = started.error or StartError.UNAVAILABLE
            # A second start while one is asking Trakt is over the budget too, just shorter.
            code = StartError.TOO_MANY.value if error is StartError.BUSY else error.value
            message = NOT_CONFIGURED if error is StartError.NOT_CONFIGURED else started.message
            return _error(request, _START_STATUS[error], code, message, started.retry_after)
        pending = started.pending
        return _answer(
            request,
            HTTPStatus.OK,
            {
                "user_code": pending.user_code,
                "verification_url": pending.verification_url,
                "verification_link": device.verification_link(pending.verification_url, pending.user_code),
                "expires_in": max(0, round(pending.expires_in(clock.now()))),
                "interval": pending.interval,
            },
        )


class CodePollView(APIView):
    """``POST .../auth/provider/trakt/code/poll``: one check with Trakt (at most)."""

    handle_json_input = False

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.user.is_authenticated:
            return ConflictResponse(request)
        outcome = device_flow.poll(request, FLOW)
        if outcome.status is PollStatus.TOO_MANY:
            # The poll budget is spent (Trakt was not asked): allauth's 429 code, the code kept.
            return _error(request, HTTPStatus.TOO_MANY_REQUESTS, str(outcome.status), outcome.message, outcome.retry_in)
        if not outcome.final:
            # Not yet: 202 with when to ask again (pending, slow_down, or unavailable).
            return _answer(
                request,
                HTTPStatus.ACCEPTED,
                {
                    "status": str(outcome.status),
                    "message": str(outcome.message),
                    "retry_in": outcome.retry_in,
                    "interval": outcome.interval,
                },
            )
        if outcome.status is PollStatus.AUTHENTICATED:
            # allauth's own answer: 200 signed in, or 401 with the pending flow (provider_signup,
            # verify_email, ...), with the app client's session token in meta.
            return AuthenticationResponse(request)
        if outcome.status in CLIENT_FINALS:
            message = outcome.message if outcome.status is PollStatus.REFUSED else CLIENT_FINALS[outcome.status]
            return _error(request, HTTPStatus.BAD_REQUEST, str(outcome.status), message)
        # app_refused, or error (the site or Trakt failed): nothing the person can do but wait.
        return _error(request, HTTPStatus.SERVICE_UNAVAILABLE, str(outcome.status), outcome.message)
