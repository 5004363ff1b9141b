"""The two statements every refresh runs, written once in SQL: the claim and the store.

A refresh costs a claim (``durability.claim_if_unchanged``) and a store (``refresh``'s
compare-and-set of the new pair). Built through the ORM, each cost more CPU to build and
compile (0.5-0.9 ms on a small server) than its round trip to the database, and a batch of
thousands of refreshes on the threads of one process queued for the interpreter for it. Here
the SQL text of each shape is built once per database and kept; the values are converted by
the model's own fields (``get_db_prep_save``, ``get_db_prep_value``), as the ORM converts them.

Only plain ``UPDATE ... WHERE`` with ``%s`` parameters, which every database Django supports
runs through ``connection.cursor()``; identifiers are quoted by the database's own rules
(``connection.ops.quote_name``). Everything else about a link goes through the ORM.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connections

from django_trakt.models import TraktToken

#: The conditions a statement can test, by name: their SQL, ``{0}`` the quoted column.
_CONDITIONS = {
    "equals": "{0} = %s",
    "null_or_at_most": "({0} IS NULL OR {0} <= %s)",
}


def update_row(
    alias: str,
    pk: int,
    columns: Mapping[str, Any],
    where: Sequence[tuple[str, str, Any]] = (),
    *,
    unless_locked: bool = False,
) -> int:
    """``UPDATE`` link ``pk``'s row: set ``columns`` (field names to values) where every
    condition of ``where`` (field name, :data:`_CONDITIONS` name, value) holds; how many rows
    were updated (0 or 1).

    ``unless_locked``: pass over the row (0) while another transaction holds it, instead of
    waiting for that transaction to end. On PostgreSQL, ``pk IN (SELECT pk ... FOR UPDATE SKIP
    LOCKED)``: the statement locks the row itself or skips it, with no transaction around it
    (Django's ``select_for_update()`` needs one). Elsewhere it waits: SQLite has one writer (at
    most the connection's busy timeout), other databases bound the wait with their lock timeouts.
    Under PostgreSQL's READ COMMITTED an ``UPDATE`` that waited tests its conditions again on
    the newest row, so a compare-and-set through here holds under concurrency.
    """
    connection = connections[alias]
    skip_locked = unless_locked and connection.vendor == "postgresql"
    shape = (tuple(columns), tuple((name, condition) for name, condition, _value in where), skip_locked)
    sql = _statement(alias, shape)
    params = [_field(name).get_db_prep_save(value, connection) for name, value in columns.items()]
    params.append(_field("id").get_db_prep_value(pk, connection))
    params += [_field(name).get_db_prep_value(value, connection) for name, _condition, value in where]
    if skip_locked:
        params.append(pk)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


def _field(name: str) -> Any:
    return TraktToken._meta.get_field(name)


@functools.cache
def _statement(alias: str, shape: tuple[Any, ...]) -> str:
    """The SQL text of one shape of update, built once per database."""
    names, conditions, skip_locked = shape
    quote = connections[alias].ops.quote_name
    table = quote(TraktToken._meta.db_table)
    pk = quote(_field("id").column)
    assignments = ", ".join(f"{quote(_field(name).column)} = %s" for name in names)
    tests = [f"{pk} = %s"]
    tests += [_CONDITIONS[condition].format(quote(_field(name).column)) for name, condition in conditions]
    if skip_locked:
        tests.append(f"{pk} IN (SELECT {pk} FROM {table} WHERE {pk} = %s FOR UPDATE SKIP LOCKED)")  # noqa: S608
    # Every name comes from the model; every value is a parameter.
    return f"UPDATE {table} SET {assignments} WHERE {' AND '.join(tests)}"  # noqa: S608
