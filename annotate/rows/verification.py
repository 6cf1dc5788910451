"""Verification's statements (issue 15): lease a grid of candidates and give leases back
(annotate.services.verification), hold images out of the classify queue and read the model's
next candidate (annotate.services.verification_candidates), and the reads of voters' records,
grids and what a volunteer may see (annotate.selectors.verification).

Each function gives a statement's text, built on first use and kept (per number of ids where
that changes the text); the caller passes the parameters, in the order its docstring gives.
"""

from functools import cache, lru_cache
from typing import Any

from django.db.models import Model

from annotate.models import Candidate, CandidateVote, Grid, GridItem, Image
from annotate.rows import lock
from annotate.rows.names import Table, sql

# The verification models, by the name templates use, besides annotate.rows.names' own.
_MODELS: dict[str, type[Model]] = {
    "Candidate": Candidate,
    "CandidateVote": CandidateVote,
    "Grid": Grid,
    "GridItem": GridItem,
}


@cache
def _table(name: str) -> Table:
    return Table(_MODELS[name])


def _sql(template: str, **values: Any) -> str:
    """names.sql() with the verification models' `{Model}` and `{Model.field}` names too."""
    return sql(template, **{name: _table(name) for name in _MODELS}, **values)


def _marks(count: int) -> str:
    return ", ".join(["%s"] * count)


_OPEN = Candidate.State.OPEN.value
_ACCEPTED = Candidate.State.ACCEPTED.value
_REJECTED = Candidate.State.REJECTED.value
_IMAGE_OPEN = Image.State.OPEN.value

# --- the grid lease (annotate.services.verification) ---

# A candidate's votes so far.
_VOTES = "(c.{Candidate.yes_count} + c.{Candidate.no_count})"
# Room for one more lease of candidate `c` (capacity as serving.image_capacity). Parameters:
# min_votes, min_votes, max_votes.
_HAS_ROOM = (
    "(CASE WHEN %s - " + _VOTES + " > 1 THEN %s - " + _VOTES + " ELSE 1 END)"
    " - c.{Candidate.leases_count} > 0"
    " AND %s - " + _VOTES + " - c.{Candidate.leases_count} > 0"
)
# The candidates a volunteer may be given: open, not gold, of an open image, with votes still
# needed beyond those on their way, never in a grid of theirs before. The partial index
# candidate_open_by_label covers it (its condition has the same literals). Parameters:
# project id, min_votes, min_votes, max_votes, user id.
_ELIGIBLE = (
    "FROM {Candidate} c JOIN {Image} i ON i.{Image.id} = c.{Candidate.image}"
    " WHERE c.{Candidate.project} = %s AND c.{Candidate.state} = '{open}'"
    " AND NOT c.{Candidate.is_gold} AND i.{Image.state} = '{image_open}'"
    " AND " + _HAS_ROOM + " AND NOT EXISTS (SELECT 1 FROM {GridItem} gi"
    " WHERE gi.{GridItem.volunteer} = %s AND gi.{GridItem.candidate} = c.{Candidate.id})"
)


@cache
def grid_lease_in_one() -> str:
    """Pick the label of the oldest candidate left for a volunteer, pick and lock (SKIP LOCKED:
    volunteers asking at once take different items, never wait) up to `size` of its candidates
    closest to a decision, count their leases, insert the grid and its items, as one statement
    (PostgreSQL). Gives (grid id, label id, items inserted), no row if nothing was left.
    Parameters: the eligible candidates' (project id, min_votes, min_votes, max_votes, user
    id) twice, size; the grid's created_at, updated_at, project id, volunteer id, expires_at;
    the items' volunteer id."""
    locked = lock(of="c", skip_locked=True)
    return _sql(
        "WITH first AS (SELECT c.{Candidate.label} AS label_id " + _ELIGIBLE + " ORDER BY"
        " c.{Candidate.id} LIMIT 1{locked}),"
        " picked AS (SELECT c.{Candidate.id} AS id " + _ELIGIBLE + " AND c.{Candidate.label}"
        " = (SELECT label_id FROM first) ORDER BY " + _VOTES + " DESC, c.{Candidate.id}"
        " LIMIT %s{locked}),"
        " taken AS (UPDATE {Candidate} SET {Candidate.leases_count} = {Candidate.leases_count}"
        " + 1 WHERE {Candidate.id} IN (SELECT id FROM picked) RETURNING {Candidate.id} AS id),"
        " grid AS (INSERT INTO {Grid} ({Grid.created_at}, {Grid.updated_at}, {Grid.project},"
        " {Grid.volunteer}, {Grid.label}, {Grid.expires_at}, {Grid.answered_at},"
        " {Grid.expired}) SELECT %s, %s, %s, %s, (SELECT label_id FROM first), %s, NULL, false"
        " WHERE EXISTS (SELECT 1 FROM taken) RETURNING {Grid.id} AS id, {Grid.label} AS label_id),"
        " items AS (INSERT INTO {GridItem} ({GridItem.grid}, {GridItem.candidate},"
        " {GridItem.volunteer}) SELECT grid.id, taken.id, %s FROM grid CROSS JOIN taken"
        " RETURNING {GridItem.grid} AS grid_id)"
        " SELECT grid.id, grid.label_id, (SELECT COUNT(*) FROM items) FROM grid",
        open=_OPEN,
        image_open=_IMAGE_OPEN,
        locked=locked,
    )


@cache
def grid_first_label() -> str:
    """The label id of the oldest candidate left for a volunteer (the step-by-step lease, with
    no row locks: SQLite). Parameters: project id, min_votes, min_votes, max_votes, user id."""
    return _sql(
        "SELECT c.{Candidate.label} " + _ELIGIBLE + " ORDER BY c.{Candidate.id} LIMIT 1",
        open=_OPEN,
        image_open=_IMAGE_OPEN,
    )


@cache
def grid_pick() -> str:
    """The ids of up to `size` candidates of the label left for a volunteer, closest to a
    decision first. Parameters: project id, min_votes, min_votes, max_votes, user id, label id,
    size."""
    return _sql(
        "SELECT c.{Candidate.id} " + _ELIGIBLE + " AND c.{Candidate.label} = %s"
        " ORDER BY " + _VOTES + " DESC, c.{Candidate.id} LIMIT %s",
        open=_OPEN,
        image_open=_IMAGE_OPEN,
    )


@cache
def candidate_take_lease() -> str:
    """Count one more lease of the candidate if it still has room (with no row locks, on
    SQLite, this is what keeps a candidate from being over-leased). Parameters: candidate id,
    min_votes, min_votes, max_votes."""
    return _sql(
        "UPDATE {Candidate} AS c SET {Candidate.leases_count} = {Candidate.leases_count} + 1"
        " WHERE c.{Candidate.id} = %s AND " + _HAS_ROOM
    )


@lru_cache(maxsize=64)
def candidates_release(candidates: int) -> str:
    """Give back one lease of each of `candidates` candidates (never below zero). Parameters:
    the candidate ids."""
    return _sql(
        "UPDATE {Candidate} SET {Candidate.leases_count} = CASE WHEN {Candidate.leases_count} > 0"
        " THEN {Candidate.leases_count} - 1 ELSE 0 END WHERE {Candidate.id} IN ({marks})",
        marks=_marks(candidates),
    )


# --- candidates (annotate.services.verification_candidates) ---


@lru_cache(maxsize=64)
def images_hold(images: int) -> str:
    """Take `images` images out of the classify queue (no free slots) while their candidates
    are verified, unless they are gold, decided, or someone already leased or voted on them.
    Parameters: the image ids."""
    return _sql(
        "UPDATE {Image} SET {Image.free_slots} = 0 WHERE {Image.id} IN ({marks})"
        " AND {Image.state} = '{image_open}' AND NOT {Image.is_gold}"
        " AND {Image.votes_count} = 0 AND {Image.leases_count} = 0",
        marks=_marks(images),
        image_open=_IMAGE_OPEN,
    )


@cache
def model_top() -> str:
    """The active model's most probable labels (Suggestion.top, JSON) for an image.
    Parameter: image id."""
    return _sql(
        "SELECT s.{Suggestion.top} FROM {Suggestion} s"
        " JOIN {ActiveModel} m ON m.{ActiveModel.version} = s.{Suggestion.model_version}"
        " WHERE s.{Suggestion.image} = %s LIMIT 1"
    )


# --- reads (annotate.selectors.verification) ---


@lru_cache(maxsize=64)
def voter_counts(users: int) -> str:
    """Each of `users` voters' confusion counts on the project's settled candidates: (user id,
    true yes, false no, true no, false yes), one row per voter with a rated vote. A vote rates
    its voter against its CandidateVote.reference (gold's known answer, what the votes before
    it had settled, or a reviewer's decision); votes with none rate no one.
    Parameters: project id, the user ids."""
    return _sql(
        "SELECT s.user_id,"
        " SUM(CASE WHEN s.truth AND s.answer THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN s.truth AND NOT s.answer THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN NOT s.truth AND NOT s.answer THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN NOT s.truth AND s.answer THEN 1 ELSE 0 END)"
        " FROM (SELECT v.{CandidateVote.user} AS user_id, v.{CandidateVote.answer} AS answer,"
        " v.{CandidateVote.reference} AS truth FROM {CandidateVote} v"
        " JOIN {Candidate} c ON c.{Candidate.id} = v.{CandidateVote.candidate}"
        " WHERE c.{Candidate.project} = %s AND v.{CandidateVote.user} IN ({marks})"
        " AND v.{CandidateVote.reference} IS NOT NULL) s GROUP BY s.user_id",
        marks=_marks(users),
    )


@cache
def label_settled_counts() -> str:
    """Expected right and wrong non-gold candidates of the project with a vote or settled, the
    label's and the others': (whether of the label, the sum of their posteriors, the sum of
    one minus them), a settled one counting as settled (posterior 1 or 0), one with none yet
    as 0.5. Parameters: label id, project id."""
    right = (
        "CASE c.{Candidate.state} WHEN '{accepted}' THEN 1.0 WHEN '{rejected}' THEN 0.0"
        " ELSE COALESCE(c.{Candidate.posterior}, 0.5) END"
    )
    return _sql(
        "SELECT c.{Candidate.label} = %s, SUM(" + right + "), SUM(1.0 - " + right + ")"
        " FROM {Candidate} c WHERE c.{Candidate.project} = %s AND NOT c.{Candidate.is_gold}"
        " AND (c.{Candidate.yes_count} + c.{Candidate.no_count} > 0"
        " OR c.{Candidate.state} IN ('{accepted}', '{rejected}'))"
        " GROUP BY 1",
        accepted=_ACCEPTED,
        rejected=_REJECTED,
    )


@cache
def grid_items() -> str:
    """(item id, image id, width, height) of each item of a grid. Parameter: grid id."""
    return _sql(
        "SELECT gi.{GridItem.id}, i.{Image.id}, i.{Image.width}, i.{Image.height}"
        " FROM {GridItem} gi JOIN {Candidate} c ON c.{Candidate.id} = gi.{GridItem.candidate}"
        " JOIN {Image} i ON i.{Image.id} = c.{Candidate.image} WHERE gi.{GridItem.grid} = %s"
    )


@cache
def image_visible() -> str:
    """Whether a volunteer may see an image for verification (one row, one boolean): it is in
    one of their grids, or it shows a label's accepted example (known-yes gold or accepted).
    Parameters: user id, image id, image id."""
    return _sql(
        "SELECT EXISTS (SELECT 1 FROM {GridItem} gi JOIN {Candidate} c"
        " ON c.{Candidate.id} = gi.{GridItem.candidate}"
        " WHERE gi.{GridItem.volunteer} = %s AND c.{Candidate.image} = %s)"
        " OR EXISTS (SELECT 1 FROM {Candidate} c WHERE c.{Candidate.image} = %s"
        " AND ((c.{Candidate.is_gold} AND c.{Candidate.gold_answer})"
        " OR (NOT c.{Candidate.is_gold} AND c.{Candidate.state} = '{accepted}')))",
        accepted=_ACCEPTED,
    )
