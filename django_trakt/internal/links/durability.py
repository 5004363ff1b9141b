"""Where a refresh writes, so that no new pair Trakt issues is lost and no token is sent twice.

Trakt's refresh tokens are single-use: once Trakt has accepted one, a new pair that is not
stored is a user who must sign in with Trakt again, and sending the old token again may
make Trakt revoke the whole grant (RFC 9700 §4.14.2). Three rules, each on Django's
documented API only:

1. **A refresh writes in transactions of its own**, which commit when their block ends:
   :func:`own_transaction` is ``atomic(durable=True)``, which refuses to start inside a
   caller's ``atomic()`` block. :func:`in_callers_transaction` asks that question first, so
   a refresh asked for inside a caller's transaction runs on a connection of its own (or
   declines before anything is sent, see ``refresh.refresh_token``); nothing a caller later
   rolls back ever held a pair. Inside a ``TestCase`` the durable blocks are savepoints of
   the test's transaction, which is how Django lets tests run such code.
2. **A committed claim before the request leaves** (:func:`claim`): who is spending the
   link's refresh token, since when, until when. Whoever finds a standing claim does not
   send the token, whatever happened to the claimant's session or row lock; the row lock is
   held only while the claim is written, never while Trakt answers. A claim found past its
   ``until`` means its owner never stored an answer (killed, or the answer was lost): the
   link is checked with its access token instead (``refresh``), never by sending the token.
3. **Every retry after a database error runs on a new connection** (:func:`retrying`,
   :func:`reconnect_next_time`): a connection a failover or a ``pg_terminate_backend`` killed
   is closed, and Django opens a new one on next use.

The limit nothing can remove: the process dies, or Trakt's answer is lost on the wire, after
Trakt accepted a refresh. The claim then keeps the spent token from being sent again, and the
link is flagged (or kept until its access token expires) when it is checked.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

from django.db import DatabaseError, connections, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from django_trakt.internal.links import statements
from django_trakt.internal.links.locks import database_alias
from django_trakt.models import TraktToken

logger = logging.getLogger(__name__)

_Result = TypeVar("_Result")

#: PostgreSQL settings for the duration of a transaction of ours that may wait for another's
#: row lock (``SET LOCAL``), so a site's ``idle_in_transaction_session_timeout`` or
#: ``lock_timeout`` cannot cut it short nor leave it waiting forever. Our transactions never
#: wait for Trakt: they are milliseconds long. One that cannot wait (a batch's skip-locked
#: claim; a single-statement write) sets nothing: one statement less per token.
IDLE_IN_TRANSACTION_TIMEOUT = "60s"
LOCK_TIMEOUT = 10.0

#: How long a pair Trakt gave us is retried against a failing database before it is given up.
STORE_DEADLINE = 10.0

#: Beyond the request's own deadline, how long a claim stands: time to store the answer, and
#: for a request Trakt received just before its sender died to have been acted on.
CLAIM_SLACK = dt.timedelta(seconds=STORE_DEADLINE + 20)


def in_callers_transaction(alias: str | None = None) -> bool:
    """Whether a write on ``alias`` now would join a transaction the caller may roll back.

    True inside a caller's ``atomic()`` block (a durable block refuses to start there) and
    under manual transaction management (autocommit off outside any ``atomic()``). The
    blocks a ``TestCase`` wraps around a test do not count: Django lets durable blocks run
    inside them.
    """
    alias = alias or database_alias()
    if transaction.get_autocommit(using=alias):
        return False  # outside every atomic() block (asked before each refresh: no round trip)
    try:
        transaction.get_rollback(using=alias)
    except TransactionManagementError:
        return True  # autocommit off and no atomic block: the caller commits by hand
    try:
        with transaction.atomic(using=alias, durable=True):
            pass
    except RuntimeError:
        return True
    return False


@contextlib.contextmanager
def own_transaction(alias: str, *, lock_wait: float | None = None) -> Iterator[None]:
    """A transaction of the refresh's own, committed when the block ends (``durable=True``).

    ``lock_wait``: the transaction may wait for another's row lock; on PostgreSQL it gives up
    (a ``DatabaseError``) after that many seconds, whatever the site's ``lock_timeout``.
    """
    with transaction.atomic(using=alias, durable=True):
        connection = connections[alias]
        if lock_wait is not None and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                # set_config(..., true) is SET LOCAL: it ends with this transaction.
                cursor.execute(
                    "SELECT set_config('idle_in_transaction_session_timeout', %s, true),"
                    " set_config('lock_timeout', %s, true)",
                    [IDLE_IN_TRANSACTION_TIMEOUT, f"{max(1, round(lock_wait * 1000))}ms"],
                )
        yield


def committed_alone(alias: str, write: Callable[[], _Result]) -> _Result:
    """``write()``, one statement, committed on its own before this returns.

    In autocommit (outside any ``atomic()``) a single statement is its own transaction: no
    ``BEGIN``/``COMMIT`` round trips. Otherwise (a ``TestCase``'s transaction) in
    :func:`own_transaction`, which refuses to join a caller's ``atomic()`` block.
    """
    if transaction.get_autocommit(using=alias):
        return write()
    with own_transaction(alias):
        return write()


def reconnect_next_time(alias: str) -> None:
    """After a database error: close the connection, so the next query opens a new one.

    Django never reopens a connection that failed outside ``atomic()`` by itself; a retry on
    it fails the same way. Inside a transaction (a ``TestCase``'s) the connection is left
    alone: closing it would end the transaction.
    """
    try:
        outside_transactions = transaction.get_autocommit(using=alias)
    except DatabaseError:
        outside_transactions = True  # cannot even connect: nothing to keep
    if outside_transactions:
        with contextlib.suppress(DatabaseError):
            connections[alias].close()


def retrying(alias: str, work: Callable[[], _Result], *, deadline: float, what: str) -> _Result:
    """``work()`` (one write statement, :func:`committed_alone`), retried on a new connection until ``deadline``.

    ``deadline`` is a ``time.monotonic()`` value; the last error is raised after it.
    ``what`` names the work in the log.
    """
    attempt = 0
    while True:
        try:
            return committed_alone(alias, work)
        except DatabaseError as err:
            reconnect_next_time(alias)
            if time.monotonic() >= deadline:
                raise
            logger.warning("%s failed on the database (%s); retrying on a new connection", what, err)
            time.sleep(min(1.0, 0.05 * 2**attempt))
            attempt += 1


# -- the claim ---------------------------------------------------------------------------------


def claimant() -> str:
    """A name for this refresh, unique, and telling an operator which process made it."""
    return f"{socket.gethostname()[:80]} pid {os.getpid()} {threading.current_thread().name[:40]} {uuid.uuid4().hex}"


def claim(pk: int, owner: str, request_deadline: float) -> None:
    """Record that ``owner`` is about to send link ``pk``'s refresh token (inside the locked
    row's :func:`own_transaction`)."""
    TraktToken.objects.filter(pk=pk).update(**_claim_columns(owner, request_deadline, timezone.now()))


def _claim_columns(owner: str, request_deadline: float, now: dt.datetime) -> dict[str, object]:
    """A claim by ``owner`` from ``now``, standing for the request's deadline and :data:`CLAIM_SLACK`."""
    until = now + dt.timedelta(seconds=request_deadline) + CLAIM_SLACK
    return {"refresh_claimed_by": owner, "refresh_claimed_at": now, "refresh_claim_until": until}


def claim_if_unchanged(
    pk: int, owner: str, refresh_ciphertext: str, *, due_by: dt.datetime | None, request_deadline: float
) -> bool:
    """Claim link ``pk`` for ``owner`` in one statement, committed at once, if the row is as a
    caller read it: active, unclaimed, still holding ``refresh_ciphertext`` and (``due_by``)
    expiring by then; whether it was claimed.

    The common case of a refresh, without the locked transaction of :func:`claim`: the
    ``UPDATE`` takes the row lock itself (a row another transaction holds is passed over), and
    its conditions are tested again on the newest row once it has the lock, so two claimants
    never both succeed (``statements.update_row``). No row means the link is not as it was
    read (refreshed, flagged, claimed meanwhile): the caller looks at it under the lock.
    """
    alias = database_alias()
    now = timezone.now()
    columns = _claim_columns(owner, request_deadline, now)
    where = [
        ("status", "equals", TraktToken.Status.ACTIVE),
        ("refresh_token_encrypted", "equals", refresh_ciphertext),
        ("refresh_claimed_by", "equals", ""),
        ("refresh_claim_until", "null_or_at_most", now),
    ]
    if due_by is not None:
        where.append(("expires_at", "null_or_at_most", due_by))
    return committed_alone(alias, lambda: statements.update_row(alias, pk, columns, where, unless_locked=True) == 1)


#: The claim columns of a link nobody is refreshing.
NO_CLAIM = {"refresh_claimed_by": "", "refresh_claimed_at": None, "refresh_claim_until": None}


def claim_stands(token: TraktToken, now: dt.datetime | None = None) -> bool:
    """Whether someone may be spending ``token``'s refresh token right now."""
    until = token.refresh_claim_until
    return until is not None and until > (now or timezone.now())


def claim_lapsed(token: TraktToken, now: dt.datetime | None = None) -> bool:
    """Whether a refresh sent ``token``'s refresh token and never stored Trakt's answer."""
    return bool(token.refresh_claimed_by) and not claim_stands(token, now)


def release(alias: str, pk: int, owner: str, **columns: object) -> bool:
    """Clear ``owner``'s claim on link ``pk`` (and write ``columns``): nothing was spent, or
    the answer is stored. On a new connection after a database error, until the store deadline."""

    def write() -> bool:
        return TraktToken.objects.filter(pk=pk, refresh_claimed_by=owner).update(**NO_CLAIM, **columns) == 1

    try:
        return retrying(alias, write, deadline=time.monotonic() + STORE_DEADLINE, what=f"Releasing link {pk}")
    except DatabaseError as err:
        # The claim lapses on its own; the link is then checked, never sent twice.
        logger.error("Could not release the refresh claim of Trakt link %s (%s)", pk, err)
        return False
