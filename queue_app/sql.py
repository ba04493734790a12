"""Plain SQL for the statements the queue runs under its lock, where Django's building of
each query took several times its round trip (bench/notes.md, "Asynchronous commit and
less under the lock"): quoted names from the models, and one way to run a statement.
Standard SQL only, the same on PostgreSQL and SQLite, unless a caller says otherwise."""

from __future__ import annotations

from typing import Any

from django.db import connection, models


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
