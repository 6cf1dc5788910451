"""The confusion counts' statements (annotate.services.confusions, .posterior): add weighted
counts to volunteers' confusions, append to the crowd's, and read those a posterior needs.

Each function gives a statement's text, built on first use and kept (per number of rows or keys
where that changes the text); the caller passes the parameters, in the order its docstring
gives. Volunteers' rows are added in key order, so two statements sharing rows lock them in the
same order; the crowd's are only appended, and lock nothing another vote waits on.
"""

from functools import cache, lru_cache

from annotate.rows.names import sql

# A row's weight plus its delta, never below zero (a review takes back what a decision added).
_ADDED = (
    "CASE WHEN c.{weight} + excluded.{weight} < 0 THEN 0 ELSE c.{weight} + excluded.{weight} END"
)


def _added(table: str) -> str:
    return _ADDED.replace("{weight}", "{" + table + ".weight}")


@cache
def add_volunteer_arrays() -> str:
    """Add to volunteers' confusions, rows as arrays (PostgreSQL). Parameters: project id,
    arrays of user ids, true keys, given keys, weights."""
    return sql(
        "INSERT INTO {VolunteerConfusion} AS c ({VolunteerConfusion.project},"
        " {VolunteerConfusion.user}, {VolunteerConfusion.true_key}, {VolunteerConfusion.given_key},"
        " {VolunteerConfusion.weight}) SELECT %s, d.u, d.t, d.g, d.w FROM unnest("
        "CAST(%s AS bigint[]), CAST(%s AS bigint[]), CAST(%s AS bigint[]),"
        " CAST(%s AS double precision[])) AS d(u, t, g, w) ORDER BY d.u, d.t, d.g"
        " ON CONFLICT ({VolunteerConfusion.project}, {VolunteerConfusion.user},"
        " {VolunteerConfusion.true_key}, {VolunteerConfusion.given_key})"
        " DO UPDATE SET {VolunteerConfusion.weight} = " + _added("VolunteerConfusion")
    )


@lru_cache(maxsize=64)
def add_volunteer_values(records: int) -> str:
    """add_volunteer_arrays() with `records` rows of values (SQLite). Parameters per row:
    project id, user id, true key, given key, weight."""
    return sql(
        "INSERT INTO {VolunteerConfusion} AS c ({VolunteerConfusion.project},"
        " {VolunteerConfusion.user}, {VolunteerConfusion.true_key}, {VolunteerConfusion.given_key},"
        " {VolunteerConfusion.weight}) VALUES "
        + ", ".join(["(%s, %s, %s, %s, %s)"] * records)
        + " ON CONFLICT ({VolunteerConfusion.project}, {VolunteerConfusion.user},"
        " {VolunteerConfusion.true_key}, {VolunteerConfusion.given_key})"
        " DO UPDATE SET {VolunteerConfusion.weight} = " + _added("VolunteerConfusion")
    )


@cache
def add_crowd_arrays() -> str:
    """Append to the crowd's confusions (no conflict, no lock on a shared row), rows as arrays
    (PostgreSQL). Parameters: project id, arrays of true keys, given keys, weights."""
    return sql(
        "INSERT INTO {CrowdConfusion} ({CrowdConfusion.project}, {CrowdConfusion.true_key},"
        " {CrowdConfusion.given_key}, {CrowdConfusion.weight}) SELECT %s, d.t, d.g, d.w FROM"
        " unnest(CAST(%s AS bigint[]), CAST(%s AS bigint[]), CAST(%s AS double precision[]))"
        " AS d(t, g, w)"
    )


@lru_cache(maxsize=64)
def add_crowd_values(records: int) -> str:
    """add_crowd_arrays() with `records` rows of values (SQLite). Parameters per row: project
    id, true key, given key, weight."""
    return sql(
        "INSERT INTO {CrowdConfusion} ({CrowdConfusion.project}, {CrowdConfusion.true_key},"
        " {CrowdConfusion.given_key}, {CrowdConfusion.weight}) VALUES "
        + ", ".join(["(%s, %s, %s, %s)"] * records)
    )


@lru_cache(maxsize=256)
def crowd_columns(given: int) -> str:
    """(true key, given key, weight) of the crowd's confusions into any of `given` keys, and
    each true key's total (given key ROW_TOTAL). Parameters: project id, the given keys (the
    last of them ROW_TOTAL)."""
    return sql(
        "SELECT {CrowdConfusion.true_key}, {CrowdConfusion.given_key},"
        " SUM({CrowdConfusion.weight}) FROM {CrowdConfusion} WHERE {CrowdConfusion.project} = %s"
        " AND {CrowdConfusion.given_key} IN ({marks})"
        " GROUP BY {CrowdConfusion.true_key}, {CrowdConfusion.given_key}",
        marks=", ".join(["%s"] * given),
    )


@lru_cache(maxsize=256)
def volunteer_rows(users: int, true_keys: int) -> str:
    """(user id, true key, given key, weight) of the volunteers' confusions for any of the true
    keys. Parameters: project id, the user ids, the true keys."""
    return sql(
        "SELECT {VolunteerConfusion.user}, {VolunteerConfusion.true_key},"
        " {VolunteerConfusion.given_key}, {VolunteerConfusion.weight} FROM {VolunteerConfusion}"
        " WHERE {VolunteerConfusion.project} = %s AND {VolunteerConfusion.user} IN ({users})"
        " AND {VolunteerConfusion.true_key} IN ({keys})",
        users=", ".join(["%s"] * users),
        keys=", ".join(["%s"] * true_keys),
    )


# The given key of a crowd row that holds the total of a true key's mistakes.
ROW_TOTAL = -1
