"""The page budget: what renders may send to Trakt per window, counted before each request.

The site must never become an amplifier that gets its Trakt app banned: every request a
render sends to Trakt is first counted, in the cache, against a budget per window of
``PAGE_CALL_PERIOD`` seconds. Public lists share one site-wide budget
(``PAGE_CALL_BUDGET``: Trakt counts those calls against the app's key); a user's own
lists have a budget per user (``PAGE_USER_CALL_BUDGET``: Trakt counts those against the
user's token). A spent budget, or a cache that cannot count, means no call
(:class:`BudgetSpent`, whose ``error`` the page shows).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.views.decorators.debug import sensitive_variables

from django_trakt.exceptions import (
    TraktRateLimited,
)
from django_trakt.internal.core import clock
from django_trakt.internal.core.cache import count_in_window
from django_trakt.internal.links.client import TraktClient
from django_trakt.internal.pages.watchlist_items import WatchlistError

logger = logging.getLogger(__name__)

#: The budget scope of public lists: one for the whole site, as Trakt counts them per app.
PUBLIC_SCOPE = "public"
#: Part of the budget's cache key: bump when what a count means changes.
BUDGET_KEY_VERSION = 1
# Trakt allows 500 GET per 5 minutes per app and per user (docs/security.md, "trying to get the site banned"):
# renders may spend a fifth of that, leaving the rest to the site's workers and to refreshes.
#: Trakt calls all renders of public lists may send per period, site-wide (0: cache only).
PAGE_CALL_BUDGET = 100
#: Trakt calls renders of one user's own lists may send per period.
PAGE_USER_CALL_BUDGET = 100
#: Seconds of the window both budgets are counted over: Trakt's own window.
PAGE_CALL_PERIOD = 300.0


def _budget_name(scope: str) -> str:
    return f"django_trakt:page_calls:v{BUDGET_KEY_VERSION}:{scope}"


def spend_page_call(scope: str) -> WatchlistError:
    """Count one Trakt call against the budget of ``scope``: ``NONE`` if it may be sent, else why not.

    A fixed window per ``PAGE_CALL_PERIOD`` (:func:`count_in_window`: shared by every
    process, restarting when the clock enters the next window). At a window's edge up to
    twice the budget can be sent in one period, still well under Trakt's limit with the
    defaults. A call refused is counted too; it never reaches Trakt.
    """
    budget = PAGE_CALL_BUDGET if scope == PUBLIC_SCOPE else PAGE_USER_CALL_BUDGET
    if budget <= 0:
        return WatchlistError.BUSY  # pages only ever show what is cached
    period = PAGE_CALL_PERIOD
    counted = count_in_window(_budget_name(scope), period)
    if counted is None:
        return WatchlistError.UNAVAILABLE  # the cache is down (logged): nothing can be counted, so no call
    count, _seconds_left = counted
    if count > budget:
        if count == budget + 1:  # once per window and scope: a flood of refusals must not flood the log
            logger.warning(
                "The page budget of Trakt calls (%s per %ss, %s) is spent; pages show cached lists until it refills",
                budget,
                period,
                "site-wide, public lists" if scope == PUBLIC_SCOPE else scope,
            )
        return WatchlistError.BUSY
    return WatchlistError.NONE


class BudgetSpent(Exception):
    """A render may not send this call to Trakt; ``error`` is what the page shows."""

    def __init__(self, error: WatchlistError) -> None:
        super().__init__(str(error))
        self.error = error


class PageClient(TraktClient):
    """The client of renders: every request it sends to Trakt is counted against a budget first.

    Counted where a request is sent, not once per list: a list of several pages costs a
    call per page, and so do the retry of a short 429 and the retry after a rejected
    token. Token refreshes go to Trakt's OAuth endpoint, not the API, and are not counted:
    at most one per user per token lifetime, guarded by the refresh's own locks.
    """

    def __init__(self, *, scope: str, max_retry_wait: float = 0.0, **options: Any) -> None:
        # The parent's own short-429 retry would send a request nobody counted: it is told
        # never to retry (any Retry-After is above -inf), and the retry happens, counted, here.
        super().__init__(max_retry_wait=-math.inf, **options)
        self.scope = scope
        self.page_retry_wait = max_retry_wait

    def _spend(self) -> None:
        error = spend_page_call(self.scope)
        if error:
            raise BudgetSpent(error)

    # Like the parent's: the token is a local here too, and must not show in an error report.
    @sensitive_variables()
    def _send_once_more_if_short_wait(
        self, method: str, url: str, access_token: str | None, params: Any, json: Any
    ) -> Any:
        self._spend()
        try:
            return super()._send_once_more_if_short_wait(method, url, access_token, params, json)
        except TraktRateLimited as err:
            if err.retry_after is None or err.retry_after > self.page_retry_wait:
                raise
            clock.sleep(err.retry_after)
            self._spend()
            return super()._send_once_more_if_short_wait(method, url, access_token, params, json)
