"""Plain SQL for the statements the queue runs under its lock, where Django's building of
each query took several times its round trip (bench/notes.md, "Asynchronous commit and
less under the lock"), and for the window snapshot every connecting socket reads (bench/notes.md,
"Window snapshot and connect, second pass"): quoted names from the models, one way to run
a statement, and entry rows as events.entry_payload reads them. Standard SQL only, the
same on PostgreSQL and SQLite, unless a caller says otherwise."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connection, models

from queue_app.events import ENTRY_COLUMNS, username_column
from queue_app.models import QueueEntry


def table(model: type[models.Model]) -> str:
    """The model's table, quoted."""
    return connection.ops.quote_name(model._meta.db_table)


def column(model: type[models.Model], name: str) -> str:
    """The column of the model's field `name`, quoted."""
    return connection.ops.quote_name(model._meta.get_field(name).column)


def rows(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """Run one statement; its rows (none for a statement that returns none)."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


Converters = list[tuple[int, Any, list[Callable[..., Any]]]]


def converters(fields: Sequence[models.Field | None]) -> Converters:
    """What the ORM would do to each column of a plain statement's rows whose columns are
    these fields (None: as it comes), as the compiler does it: the backend's converters,
    then the field's. On PostgreSQL none for the fields read here; on SQLite, UUIDs from
    hex text and datetimes made aware. Cache the result with the statement."""
    found: Converters = []
    for index, field in enumerate(fields):
        if field is None:
            continue
        expression = field.get_col(field.model._meta.db_table)
        functions = connection.ops.get_db_converters(expression)
        functions += expression.get_db_converters(connection)
        if functions:
            found.append((index, expression, functions))
    return found


def converted(rows: list[tuple[Any, ...]], found: Converters) -> list[tuple[Any, ...]]:
    """`rows` with converters() applied (the rows themselves when there are none)."""
    if not found:
        return rows
    result = []
    for row in rows:
        values = list(row)
        for index, expression, functions in found:
            value = values[index]
            for function in functions:
                value = function(value, expression, connection)
            values[index] = value
        result.append(tuple(values))
    return result


@functools.cache
def entry_select(extra: tuple[str, ...] = ()) -> str:
    """`SELECT <an entry's row> FROM <entries> e JOIN <meetings> m JOIN <users> u`: the
    columns entry_payload reads (ENTRY_COLUMNS, then the owner's username), then the
    entry fields `extra`, for a caller to add its WHERE; entry_rows() runs it."""
    tables = {
        "": (QueueEntry, "e"),
        "meeting": (QueueEntry.meeting.field.related_model, "m"),
        "owner": (QueueEntry.owner.field.related_model, "u"),
    }
    columns = []
    for name in (*ENTRY_COLUMNS, username_column(), *extra):
        relation, _, name = name.rpartition("__")
        model, alias = tables[relation]
        columns.append(f"{alias}.{column(model, name)}")
    joins = []
    for relation in ("meeting", "owner"):
        model, alias = tables[relation]
        joins.append(
            f" JOIN {table(model)} {alias}"
            f" ON {alias}.{connection.ops.quote_name(model._meta.pk.column)}"
            f" = e.{column(QueueEntry, relation)}"
        )
    return f"SELECT {', '.join(columns)} FROM {table(QueueEntry)} e{''.join(joins)}"


@functools.cache
def _entry_converters(extra: tuple[str, ...]) -> tuple[tuple[str, ...], Converters]:
    names = (*ENTRY_COLUMNS, username_column(), *extra)
    models_of = {
        "": QueueEntry,
        "meeting": QueueEntry.meeting.field.related_model,
        "owner": QueueEntry.owner.field.related_model,
    }
    fields = []
    for name in names:
        relation, _, name = name.rpartition("__")
        fields.append(models_of[relation]._meta.get_field(name))
    return names, converters(fields)


def entry_rows(select: str, params: list[Any], extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Run a statement made from entry_select(extra); its rows as dicts, as
    QuerySet.values(*ENTRY_COLUMNS, username, *extra) would give them (entry_payload's
    row), without the ORM building the query or its converters' per-row machinery."""
    names, found = _entry_converters(extra)
    return [dict(zip(names, row, strict=True)) for row in converted(rows(select, params), found)]
