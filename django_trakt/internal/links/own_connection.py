"""A refresh asked for inside a caller's transaction runs on a database connection of its own.

Its commits are then final: the caller's transaction never holds the claim nor the new
pair, so a rollback cannot lose them (:mod:`django_trakt.internal.links.durability`). Where
that is impossible the refresh is declined before anything is sent to Trakt.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from django.db import connections

from django_trakt.conf import trakt_settings
from django_trakt.exceptions import TraktError
from django_trakt.internal.links import durability
from django_trakt.internal.links.locks import database_alias, has_row_locks
from django_trakt.internal.links.outcomes import Outcome, RefreshResult
from django_trakt.models import TraktToken

logger = logging.getLogger(__name__)

#: Why a refresh asked for inside a caller's transaction sent nothing.
DECLINED_SQLITE = "not refreshed inside a transaction on SQLite (nothing was sent to Trakt)"
DECLINED_UNCOMMITTED = (
    "not refreshed: the link is uncommitted or locked in the caller's transaction (nothing was sent to Trakt)"
)


def on_own_connection(pk: int, work: Callable[[], RefreshResult], *, wait: float | None) -> RefreshResult | None:
    """Run ``work`` (a refresh of link ``pk``) on a thread with a database connection of its own.

    Waits at most ``wait`` seconds (None: until it is done); None when it is still running,
    which it goes on doing (not a daemon: an exiting process lets it store its pair).
    A :class:`TraktError` it raises is raised here.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except TraktError as err:  # handed to the caller's thread below
            outcome["error"] = err
        except Exception:
            logger.exception("Refreshing Trakt link %s failed unexpectedly", pk)
        finally:
            connections[database_alias()].close()

    thread = threading.Thread(target=run, name=f"trakt-refresh-{pk}")
    thread.start()
    thread.join(wait)
    if thread.is_alive():
        return None
    if "error" in outcome:
        raise outcome["error"]
    if "result" not in outcome:
        return RefreshResult(Outcome.FAILED, None, "the refresh failed unexpectedly (see the logs)")
    result: RefreshResult = outcome["result"]
    return result


def outside_callers_transaction(pk: int, attempt: Callable[..., RefreshResult]) -> RefreshResult:
    """Inside a caller's transaction: refresh on a connection of its own, whose commits are final.

    ``attempt`` is the refresh of link ``pk``, taking ``lock_wait``. Declined (nothing sent,
    the link as it was) where a connection of its own cannot help: on SQLite (the caller's
    transaction may hold the one writer lock), and for a link the other connection cannot see
    or lock (created or locked in the caller's uncommitted transaction, a ``TestCase``'s
    included): such a link lives and dies with the caller's transaction.
    """
    if not has_row_locks():
        return RefreshResult(Outcome.FAILED, None, DECLINED_SQLITE)
    # Bounded, so a caller can never hang on it: the lock wait, Trakt's answer and the save.
    result = on_own_connection(
        pk,
        functools.partial(attempt, lock_wait=trakt_settings.TIMEOUT + 5),
        wait=2 * trakt_settings.TIMEOUT + durability.STORE_DEADLINE + 15,
    )
    if result is None:
        return RefreshResult(Outcome.FAILED, None, "the refresh is taking too long; it goes on and stores its pair")
    unseen = result.token is None and result.outcome in (Outcome.NOT_DUE, Outcome.FAILED)
    if unseen and TraktToken.objects.filter(pk=pk).exists():
        return RefreshResult(Outcome.FAILED, None, DECLINED_UNCOMMITTED)
    return result
