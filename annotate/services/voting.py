"""Voting: record a volunteer's answer for a leased image and apply the consensus rule, or take
it back within the undo window (PRODUCT.md 4). Leasing is in annotate.services.serving.

Lock order, to rule out deadlocks: an assignment row before its image row; image rows in id
order when several are taken.

An open image has no current decision. Decisions are made by the vote that closes its image
(to consensus or excluded), by a reviewer (reviewed or excluded) and at ingest for gold images
(created in consensus), each in the transaction or statement that sets the image's state, and
nothing makes an image open again. So a vote writes at most the image's first decision, and
every count it changes only goes up: one write statement always holds the whole vote.
"""

from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn

from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone

from annotate import rows
from annotate.models import Assignment, Decision, Image, Project, User, Vote
from annotate.rows import vote as vote_sql
from annotate.services import confusions, reliability
from annotate.services.consensus import decides, decision_writes, image_outcome
from annotate.services.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from annotate.services.reliability import StatsDelta
from annotate.services.serving import assignment_for_update, image_free_slots


def _image_for_update(*, image_id: int) -> Image:
    """The image, its row locked, with its project loaded in the same statement."""
    image_columns, project_columns = rows.columns(Image, "i"), rows.columns(Project, "p")
    row = rows.fetch_one(vote_sql.image_for_update(), [image_id])
    if row is None:
        raise NotFound(f"Image {image_id} does not exist.")
    image = image_columns.build(row[: len(image_columns)])
    image.project = project_columns.build(row[len(image_columns) :])
    return image


def vote_submit(*, assignment_id: int, user: User, label_id: int | None) -> tuple[Vote, Image]:
    """Record `user`'s answer for the leased image and apply the consensus rule, all or nothing.
    `label_id` None means "none of these". Returns the vote and the image.

    On PostgreSQL most votes are two statements and no transaction: a plain read, then every
    write in one statement that applies only if the image and the assignment rows are still
    the versions read (see _vote_unless_changed). Where that fails (another vote or a reviewer
    changed them in between, a unique index or a deadlock), and on SQLite, it takes the rows'
    locks and does the same in a transaction."""
    try:
        if connection.vendor == "postgresql":
            done = _vote_unless_changed(assignment_id=assignment_id, user=user, label_id=label_id)
            if done is not None:
                return done
        return _vote_with_locks(assignment_id=assignment_id, user=user, label_id=label_id)
    except IntegrityError:
        raise Conflict("You already voted on this image.") from None


@dataclass
class _VoteTarget:
    assignment: Assignment
    image: Image  # with its project
    label_known: bool  # whether the label is one of the project's
    votes: list[tuple[int, int | None]]  # the image's votes so far: (user id, label id)
    current: Decision | None  # the image's current decision
    versions: tuple[str, str] | None  # PostgreSQL: the image's and the assignment's row versions


def _vote_target(
    *, assignment_id: int, user: User, label_id: int | None, lock: bool
) -> _VoteTarget:
    """What a vote needs to know, in one statement; with `lock`, it locks the assignment, the
    image and the voter's row.

    The voter's row is locked here, first, because the vote's last statement updates it
    together with their annotator stats: every vote takes these locks in the same order."""
    postgresql = connection.vendor == "postgresql"
    read = vote_sql.vote_read(postgresql=postgresql, locked=lock)
    assignment_columns, image_columns = read.assignment, read.image
    project_columns, decision_columns = read.project, read.decision
    found = rows.fetch_all(read.sql, [label_id, assignment_id])
    if not found:
        raise NotFound(f"Assignment {assignment_id} does not exist.")
    row = found[0]
    images_from = len(assignment_columns)
    projects_from = images_from + len(image_columns)
    decisions_from = projects_from + len(project_columns)
    extras_from = decisions_from + len(decision_columns)
    assignment = assignment_columns.build(row[:images_from])
    if assignment.user_id != user.pk:
        raise PermissionDenied("This assignment belongs to another volunteer.")
    image = image_columns.build(row[images_from:projects_from])
    image.project = project_columns.build(row[projects_from:decisions_from])
    decision = (
        None
        if row[decisions_from] is None
        else decision_columns.build(row[decisions_from:extras_from])
    )
    if postgresql:
        votes = [(voter, label) for voter, label in row[extras_from + 1] or []]
        versions = (row[extras_from + 2], row[extras_from + 3])
    else:
        votes = [(voter, label) for *_, voter, label in found if voter is not None]
        versions = None
    return _VoteTarget(assignment, image, bool(row[extras_from]), votes, decision, versions)


@dataclass
class _VotePlan:
    vote: Vote  # not saved yet; its INSERT is the first of `writes`
    image: Image
    writes: list[tuple[str, list[Any]]]  # for rows.write_together()


def _vote_plan(
    *, target: _VoteTarget, user: User, label_id: int | None, guarded: bool = False
) -> _VotePlan:
    """Check the vote against what was read, apply the consensus rule, and return the writes
    that record it. `guarded`: the assignment's and the image's UPDATEs (writes 1 and 2) apply
    only to the row versions read, and say whether they did (RETURNING 1)."""
    assignment, image, votes, current = (
        target.assignment,
        target.image,
        target.votes,
        target.current,
    )
    if assignment.state == Assignment.State.VOTED:
        raise Conflict("You already voted on this image.") from None
    if assignment.state == Assignment.State.SKIPPED:
        raise Conflict("You skipped this image; it can no longer be voted on.")
    project = image.project
    if label_id is not None and not target.label_known:
        raise InvalidInput(f"Label {label_id} is not a label of this project.", field="label")
    # An expired lease still holds its slot until it is swept; once swept, the vote is
    # welcome only if the image still has room for it. Gold images take any number.
    holds_slot = assignment.state == Assignment.State.ACTIVE
    if not holds_slot and not image.is_gold and image_free_slots(image=image, project=project) <= 0:
        raise Conflict("Your lease expired and this image no longer needs your vote.")
    vote = Vote(image=image, user=user, assignment=assignment, label_id=label_id)
    image.votes_count += 1
    if holds_slot:
        image.leases_count = max(0, image.leases_count - 1)
    own = StatsDelta(votes=1)
    answered: confusions.ConfusionDeltas = {}
    if image.is_gold:
        own.gold_votes = 1
        own.gold_correct = int(label_id == image.gold_label_id)
        confusions.add_answer(
            answered,
            user_id=user.pk,
            true=image.gold_label_id,
            given=label_id,
            weight=confusions.GOLD_WEIGHT,
        )
    decided = None
    if image.state == Image.State.OPEN:
        votes.append((user.pk, label_id))
        outcome, rule = image_outcome(image=image, project=project, votes=votes)
        image.state = outcome.state
        decided = outcome if decides(outcome) else None
        if decided is not None:
            image.model_share, image.model_decided = decided.model_share, decided.model_decided
    elif current is not None and not image.is_gold:
        # Decided while this lease was out: the vote is kept but decides nothing; it still
        # counts toward the volunteer's agreement (the decision stands without it).
        own.decided_votes = 1
        own.agreed_votes = int(label_id == current.label_id)
    image.free_slots = image_free_slots(image=image, project=project)
    # The assignment's row lock (or version) and state already rule out a second vote; the
    # unique constraint is the last guard (its error undoes the whole vote, see vote_submit).
    insert_vote = rows.insert_statement(vote)  # sets vote.created_at
    at = rows.moment(vote.created_at)
    assignment_params: list[Any] = [Assignment.State.VOTED, at, assignment.pk]
    image_params: list[Any] = [
        image.votes_count,
        image.leases_count,
        image.free_slots,
        image.state,
        image.model_share,
        image.model_decided,
        at,
        image.pk,
    ]
    if guarded:
        if target.versions is None:
            raise ValueError("a guarded vote needs the row versions its read saw")
        image_version, assignment_version = target.versions
        assignment_params.append(assignment_version)
        image_params.append(image_version)
    writes = [
        insert_vote,
        (vote_sql.assignment_voted(guarded=guarded), assignment_params),
        (vote_sql.image_counts(guarded=guarded), image_params),
        (vote_sql.user_voted(), [user.pk]),
    ]
    # The decision this vote makes, if any, and everyone's stats go in the same statement: the
    # image was open, so the decision is its first and every stats change adds (module
    # docstring).
    if decided is None:
        stats = reliability.stats_added_statement(project_id=project.pk, deltas={user.pk: own})
        writes.append(stats or _impossible("a vote's own stats take something away"))
    else:
        if current is not None:
            _impossible(f"open image {image.pk} has a current decision")
        record = decision_writes(
            image=image,
            previous=None,
            label_id=decided.label_id,
            rule=rule,
            confidence=decided.confidence,
            votes_count=len(votes),
            also={user.pk: own},
            votes=votes,
        )
        if record.stats_left:
            _impossible("a first decision's stats take something away")
        writes += record.statements
    writes += confusions.statements(project_id=project.pk, deltas=answered)
    return _VotePlan(vote, image, writes)


def _impossible(what: str) -> NoReturn:
    """A state that the flow of decisions rules out (see the module docstring) turned up."""
    raise RuntimeError(f"Vote refused: {what}, which no service should allow.")


def _vote_with_locks(*, assignment_id: int, user: User, label_id: int | None) -> tuple[Vote, Image]:
    with transaction.atomic():
        target = _vote_target(assignment_id=assignment_id, user=user, label_id=label_id, lock=True)
        plan = _vote_plan(target=target, user=user, label_id=label_id)
        rows.inserted(plan.vote, rows.write_together(plan.writes))
        target.assignment.state = Assignment.State.VOTED
    return plan.vote, plan.image


# Serialization failure (the write's check, vote_sql.UNCHANGED_CHECK) and deadlock.
_RETRY_STATES = ("40001", "40P01")


def _vote_unless_changed(
    *, assignment_id: int, user: User, label_id: int | None
) -> tuple[Vote, Image] | None:
    """The vote as a plain read and one write statement, with no transaction to open and
    commit (two round trips fewer than _vote_with_locks); None where it must take the locks.

    The write is checked against what the read saw: the image's and the assignment's UPDATEs
    apply only to the row versions read (xmin), and the statement fails as a whole, with a
    serialization failure (vote_sql.UNCHANGED_CHECK) unless both did.
    Every change to an image's votes, decision or state updates its row, so an unchanged row
    means the consensus was decided on the votes that are there. Another failure of this
    statement (the vote's or a decision's unique index, a deadlock) also leaves nothing behind,
    and the locked path then finds out what happened."""
    target = _vote_target(assignment_id=assignment_id, user=user, label_id=label_id, lock=False)
    plan = _vote_plan(target=target, user=user, label_id=label_id, guarded=True)
    try:
        # Inside a caller's transaction (tests, scripts) a savepoint keeps a failure here from
        # spoiling it; in a web request there is none, and this is a single statement.
        with transaction.atomic() if rows.in_transaction() else nullcontext():
            found = rows.write_together(plan.writes, check=vote_sql.UNCHANGED_CHECK)
    except (IntegrityError, OperationalError) as error:
        # Serialization failure (the check) or deadlock: to be tried again with the locks. Any
        # other operational error (the connection lost) is the caller's.
        if (
            isinstance(error, OperationalError)
            and getattr(error.__cause__, "sqlstate", None) not in _RETRY_STATES
        ):
            raise
        return None
    assert found is not None  # the vote's INSERT ... RETURNING gives its row
    rows.inserted(plan.vote, found)
    target.assignment.state = Assignment.State.VOTED
    return plan.vote, plan.image


UNDO_SECONDS = 30


def vote_undo(*, assignment_id: int, user: User, now: datetime | None = None) -> Assignment:
    """Take back one's vote within UNDO_SECONDS, while it has decided nothing: the vote is
    deleted and the image is leased to the same volunteer again, to answer anew."""
    now = now or timezone.now()
    with transaction.atomic():
        assignment = assignment_for_update(assignment_id=assignment_id, user=user)
        vote = Vote.objects.filter(assignment=assignment).first()
        if assignment.state != Assignment.State.VOTED or vote is None:
            raise Conflict("There is no vote of yours on this assignment to undo.")
        if (now - vote.created_at).total_seconds() > UNDO_SECONDS:
            raise Conflict(f"Votes can be undone for {UNDO_SECONDS} seconds only.")
        image = _image_for_update(image_id=assignment.image_id)
        project = image.project
        if image.is_gold or image.state != Image.State.OPEN:
            raise Conflict("This image is already decided; a reviewer can still change it.")
        vote.delete()
        image.votes_count -= 1
        if image_free_slots(image=image, project=project) <= 0:
            # Others hold every slot now: refuse, and the vote stays as it was.
            raise Conflict("Too late to undo: the image went to another volunteer.")
        image.leases_count += 1
        image.free_slots = image_free_slots(image=image, project=project)
        image.save(update_fields=["votes_count", "leases_count", "free_slots", "updated_at"])
        assignment.state = Assignment.State.ACTIVE
        assignment.expires_at = now + timedelta(seconds=project.lease_seconds)
        assignment.save(update_fields=["state", "expires_at", "updated_at"])
        User.objects.filter(pk=user.pk).update(votes_count=F("votes_count") - 1)
        reliability.stats_apply(project_id=project.pk, deltas={user.pk: StatsDelta(votes=-1)})
    assignment.image = image
    return assignment
