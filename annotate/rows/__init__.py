"""Rows by prepared SQL text, for the volunteer loop's hot path.

Django compiles every ORM query anew, and on the lease and vote path that compilation cost more
than the database work itself: measured on the 2-core development machine, fetching a project
with `Project.objects.filter(pk=...).first()` took 0.87 ms, the same row by a raw SELECT turned
into a model instance 0.22 ms, and a round trip to PostgreSQL on loopback 0.04 ms. The helpers
here build each statement's text once and turn rows into model instances with the converters the
ORM itself applies, so what they return is the same on PostgreSQL and on SQLite.

This package owns every statement of that path, and no table or column name in them is typed
by hand: they come from the models' metadata (annotate.rows.names).

- here: running statements, and turning rows into model instances;
- annotate.rows.lease, .vote, .decisions, .stats, .lookups: the statements, each built once;
- annotate.rows.django_private: every private Django API this needs, each behind a function,
  each watched by a canary test (tests/annotate/test_rows.py).

Write plain SQL that both databases accept; `lock()` gives the row-locking clause where the
database has one (PostgreSQL) and nothing on SQLite, whose writers are serialized anyway.
"""

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any, Generic, TypeVar

from django.db import connection
from django.db.backends.utils import CursorWrapper
from django.db.models import Model

from annotate.rows import django_private
from annotate.rows.django_private import column_of
from annotate.rows.names import quoted

M = TypeVar("M", bound=Model)


class Columns(Generic[M]):
    """A model's concrete columns under a table alias, and how to make instances of them.

    `only`: these fields' columns (the primary key always); the instances leave the others
    deferred, as `QuerySet.only()` does, and read one from the database if it is used."""

    def __init__(self, model: type[M], alias: str, only: tuple[str, ...] | None = None):
        self.model = model
        fields = django_private.model_fields(model)
        self.fields = [
            field
            for field in fields
            if only is None or field.primary_key or field.name in only or field.attname in only
        ]
        key = next(field.name for field in fields if field.primary_key)
        if only is not None and len(self.fields) != len(set(only) | {key}):
            raise ValueError(f"unknown fields of {model.__name__} in {only}")
        self.attnames = [field.attname for field in self.fields]
        self.sql = ", ".join(f"{alias}.{quoted(column_of(field))}" for field in self.fields)
        self._converters: dict[str, list] = {}

    def __len__(self) -> int:
        return len(self.fields)

    def _converters_here(self) -> list:
        found = self._converters.get(connection.vendor)
        if found is None:
            found = []
            for index, field in enumerate(self.fields):
                column, functions = django_private.field_converters(self.model, field)
                if functions:
                    found.append((index, column, functions))
            self._converters[connection.vendor] = found
        return found

    def build(self, values: Sequence[Any]) -> M:
        """A model instance from this model's slice of a row, as the ORM would have loaded it
        (the fields left out deferred)."""
        values = list(values)
        for index, column, functions in self._converters_here():
            for function in functions:
                values[index] = function(values[index], column, connection)
        return django_private.instance_from_row(self.model, self.attnames, values)


_columns: dict[tuple[type[Model], str, tuple[str, ...] | None], Columns[Any]] = {}


def columns(model: type[M], alias: str, only: tuple[str, ...] | None = None) -> Columns[M]:
    """Columns(model, alias, only), made once."""
    found = _columns.get((model, alias, only))
    if found is None:
        found = _columns[model, alias, only] = Columns(model, alias, only)
    return found


def lock(*, of: str | None = None, skip_locked: bool = False) -> str:
    """` FOR UPDATE [OF alias] [SKIP LOCKED]` where the database locks rows, else ``."""
    for_update, for_update_of, skip_locked_too = django_private.row_lock_support()
    if not for_update:
        return ""
    clause = " FOR UPDATE"
    if of and for_update_of:
        clause += f" OF {of}"
    if skip_locked and skip_locked_too:
        clause += " SKIP LOCKED"
    return clause


def moment(value: datetime) -> Any:
    """A datetime as the database takes it as a query parameter."""
    return django_private.datetime_param(value)


def cursor() -> CursorWrapper:
    """A Django cursor (errors wrapped, queries logged as usual) for these statements.

    On PostgreSQL it binds parameters on the server, so that psycopg prepares a statement after
    `prepare_threshold` runs (settings.py) and PostgreSQL stops planning it anew: EXPLAIN
    ANALYZE of the serving query showed 0.9 ms of planning for 0.1 ms of execution. Django's
    own cursors bind on the client and are never prepared; only the statements here are.
    While queries are logged (DEBUG, or a test counting them) a client-binding cursor is used
    instead, because only that one logs the SQL text with its values.
    """
    if connection.vendor != "postgresql" or django_private.logging_queries():
        return connection.cursor()
    return django_private.server_binding_cursor()


def in_transaction() -> bool:
    """Whether the caller is inside transaction.atomic() (a test's own transaction included)."""
    return django_private.in_transaction()


def fetch_one(sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
    with cursor() as c:
        c.execute(sql, params)
        return c.fetchone()


def fetch_all(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with cursor() as c:
        c.execute(sql, params)
        return c.fetchall()


def execute(sql: str, params: Sequence[Any] = ()) -> int:
    """Run a statement; the number of rows it changed."""
    with cursor() as c:
        c.execute(sql, params)
        return c.rowcount


def execute_many(sql: str, rows: Sequence[Sequence[Any]]) -> None:
    if rows:
        with cursor() as c:
            c.executemany(sql, rows)


class _Insert:
    def __init__(self, model: type[Model]):
        fields = django_private.model_fields(model)
        self.fields = [field for field in fields if not field.primary_key]
        names = ", ".join(quoted(column_of(field)) for field in self.fields)
        marks = ", ".join(["%s"] * len(self.fields))
        key = next(quoted(column_of(field)) for field in fields if field.primary_key)
        self.sql = (
            f"INSERT INTO {quoted(model._meta.db_table)} ({names}) VALUES ({marks}) RETURNING {key}"
        )


@cache
def _insert_for(model: type[Model]) -> _Insert:
    return _Insert(model)


def insert_statement(instance: Model) -> tuple[str, list[Any]]:
    """The INSERT ... RETURNING id that `save()` would run for a new instance (defaults and
    auto_now fields included), with its parameters."""
    statement = _insert_for(type(instance))
    values = [
        field.get_db_prep_save(field.pre_save(instance, True), connection)
        for field in statement.fields
    ]
    return statement.sql, values


def inserted(instance: M, row: tuple[Any, ...] | None) -> M:
    """Mark `instance` saved, with the primary key from its INSERT's RETURNING row."""
    if row is None:
        raise RuntimeError(f"the INSERT of a {type(instance).__name__} returned no row")
    instance.pk = row[0]
    django_private.mark_saved(instance)
    return instance


def insert(instance: M) -> M:
    """INSERT a new instance as `save()` would (no signals), set its primary key, return it."""
    return inserted(instance, fetch_one(*insert_statement(instance)))


def write_together(
    statements: Sequence[tuple[str, Sequence[Any]]], check: str | None = None
) -> tuple[Any, ...] | None:
    """Run data-changing statements on different rows as one, and return the RETURNING row of
    the first (None if it has none or changed nothing).

    On PostgreSQL they become one statement of data-modifying WITH clauses: one round trip and
    one snapshot, all or nothing. Elsewhere they run one after another (call inside a
    transaction). The order in which PostgreSQL applies them is unspecified, so lock the rows
    they change beforehand wherever lock order matters.

    `check` (PostgreSQL only): an SQL expression evaluated with the statement, which may refer
    to the RETURNING rows of statement i as `wi`; one that raises an error undoes them all.
    """
    returns = "RETURNING" in statements[0][0]
    if check is not None:
        if connection.vendor != "postgresql" or not returns:
            raise ValueError("a check needs PostgreSQL and a first statement with RETURNING")
        clauses = ", ".join(f"w{index} AS ({sql})" for index, (sql, _) in enumerate(statements))
        params = [value for _, statement_params in statements for value in statement_params]
        found = fetch_one(f"WITH {clauses} SELECT w0.*, {check} FROM w0", params)
        return None if found is None else found[:-1]
    if connection.vendor != "postgresql":
        found = None
        for index, (sql, statement_params) in enumerate(statements):
            if index == 0 and returns:
                found = fetch_one(sql, statement_params)
            else:
                execute(sql, statement_params)
        return found
    clauses = ", ".join(f"w{index} AS ({sql})" for index, (sql, _) in enumerate(statements))
    params = [value for _, statement_params in statements for value in statement_params]
    final = "SELECT * FROM w0" if returns else "SELECT NULL"
    found = fetch_one(f"WITH {clauses} {final}", params)
    return found if returns else None
