"""Plain SQL for the statements the queue runs under its lock, where Django's building of
each query took several times its round trip (bench/notes.md, "Asynchronous commit and
less under the lock"), and for the window snapshot every connecting socket reads (bench/notes.md,
"Window snapshot and connect, second pass"): quoted names from the models, one way to run
a statement, and entry rows as events.entry_payload reads them. Standard SQL only, the
same on PostgreSQL and SQLite, unless a caller says otherwise."""

from __future__ import annotations

import functools
import re
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from psycopg.pq import ExecStatus, TransactionStatus

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
    return results([(sql, params)])[0]


def results(statements: Sequence[tuple[str, list[Any]]]) -> list[list[tuple[Any, ...]]]:
    """Run the statements in order, in one round trip on PostgreSQL (prepared: see
    below); each one's rows. Each statement sees what the ones before it did and locked
    (a lock first, then reads under it: under READ COMMITTED every statement takes its
    own snapshot)."""
    if connection.vendor != "postgresql":
        found = []
        with connection.cursor() as cursor:
            for sql, params in statements:
                cursor.execute(sql, params)
                found.append(cursor.fetchall() if cursor.description else [])
        return found
    sent: list[tuple[str, list[Any]]] = []
    wanted: list[bool] = []
    for sql, params in statements:
        parts = _prepared(sql, params)
        sent += parts
        wanted += [False] * (len(parts) - 1) + [True]
    found = []
    with connection.cursor() as cursor, _forgetting_on_error():
        cursor.execute("; ".join(s for s, _ in sent), [v for _, p in sent for v in p])
        for index, keep in enumerate(wanted):
            if index:
                cursor.nextset()
            if keep:  # by the result's status: `description` builds every column's object
                returned = cursor.cursor.pgresult.status == ExecStatus.TUPLES_OK
                found.append(cursor.fetchall() if returned else [])
    return found


def value(sql: str, params: list[Any]) -> Any:
    """The one value of a statement that returns one row of one column, its parameters
    bound by the server (PostgreSQL only): the one statement of a change a server
    function runs whole (services.changes.run_by_the_server).

    Django's cursor binds on the client: psycopg quotes every parameter into the text in
    Python, and the server parses the literals back. For a claim that was a third of the
    claimer's CPU in its statement (bench/notes.md, "Bound by the server"). Not prepared:
    psycopg's own prepared statements would need its preparing turned on for the
    connection, and then each rollback deallocates every statement of the session,
    results()' too.

    Through Django's cursor wrapper when something watches the statements (logged
    queries, execute wrappers such as batched()'s); otherwise the wrapper's checks and
    its errors without it, and one cursor kept a thread: a claim spent a tenth of its
    Python in the wrapper and the cursor's making."""
    connection.ensure_connection()
    raw = connection.connection
    if connection.queries_logged or connection.execute_wrappers:
        connection.validate_thread_sharing()
        bound = psycopg.Cursor(raw)
        wrapped = (
            connection.make_debug_cursor(bound)
            if connection.queries_logged
            else connection.make_cursor(bound)
        )
        with wrapped:
            wrapped.execute(sql, params)
            return wrapped.fetchone()[0]
    connection.validate_no_broken_transaction()
    with connection.wrap_database_errors:
        cursor = getattr(_bound, "cursor", None)
        if cursor is None or cursor.connection is not raw or cursor.closed:
            cursor = _bound.cursor = psycopg.Cursor(raw)
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


# The last cursor of value() in this thread (a thread's Django connection is its own), made
# again for another server session: one a thread, so a closed session is not kept alive.
_bound = threading.local()


# --- prepared statements ------------------------------------------------------------------
#
# Planning the statements a change runs under the lock took as long as running them (0.3-0.4
# ms for the claim's head and for the windows' entries at 100,000 waiting): on PostgreSQL
# each statement run through this module is prepared once per connection (PREPARE, sent
# with its first EXECUTE) and executed by name after. QUEUE_PREPARED_STATEMENTS=0 turns
# it off, for a pooler that shares server sessions between clients (PgBouncer in
# transaction mode) and for a test that reads the statements' text.

_PLACEHOLDER = re.compile(r"%%|%s")
# Statements with more parameters (a bulk's VALUES) vary in shape with their size.
PREPARE_MAX_PARAMETERS = 64
_numbers: dict[str, int] = {}


def _prepared(sql: str, params: list[Any]) -> list[tuple[str, list[Any]]]:
    """What to send for `sql`: its EXECUTE, after its PREPARE if this connection has not
    prepared it yet (or the statement itself, when not preparing)."""
    if not settings.QUEUE_PREPARED_STATEMENTS or len(params) > PREPARE_MAX_PARAMETERS:
        return [(sql, params)]
    state = _prepared_state()
    name = f"fl{state.generation}_{_numbers.setdefault(sql, len(_numbers))}"
    call = f"EXECUTE {name}({', '.join(['%s'] * len(params))})" if params else f"EXECUTE {name}"
    if name in state.names:
        return [(call, params)]
    state.names.add(name)
    count = iter(range(1, len(params) + 1))
    body = _PLACEHOLDER.sub(lambda m: "%%" if m.group() == "%%" else f"${next(count)}", sql)
    return [(f"PREPARE {name} AS {body}", []), (call, params)]


class _Prepared:
    """The statements prepared on one server session. A failed round trip may have
    stopped before a PREPARE it carried: then every name is given up and the next use of
    each prepares it afresh under the next generation's names (a PREPARE that did run
    stays unused: it is not undone by ROLLBACK)."""

    def __init__(self) -> None:
        self.generation = 0
        self.names: set[str] = set()


# By psycopg connection, that is by server session: a pool (DATABASE_POOL) hands one to
# one Django connection after another, with the statements prepared on it before.
_sessions: weakref.WeakKeyDictionary[Any, _Prepared] = weakref.WeakKeyDictionary()


def _prepared_state() -> _Prepared:
    connection.ensure_connection()
    raw = connection.connection
    state = _sessions.get(raw)
    if state is None:  # a new session
        state = _sessions[raw] = _Prepared()
    return state


def _forget_prepared() -> None:
    state = _sessions.get(connection.connection)
    if state is not None:
        state.generation += 1
        state.names.clear()


@contextmanager
def _forgetting_on_error() -> Iterator[None]:
    try:
        yield
    except BaseException:
        _forget_prepared()
        raise


# --- writes held back, to go with the next statement ---------------------------------------
#
# A change under the queue lock writes several rows whose results it does not read (the
# entry, the owner's counter, the attempt, the state, the event). Each write is a round
# trip, and the lock is held through all of them; held back, they go to the server with
# the next statement the change runs, or at the end of the block (before COMMIT): one
# round trip for all. On PostgreSQL, where psycopg's client-side binding (Django's
# default) takes several statements in one execute; elsewhere each runs at once.

_held = threading.local()


@contextmanager
def batched(*, commit: bool = False) -> Iterator[None]:
    """Hold back the writes made with write(), insert() and update() in this block until
    the next statement the connection runs (ORM or plain), which takes them along, or
    until the block ends. Leaving by an exception drops them (the transaction around is
    rolled back anyway). Re-entrant; a no-op off PostgreSQL.

    `commit`: the block is the whole of an outermost transaction.atomic(), so the last
    writes go with its COMMIT (the lock a change holds ends with that round trip, not
    one later); Django's own commit then finds the transaction ended and sends nothing
    (psycopg's commit() skips an idle connection), and runs the on_commit callbacks. Not
    inside another atomic block (a test's, or a caller's): that one commits."""
    if connection.vendor != "postgresql" or getattr(_held, "statements", None) is not None:
        yield
        return
    _held.statements = [("BEGIN", [])] if commit and _begins_with_first_statement() else []
    try:
        with _forgetting_on_error(), connection.execute_wrapper(_send_held):
            yield
            _flush(commit=commit and _outermost())
    finally:
        _held.statements = None


def _begins_with_first_statement() -> bool:
    """For the whole of an outermost transaction.atomic() that has sent nothing yet: let
    its BEGIN go with its first statement, held as the first write. psycopg sends BEGIN
    as a round trip of its own before a transaction's first statement unless the
    connection is in autocommit; so it is put in autocommit for the rest of the block,
    where Django still counts itself in a transaction (its own flag is unchanged), and
    COMMIT or ROLLBACK go by the server's transaction status, whatever the setting.
    Django puts the connection back in autocommit when the block ends anyway."""
    raw = connection.connection
    if not _outermost() or raw is None or raw.info.transaction_status != TransactionStatus.IDLE:
        return False
    raw.autocommit = True
    return True


def _outermost() -> bool:
    return (
        len(connection.atomic_blocks) == 1
        and not connection.savepoint_ids
        and (not connection.needs_rollback)
    )


def write(sql: str, params: list[Any]) -> None:
    """Run a statement that returns nothing the caller reads: held back in a batched()
    block, at once otherwise."""
    held = getattr(_held, "statements", None)
    if held is None:
        rows(sql, params)
    else:
        held += _prepared(sql, params)


def insert(objects: Sequence[models.Model]) -> None:
    """INSERT the (unsaved, same-model) objects as Model.save would, without reading back
    an automatic primary key (write()). Fields' pre_save runs (auto_now_add)."""
    model = type(objects[0])
    db = connections[DEFAULT_DB_ALIAS]  # the proxy's lookup once, not once per value
    fields, statement = _insert_sql(model, objects[0].pk is None, len(objects))
    values = [
        field.get_db_prep_save(field.pre_save(obj, True), db) for obj in objects for field in fields
    ]
    write(statement, values)
    for obj in objects:
        obj._state.adding = False
        obj._state.db = db.alias


def update(obj: models.Model, names: Sequence[str]) -> None:
    """UPDATE the saved object's fields `names` as save(update_fields=names) would
    (write()). Fields' pre_save runs (auto_now)."""
    model = type(obj)
    db = connections[DEFAULT_DB_ALIAS]
    fields, statement = _update_sql(model, tuple(names))
    values = [field.get_db_prep_save(field.pre_save(obj, False), db) for field in fields]
    write(statement, [*values, model._meta.pk.get_db_prep_value(obj.pk, db)])


@functools.cache
def quoted(name: str) -> str:
    return connection.ops.quote_name(name)


# The statements of insert() and update(), built once: a change under the queue lock
# runs several, and building their text was a tenth of its Python.
@functools.cache
def _insert_sql(
    model: type[models.Model], automatic_pk: bool, count: int
) -> tuple[list[models.Field], str]:
    fields = [
        field for field in model._meta.concrete_fields if not (automatic_pk and field.primary_key)
    ]
    placeholders = f"({', '.join(['%s'] * len(fields))})"
    return fields, (
        f"INSERT INTO {table(model)} ({', '.join(quoted(field.column) for field in fields)})"
        f" VALUES {', '.join([placeholders] * count)}"
    )


@functools.cache
def _update_sql(
    model: type[models.Model], names: tuple[str, ...]
) -> tuple[list[models.Field], str]:
    fields = [model._meta.get_field(name) for name in names]
    return fields, (
        f"UPDATE {table(model)} SET {', '.join(f'{quoted(field.column)} = %s' for field in fields)}"
        f" WHERE {quoted(model._meta.pk.column)} = %s"
    )


def _send_held(execute: Callable, sql: str, params: Any, many: bool, context: dict) -> Any:
    """The execute wrapper of batched(): the held writes go first, in the same round trip,
    and the cursor is left at the caller's statement's result. (executemany, a
    server-side cursor and one that binds on the server (value()), which take one
    statement, get them in a round trip of their own.)"""
    held = _held.statements
    if not held:
        return execute(sql, params, many, context)
    cursor = context["cursor"].cursor
    if many or getattr(cursor, "name", None) or not isinstance(cursor, psycopg.ClientCursor):
        _flush()
        return execute(sql, params, many, context)
    _held.statements = []
    if params is None:  # the statement's own % were not placeholders
        sql, params = sql.replace("%", "%%"), []
    result = execute(
        "; ".join([*(s for s, _ in held), sql]),
        [*(v for _, p in held for v in p), *params],
        False,
        context,
    )
    for _ in held:
        context["cursor"].cursor.nextset()
    return result


def _flush(*, commit: bool = False) -> None:
    held, _held.statements = _held.statements, []
    if commit and held == [("BEGIN", [])]:
        held = []  # the change sent nothing: no transaction to begin or end
    elif commit:
        held.append(("COMMIT", []))
    if held:
        with connection.cursor() as cursor:
            cursor.execute("; ".join(s for s, _ in held), [v for _, p in held for v in p])


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
    return entry_dicts(rows(select, params), extra)


def entry_dicts(found: list[tuple[Any, ...]], extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The rows of a statement made from entry_select(extra), run by the caller (in a
    round trip with others: results()), as entry_rows gives them."""
    names, converting = _entry_converters(extra)
    return [dict(zip(names, row, strict=True)) for row in converted(found, converting)]
