"""``TraktClient``: Trakt's API for the app (public data) or for one user.

``TraktClient.for_user(user)`` always uses a valid access token: it refreshes first
when the token is about to expire, and on a 401 it refreshes once and retries once
(another process may have refreshed meanwhile: then its new token is used, no second
refresh is spent). Errors are the typed exceptions of :mod:`django_trakt.exceptions`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

from django_trakt.conf import get_trakt_app, trakt_settings
from django_trakt.exceptions import (
    TokenDecryptionError,
    TraktMalformedResponse,
    TraktNotLinked,
    TraktRateLimited,
    TraktReauthorizationRequired,
    TraktRefreshFailed,
    TraktUnauthorized,
)
from django_trakt.http import decode_json, get_user_settings, send, trakt_headers  # re-exported
from django_trakt.models import TraktToken
from django_trakt.refresh import ON_DEMAND_MARGIN, Outcome, is_due, refresh_token

logger = logging.getLogger(__name__)

#: A 429 asking for at most this many seconds is waited out once; anything longer is
#: raised at once (never a long sleep inside a page render).
SHORT_RETRY_AFTER = 2.0

#: Items per page when iterating over a paginated list.
PAGE_SIZE = 100


class TraktClient:
    """Calls to Trakt's API, with the app's key and, for a user, their token."""

    def __init__(
        self,
        *,
        token: TraktToken | None = None,
        app: Any = None,
        timeout: float | None = None,
        max_retry_wait: float = SHORT_RETRY_AFTER,
    ) -> None:
        self._app = app
        self.token = token
        #: Seconds per request (None: the TIMEOUT setting); page renders pass less.
        self.timeout = timeout
        #: The longest ``Retry-After`` waited out once; a longer one is raised at once.
        self.max_retry_wait = max_retry_wait

    @classmethod
    def for_user(cls, user: Any, **options: Any) -> TraktClient:
        """A client acting as ``user``; :class:`TraktNotLinked` or
        :class:`TraktReauthorizationRequired` when that cannot work."""
        if user is None or not getattr(user, "is_authenticated", False):
            raise TraktNotLinked("An anonymous user has no Trakt link.")
        token = (
            TraktToken.objects.select_related("account")
            .filter(account__user_id=user.pk, account__provider="trakt")
            .order_by("pk")
            .first()
        )
        if token is None:
            raise TraktNotLinked(f"User {user.pk} has no Trakt account linked.")
        cls._raise_if_flagged(token)
        return cls(token=token, **options)

    @staticmethod
    def _raise_if_flagged(token: TraktToken) -> None:
        if token.status in (TraktToken.Status.NEEDS_REAUTH, TraktToken.Status.REVOKED):
            raise TraktReauthorizationRequired("The user must sign in with Trakt again.")
        if token.status == TraktToken.Status.UNREADABLE:
            try:
                # Reading it again is the test: once the right key is back, this
                # succeeds and clears the flag (TraktToken._decrypt), and the link works.
                token.access_token  # noqa: B018
            except TokenDecryptionError as err:
                raise TraktReauthorizationRequired(
                    "The stored Trakt token cannot be decrypted (TRAKT_TOKEN_KEYS)."
                ) from err

    @property
    def app(self) -> Any:
        if self._app is None:
            self._app = get_trakt_app()
        return self._app

    # -- tokens ---------------------------------------------------------------------

    def _reload_after(self, outcome: Outcome) -> None:
        if self.token is None:
            return
        self.token.refresh_from_db()
        if outcome is Outcome.NEEDS_REAUTH:
            raise TraktReauthorizationRequired("Trakt rejected the refresh token; the user must sign in again.")
        self._raise_if_flagged(self.token)

    def _access_token(self) -> str | None:
        if self.token is None:
            return None
        if is_due(self.token, ON_DEMAND_MARGIN):
            result = refresh_token(self.token, within=ON_DEMAND_MARGIN, app=self.app, timeout=self.timeout)
            self._reload_after(result.outcome)
            if result.outcome is Outcome.FAILED and self.token.is_expired:
                # About to expire is still usable; already expired is not.
                raise TraktRefreshFailed(f"Refreshing the expired Trakt token failed: {result.detail}")
        try:
            return self.token.access_token
        except TokenDecryptionError as err:
            raise TraktReauthorizationRequired("The stored Trakt token cannot be decrypted.") from err

    # -- requests -------------------------------------------------------------------

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None) -> Any:
        """Send a request to ``{API_URL}{path}``; the response object on success."""
        url = f"{trakt_settings.API_URL}/{path.lstrip('/')}"
        access_token = self._access_token()
        try:
            return self._send_once_more_if_short_wait(method, url, access_token, params, json)
        except TraktUnauthorized:
            if self.token is None or access_token is None:
                raise
            # Trakt rejected a token we thought valid (revoked? refreshed elsewhere?):
            # refresh once, unless someone already did, and retry once.
            result = refresh_token(
                self.token, unless_access_token_changed_from=access_token, app=self.app, timeout=self.timeout
            )
            self._reload_after(result.outcome)
            if result.outcome is Outcome.FAILED:
                raise TraktRefreshFailed(f"Refreshing the rejected Trakt token failed: {result.detail}") from None
            return self._send_once_more_if_short_wait(method, url, self.token.access_token, params, json)

    def _send_once_more_if_short_wait(
        self, method: str, url: str, access_token: str | None, params: Any, json: Any
    ) -> Any:
        def attempt() -> Any:
            return send(
                method,
                url,
                client_id=self.app.client_id,
                access_token=access_token,
                params=params,
                json=json,
                timeout=self.timeout,
            )

        try:
            return attempt()
        except TraktRateLimited as err:
            if err.retry_after is None or err.retry_after > self.max_retry_wait:
                raise
            time.sleep(err.retry_after)
            return attempt()

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """``GET {API_URL}{path}`` and return the decoded JSON."""
        return decode_json(self.request("GET", path, params=params))

    def iter_pages(
        self, path: str, params: Mapping[str, Any] | None = None, *, limit: int = PAGE_SIZE
    ) -> Iterator[Any]:
        """Every item of a paginated list, fetching page after page as needed."""
        page = 1
        while True:
            response = self.request("GET", path, params={**(params or {}), "page": page, "limit": limit})
            items = decode_json(response)
            if not isinstance(items, list):
                raise TraktMalformedResponse(f"Trakt's {path} answer is not a list")
            yield from items
            try:
                page_count = int(response.headers.get("X-Pagination-Page-Count", page))
            except ValueError:
                page_count = page
            if page >= page_count or not items:
                return
            page += 1


__all__ = ["TraktClient", "decode_json", "get_user_settings", "send", "trakt_headers"]
