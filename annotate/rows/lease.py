"""The lease's statements (annotate.services.serving): pick the next image for a volunteer, take
one of its slots, insert the assignment.

Each function gives a statement's text, built on first use and kept; the caller passes the
parameters, in the order its docstring gives.
"""

from functools import cache

from annotate.models import Image, Project
from annotate.rows import lock
from annotate.rows.lookups import image_suggestion_json
from annotate.rows.names import sql

# The images a volunteer may be offered: open, with a free slot, never leased to them before.
# The partial indexes image_serving_* cover it (their condition has the same literal).
_CANDIDATES = (
    "FROM {Image} i WHERE i.{Image.project} = %s AND i.{Image.state} = '{open}'"
    " AND i.{Image.free_slots} > 0 AND NOT EXISTS (SELECT 1 FROM {Assignment} a"
    " WHERE a.{Assignment.user} = %s AND a.{Assignment.image} = i.{Image.id})"
)
_ORDER: dict[str, str] = {
    Project.ServingOrder.CLOSEST: "i.{Image.votes_count} DESC, i.{Image.id}",
    Project.ServingOrder.UNCERTAIN: "i.{Image.uncertainty} DESC, i.{Image.id}",
    Project.ServingOrder.RANDOM: "i.{Image.id}",
}
_OPEN = Image.State.OPEN.value


@cache
def candidate_range() -> str:
    """The lowest and highest id of the images a volunteer may be offered.
    Parameters: project id, user id."""
    return sql(
        "SELECT MIN(i.{Image.id}), MAX(i.{Image.id}) " + _CANDIDATES,
        open=_OPEN,
    )


@cache
def pick(order: str, from_id: bool) -> str:
    """(id, width, height) of the next image in serving `order`, its row locked; volunteers
    asking at the same moment take different images (SKIP LOCKED), never wait.
    Parameters: project id, user id, and with `from_id` the lowest id to take."""
    return sql(
        "SELECT i.{Image.id} AS id, i.{Image.width} AS width, i.{Image.height} AS height "
        + _CANDIDATES
        + (" AND i.{Image.id} >= %s" if from_id else "")
        + " ORDER BY "
        + _ORDER[order]
        + " LIMIT 1{lock}",
        open=_OPEN,
        lock=lock(skip_locked=True),
    )


@cache
def take_slot() -> str:
    """Take one slot of the image if it still has one (with no row locks, on SQLite, this is
    what keeps an image from being over-filled). Parameter: image id."""
    return sql(
        "UPDATE {Image} SET {Image.leases_count} = {Image.leases_count} + 1,"
        " {Image.free_slots} = {Image.free_slots} - 1"
        " WHERE {Image.id} = %s AND {Image.state} = '{open}' AND {Image.free_slots} > 0",
        open=_OPEN,
    )


@cache
def lease_in_one(order: str, from_id: bool) -> str:
    """pick(), taking the slot and the assignment's INSERT as one statement (PostgreSQL), with
    what the answer shows: (image id, width, height, assignment id, the image's suggestion as
    one JSON array or null). Parameters: those of pick(); the assignment's created_at, updated_at,
    user id, state and expires_at; the project id."""
    return sql(
        "WITH picked AS ({pick}),"
        " taken AS (UPDATE {Image} SET {Image.leases_count} = {Image.leases_count} + 1,"
        " {Image.free_slots} = {Image.free_slots} - 1"
        " WHERE {Image.id} = (SELECT id FROM picked) RETURNING {Image.id} AS id),"
        " made AS (INSERT INTO {Assignment} ({Assignment.created_at}, {Assignment.updated_at},"
        " {Assignment.image}, {Assignment.user}, {Assignment.state}, {Assignment.expires_at})"
        " SELECT %s, %s, taken.id, %s, %s, %s FROM taken RETURNING {Assignment.id} AS id)"
        " SELECT picked.id, picked.width, picked.height, made.id, {suggestion}"
        " FROM picked LEFT JOIN made ON true",
        pick=pick(order, from_id),
        suggestion=image_suggestion_json(image="picked.id"),
    )
