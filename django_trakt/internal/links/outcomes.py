"""What a refresh of one link comes to, and when a link is due for one.

Outcomes are distinct: refreshed, not due, needs re-authorization (Trakt rejected the
refresh token: the stored token is kept, the link is flagged and not retried until the user
signs in again), failed (transient: nothing stored changes, try again later).
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from django.utils import timezone

from django_trakt.exceptions import TraktError
from django_trakt.models import TraktToken


class Outcome(enum.StrEnum):
    REFRESHED = "refreshed"
    NOT_DUE = "not_due"
    NEEDS_REAUTH = "needs_reauth"
    FAILED = "failed"


@dataclass(frozen=True)
class RefreshResult:
    outcome: Outcome
    token: TraktToken | None
    detail: str = ""
    #: Seconds Trakt asked us to wait (429), when it said.
    retry_after: float | None = None
    #: A failure worth retrying at once with backoff (5xx, timeout, garbled answer).
    retryable: bool = False

    @property
    def transient(self) -> bool:
        return self.outcome is Outcome.FAILED


def is_due(token: TraktToken, margin: dt.timedelta, now: dt.datetime | None = None) -> bool:
    """Whether ``token`` expires within ``margin``. An unknown expiry is due: a refresh learns it."""
    if token.expires_at is None:
        return True
    return token.expires_at <= (now or timezone.now()) + margin


def describe(err: TraktError) -> str:
    """``err`` as a link's ``last_error`` records it (bounded: Trakt's excerpt may be long)."""
    return str(err)[:500]


__all__ = ["Outcome", "RefreshResult", "describe", "is_due"]
