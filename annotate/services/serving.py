"""Serving work: lease the next image to a volunteer; record a vote or a skip (PRODUCT.md 4).

Lock order, to rule out deadlocks: an assignment row before its image row; image rows in id
order when several are taken.
"""

import random
from collections import Counter
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Exists, F, IntegerField, Max, Min, OuterRef, QuerySet, Value
from django.db.models.functions import Greatest, Least
from django.utils import timezone

from annotate.models import Assignment, Decision, Image, Label, Project, User, Vote
from annotate.services import reliability
from annotate.services.consensus import image_apply_consensus
from annotate.services.reliability import StatsDelta
from annotate.services.errors import Conflict, InvalidInput, NotFound, PermissionDenied


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
    return Image.objects.filter(project=project, state=Image.State.OPEN).update(
        free_slots=Greatest(capacity - F("leases_count"), Value(0), output_field=IntegerField())
    )


def _serving_candidates(*, project: Project, user: User) -> QuerySet:
    already_seen = Assignment.objects.filter(user=user, image=OuterRef("pk"))
    return Image.objects.filter(project=project, state=Image.State.OPEN, free_slots__gt=0).exclude(
        Exists(already_seen)
    )


def _pick_image(*, project: Project, user: User) -> tuple[int, int, int] | None:
    """(id, width, height) of the next image for `user`, its row locked; None when none."""
    candidates = _serving_candidates(project=project, user=user)
    if project.serving_order == Project.ServingOrder.RANDOM:
        # A random point in the id range, then the next id up (or from the start): two index
        # probes instead of ORDER BY random(), which would sort every open image.
        bounds = candidates.aggregate(low=Min("id"), high=Max("id"))
        if bounds["low"] is None:
            return None
        pivot = random.randint(bounds["low"], bounds["high"])
        orderings = [candidates.filter(id__gte=pivot).order_by("id"), candidates.order_by("id")]
    elif project.serving_order == Project.ServingOrder.UNCERTAIN:
        orderings = [candidates.order_by("-uncertainty", "id")]
    else:
        orderings = [candidates.order_by("-votes_count", "id")]
    for queryset in orderings:
        # SKIP LOCKED: volunteers asking at the same moment take different images, never wait.
        picked = queryset.select_for_update(skip_locked=True).values_list("id", "width", "height").first()
        if picked is not None:
            return picked
    return None


def _lease_once(*, project: Project, user: User, now: datetime) -> Assignment | None:
    with transaction.atomic():
        picked = _pick_image(project=project, user=user)
        if picked is None:
            return None
        image_id, width, height = picked
        # Conditional on a free slot: on PostgreSQL the row lock already guarantees it; on
        # SQLite (no row locks) this keeps an image from being over-filled all the same.
        taken = Image.objects.filter(
            pk=image_id, state=Image.State.OPEN, free_slots__gt=0
        ).update(leases_count=F("leases_count") + 1, free_slots=F("free_slots") - 1)
        if not taken:
            raise _Retry
        expires_at = now + timedelta(seconds=project.lease_seconds)
        assignment = Assignment.objects.create(image_id=image_id, user=user, expires_at=expires_at)
    # What the answer shows of the image, without reading its row again.
    assignment.image = Image(pk=image_id, project=project, width=width, height=height)
    return assignment


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
    image_id, width, height = picked
    with transaction.atomic():
        Image.objects.filter(pk=image_id).update(leases_count=F("leases_count") + 1)
        expires_at = now + timedelta(seconds=project.lease_seconds)
        assignment = Assignment.objects.create(image_id=image_id, user=user, expires_at=expires_at)
    assignment.image = Image(pk=image_id, project=project, width=width, height=height)
    return assignment


class _Retry(Exception):
    """The picked image was taken between the pick and the lease; pick again."""


def assignment_lease(*, project: Project, user: User, now: datetime | None = None) -> Assignment | None:
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


def _assignment_for_update(*, assignment_id: int, user: User) -> Assignment:
    assignment = Assignment.objects.select_for_update().filter(pk=assignment_id).first()
    if assignment is None:
        raise NotFound(f"Assignment {assignment_id} does not exist.")
    if assignment.user_id != user.pk:
        raise PermissionDenied("This assignment belongs to another volunteer.")
    return assignment


def vote_submit(*, assignment_id: int, user: User, label_id: int | None) -> tuple[Vote, Image]:
    """Record `user`'s answer for the leased image and apply the consensus rule, all in one
    transaction. `label_id` None means "none of these". Returns the vote and the image."""
    try:
        return _vote_submit(assignment_id=assignment_id, user=user, label_id=label_id)
    except IntegrityError:
        raise Conflict("You already voted on this image.") from None


def _vote_submit(*, assignment_id: int, user: User, label_id: int | None) -> tuple[Vote, Image]:
    with transaction.atomic():
        assignment = _assignment_for_update(assignment_id=assignment_id, user=user)
        if assignment.state == Assignment.State.VOTED:
            raise Conflict("You already voted on this image.")
        if assignment.state == Assignment.State.SKIPPED:
            raise Conflict("You skipped this image; it can no longer be voted on.")
        image = (
            Image.objects.select_for_update(of=("self",)).select_related("project")
            .get(pk=assignment.image_id)
        )
        project = image.project
        if label_id is not None and not Label.objects.filter(pk=label_id, project=project).exists():
            raise InvalidInput(f"Label {label_id} is not a label of this project.", field="label")
        # An expired lease still holds its slot until it is swept; once swept, the vote is
        # welcome only if the image still has room for it. Gold images take any number.
        holds_slot = assignment.state == Assignment.State.ACTIVE
        if not holds_slot and not image.is_gold and image_free_slots(image=image, project=project) <= 0:
            raise Conflict("Your lease expired and this image no longer needs your vote.")
        # The assignment's row lock and state already rule out a second vote; the unique
        # constraint is the last guard (its error rolls the whole vote back, see below).
        vote = Vote.objects.create(image=image, user=user, assignment=assignment, label_id=label_id)
        assignment.state = Assignment.State.VOTED
        Assignment.objects.filter(pk=assignment.pk).update(state=assignment.state, updated_at=vote.created_at)
        image.votes_count += 1
        if holds_slot:
            image.leases_count = max(0, image.leases_count - 1)
        own = StatsDelta(votes=1)
        if image.is_gold:
            own.gold_votes = 1
            own.gold_correct = int(label_id == image.gold_label_id)
        if image.state == Image.State.OPEN:
            image_apply_consensus(image=image, project=project, voter_deltas={user.pk: own})
        else:
            # Gold, or decided while this lease was out: the vote is kept but decides nothing;
            # on a decided image it still counts toward the volunteer's agreement.
            current = Decision.objects.filter(image=image, is_current=True).first()
            if current is not None and not image.is_gold:
                own.decided_votes = 1
                own.agreed_votes = int(label_id == current.label_id)
            reliability.stats_apply(project_id=project.pk, deltas={user.pk: own})
        image.free_slots = image_free_slots(image=image, project=project)
        Image.objects.filter(pk=image.pk).update(
            votes_count=image.votes_count, leases_count=image.leases_count,
            free_slots=image.free_slots, state=image.state, updated_at=vote.created_at,
        )
        User.objects.filter(pk=user.pk).update(votes_count=F("votes_count") + 1)
    return vote, image


def assignment_skip(*, assignment_id: int, user: User) -> Assignment:
    """Give the image back; it is not offered to this user again. Skipping twice is harmless."""
    with transaction.atomic():
        assignment = _assignment_for_update(assignment_id=assignment_id, user=user)
        if assignment.state == Assignment.State.VOTED:
            raise Conflict("You already voted on this image.")
        if assignment.state == Assignment.State.ACTIVE:
            _release_leases({assignment.image_id: 1})
        if assignment.state != Assignment.State.SKIPPED:
            assignment.state = Assignment.State.SKIPPED
            assignment.save(update_fields=["state", "updated_at"])
    return assignment


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


UNDO_SECONDS = 30


def vote_undo(*, assignment_id: int, user: User, now: datetime | None = None) -> Assignment:
    """Take back one's vote within UNDO_SECONDS, while it has decided nothing: the vote is
    deleted and the image is leased to the same volunteer again, to answer anew."""
    now = now or timezone.now()
    with transaction.atomic():
        assignment = _assignment_for_update(assignment_id=assignment_id, user=user)
        vote = Vote.objects.filter(assignment=assignment).first()
        if assignment.state != Assignment.State.VOTED or vote is None:
            raise Conflict("There is no vote of yours on this assignment to undo.")
        if (now - vote.created_at).total_seconds() > UNDO_SECONDS:
            raise Conflict(f"Votes can be undone for {UNDO_SECONDS} seconds only.")
        image = (
            Image.objects.select_for_update(of=("self",)).select_related("project")
            .get(pk=assignment.image_id)
        )
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
