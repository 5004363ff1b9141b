"""The one exception tree of django-trakt.

Everything the app raises about Trakt derives from :class:`TraktError`, so a site can
catch one class. No exception ever carries a token: API errors keep the status code
and a short excerpt of Trakt's answer, transport errors are chained ``from`` the
original ``requests`` exception, whose message names only the URL.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

#: How much of an error body an exception keeps: enough to tell an HTML page from
#: a JSON error, never a whole page in a log line.
EXCERPT_LENGTH = 200


class TraktError(Exception):
    """Base class of every error raised by django-trakt."""


class TraktConfigurationError(TraktError, ImproperlyConfigured):
    """The site's settings cannot work (a malformed key, no Trakt app configured)."""


class TraktSiteMisconfigured(TraktConfigurationError):
    """Trakt refused the site's own configuration, not the user's token.

    A wrong or rotated client secret (``invalid_client``), a redirect URI Trakt does not
    accept, a disabled or deleted Trakt app (``403``), no sites framework to build the
    redirect URI outside a request, a ``Site`` still on the placeholder ``example.com``.
    No link is flagged for it: once the setting named in ``setting`` is fixed, every
    link refreshes again.
    """

    #: What every report of it adds (command, admin): nobody has to sign in again for it.
    NO_LINK_FLAGGED = "No link was flagged; after the fix every link refreshes."

    def __init__(self, message: str, *, setting: str) -> None:
        self.setting = setting
        super().__init__(message)


class TokenDecryptionError(TraktError):
    """A stored token could not be decrypted with the configured keys.

    ``reason`` tells the two cases apart, because what fixes them differs:

    - :attr:`WRONG_KEY`: an intact stored token that no configured key opens. The link is
      flagged unreadable and heals by itself once the key that encrypted it is back in
      ``TRAKT_TOKEN_KEYS``.
    - :attr:`CORRUPTED`: the stored ciphertext is damaged. The link is flagged
      corrupted; no key brings it back, the user must sign in with Trakt again.

    The message gives that advice; it never holds a token or a key.
    """

    WRONG_KEY = "wrong_key"
    CORRUPTED = "corrupted"

    def __init__(self, message: str, *, reason: str = WRONG_KEY) -> None:
        self.reason = reason
        super().__init__(message)

    @property
    def corrupted(self) -> bool:
        return self.reason == self.CORRUPTED


class TraktTransportError(TraktError):
    """Trakt could not be reached (connection refused, DNS, TLS)."""


class TraktTimeout(TraktTransportError):
    """Trakt did not answer within the configured timeout."""


class TraktMalformedResponse(TraktError):
    """Trakt answered 2xx, but not with the JSON document the endpoint promises."""


class TraktAPIError(TraktError):
    """Trakt answered with an HTTP error status."""

    def __init__(self, status_code: int, excerpt: str = "", message: str = "") -> None:
        self.status_code = status_code
        self.excerpt = excerpt[:EXCERPT_LENGTH]
        detail = message or f"Trakt answered HTTP {status_code}"
        if self.excerpt:
            detail = f"{detail}: {self.excerpt}"
        super().__init__(detail)


class TraktInvalidGrant(TraktAPIError):
    """The token endpoint rejected a code or refresh token (``invalid_grant``).

    For a refresh this means the user must sign in with Trakt again; it is not a
    transient fault and must not be retried.
    """


class TraktUnauthorized(TraktAPIError):
    """401: the access token is missing, expired or revoked."""


class TraktForbidden(TraktAPIError):
    """403: bad API key, app not approved, or a Cloudflare block page."""


class TraktNotFound(TraktAPIError):
    """404: no such object (or a private user)."""


class TraktAccountLimit(TraktAPIError):
    """420: the user's account limit is exceeded (Trakt's list or item limits)."""


class TraktAccountLocked(TraktAPIError):
    """423: the user's account is locked or deactivated."""


class TraktVIPOnly(TraktAPIError):
    """426: the endpoint needs a VIP account."""


class TraktRateLimited(TraktAPIError):
    """429: too many requests; ``retry_after`` says how many seconds to wait."""

    def __init__(
        self, status_code: int, excerpt: str = "", message: str = "", retry_after: float | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(status_code, excerpt, message)


class TraktServerError(TraktAPIError):
    """5xx (and Cloudflare's 52x): Trakt is down or overloaded; try again later."""


class ImageRefused(TraktError):
    """An image was not fetched: a refused URL or address, an HTTP error, too big, not an image.

    Never shown to a visitor: the image views serve the default image instead.
    """


class TraktRefreshFailed(TraktError):
    """The token had expired and refreshing it failed for a transient reason
    (Trakt down, slow or rate-limiting); the stored token is unchanged: try later."""


class TraktNotLinked(TraktError):
    """The user has no Trakt account linked to this site."""


class TraktReauthorizationRequired(TraktError):
    """The user's Trakt link can no longer be used until they sign in with Trakt again."""


__all__ = [
    "ImageRefused",
    "TokenDecryptionError",
    "TraktAPIError",
    "TraktAccountLimit",
    "TraktAccountLocked",
    "TraktConfigurationError",
    "TraktError",
    "TraktForbidden",
    "TraktInvalidGrant",
    "TraktMalformedResponse",
    "TraktNotFound",
    "TraktNotLinked",
    "TraktRateLimited",
    "TraktReauthorizationRequired",
    "TraktRefreshFailed",
    "TraktServerError",
    "TraktSiteMisconfigured",
    "TraktTimeout",
    "TraktTransportError",
    "TraktUnauthorized",
    "TraktVIPOnly",
]
