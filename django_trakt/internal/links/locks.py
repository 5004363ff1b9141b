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


def lock_token(pk: int, *, skip_locked: bool = False, using: str | None = None) -> TraktToken | None:
    """The row ``pk``, locked for the current transaction; None if it is gone.

    With ``skip_locked`` (a batch) a row another transaction holds is passed over
    (None) instead of waited for, where the database can do that (:func:`skips_locked_rows`).
    How long a wait may last is the transaction's ``lock_timeout``
    (``durability.own_transaction(lock_wait=...)``).
    """
    alias = using or database_alias()
    rows = TraktToken.objects.using(alias).filter(pk=pk)
    if has_row_locks(alias):
        return rows.select_for_update(skip_locked=skip_locked and skips_locked_rows(alias)).first()
    if not rows.update(status=F("status")):
        return None
    return rows.first()


def skips_locked_rows(alias: str | None = None) -> bool:
    """Whether ``lock_token(skip_locked=True)`` never waits for another transaction's lock."""
    features = connections[alias or database_alias()].features
    return bool(features.has_select_for_update and features.has_select_for_update_skip_locked)
