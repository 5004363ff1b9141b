"""Refreshing one link for batch work: retrying what is worth retrying, as a batch can afford to."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django_trakt.internal.core import clock
from django_trakt.internal.links.outcomes import Outcome, RefreshResult
from django_trakt.internal.links.refresh import refresh_token
from django_trakt.models import TraktToken


def refresh_with_retries(
    token: TraktToken | int,
    *,
    force: bool = False,
    within: dt.timedelta | None = None,
    app: Any = None,
    server_error_retries: int = 2,
    backoff: float = 1.0,
    max_retry_after: float = 30.0,
    sleep: Callable[[float], object] | None = None,
    skip_locked: bool = True,
    should_stop: Callable[[], bool] | None = None,
) -> RefreshResult:
    """:func:`~django_trakt.internal.links.refresh.refresh_token` for batch work: retry what is worth retrying.

    A 5xx or timeout is retried ``server_error_retries`` times with exponential
    backoff; a 429 is waited out when its ``Retry-After`` is at most
    ``max_retry_after`` seconds, else left for the next run. The row lock is not held
    while waiting. Once ``should_stop()`` answers True (a draining batch), nothing is retried.
    """
    sleep = sleep or clock.sleep
    attempt = 0
    while True:
        result = refresh_token(token, force=force, within=within, app=app, skip_locked=skip_locked)
        if result.outcome is not Outcome.FAILED or result.token is None:
            return result
        if should_stop is not None and should_stop():
            return result
        if result.retry_after is not None:
            if result.retry_after > max_retry_after or attempt >= server_error_retries:
                return result
            sleep(result.retry_after)
        elif attempt < server_error_retries and result.retryable:
            sleep(backoff * (2**attempt))
        else:
            return result
        if should_stop is not None and should_stop():
            return result
        attempt += 1
