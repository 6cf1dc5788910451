"""Serving work: lease the next image to a volunteer; give it back by a skip or an expiry
(PRODUCT.md 4). Votes and their undo are in annotate.services.voting.

Lock order, to rule out deadlocks: an assignment row before its image row; image rows in id
order when several are taken.
"""

import random
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, IntegerField, Max, Min, OuterRef, Value
from django.db.models.functions import Greatest, Least
from django.utils import timezone

from annotate import rows, selectors
from annotate.models import Assignment, Candidate, Image, Project, User
from annotate.rows import lease as lease_sql
from annotate.rows import vote as vote_sql
from annotate.services import reliability
from annotate.services.errors import Conflict, NotFound, PermissionDenied


def image_capacity(*, votes_count: int, min_votes: int, max_votes: int) -> int:
    """How many volunteers may hold a lease on an open image with `votes_count` votes.

    Enough at once to reach `min_votes`; past that one at a time, because any further vote may
    decide the image and a parallel one would be wasted; never beyond `max_votes`.
    """
    return max(0, min(max(min_votes - votes_count, 1), max_votes - votes_count))


def image_free_slots(*, image: Image, project: Project) -> int:
    if image.state != Image.State.OPEN:
        return 0
    capacity = image_capacity(
        votes_count=image.votes_count, min_votes=project.min_votes, max_votes=project.max_votes
    )
    return max(0, capacity - image.leases_count)


def project_refresh_free_slots(*, project: Project) -> int:
    """Recompute `free_slots` of every open image after a policy change, in one UPDATE.

    The SQL mirrors image_free_slots(); tests check that the two agree.
    """
    votes = F("votes_count")
    capacity = Least(
        Greatest(Value(project.min_votes) - votes, Value(1)),
        Value(project.max_votes) - votes,
        output_field=IntegerField(),
    )
    # Images held out of the queue while their candidate labels are verified stay held.
    held = Exists(
        Candidate.objects.filter(
            image=OuterRef("pk"), is_gold=False, state__in=["open", "disputed"]
        )
    )
    return (
        Image.objects.filter(project=project, state=Image.State.OPEN)
        .exclude(held, votes_count=0, leases_count=0)
        .update(
            free_slots=Greatest(capacity - F("leases_count"), Value(0), output_field=IntegerField())
        )
    )


def serving_query(
    *, project: Project, user: User, from_id: int | None = None
) -> tuple[str, list[Any]]:
    """The statement that picks (and locks) the next image for `user` (open, with a free slot,
    never leased to them before), with its parameters; from `from_id` up when given. Public so
    that the load benchmark can EXPLAIN it."""
    params: list[Any] = [project.pk, user.pk]
    if from_id is not None:
        params.append(from_id)
    return lease_sql.pick(project.serving_order, from_id is not None), params


def _pick_starts(*, project: Project, user: User) -> list[int | None]:
    """The ids the pick starts from, in turn (None: the first in serving order); none when
    nothing is left for `user`. In random order a random point in the id range, then the next
    id up or from the start: two index probes instead of ORDER BY random(), which would sort
    every open image."""
    if project.serving_order != Project.ServingOrder.RANDOM:
        return [None]
    low, high = rows.fetch_one(lease_sql.candidate_range(), [project.pk, user.pk]) or (None, None)
    return [] if low is None else [random.randint(low, high), None]


def _pick_image(*, project: Project, user: User) -> tuple[int, int, int] | None:
    """(id, width, height) of the next image for `user`, its row locked; None when none."""
    for start in _pick_starts(project=project, user=user):
        picked = rows.fetch_one(*serving_query(project=project, user=user, from_id=start))
        if picked is not None:
            return picked
    return None


def _lease_once(*, project: Project, user: User, now: datetime) -> Assignment | None:
    expires_at = now + timedelta(seconds=project.lease_seconds)
    assignment = Assignment(user=user, expires_at=expires_at)
    if connection.vendor == "postgresql":
        picked = _lease_in_one_statement(project=project, user=user, assignment=assignment)
    else:
        picked = _lease_step_by_step(project=project, user=user, assignment=assignment)
    if picked is None:
        return None
    # What the answer shows of the image, without reading its row again.
    image_id, width, height = picked
    assignment.image = Image(pk=image_id, project=project, width=width, height=height)
    return assignment


def _lease_step_by_step(
    *, project: Project, user: User, assignment: Assignment
) -> tuple[int, int, int] | None:
    with transaction.atomic():
        picked = _pick_image(project=project, user=user)
        if picked is None:
            return None
        # Conditional on a free slot: with no row locks (SQLite) this is what keeps an image
        # from being over-filled.
        taken = rows.execute(lease_sql.take_slot(), [picked[0]])
        if not taken:
            raise _Retry
        assignment.image_id = picked[0]
        rows.insert(assignment)
    return picked


def _lease_in_one_statement(
    *, project: Project, user: User, assignment: Assignment
) -> tuple[int, int, int] | None:
    """The steps of _lease_step_by_step() as one statement: one round trip, and no transaction
    to open and commit. Pick and lock an image, take one of its slots, insert the assignment;
    and read what the answer shows with it, the suggestion for that image (kept on the
    assignment as `leased_suggestion`)."""
    now = rows.moment(timezone.now())
    for from_id in _pick_starts(project=project, user=user):
        _, pick_params = serving_query(project=project, user=user, from_id=from_id)
        row = rows.fetch_one(
            lease_sql.lease_in_one(project.serving_order, from_id is not None),
            [
                *pick_params,
                now,
                now,
                user.pk,
                Assignment.State.ACTIVE,
                rows.moment(assignment.expires_at),
                project.pk,
            ],
        )
        if row is not None:
            assignment.image_id = row[0]
            rows.inserted(assignment, (row[3],))
            assignment.leased_suggestion = selectors.suggestion_of(row[4])
            picked: tuple[int, int, int] = row[:3]
            return picked
    return None


def _lease_gold(*, project: Project, user: User, now: datetime) -> Assignment | None:
    """Lease a random gold image this user has not seen. Gold images have no vote limit."""
    seen = Assignment.objects.filter(user=user, image=OuterRef("pk"))
    gold = Image.objects.filter(project=project, is_gold=True).exclude(Exists(seen))
    bounds = gold.aggregate(low=Min("id"), high=Max("id"))
    if bounds["low"] is None:
        return None
    pivot = random.randint(bounds["low"], bounds["high"])
    picked = (
        gold.filter(id__gte=pivot).order_by("id").values_list("id", "width", "height").first()
        or gold.order_by("id").values_list("id", "width", "height").first()
    )
    assert picked is not None  # `bounds` found a gold image in the same set
    image_id, width, height = picked
    with transaction.atomic():
        Image.objects.filter(pk=image_id).update(leases_count=F("leases_count") + 1)
        expires_at = now + timedelta(seconds=project.lease_seconds)
        assignment = Assignment.objects.create(image_id=image_id, user=user, expires_at=expires_at)
    assignment.image = Image(pk=image_id, project=project, width=width, height=height)
    return assignment


class _Retry(Exception):
    """The picked image was taken between the pick and the lease; pick again."""


def assignment_lease(
    *, project: Project, user: User, now: datetime | None = None
) -> Assignment | None:
    """Lease the next image of `project` to `user`, or return None when nothing is left for them.

    One short transaction per try. An image already leased, voted or skipped by this user is
    never offered again.
    """
    now = now or timezone.now()
    if reliability.gold_due(project=project, user=user):
        try:
            gold = _lease_gold(project=project, user=user, now=now)
        except IntegrityError:  # a concurrent lease by the same user took the same image
            gold = None
        if gold is not None:
            return gold
    swept = False
    for _ in range(5):
        try:
            assignment = _lease_once(project=project, user=user, now=now)
        except (_Retry, IntegrityError):
            # IntegrityError: two concurrent leases by the same user picked the same image.
            continue
        if assignment is not None:
            return assignment
        # Nothing free: leases that expired but were not swept yet may hold the last slots.
        if swept or not assignments_expire(project=project, now=now):
            return None
        swept = True
    return None


def assignment_for_update(*, assignment_id: int, user: User) -> Assignment:
    """`user`'s assignment, its row locked (first, by the lock order)."""
    assignment_columns = rows.columns(Assignment, "a")
    row = rows.fetch_one(vote_sql.assignment_for_update(), [assignment_id])
    if row is None:
        raise NotFound(f"Assignment {assignment_id} does not exist.")
    assignment = assignment_columns.build(row)
    if assignment.user_id != user.pk:
        raise PermissionDenied("This assignment belongs to another volunteer.")
    return assignment


def assignment_skip(*, assignment_id: int, user: User) -> Assignment:
    """Give the image back; it is not offered to this user again. Skipping twice is harmless."""
    with transaction.atomic():
        assignment = assignment_for_update(assignment_id=assignment_id, user=user)
        if assignment.state == Assignment.State.VOTED:
            raise Conflict("You already voted on this image.") from None
        if assignment.state == Assignment.State.ACTIVE:
            _release_leases({assignment.image_id: 1})
        if assignment.state != Assignment.State.SKIPPED:
            assignment.state = Assignment.State.SKIPPED
            assignment.save(update_fields=["state", "updated_at"])
    return assignment


def assignment_release(*, assignment_id: int, user: User) -> None:
    """Hand back a lease the volunteer will not answer (their tab was hidden or closed): the
    image is back in the pool at once, for everyone, this volunteer included, since an
    unanswered lease leaves no trace (its row goes). A lease already answered, skipped or
    expired holds nothing: then nothing changes."""
    with transaction.atomic():
        assignment = assignment_for_update(assignment_id=assignment_id, user=user)
        if assignment.state != Assignment.State.ACTIVE:
            return
        Assignment.objects.filter(pk=assignment.pk).delete()
        _release_leases({assignment.image_id: 1})


def _release_leases(leases_per_image: dict[int, int]) -> None:
    """Give back lease slots, locking the images in id order."""
    images = Image.objects.select_for_update().filter(pk__in=leases_per_image).order_by("id")
    projects: dict[int, Project] = {}
    for image in images:
        project = projects.get(image.project_id) or Project.objects.get(pk=image.project_id)
        projects[image.project_id] = project
        image.leases_count = max(0, image.leases_count - leases_per_image[image.pk])
        image.free_slots = image_free_slots(image=image, project=project)
        image.save(update_fields=["leases_count", "free_slots", "updated_at"])


def assignments_expire(
    *, project: Project | None = None, now: datetime | None = None, batch_size: int = 500
) -> int:
    """Mark leases past their expiry as expired and free their slots. Returns how many."""
    now = now or timezone.now()
    total = 0
    while True:
        with transaction.atomic():
            expired = Assignment.objects.filter(state=Assignment.State.ACTIVE, expires_at__lt=now)
            if project is not None:
                expired = expired.filter(image__project=project)
            rows = list(
                expired.select_for_update(skip_locked=True, of=("self",))
                .order_by("id")
                .values_list("id", "image_id")[:batch_size]
            )
            if not rows:
                return total
            Assignment.objects.filter(pk__in=[row[0] for row in rows]).update(
                state=Assignment.State.EXPIRED, updated_at=now
            )
            _release_leases(Counter(image_id for _, image_id in rows))
        total += len(rows)
        if len(rows) < batch_size:
            return total
