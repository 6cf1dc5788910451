"""Every use of Django's private or undocumented APIs by the hot path's SQL, in one place.

The statements in annotate.rows skip the ORM's query compilation (see the package's docstring)
and so do by hand what the ORM does inside: read a model's columns, build an instance from a
row, mark an instance saved, convert a column's value, lock rows the way the backend can, and
open a cursor that binds parameters on the server. Each of those needs something Django does
not promise to keep. They are all here, each behind a small function, so that a Django upgrade
that changes one breaks this module only; tests/annotate/test_rows.py has a canary test for
each function that names the API it depends on.
"""

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Field, Model
from django.db.models.base import ModelState

# What each function below relies on; the canary test checks every entry.
PRIVATE_APIS = {
    "model_fields": "Model._meta.concrete_fields, Field.column and Field.attname (column_of())",
    "field_converters": (
        "Field.get_col(), DatabaseOperations.get_db_converters() and Field.get_db_converters()"
    ),
    "instance_from_row": "Model.__new__ with the values in __dict__ and a ModelState in _state",
    "mark_saved": "Model._state (ModelState.adding, ModelState.db)",
    "datetime_param": "DatabaseOperations.adapt_datetimefield_value()",
    "row_lock_support": (
        "DatabaseFeatures.has_select_for_update, has_select_for_update_of"
        " and has_select_for_update_skip_locked"
    ),
    "logging_queries": "BaseDatabaseWrapper.queries_logged",
    "in_transaction": "BaseDatabaseWrapper.in_atomic_block",
    "server_binding_cursor": (
        "postgresql.base.ServerBindingCursor, BaseDatabaseWrapper.close_if_health_check_failed(),"
        " ensure_connection(), wrap_database_errors, _prepare_cursor() and .connection"
    ),
}

Converter = Callable[[Any, Any, Any], Any]
M = TypeVar("M", bound=Model)


def model_fields(model: type[Model]) -> list[Field]:
    """The model's fields that have a column of their own table, in the table's order (each
    with `.column`, its column's name, and `.attname`, its attribute on an instance)."""
    return list(model._meta.concrete_fields)


def column_of(field: Field) -> str:
    """The name of a concrete field's column (one from model_fields() always has one)."""
    if field.column is None:
        raise ValueError(f"{field} has no column of its own")
    return field.column


def field_converters(model: type[Model], field: Field) -> tuple[Any, list[Converter]]:
    """The functions the ORM applies to a value of `field`'s column read from the database on
    this connection, in order, and the column expression they take as their second argument."""
    column = field.get_col(model._meta.db_table)
    return column, [
        *connection.ops.get_db_converters(column),
        *field.get_db_converters(connection),
    ]


def instance_from_row(model: type[M], attnames: Sequence[str], values: Sequence[Any]) -> M:
    """A model instance holding `values` (converted already) under `attnames`, as
    Model.from_db() makes one, less Model.__init__(): that sets each field through setattr()
    and sends pre_init and post_init, which none of our models listens to, and cost 30 to 60 µs
    per instance, several instances per request. What __init__ leaves behind is the same: each
    column's value in the instance's __dict__ under its attname (an attname left out is
    deferred, loaded when used), and a ModelState saying the row came from this database."""
    instance = model.__new__(model)
    instance.__dict__.update(zip(attnames, values, strict=True))
    state = instance._state = ModelState()
    state.adding, state.db = False, connection.alias
    return instance


def mark_saved(instance: Model) -> None:
    """What save() records on an instance once its row is inserted: it now updates that row."""
    instance._state.adding = False
    instance._state.db = connection.alias


def datetime_param(value: datetime) -> Any:
    """A datetime as this database takes it as a query parameter."""
    return connection.ops.adapt_datetimefield_value(value)


def row_lock_support() -> tuple[bool, bool, bool]:
    """Whether this database has SELECT ... FOR UPDATE, its OF clause and SKIP LOCKED."""
    features = connection.features
    return (
        features.has_select_for_update,
        features.has_select_for_update_of,
        features.has_select_for_update_skip_locked,
    )


def logging_queries() -> bool:
    """Whether this connection logs each statement with its values (DEBUG, or a test that
    counts or captures queries)."""
    return connection.queries_logged


def in_transaction() -> bool:
    """Whether the caller is inside transaction.atomic() (a test's own transaction included)."""
    return connection.in_atomic_block


def server_binding_cursor() -> Any:
    """A Django cursor on PostgreSQL (errors wrapped, as connection.cursor() gives) that binds
    its parameters on the server, so that psycopg can prepare its statements; Django's own
    cursors bind on the client unless the whole connection is configured to bind on the
    server."""
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        cursor = ServerBindingCursor(connection.connection)  # type: ignore[call-arg]
        return connection._prepare_cursor(cursor)  # type: ignore[attr-defined]
