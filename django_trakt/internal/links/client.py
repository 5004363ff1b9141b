"""``TraktClient``: Trakt's API for the app (public data) or for one user.

``TraktClient.for_user(user)`` always uses a valid access token: it refreshes first
when the token is about to expire, and on a 401 it refreshes once and retries once
(another process may have refreshed meanwhile: then its new token is used, no second
refresh is spent). Errors are the typed exceptions of :mod:`django_trakt.exceptions`.

A refresh always gets the full ``TIMEOUT``, never a page's shorter budget: a refresh
cut short may already have rotated the token at Trakt, and its answer would be lost.
A client with a ``refresh_wait`` (the template tags pass ``TRAKT_PAGE_TIMEOUT``) keeps
the refresh off its own budget instead: it uses an access token that still works rather
than refresh, and when the token has expired it waits at most ``refresh_wait`` seconds
for a refresh running on a thread of its own, which goes on to store the pair if the
page stops waiting.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from django.db import connections, transaction
from django.views.decorators.debug import sensitive_variables

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
from django_trakt.internal.api.http import decode_json, header, send
from django_trakt.internal.core import clock
from django_trakt.internal.links.locks import database_alias
from django_trakt.internal.links.outcomes import Outcome, RefreshResult, is_due
from django_trakt.internal.links.own_connection import on_own_connection
from django_trakt.internal.links.profile import trakt_accounts_of
from django_trakt.internal.links.refresh import ON_DEMAND_MARGIN, refresh_token
from django_trakt.models import TraktToken

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
        refresh_wait: float | None = None,
    ) -> None:
        self._app = app
        self.token = token
        #: Seconds per API request (None: the TIMEOUT setting); page renders pass less.
        #: Refreshes always get the full TIMEOUT.
        self.timeout = timeout
        #: The longest ``Retry-After`` waited out once; a longer one is raised at once.
        self.max_retry_wait = max_retry_wait
        #: Seconds a caller on a budget (a page) waits for a refresh; None: as long as it takes.
        self.refresh_wait = refresh_wait

    @classmethod
    def for_user(cls, user: Any, **options: Any) -> TraktClient:
        """A client acting as ``user``; :class:`TraktNotLinked` or
        :class:`TraktReauthorizationRequired` when that cannot work."""
        if user is None or not getattr(user, "is_authenticated", False):
            raise TraktNotLinked("An anonymous user has no Trakt link.")
        # The token of the user's Trakt account (profile.trakt_account_of), in one query.
        token = (
            TraktToken.objects.select_related("account")
            .filter(account=trakt_accounts_of(user).values("pk")[:1])
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
        if token.status in TraktToken.DECRYPTION_FLAGS:
            try:
                # Reading it again is the test: once the right key is back, this succeeds
                # and the model clears the flag (both columns must decrypt for that). An
                # access token that reads is usable even while the row stays flagged.
                token.access_token  # noqa: B018
            except TokenDecryptionError as err:
                raise TraktReauthorizationRequired(str(err)) from err

    @property
    def app(self) -> Any:
        if self._app is None:
            self._app = get_trakt_app()
        return self._app

    # -- tokens ---------------------------------------------------------------------

    def _refresh(self, token: TraktToken, **options: Any) -> RefreshResult:
        if self.refresh_wait is None or not _can_refresh_on_own_thread():
            result = refresh_token(token, app=self.app, **options)
        else:
            result = self._refresh_on_own_thread(token.pk, options)
        token.refresh_from_db()
        if result.outcome is Outcome.NEEDS_REAUTH:
            raise TraktReauthorizationRequired("Trakt rejected the refresh token; the user must sign in again.")
        self._raise_if_flagged(token)
        return result

    def _refresh_on_own_thread(self, pk: int, options: dict[str, Any]) -> RefreshResult:
        """Refresh on a thread (and connection) of its own; wait at most ``refresh_wait``."""
        result = on_own_connection(
            pk, functools.partial(refresh_token, pk, app=self.app, **options), wait=self.refresh_wait
        )
        if result is None:
            raise TraktRefreshFailed("Trakt is slow to refresh the token; the refresh goes on in the background.")
        return result

    @sensitive_variables()
    def _access_token(self) -> str | None:
        if self.token is None:
            return None
        if is_due(self.token, ON_DEMAND_MARGIN):
            if self.refresh_wait is not None and not self.token.is_expired:
                # On a budget, a token that still works beats a refresh: the scheduled
                # refresh (or the next caller without a budget) renews it.
                pass
            else:
                result = self._refresh(self.token, within=ON_DEMAND_MARGIN)
                if result.outcome is Outcome.FAILED and self.token.is_expired:
                    # About to expire is still usable; already expired is not.
                    raise TraktRefreshFailed(f"Refreshing the expired Trakt token failed: {result.detail}")
        try:
            return self.token.access_token
        except TokenDecryptionError as err:
            raise TraktReauthorizationRequired("The stored Trakt token cannot be decrypted.") from err

    # -- requests -------------------------------------------------------------------

    @sensitive_variables()
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
            result = self._refresh(self.token, unless_access_token_changed_from=access_token)
            if result.outcome is Outcome.FAILED:
                raise TraktRefreshFailed(f"Refreshing the rejected Trakt token failed: {result.detail}") from None
            return self._send_once_more_if_short_wait(method, url, self.token.access_token, params, json)

    @sensitive_variables()
    def _send_once_more_if_short_wait(
        self, method: str, url: str, access_token: str | None, params: Any, json: Any
    ) -> Any:
        @sensitive_variables()
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
            clock.sleep(err.retry_after)
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
                page_count = int(header(response, "X-Pagination-Page-Count") or page)
            except ValueError:
                page_count = page
            if page >= page_count or not items:
                return
            page += 1


def _can_refresh_on_own_thread() -> bool:
    """Whether another connection would see and lock the row the caller sees.

    Not inside a transaction (its rows may be uncommitted, a ``TestCase`` included), and
    not on an in-memory SQLite database, whose connections share tables under table locks.
    """
    alias = database_alias()
    # Inside atomic() Django turns autocommit off: the documented way to ask.
    if not transaction.get_autocommit(using=alias):
        return False
    connection = connections[alias]
    in_memory = getattr(connection, "is_in_memory_db", None)
    return not (in_memory is not None and in_memory())


__all__ = ["TraktClient"]
