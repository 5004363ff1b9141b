"""Trakt's device flow ("link with a code") on ``AUTH_URL``, like :mod:`django_trakt.internal.api.oauth`.

1. :func:`request_device_code` asks Trakt for a ``device_code`` (ours, secret-ish: it
   is what we poll with) and a short ``user_code`` the person enters at
   ``verification_url`` on any device.
2. :func:`poll_device_token` asks, at most every ``interval`` seconds, whether they
   approved. Trakt answers with a status code: 200 with the tokens, 400 still
   pending, 404 unknown code, 409 code already used, 410 expired, 418 denied,
   429 polling too fast. Each becomes a :class:`DeviceStatus`; anything else is
   raised as the typed exception of :mod:`django_trakt.exceptions`.

Bodies are JSON and the client credentials travel in the body, as for ``/oauth/token``.
Nothing here logs or puts into an exception the device code or a token.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from django.views.decorators.debug import sensitive_variables

from django_trakt.conf import trakt_settings
from django_trakt.exceptions import TraktMalformedResponse, TraktRateLimited
from django_trakt.internal.api.http import decode_json, error_for_response, send
from django_trakt.internal.api.tokens import TokenAnswer, TokenGrant, grant_from_response
from django_trakt.internal.core.numbers import finite_number

#: What Trakt documents when a device code answer leaves them out.
DEFAULT_EXPIRES_IN = 600
DEFAULT_INTERVAL = 5.0


@dataclass(frozen=True, repr=False)
class DeviceAuthorization:
    """One answer of ``/oauth/device/code``. Its ``repr`` hides the device code."""

    device_code: str
    user_code: str
    verification_url: str
    expires_in: int
    interval: float

    @property
    def verification_link(self) -> str:
        """``verification_url`` with the code filled in: one tap instead of typing it."""
        return verification_link(self.verification_url, self.user_code)

    def __repr__(self) -> str:
        return (
            f"<DeviceAuthorization user_code={self.user_code!r} verification_url={self.verification_url!r} "
            f"expires_in={self.expires_in!r} interval={self.interval!r}>"
        )


class DeviceStatus(enum.StrEnum):
    APPROVED = "approved"  # 200: the tokens are in the answer
    PENDING = "pending"  # 400: the person has not answered yet
    INVALID = "invalid"  # 404: Trakt does not know the code
    USED = "used"  # 409: the code was already exchanged for tokens
    EXPIRED = "expired"  # 410: the code timed out
    DENIED = "denied"  # 418: the person said no
    SLOW_DOWN = "slow_down"  # 429: polled faster than the interval

    @property
    def is_final(self) -> bool:
        """Whether polling this code again can never give another answer."""
        return self not in (DeviceStatus.PENDING, DeviceStatus.SLOW_DOWN)


_STATUS_BY_CODE = {
    400: DeviceStatus.PENDING,
    404: DeviceStatus.INVALID,
    409: DeviceStatus.USED,
    410: DeviceStatus.EXPIRED,
    418: DeviceStatus.DENIED,
    429: DeviceStatus.SLOW_DOWN,
}


@dataclass(frozen=True)
class DevicePoll:
    """One answer of ``/oauth/device/token``: a status, and the grant once approved.

    ``answer`` is the approval as Trakt sent it, for allauth's ``parse_token`` (the device
    link completes through allauth like a redirect connect); ``grant`` is what it means.
    ``retry_after`` is Trakt's ``Retry-After`` on a 429, when it sent one.
    (:class:`~django_trakt.internal.api.tokens.TokenGrant` and :class:`~django_trakt.internal.api.tokens.TokenAnswer`
    hide their tokens in ``repr``.)
    """

    status: DeviceStatus
    grant: TokenGrant | None = None
    retry_after: float | None = None
    answer: TokenAnswer | None = None


def verification_link(verification_url: str, user_code: str) -> str:
    """Trakt's activation page with ``user_code`` filled in: ``{verification_url}/{user_code}``.

    As Trakt's own playground builds it (trakt/trakt-api,
    ``projects/playground/src/createDeviceTokenPoller.ts``; trakt/trakt-api#867). The code is
    what the person would type anyway, never the device code.
    """
    return f"{verification_url.rstrip('/')}/{quote(user_code, safe='')}"


def _positive_number(value: Any, default: float) -> float:
    number = finite_number(value)
    return number if number is not None and number >= 0 else default


@sensitive_variables()
def _device_authorization(document: Any) -> DeviceAuthorization:
    if not isinstance(document, dict):
        raise TraktMalformedResponse("Trakt's device code answer is not a JSON object")
    fields = {}
    for name in ("device_code", "user_code", "verification_url"):
        value = document.get(name)
        if not isinstance(value, str) or not value.strip():
            raise TraktMalformedResponse(f"Trakt's device code answer has no {name}")
        fields[name] = value.strip()
    if not fields["verification_url"].lower().startswith(("https://", "http://")):
        raise TraktMalformedResponse("Trakt's device code answer has a verification_url that is not a web address")
    return DeviceAuthorization(
        device_code=fields["device_code"],
        user_code=fields["user_code"],
        verification_url=fields["verification_url"],
        expires_in=int(_positive_number(document.get("expires_in"), DEFAULT_EXPIRES_IN)) or DEFAULT_EXPIRES_IN,
        interval=_positive_number(document.get("interval"), DEFAULT_INTERVAL),
    )


@sensitive_variables()
def request_device_code(*, client_id: str) -> DeviceAuthorization:
    """``POST {AUTH_URL}/oauth/device/code``: start linking by code."""
    response = send(
        "POST", f"{trakt_settings.AUTH_URL}/oauth/device/code", client_id=client_id, json={"client_id": client_id}
    )
    return _device_authorization(decode_json(response))


@sensitive_variables()
def poll_device_token(*, client_id: str, client_secret: str, device_code: str) -> DevicePoll:
    """``POST {AUTH_URL}/oauth/device/token``: has the person approved yet?

    Raises the typed :class:`~django_trakt.exceptions.TraktError` for a status the
    device flow does not define (401 bad client, 5xx, Cloudflare's 403) and for
    transport failures; :class:`TraktMalformedResponse` for an unusable 200.
    """
    response = send(
        "POST",
        f"{trakt_settings.AUTH_URL}/oauth/device/token",
        client_id=client_id,
        json={"code": device_code, "client_id": client_id, "client_secret": client_secret},
        raise_for_status=False,
    )
    if 200 <= response.status_code < 300:
        document = decode_json(response)
        grant = grant_from_response(document)
        return DevicePoll(DeviceStatus.APPROVED, grant=grant, answer=TokenAnswer(document))
    status = _STATUS_BY_CODE.get(response.status_code)
    if status is None:
        raise error_for_response(response)
    retry_after = None
    if status is DeviceStatus.SLOW_DOWN:
        error = error_for_response(response)
        retry_after = error.retry_after if isinstance(error, TraktRateLimited) else None
    return DevicePoll(status, retry_after=retry_after)
