"""The annotator stats' statements (annotate.services.reliability): add to volunteers' counters
and re-estimate their accuracy in the database, or read, lock and update their rows.

Each function gives a statement's text, built on first use and kept (per number of volunteers
where that changes the text); the caller passes the parameters, in the order its docstring
gives.
"""

from functools import cache, lru_cache

from annotate.models import AnnotatorStats
from annotate.rows import columns, lock
from annotate.rows.names import column, sql

COUNT_FIELDS = ("votes", "decided_votes", "agreed_votes", "gold_votes", "gold_correct")
STATS_FIELDS = (*COUNT_FIELDS, "estimated_accuracy")


def _record_columns() -> str:
    """The columns of STATS_FIELDS, in order: what an inserted row gives after created_at,
    updated_at, project and user."""
    return ", ".join(column("AnnotatorStats", field) for field in STATS_FIELDS)


def _added(field: str) -> str:
    """SQL for a counter plus its delta in an upsert's DO UPDATE, never below zero."""
    name = column("AnnotatorStats", field)
    return f"CASE WHEN s.{name} + excluded.{name} < 0 THEN 0 ELSE s.{name} + excluded.{name} END"


def _double(value: float) -> str:
    """A constant as an exact decimal literal cast to double precision, so that the arithmetic
    is the same floating point as Python's."""
    return f"CAST('{value!r}' AS DOUBLE PRECISION)"


def _upsert(rows_sql: str, prior_hits: float, prior_strength: float, gold_weight: float) -> str:
    # The accuracy estimate (reliability.estimated_accuracy) over the counters as updated.
    added = {field: _added(field) for field in COUNT_FIELDS}
    accuracy = (
        f"({_double(prior_hits)} + {_double(gold_weight)} * {added['gold_correct']}"
        f" + {added['agreed_votes']}) / ({_double(prior_strength)} + {_double(gold_weight)}"
        f" * {added['gold_votes']} + {added['decided_votes']})"
    )
    updates = ", ".join(f"{column('AnnotatorStats', field)} = {added[field]}" for field in added)
    return sql(
        "INSERT INTO {AnnotatorStats} AS s ({AnnotatorStats.created_at},"
        " {AnnotatorStats.updated_at}, {AnnotatorStats.project}, {AnnotatorStats.user},"
        " {records}) {rows} ON CONFLICT ({AnnotatorStats.project}, {AnnotatorStats.user})"
        " DO UPDATE SET {AnnotatorStats.updated_at} = excluded.{AnnotatorStats.updated_at},"
        " {updates}, {AnnotatorStats.estimated_accuracy} = {accuracy}",
        records=_record_columns(),
        rows=rows_sql,
        updates=updates,
        accuracy=accuracy,
    )


@cache
def add_from_arrays(prior_hits: float, prior_strength: float, gold_weight: float) -> str:
    """The upsert that adds each volunteer's deltas and re-estimates their accuracy (with the
    estimate's constants: the prior's hits and strength, a gold answer's weight), its rows as
    arrays (PostgreSQL), so that its text (prepared once per connection) and its number of
    parameters stay the same for any number of volunteers, and locked in user order.
    Parameters: created_at, updated_at, project id, then one array each of user ids and of
    STATS_FIELDS (the accuracy: a newcomer's, from the deltas alone)."""
    return _upsert(
        "SELECT %s, %s, %s, d.user_id, d.votes, d.decided_votes, d.agreed_votes, d.gold_votes,"
        " d.gold_correct, d.estimated_accuracy FROM unnest(CAST(%s AS bigint[]),"
        " CAST(%s AS integer[]), CAST(%s AS integer[]), CAST(%s AS integer[]),"
        " CAST(%s AS integer[]), CAST(%s AS integer[]), CAST(%s AS double precision[]))"
        " AS d(user_id, votes, decided_votes, agreed_votes, gold_votes, gold_correct,"
        " estimated_accuracy) ORDER BY d.user_id",
        prior_hits,
        prior_strength,
        gold_weight,
    )


@lru_cache(maxsize=64)
def add_values(records: int, prior_hits: float, prior_strength: float, gold_weight: float) -> str:
    """add_from_arrays() with `records` rows of values (SQLite). Parameters per row, in user
    order: created_at, updated_at, project id, user id, STATS_FIELDS."""
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"] * records)
    return _upsert("VALUES " + values, prior_hits, prior_strength, gold_weight)


@lru_cache(maxsize=64)
def create_missing(records: int) -> str:
    """Records at zero for the volunteers who have none yet. Parameters per row: created_at,
    updated_at, project id, user id, the prior accuracy."""
    return sql(
        "INSERT INTO {AnnotatorStats} ({AnnotatorStats.created_at}, {AnnotatorStats.updated_at},"
        " {AnnotatorStats.project}, {AnnotatorStats.user}, {records}) VALUES {values}"
        " ON CONFLICT ({AnnotatorStats.project}, {AnnotatorStats.user}) DO NOTHING",
        records=_record_columns(),
        values=", ".join(["(%s, %s, %s, %s, 0, 0, 0, 0, 0, %s)"] * records),
    )


@lru_cache(maxsize=64)
def locked_records(users: int) -> str:
    """The project's records (columns(AnnotatorStats, "s")) of `users` volunteers, locked in
    user order. Parameters: project id, the user ids."""
    return sql(
        "SELECT {columns} FROM {AnnotatorStats} s WHERE s.{AnnotatorStats.project} = %s"
        " AND s.{AnnotatorStats.user} IN ({marks}) ORDER BY s.{AnnotatorStats.user}{lock}",
        columns=columns(AnnotatorStats, "s").sql,
        marks=", ".join(["%s"] * users),
        lock=lock(),
    )


@cache
def update_record() -> str:
    """Parameters: STATS_FIELDS, updated_at, the record's id."""
    assignments = ", ".join(
        f"{column('AnnotatorStats', field)} = %s" for field in (*STATS_FIELDS, "updated_at")
    )
    return sql(
        "UPDATE {AnnotatorStats} SET {assignments} WHERE {AnnotatorStats.id} = %s",
        assignments=assignments,
    )


@lru_cache(maxsize=64)
def accuracies(users: int) -> str:
    """(user id, estimated accuracy) of the project's records of `users` volunteers.
    Parameters: project id, the user ids."""
    return sql(
        "SELECT {AnnotatorStats.user}, {AnnotatorStats.estimated_accuracy} FROM {AnnotatorStats}"
        " WHERE {AnnotatorStats.project} = %s AND {AnnotatorStats.user} IN ({marks})",
        marks=", ".join(["%s"] * users),
    )


@cache
def record() -> str:
    """A volunteer's record in a project (columns(AnnotatorStats, "s")). Parameters: project
    id, user id."""
    return sql(
        "SELECT {columns} FROM {AnnotatorStats} s"
        " WHERE s.{AnnotatorStats.project} = %s AND s.{AnnotatorStats.user} = %s",
        columns=columns(AnnotatorStats, "s").sql,
    )
