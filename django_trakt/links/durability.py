"""Storing the pair a refresh obtained, so that nothing around the refresh can undo it.

Trakt's refresh tokens are single-use: once Trakt has answered a refresh, the old refresh
token is dead, and a new pair that is not stored is a user who must sign in with Trakt
again. The guarantee kept here: **from the moment a refresh request leaves for Trakt until
its new pair is committed, nothing the caller does can undo it.**

- The pair is written in a savepoint, and a transient database error is retried with the
  pair still in memory (:func:`store_refreshed`).
- A :class:`PairGuard` watches the transaction that holds the write. When it commits, the
  guard is done. When it is rolled back instead (a view under ``ATOMIC_REQUESTS`` raised
  after the refresh, a caller's ``atomic()`` block failed, the refresh's own commit hit
  "database is locked"), the guard writes the pair again at once: into the transaction
  that goes on when only a savepoint was rolled back, else on a rescue thread with its own
  connection, in autocommit. The write is conditional on the row still holding the spent
  refresh token, so it never overwrites a newer sign-in.
- Django offers no rollback hook. The guard hangs on the connection's ``on_commit`` list:
  Django drops the entries of a rolled-back savepoint or transaction from that list, and
  the dropped entry's finalizer (CPython frees it at once) is what tells the guard.

The one limit nothing can remove: the process dies, or Trakt's answer is lost on the wire
(a read timeout), after Trakt accepted the refresh. Then the pair never reached us.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any

from django.db import DatabaseError, connections, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from django_trakt.api.tokens import TokenGrant
from django_trakt.links.locks import database_alias
from django_trakt.models import TraktToken

logger = logging.getLogger(__name__)

#: Attempts at writing a pair inside the refresh's transaction (a savepoint each).
SAVE_ATTEMPTS = 4
#: Attempts of the rescue thread, with backoff doubling from RESCUE_BACKOFF up to 2 s:
#: about 15 seconds in all, enough for a busy SQLite writer lock to come free.
RESCUE_ATTEMPTS = 10
RESCUE_BACKOFF = 0.1
#: Seconds a refresh waits for the rescue thread of the same link to finish its write.
RESCUE_WAIT = 5.0

_pending_lock = threading.Lock()


def in_callers_transaction(alias: str | None = None) -> bool:
    """Whether work on ``alias`` now would be part of a transaction the caller controls.

    The atomic blocks Django's ``TestCase`` opens around a test do not count: they are
    the test's world (Django's ``durable=True`` draws the same line).
    """
    connection = connections[alias or database_alias()]
    if not connection.in_atomic_block:
        return not connection.get_autocommit()
    return any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)


@sensitive_variables()
def pair_columns(grant: TokenGrant, previous_refresh_ciphertext: str) -> dict[str, Any]:
    """The column values that store ``grant`` (encrypted) as an active link."""
    holder = TraktToken(refresh_token_encrypted=previous_refresh_ciphertext)
    holder.apply_grant(grant)
    now = timezone.now()
    return {
        "access_token_encrypted": holder.access_token_encrypted,
        "refresh_token_encrypted": holder.refresh_token_encrypted,
        "token_type": holder.token_type,
        "scope": holder.scope,
        "expires_at": holder.expires_at,
        "status": TraktToken.Status.ACTIVE,
        "last_error": "",
        "last_refreshed_at": now,
        "updated_at": now,
    }


class PairGuard:
    """Keeps one refreshed pair until the transaction holding it has committed."""

    def __init__(self, pk: int, previous_refresh_ciphertext: str, columns: dict[str, Any], alias: str) -> None:
        self.pk = pk
        self.previous = previous_refresh_ciphertext
        self.columns = columns
        self.alias = alias
        self.settled = False
        connection = connections[alias]
        blocks = connection.atomic_blocks
        # A rollback of the outermost block of a TestCase is the end of a test, not a caller's
        # change of mind: nothing to rescue then.
        self._in_test_transaction = bool(blocks) and bool(getattr(blocks[0], "_from_testcase", False))
        sentinel = _CommitSentinel(self)
        finalizer = weakref.finalize(sentinel, self._dropped)
        finalizer.atexit = False
        try:
            connection.on_commit(sentinel)
        except TransactionManagementError:
            # Manual transaction management (autocommit off, no atomic block) has no commit
            # hooks: the pair is written in the caller's transaction, unguarded.
            self.settled = True

    def settle(self) -> None:
        """The pair is as committed as it will get (its transaction committed)."""
        self.settled = True

    def _dropped(self) -> None:
        if self.settled:
            return
        self.settled = True
        try:
            self._rescue()
        except Exception:
            logger.exception("Storing the refreshed Trakt token of link %s again failed", self.pk)

    def _rescue(self) -> None:
        connection = connections[self.alias]
        if connection.in_atomic_block:
            # Only a savepoint was rolled back: write the pair into the transaction that goes on.
            try:
                written = _write_with_retries(self, attempts=2)
            except DatabaseError:
                written = False
                if not self._in_test_transaction:
                    _start_rescue_thread(self)
            if written and in_callers_transaction(self.alias):
                PairGuard(self.pk, self.previous, self.columns, self.alias)
            return
        if self._in_test_transaction:
            return
        logger.warning("The transaction holding the refreshed Trakt token of link %s was rolled back", self.pk)
        if not self._write_after_rollback(connection):
            _start_rescue_thread(self)

    def _write_after_rollback(self, connection: Any) -> bool:
        """Write and commit the pair on the same connection, right after its rollback.

        Django calls this mid-``rollback()``: the transaction is over but autocommit is not
        back on yet, so the write opens a transaction of its own, committed here at once.
        Nothing else can have read the row in between on this connection, and on SQLite the
        writer lock is taken again before other connections' busy handlers wake up.
        """
        try:
            written = write_pair(self)
            if not connection.get_autocommit():
                connection.commit()
        except DatabaseError as err:
            logger.warning("Storing the refreshed Trakt token of link %s failed (%s); retrying", self.pk, err)
            try:
                connection.rollback()
            except DatabaseError:
                connection.close()
            return False
        if written:
            logger.info("Stored the refreshed Trakt token of link %s after the rollback", self.pk)
        else:
            logger.warning("Trakt link %s was removed or signed in again before its pair was stored", self.pk)
        return True


class _CommitSentinel:
    """The callable a guard leaves on the connection's ``on_commit`` list."""

    __slots__ = ("__weakref__", "guard")

    def __init__(self, guard: PairGuard) -> None:
        self.guard = guard

    def __call__(self) -> None:
        self.guard.settle()


def write_pair(guard: PairGuard) -> bool:
    """Write the guarded pair; False when the row is gone or holds another grant by now."""
    rows = TraktToken.objects.using(guard.alias).filter(pk=guard.pk, refresh_token_encrypted=guard.previous)
    return rows.update(**guard.columns) == 1


def _write_with_retries(guard: PairGuard, *, attempts: int = SAVE_ATTEMPTS) -> bool:
    for attempt in range(attempts):
        try:
            with transaction.atomic(using=guard.alias):
                return write_pair(guard)
        except DatabaseError as err:
            if attempt == attempts - 1:
                raise
            logger.warning("Storing the refreshed Trakt token of link %s failed (%s); retrying", guard.pk, err)
            time.sleep(0.05 * 2**attempt)
    return False  # pragma: no cover - the loop returns or raises


def guard_refreshed(token: TraktToken, previous_refresh_ciphertext: str, grant: TokenGrant) -> PairGuard:
    """Take charge of ``grant``, the pair Trakt just gave for ``token``: call it first thing."""
    columns = pair_columns(grant, previous_refresh_ciphertext)
    return PairGuard(token.pk, previous_refresh_ciphertext, columns, database_alias())


def store_refreshed(token: TraktToken, guard: PairGuard) -> None:
    """Write the guarded pair over the locked ``token`` inside the refresh's transaction.

    ``token`` (in memory) takes the new values too. A database error that outlasts the
    retries is raised; the guard stores the pair once the failed transaction is rolled back.
    """
    if not _write_with_retries(guard):
        logger.warning("Trakt link %s was removed while it was being refreshed", token.pk)
    for name, value in guard.columns.items():
        setattr(token, name, value)


class _Rescue:
    """A pair waiting to be stored after a rollback: by its thread, or by whoever needs it first."""

    def __init__(self, guard: PairGuard) -> None:
        self.guard = guard
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._writing = False

    def attempt(self) -> bool | None:
        """Write the pair on the calling thread's connection: True when stored (or moot),
        False when the write failed, None when another thread is writing or has written."""
        with self._lock:
            if self._writing or self.done.is_set():
                return None
            self._writing = True
        try:
            with transaction.atomic(using=self.guard.alias):
                written = write_pair(self.guard)
        except DatabaseError as err:
            logger.warning("Storing the refreshed Trakt token of link %s failed (%s); retrying", self.guard.pk, err)
            with self._lock:
                self._writing = False
            return False
        if written:
            logger.info("Stored the refreshed Trakt token of link %s after the rollback", self.guard.pk)
            if in_callers_transaction(self.guard.alias):
                # Written into a caller's transaction this time: guard it again.
                PairGuard(self.guard.pk, self.guard.previous, self.guard.columns, self.guard.alias)
        else:
            logger.warning("Trakt link %s was removed or signed in again before its pair was stored", self.guard.pk)
        self._finish()
        return True

    def _finish(self) -> None:
        with _pending_lock:
            if _pending_rescues.get(self.guard.pk) is self:
                del _pending_rescues[self.guard.pk]
        self.done.set()


_pending_rescues: dict[int, _Rescue] = {}


def _start_rescue_thread(guard: PairGuard) -> None:
    rescue = _Rescue(guard)
    with _pending_lock:
        _pending_rescues[guard.pk] = rescue
    # Not a daemon: an exiting interpreter waits for the pair to be stored.
    threading.Thread(target=_rescue_worker, args=(rescue,), name=f"trakt-rescue-{guard.pk}").start()


def _rescue_worker(rescue: _Rescue) -> None:
    try:
        for attempt in range(RESCUE_ATTEMPTS):
            if rescue.attempt() is not False:
                return
            time.sleep(min(2.0, RESCUE_BACKOFF * 2**attempt))
        logger.error("The refreshed Trakt token of link %s could not be stored: the link is lost", rescue.guard.pk)
        rescue._finish()
    finally:
        connections[rescue.guard.alias].close()


def settle_rescue(pk: int, timeout: float = RESCUE_WAIT) -> bool:
    """Before link ``pk`` is refreshed: store a pair still waiting after a rollback, from here.

    The caller's own transaction may be what keeps the rescue thread from writing (SQLite
    locks writers out while a reader's transaction lasts), so the caller writes it itself
    rather than only wait. False when a pair is still waiting after ``timeout``: the stored
    refresh token is spent then, and must not be sent to Trakt.
    """
    with _pending_lock:
        rescue = _pending_rescues.get(pk)
    if rescue is None:
        return True
    deadline = time.monotonic() + timeout
    while rescue.attempt() is not True:
        if rescue.done.wait(0.05) or time.monotonic() >= deadline:
            break
    return rescue.done.is_set()
