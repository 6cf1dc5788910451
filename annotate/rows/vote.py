"""The vote's statements (annotate.services.serving): the read of everything a vote needs, its
writes, and the locking reads of skip and undo.

Each function gives a statement's text, built on first use and kept; the caller passes the
parameters, in the order its docstring gives.
"""

from dataclasses import dataclass
from functools import cache

from annotate.models import Assignment, Decision, Image, Project
from annotate.rows import Columns, columns, lock
from annotate.rows.names import sql

# The columns a vote uses, of the rows it reads: not the file names, hashes, descriptions and
# timestamps, which made up most of the row and of the time spent turning it into objects.
# Any other field is still there if used: read then from the database (Columns' `only`).
_VOTE_READS = {
    "assignment": ("image", "user", "state"),
    "image": (
        "project",
        "state",
        "is_gold",
        "gold_label",
        "flagged_for_review",
        "votes_count",
        "leases_count",
        "free_slots",
        "model_share",
        "model_decided",
    ),
    "project": (
        "min_votes",
        "max_votes",
        "agreement",
        "mode",
        "target_confidence",
        "answer_counts",
        "gold_rate",
        "gold_rate_min",
        "gold_half_life",
        "reliability_threshold",
        "plurality_at_max_votes",
        "model_max_accuracy",
        "model_reliability",
        "mistake_concentration",
    ),
}


@dataclass(frozen=True)
class VoteRead:
    """The vote's read and the shape of its row: the assignment's, image's, project's and
    current decision's columns in that order, whether the label is the project's, then (on
    PostgreSQL) the votes as one array of [user, label] pairs and the image's and the
    assignment's row versions, or (elsewhere) one row per vote ending in its user and label.
    Parameters: label id, assignment id."""

    sql: str
    assignment: Columns[Assignment]
    image: Columns[Image]
    project: Columns[Project]
    decision: Columns[Decision]


@cache
def vote_read(*, postgresql: bool, locked: bool) -> VoteRead:
    """`locked`: the read locks the assignment's, the image's and the voter's rows."""
    assignment = columns(Assignment, "a", _VOTE_READS["assignment"])
    image = columns(Image, "i", _VOTE_READS["image"])
    project = columns(Project, "p", _VOTE_READS["project"])
    decision = columns(Decision, "d")
    if postgresql:
        # The votes as one array: one row to read, not one per vote with every other column
        # (and its timestamps to parse) repeated. xmin: the version of a row, new with every
        # update of it.
        extra = (
            ", (SELECT array_agg(ARRAY[v.{Vote.user}, v.{Vote.label}] ORDER BY v.{Vote.id})"
            " FROM {Vote} v WHERE v.{Vote.image} = i.{Image.id}), i.xmin::text, a.xmin::text"
        )
        votes_join = ""
    else:
        extra = ", v.{Vote.user}, v.{Vote.label}"
        votes_join = " LEFT JOIN {Vote} v ON v.{Vote.image} = i.{Image.id}"
    text = sql(
        "SELECT {assignment}, {image}, {project}, {decision}, EXISTS (SELECT 1 FROM {Label} l"
        " WHERE l.{Label.id} = %s AND l.{Label.project} = i.{Image.project})"
        + extra
        + " FROM {Assignment} a JOIN {Image} i ON i.{Image.id} = a.{Assignment.image}"
        " JOIN {Project} p ON p.{Project.id} = i.{Image.project}"
        " JOIN {User} u ON u.{User.id} = a.{Assignment.user}"
        " LEFT JOIN {Decision} d ON d.{Decision.image} = i.{Image.id} AND d.{Decision.is_current}"
        + votes_join
        + " WHERE a.{Assignment.id} = %s{lock}",
        assignment=assignment.sql,
        image=image.sql,
        project=project.sql,
        decision=decision.sql,
        lock=lock(of="a, i, u") if locked else "",
    )
    return VoteRead(text, assignment, image, project, decision)


# With `guarded`, an UPDATE below applies only to the row version read (one more parameter:
# that version) and says whether it did (RETURNING 1).
_GUARD = " AND xmin = %s::xid RETURNING 1"


@cache
def assignment_voted(*, guarded: bool) -> str:
    """Parameters: state, updated_at, assignment id."""
    return sql(
        "UPDATE {Assignment} SET {Assignment.state} = %s, {Assignment.updated_at} = %s"
        " WHERE {Assignment.id} = %s" + (_GUARD if guarded else "")
    )


@cache
def image_counts(*, guarded: bool) -> str:
    """Parameters: votes_count, leases_count, free_slots, state, model_share, model_decided,
    updated_at, image id."""
    return sql(
        "UPDATE {Image} SET {Image.votes_count} = %s, {Image.leases_count} = %s,"
        " {Image.free_slots} = %s, {Image.state} = %s, {Image.model_share} = %s,"
        " {Image.model_decided} = %s, {Image.updated_at} = %s"
        " WHERE {Image.id} = %s" + (_GUARD if guarded else "")
    )


@cache
def user_voted() -> str:
    """One more vote on the user's count. Parameter: user id."""
    return sql("UPDATE {User} SET {User.votes_count} = {User.votes_count} + 1 WHERE {User.id} = %s")


# For rows.write_together(check=...) over [the vote's INSERT, assignment_voted(guarded=True),
# image_counts(guarded=True), ...]: fails the whole statement with a serialization failure
# unless both guarded UPDATEs changed their row. annotate_unchanged() is the database function
# of migration 0012.
UNCHANGED_CHECK = (
    "annotate_unchanged((SELECT count(*) FROM w1) = 1 AND (SELECT count(*) FROM w2) = 1)"
)


@cache
def assignment_for_update() -> str:
    """The assignment's row (columns(Assignment, "a")), locked. Parameter: assignment id."""
    return sql(
        "SELECT {columns} FROM {Assignment} a WHERE a.{Assignment.id} = %s{lock}",
        columns=columns(Assignment, "a").sql,
        lock=lock(),
    )


@cache
def image_for_update() -> str:
    """The image's row (columns(Image, "i")), locked, then its project's (columns(Project,
    "p")). Parameter: image id."""
    return sql(
        "SELECT {image}, {project} FROM {Image} i JOIN {Project} p"
        " ON p.{Project.id} = i.{Image.project} WHERE i.{Image.id} = %s{lock}",
        image=columns(Image, "i").sql,
        project=columns(Project, "p").sql,
        lock=lock(of="i"),
    )
