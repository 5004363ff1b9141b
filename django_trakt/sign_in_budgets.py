"""What requests of people signing in may cost at Trakt: budgets per client and site-wide.

Some requests reach Trakt before anyone is signed in: allauth's headless provider-token
sign-in asks ``/users/settings`` whose token an app sent (``provider.verify_token``), and
the sign-in by code asks Trakt for codes and polls them (``device.flow``, for the headless
API and the device pages). Each is a call on the site's Trakt app, and Trakt bans apps that
send bursts; a script must not be able to spend the app's limit by sending such requests.

So every one of these calls is counted first, in the app's cache (``TRAKT_CACHE``, the
family of the page budget: :func:`django_trakt.internal.core.cache.count_in_window`), against two
budgets: one per client (the signed-in user, or the client address, IPv6 grouped by
allauth's ``ALLAUTH_RATE_LIMIT_IPV6_PREFIX`` as allauth's own rate limits group it) and
one for the whole site (which many addresses cannot get around). A spent budget, or a
cache that cannot count, means no call: the request gets a clear "try again in N seconds".

The numbers are constants, not settings: they are far above what people signing in need
and far below Trakt's limits, which are Trakt's and not a site's to tune.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

from allauth import app_settings as allauth_settings
from allauth.account.adapter import get_adapter as get_account_adapter
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from django_trakt.internal.api import oauth
from django_trakt.internal.core.cache import cache_call, count_in_window

logger = logging.getLogger(__name__)

#: Prefix of the budgets' cache keys.
CACHE_PREFIX = "django_trakt:sign_in_calls"


@dataclass(frozen=True)
class Budget:
    """Calls of one kind allowed per ``period`` seconds, per client and for the whole site."""

    name: str
    #: Per client; None: counted per client elsewhere (code starts: ``device.flow.DEVICE_START_LIMIT``).
    per_client: int | None
    site_wide: int
    period: float


#: Token checks (``GET /users/settings`` with a token an app sent). An app signs a person in
#: once; ten tries in five minutes leave room for mistakes. Site-wide, a fifth of Trakt's
#: 500 GETs per five minutes (trakt/trakt-api#909): a site with that many app sign-ins at
#: once is a site under attack.
TOKEN_CHECKS = Budget("token_checks", per_client=10, site_wide=100, period=300)
#: Codes asked for (``POST /oauth/device/code``), the pages' and the headless API's together.
#: Per client: ``DEVICE_START_LIMIT`` per ``DEVICE_START_PERIOD`` (device.flow).
#: Site-wide, 30 in five minutes: a code is someone at a TV, reading it out.
CODE_STARTS = Budget("code_starts", per_client=None, site_wide=30, period=300)
#: Polls of codes (``POST /oauth/device/token``). One code polled at Trakt's interval (5 s)
#: costs 12 a minute: 24 is two codes at once per client. Site-wide, two a second, the
#: pace of ten people approving at the same time.
CODE_POLLS = Budget("code_polls", per_client=24, site_wide=120, period=60)

#: Seconds an answer to "does Trakt refuse the site's app?" is reused: every 403 would
#: otherwise cost one more call (``oauth.credentials_accepted``), once per request.
CREDENTIALS_CHECK_TTL = 60


@dataclass(frozen=True)
class Verdict:
    """May the call be made? If not, ``wait`` seconds (0 when the cache cannot count)."""

    allowed: bool
    wait: int = 0
    #: Why not: "client", "site", or "cache" (nothing could be counted).
    refused_by: str = ""


ALLOWED = Verdict(allowed=True)


def client_address(request: HttpRequest) -> str:
    """The client's address as allauth's rate limits count it: an IPv6 address by its network.

    The address is allauth's (the account adapter's ``get_client_ip``: ``REMOTE_ADDR``, or
    ``X-Forwarded-For`` behind ``ALLAUTH_TRUSTED_PROXY_COUNT`` proxies). An IPv6 address is
    reduced to its ``ALLAUTH_RATE_LIMIT_IPV6_PREFIX`` network (/64 by default), as allauth's
    rate limits do (its helper for that is internal to allauth): one host holds a whole /64
    and would otherwise be a new client at every address. An IPv4-mapped address counts as
    its IPv4 address.
    """
    try:
        address = get_account_adapter(request).get_client_ip(request)
    except PermissionDenied:
        return "unknown"
    try:
        parsed = ipaddress.ip_address(str(address).split("%", 1)[0])
    except ValueError:
        # Not an address (a proxy's header): a digest keeps the cache key short and plain.
        return "other:" + hashlib.sha256(str(address).encode()).hexdigest()[:16]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        prefix = min(max(int(allauth_settings.RATE_LIMIT_IPV6_PREFIX), 0), 128)
        return str(ipaddress.IPv6Network((int(parsed), prefix), strict=False).network_address)
    return str(parsed)


def client_of(request: HttpRequest) -> str:
    """Whom a request's calls are counted against: the signed-in user, else the client address."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return f"ip:{client_address(request)}"


def spend(budget: Budget, client: str) -> Verdict:
    """Count one call of ``budget`` for ``client``, then for the site: whether it may be made.

    The client's budget is counted first: a client over its own budget then costs the
    site's budget nothing, so one client alone cannot spend it.
    """
    if budget.per_client is not None:
        verdict = _count(budget, f"{CACHE_PREFIX}:{budget.name}:{client}", budget.per_client, "client")
        if not verdict.allowed:
            return verdict
    return spend_site_wide(budget)


def spend_site_wide(budget: Budget) -> Verdict:
    """Count one call of ``budget`` for the site only (its clients are counted elsewhere)."""
    return _count(budget, f"{CACHE_PREFIX}:{budget.name}:site", budget.site_wide, "site")


def _count(budget: Budget, name: str, limit: int, scope: str) -> Verdict:
    counted = count_in_window(name, budget.period)
    if counted is None:
        return Verdict(allowed=False, refused_by="cache")  # the cache is down (logged): no call
    count, wait = counted
    if count <= limit:
        return ALLOWED
    if count == limit + 1 and scope == "site":  # once per window: a flood must not flood the log
        logger.warning(
            "The site-wide budget of Trakt calls for %s (%s per %ss) is spent; refusing until it refills",
            budget.name.replace("_", " "),
            limit,
            budget.period,
        )
    return Verdict(allowed=False, wait=wait, refused_by=scope)


def app_refused_by_trakt(app: Any) -> bool:
    """Whether Trakt refuses the site's app itself (deleted or disabled), asked at most once a minute.

    After a 403 (Trakt refusing the app, trakt/trakt-api#691, or a Cloudflare block) the
    app's credentials alone tell the two apart (:func:`oauth.credentials_accepted`): one
    more call. Its answer is kept for :data:`CREDENTIALS_CHECK_TTL` seconds, so a flood of
    requests meeting 403s costs Trakt one such call a minute, not one per request.
    """
    key = f"{CACHE_PREFIX}:app_refused:{hashlib.sha256(str(app.client_id).encode()).hexdigest()[:32]}"
    known = cache_call("get", key)
    if isinstance(known, bool):
        return known
    refused = oauth.credentials_accepted(client_id=app.client_id, client_secret=app.secret) is False
    cache_call("set", key, refused, CREDENTIALS_CHECK_TTL)
    return refused
