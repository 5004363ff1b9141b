"""Token grants from Trakt's token endpoint: parsing and the value object.

A :class:`TokenGrant` is what one answer of ``/oauth/token`` (code, refresh or device
grant) means for us. Its ``repr`` hides the tokens, so a grant can be logged or end
up in a traceback's locals without leaking. A :class:`TokenAnswer` is the same answer
as the dict allauth's OAuth2 contract passes around, with the same care in ``repr``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from django_trakt.exceptions import TraktMalformedResponse
from django_trakt.internal.core.numbers import finite_number


@dataclass(frozen=True, repr=False)
class TokenGrant:
    access_token: str
    refresh_token: str
    token_type: str
    scope: str
    expires_at: dt.datetime | None

    def __repr__(self) -> str:
        return f"<TokenGrant type={self.token_type!r} scope={self.scope!r} expires_at={self.expires_at!r}>"


#: What Trakt answers in every grant today. allauth's ``SocialToken`` has no field for
#: them, so a link stored from allauth's sign-in (whose pending signup keeps only model
#: fields) records these; the next refresh records whatever Trakt answers then.
TRAKT_TOKEN_TYPE = "bearer"  # noqa: S105 - the token type's name, not a secret
TRAKT_SCOPE = "public"


class TokenAnswer(dict[str, Any]):
    """Trakt's token answer as allauth's OAuth2 contract has it: a plain ``dict``.

    allauth's ``OAuth2Client.get_access_token`` returns the endpoint's JSON document and
    ``OAuth2Adapter.parse_token`` reads it (``views.py``). In between, allauth's callback
    view holds it in a local variable, which the ``DEBUG`` page and the error reports sent
    to admins print with ``repr``: that ``repr`` names the keys, never the tokens.
    """

    def __repr__(self) -> str:
        return f"<TokenAnswer keys={sorted(self)!r}>"

    __str__ = __repr__


def _expiry(data: Mapping[str, Any]) -> dt.datetime | None:
    """``created_at + expires_in``: Trakt's lifetime has changed twice, never assume it.

    A response without them (or with nonsense) means "unknown expiry", not an error.
    Without ``created_at`` the lifetime counts from now.
    """
    lifetime = finite_number(data.get("expires_in"))
    if lifetime is None:
        return None
    created_at = data.get("created_at")
    try:
        issued = (
            dt.datetime.fromtimestamp(float(created_at), tz=dt.UTC)
            if created_at is not None and not isinstance(created_at, bool)
            else timezone.now()
        )
    except (ValueError, TypeError, OverflowError, OSError):
        issued = timezone.now()
    try:
        return issued + dt.timedelta(seconds=lifetime)
    except OverflowError:
        return None


@sensitive_variables()
def grant_from_response(data: Any) -> TokenGrant:
    """Validate a token endpoint answer; :class:`TraktMalformedResponse` if unusable."""
    if not isinstance(data, Mapping):
        raise TraktMalformedResponse("Trakt's token answer is not a JSON object")
    access_token = data.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise TraktMalformedResponse("Trakt's token answer has no access_token")
    refresh_token = data.get("refresh_token") or ""
    if not isinstance(refresh_token, str):
        raise TraktMalformedResponse("Trakt's token answer has a malformed refresh_token")
    token_type = str(data.get("token_type") or TRAKT_TOKEN_TYPE).lower()
    scope = data.get("scope") or ""
    if isinstance(scope, list):
        scope = " ".join(str(part) for part in scope)
    return TokenGrant(
        access_token=access_token,
        refresh_token=refresh_token,
        token_type=token_type,
        scope=str(scope)[:255],
        expires_at=_expiry(data),
    )
