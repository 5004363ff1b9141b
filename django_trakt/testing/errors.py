"""Exceptions the emulator's rules raise, turned into HTTP answers by ``app.py``.

Rules raise instead of building responses so the same rule serves both the HTTP
endpoints and the programmatic helpers (``TraktEmulator.authorize`` and friends).
"""

from __future__ import annotations

from typing import Any


class OAuthError(Exception):
    """An OAuth endpoint's refusal: an HTTP status and Trakt's JSON error body.

    ``error=None`` means an empty body, which is how the device-token endpoint
    answers (its status code alone carries the meaning).
    """

    def __init__(self, status: int, error: str | None = None, description: str = "") -> None:
        super().__init__(f"{status} {error or ''} {description}".strip())
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> dict[str, Any] | None:
        """The JSON error document, or ``None`` for an empty body."""
        if self.error is None:
            return None
        return {"error": self.error, "error_description": self.description}


class AuthorizationRejected(ValueError):
    """An authorize request the emulator refuses to show or redirect for.

    A ``ValueError`` so tests can catch it without importing emulator internals.
    """


class AuthorizationRedirectError(AuthorizationRejected):
    """An authorize request refused *on the redirect*: the client and redirect URI are good.

    OAuth (RFC 6749 4.1.2.1) sends such errors back to the client's redirect URI as
    ``?error=...&error_description=...&state=...`` instead of showing a page; Trakt does this
    for PKCE problems ("pkce is required when requesting offline_access scope",
    trakt/trakt-api#887). ``location`` is that callback URL.
    """

    def __init__(self, location: str, error: str, description: str) -> None:
        super().__init__(description)
        self.location = location
        self.error = error
        self.description = description


class EmulatedTimeout(Exception):
    """Raised inside the WSGI app, in-process only, to stand for a request timeout.

    The ``responses`` binding turns it into ``requests.exceptions.ReadTimeout``.
    """
