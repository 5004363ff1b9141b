"""Locking one token row before its refresh token is read: the one place that knows how.

Trakt's refresh tokens are single-use, so whoever is about to spend one must hold the
row until the new pair is written (see :mod:`django_trakt.internal.links.refresh`).

- Databases with row locks (PostgreSQL, MySQL, Oracle): ``SELECT ... FOR UPDATE``.
- SQLite has no ``FOR UPDATE`` and one writer for the whole database. A transaction that
  reads first and writes later fails at the write with "database is locked" when another
  one wrote meanwhile: after Trakt already rotated the token. So the first statement is a
  write of the row itself, which takes SQLite's writer lock up front (waiting up to the
  connection's busy timeout), as ``BEGIN IMMEDIATE`` would; a refresh that cannot get the
  lock fails before anything is sent to Trakt.

Call it inside ``transaction.atomic()``: the lock lasts until that transaction ends.
"""

from __future__ import annotations

from django.db import connections, router
from django.db.models import F

from django_trakt.models import TraktToken


def database_alias() -> str:
    """The database the token rows are written to."""
    return router.db_for_write(TraktToken)


def has_row_locks(alias: str | None = None) -> bool:
    """False on SQLite, whose only lock is the whole database's writer lock."""
    return bool(connections[alias or database_alias()].features.has_select_for_update)


def lock_token(
    pk: int, *, skip_locked: bool = False, using: str | None = None, wait: float | None = None
) -> TraktToken | None:
    """The row ``pk``, locked for the current transaction; None if it is gone.

    With ``skip_locked`` (a batch) a row another transaction holds is passed over
    (None) instead of waited for, where the database can do that. ``wait``: give up
    (a ``DatabaseError``) after this many seconds, on PostgreSQL: a refresh on a connection
    of its own must not wait forever for a lock its caller's transaction holds.
    """
    alias = using or database_alias()
    rows = TraktToken.objects.using(alias).filter(pk=pk)
    connection = connections[alias]
    if wait is not None and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # set_config(..., true) lasts until the end of the transaction, like SET LOCAL.
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{max(1, round(wait * 1000))}ms"])
    if has_row_locks(alias):
        skip = skip_locked and connection.features.has_select_for_update_skip_locked
        return rows.select_for_update(skip_locked=skip).first()
    if not rows.update(status=F("status")):
        return None
    return rows.first()
