"""A code waiting for approval: :class:`PendingCode`, kept in the session, shared through the cache.

The session holds it as a plain dict (sessions serialize JSON); :meth:`PendingCode.from_session`
is the one reader, and refuses anything that is not a whole code of the expected owner, so a
stale or tampered entry is dropped rather than polled with.

When the code may be polled next and the last answer are also kept per code in the cache
(``TRAKT_CACHE``), where every request sees them: concurrent requests each read the session
before any of them writes it back.

The device code is a bearer for polling: it stays in the session, never in a page, a URL, a
JSON answer, a cache key (a digest stands for it) or a log line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from typing import Any

from django.utils.functional import Promise

from django_trakt.device.answers import LINK_FAILED, WAITING, PollAnswer, PollStatus, poll_status
from django_trakt.internal.core.cache import cache_call
from django_trakt.internal.core.numbers import finite_number

#: Prefix of the cache keys: per budget (user or address) for starts, per code (a digest, never
#: the code) for polls.
CACHE_PREFIX = "django_trakt:device"

_TEXT_FIELDS = ("device_code", "user_code", "verification_url")
_NUMBER_FIELDS = ("expires_at", "interval", "next_poll_at")


def _text(value: dict[str, Any], name: str, default: str) -> str:
    found = value.get(name)
    return found if isinstance(found, str) else default


@dataclass
class PendingCode:
    """One code Trakt handed out, whose approval this session waits for."""

    #: Whose it is (the user's pk for the pages, "" for an anonymous headless sign-in).
    user: str
    device_code: str
    user_code: str
    verification_url: str
    expires_at: float
    interval: float
    #: Trakt wants the interval waited before every poll, the first one included.
    next_poll_at: float
    #: The last answer, repeated to a poll that comes too early.
    status: str = PollStatus.PENDING.value
    message: str = ""
    #: Where the pages go once linked.
    next: str = ""

    @classmethod
    def from_session(cls, value: Any, owner: str) -> PendingCode | None:
        """The code ``value`` holds if it is a whole one of ``owner``'s; ``None`` otherwise."""
        if not isinstance(value, dict) or value.get("user") != owner:
            return None
        device_code, user_code, verification_url = (value.get(name) for name in _TEXT_FIELDS)
        if not (isinstance(device_code, str) and isinstance(user_code, str) and isinstance(verification_url, str)):
            return None
        expires_at, interval, next_poll_at = (finite_number(value.get(name)) for name in _NUMBER_FIELDS)
        if expires_at is None or interval is None or next_poll_at is None:
            return None
        return cls(
            user=owner,
            device_code=device_code,
            user_code=user_code,
            verification_url=verification_url,
            expires_at=expires_at,
            interval=interval,
            next_poll_at=next_poll_at,
            status=_text(value, "status", PollStatus.PENDING.value),
            message=_text(value, "message", ""),
            next=_text(value, "next", ""),
        )

    def as_session(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def retry_in(self, now: float) -> int:
        """Seconds until the code may be polled again."""
        return max(0, math.ceil(self.next_poll_at - now))

    def expires_in(self, now: float) -> float:
        return self.expires_at - now

    def waiting(
        self, now: float, status: PollStatus = PollStatus.PENDING, message: str | Promise = WAITING
    ) -> PollAnswer:
        """Not done yet: remember what the page last said, and say when to ask again."""
        self.status = str(status)
        self.message = str(message)
        return PollAnswer(status, message, retry_in=self.retry_in(now), interval=self.interval)

    def repeat(self, now: float) -> PollAnswer:
        """Too early: repeat the last answer without asking Trakt (which would say 429)."""
        return self.waiting(now, status=poll_status(self.status, PollStatus.PENDING), message=self.message or WAITING)

    # -- shared through the cache ----------------------------------------------------------------

    def cache_key(self, part: str) -> str:
        # A digest: the device code is a bearer secret and cache keys show up in a cache's own tools.
        digest = hashlib.sha256(self.device_code.encode()).hexdigest()[:32]
        return f"{CACHE_PREFIX}:{part}:{digest}"

    def _cache_seconds(self, now: float) -> int:
        return max(1, math.ceil(self.expires_at - now) + 60)

    def share(self, now: float) -> None:
        """Publish when the code may be polled next, and the last answer, to every request."""
        state = {"next_poll_at": self.next_poll_at, "interval": self.interval, "status": self.status}
        state["message"] = self.message
        cache_call("set", self.cache_key("state"), state, self._cache_seconds(now))

    def share_final(self, outcome: PollAnswer, now: float) -> None:
        # A concurrent poll that read the session before this one dropped the code gets the same
        # answer from here instead of polling a spent code.
        cache_call("set", self.cache_key("state"), {"outcome": outcome.as_json()}, self._cache_seconds(now))

    def catch_up(self) -> PollAnswer | None:
        """Bring this code up to what other requests learnt about it; their final answer, if any."""
        state = cache_call("get", self.cache_key("state"))
        if not isinstance(state, dict):
            return None
        final = state.get("outcome")
        if isinstance(final, dict):
            return PollAnswer(
                status=poll_status(final.get("status"), PollStatus.ERROR),
                message=str(final.get("message") or LINK_FAILED),
                final=True,
                redirect=final.get("redirect") if isinstance(final.get("redirect"), str) else None,
            )
        next_poll_at = finite_number(state.get("next_poll_at"))
        interval = finite_number(state.get("interval"))
        if next_poll_at is not None and interval is not None and next_poll_at >= self.next_poll_at:
            self.next_poll_at = next_poll_at
            self.interval = interval
            self.status = str(poll_status(state.get("status"), PollStatus.PENDING))
            self.message = str(state.get("message") or WAITING)
        return None
