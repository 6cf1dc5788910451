"""Verification, the candidate-grid task (issue 15): lease a grid, record its answer, decide.

A volunteer gets one label at a time and a grid of its open candidates, marks those that show
it and submits once; unmarked items count as "no". Each candidate's probability of being right
is re-estimated from its votes, the voters' measured reliability and the label's own share of
good candidates (verification_consensus), and it is decided once that probability is sure
enough either way, or disputed at `max_votes`.

Lock order, to rule out deadlocks: the grid row, then candidate rows in id order, then image
rows in id order (a classify vote never locks candidates).
"""

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from annotate import rows
from annotate.flag_reasons import VERIFICATION_DISPUTED, flag_reason
from annotate.models import Candidate, CandidateVote, Decision, Grid, GridItem, Image, Project, User
from annotate.rows import verification as statements
from annotate.selectors import verification as selectors
from annotate.services import reliability, verification_candidates
from annotate.services import verification_consensus as consensus_math
from annotate.services.consensus import decision_record
from annotate.services.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from annotate.services.reliability import StatsDelta
from annotate.services.serving import image_free_slots

# The most gold items in one grid, whatever the project's gold rate.
GOLD_SHARE_MAX = 0.25


def _eligible_params(project: Project, user: User) -> list[int]:
    """The parameters that pick the candidates `user` may be given, in the statements of
    annotate.rows.verification: project id, min_votes, min_votes, max_votes, user id."""
    return [project.pk, project.min_votes, project.min_votes, project.max_votes, user.pk]


def _gold_count(project: Project) -> int:
    if project.gold_rate <= 0:
        return 0
    return max(
        1,
        min(round(project.grid_size * project.gold_rate), int(project.grid_size * GOLD_SHARE_MAX)),
    )


def grid_lease(*, project: Project, user: User, now: datetime | None = None) -> Grid | None:
    """Lease a grid of one label's open candidates to `user`, or None when none is left.

    Up to `grid_size` candidates (less the gold items mixed in), taken together in one
    statement on PostgreSQL; an (image, label) is never offered to the same volunteer twice."""
    now = now or timezone.now()
    swept = False
    for _ in range(5):
        try:
            with transaction.atomic():
                grid = _lease_once(project=project, user=user, now=now)
        except IntegrityError:  # two leases by the same volunteer took the same candidate
            continue
        if grid is not None:
            return grid
        if swept or not grids_expire(project=project, now=now):
            return None
        swept = True
    return None


def _lease_once(*, project: Project, user: User, now: datetime) -> Grid | None:
    expires_at = now + timedelta(seconds=project.lease_seconds)
    size = project.grid_size - _gold_count(project)
    if connection.vendor == "postgresql":
        grid = _lease_in_one_statement(
            project=project, user=user, now=now, expires_at=expires_at, size=size
        )
    else:
        grid = _lease_step_by_step(
            project=project, user=user, now=now, expires_at=expires_at, size=size
        )
    if grid is not None:
        _add_gold(grid=grid, project=project, user=user)
    return grid


def _lease_in_one_statement(
    *, project: Project, user: User, now: datetime, expires_at: datetime, size: int
) -> Grid | None:
    """Pick the label of the oldest candidate left for `user`, pick and lock (SKIP LOCKED: two
    volunteers asking at once take different items, never wait) up to `size` of its
    candidates closest to a decision, count their leases, insert the grid and its items."""
    params = _eligible_params(project, user)
    at = rows.moment(now)
    found = rows.fetch_all(
        statements.grid_lease_in_one(),
        [*params, *params, size, at, at, project.pk, user.pk, rows.moment(expires_at), user.pk],
    )
    if not found:
        return None
    grid_id, label_id, _ = found[0]
    return Grid(
        pk=grid_id, project=project, volunteer=user, label_id=label_id, expires_at=expires_at
    )


def _lease_step_by_step(
    *, project: Project, user: User, now: datetime, expires_at: datetime, size: int
) -> Grid | None:
    """The same without row locks (SQLite, whose writers take turns): each lease is counted
    only if the candidate still has room."""
    params = _eligible_params(project, user)
    first = rows.fetch_one(statements.grid_first_label(), params)
    if first is None:
        return None
    picked = rows.fetch_all(
        statements.grid_pick(),
        [*params, first[0], size],
    )
    taken = [
        candidate_id
        for (candidate_id,) in picked
        if rows.execute(
            statements.candidate_take_lease(),
            [candidate_id, project.min_votes, project.min_votes, project.max_votes],
        )
    ]
    if not taken:
        return None
    grid = Grid.objects.create(
        project=project, volunteer=user, label_id=first[0], expires_at=expires_at
    )
    GridItem.objects.bulk_create(
        GridItem(grid=grid, candidate_id=candidate_id, volunteer=user) for candidate_id in taken
    )
    return grid


def _add_gold(*, grid: Grid, project: Project, user: User) -> None:
    """Mix gold candidates of the grid's label (known yes or no) that `user` has not seen
    into the grid. They hold no lease: gold takes any number of votes."""
    count = _gold_count(project)
    if not count:
        return
    gold = list(
        Candidate.objects.filter(project=project, label_id=grid.label_id, is_gold=True)
        .exclude(grid_items__volunteer=user)
        .values_list("id", flat=True)
    )
    chosen = random.sample(gold, min(count, len(gold)))
    GridItem.objects.bulk_create(
        GridItem(grid=grid, candidate_id=candidate_id, volunteer=user) for candidate_id in chosen
    )


def grids_expire(*, project: Project | None = None, now: datetime | None = None) -> int:
    """Give back the leases of grids past their expiry that were never answered."""
    now = now or timezone.now()
    with transaction.atomic():
        expired = Grid.objects.filter(answered_at__isnull=True, expired=False, expires_at__lt=now)
        if project is not None:
            expired = expired.filter(project=project)
        grid_ids = list(
            expired.select_for_update(skip_locked=True).order_by("id").values_list("id", flat=True)
        )
        if not grid_ids:
            return 0
        Grid.objects.filter(pk__in=grid_ids).update(expired=True, updated_at=now)
        _release(
            GridItem.objects.filter(grid_id__in=grid_ids, candidate__is_gold=False).values_list(
                "candidate_id", flat=True
            )
        )
    return len(grid_ids)


def grid_release(*, grid_id: int, user: User) -> None:
    """Hand back a grid the volunteer will not answer (their tab was hidden or closed): its
    candidates are back in the pool at once, for everyone, this volunteer included, since an
    unanswered grid leaves no trace (the grid and its items go). A grid already answered or
    expired holds nothing: then nothing changes."""
    with transaction.atomic():
        grid = Grid.objects.select_for_update().filter(pk=grid_id).first()
        if grid is None:
            raise NotFound(f"Grid {grid_id} does not exist.")
        if grid.volunteer_id != user.pk:
            raise PermissionDenied("This grid belongs to another volunteer.")
        if grid.answered_at is not None or grid.expired:
            return
        _release(
            GridItem.objects.filter(grid=grid, candidate__is_gold=False).values_list(
                "candidate_id", flat=True
            )
        )
        grid.delete()


def _release(candidate_ids: Iterable[int]) -> None:
    ids = sorted(candidate_ids)
    if ids:
        list(
            Candidate.objects.select_for_update()
            .filter(pk__in=ids)
            .order_by("id")
            .values_list("id")
        )
        rows.execute(statements.candidates_release(len(ids)), ids)


@dataclass
class GridAnswer:
    grid: Grid
    decided: int  # candidates this answer decided (accepted, rejected or disputed)


def grid_answer(
    *, grid_id: int, user: User, yes_item_ids: list[int], now: datetime | None = None
) -> GridAnswer:
    """Record `user`'s answer to their grid: yes for the listed items, no for the rest; then
    re-estimate and decide each candidate. All or nothing."""
    now = now or timezone.now()
    with transaction.atomic():
        grid = (
            Grid.objects.select_for_update(of=("self",))
            .select_related("project")
            .filter(pk=grid_id)
            .first()
        )
        if grid is None:
            raise NotFound(f"Grid {grid_id} does not exist.")
        if grid.volunteer_id != user.pk:
            raise PermissionDenied("This grid belongs to another volunteer.")
        if grid.answered_at is not None:
            raise Conflict("You already answered this grid.")
        if grid.expired:
            raise Conflict("This grid expired and its items went to others; ask for a new one.")
        items = dict(GridItem.objects.filter(grid=grid).values_list("id", "candidate_id"))
        strangers = sorted(set(yes_item_ids) - set(items))
        if strangers:
            raise InvalidInput(
                f"Items {', '.join(map(str, strangers))} are not in this grid.", field="yes"
            )
        yes = set(yes_item_ids)
        candidates = {
            c.pk: c
            for c in Candidate.objects.select_for_update()
            .filter(pk__in=items.values())
            .order_by("id")
        }
        CandidateVote.objects.bulk_create(
            CandidateVote(
                candidate_id=candidate_id,
                user=user,
                grid_item_id=item_id,
                answer=item_id in yes,
                reference=_reference(candidates[candidate_id]),
            )
            for item_id, candidate_id in items.items()
        )
        answer_of = {candidate_id: item_id in yes for item_id, candidate_id in items.items()}
        counted = []
        for candidate in candidates.values():
            if candidate.is_gold:
                continue
            candidate.leases_count = max(0, candidate.leases_count - 1)
            if candidate.state == Candidate.State.OPEN:
                if answer_of[candidate.pk]:
                    candidate.yes_count += 1
                else:
                    candidate.no_count += 1
                counted.append(candidate)
        decided = candidates_decide(
            project=grid.project, label_id=grid.label_id, candidates=counted
        )
        changed = [c for c in candidates.values() if not c.is_gold]
        if changed:
            Candidate.objects.bulk_update(
                changed, ["leases_count", "yes_count", "no_count", "state", "posterior"]
            )
        for candidate in sorted(decided, key=lambda c: c.image_id):
            candidate_image_settle(project=grid.project, candidate=candidate)
        grid.answered_at = now
        grid.save(update_fields=["answered_at", "updated_at"])
        # A record in the project's annotator table (verification figures are read from
        # the votes themselves: verification_selectors.annotators_verification).
        reliability.stats_apply(project_id=grid.project_id, deltas={user.pk: StatsDelta()})
    return GridAnswer(grid=grid, decided=len(decided))


def candidates_decide(
    *, project: Project, label_id: int, candidates: list[Candidate]
) -> list[Candidate]:
    """Re-estimate the posterior of each open candidate from all its votes and decide it;
    the decided ones."""
    if not candidates:
        return []
    votes = selectors.candidate_votes(candidate_ids=[c.pk for c in candidates])
    voters = sorted({user_id for found in votes.values() for _, user_id, _ in found})
    reliability = {
        user_id: consensus_math.voter_reliability(**counts)
        for user_id, counts in selectors.voter_counts(
            project_id=project.pk, user_ids=voters
        ).items()
    }
    settled = selectors.label_settled_counts(project_id=project.pk, label_id=label_id)
    pool = (settled["pool_accepted"] + 1) / (
        settled["pool_accepted"] + settled["pool_rejected"] + 2
    )
    prior = consensus_math.label_prior(
        accepted=settled["accepted"], rejected=settled["rejected"], pool_prior=pool
    )
    decided = []
    for candidate in candidates:
        answers = [(answer, reliability[user_id]) for _, user_id, answer in votes[candidate.pk]]
        posterior = consensus_math.candidate_posterior(prior=prior, answers=answers)
        outcome = consensus_math.decide_item(
            posterior=posterior,
            votes=len(answers),
            min_votes=project.min_votes,
            max_votes=project.max_votes,
            target_confidence=project.target_confidence,
        )
        candidate.posterior = outcome.posterior
        candidate.state = str(getattr(outcome.state, "value", outcome.state))
        if candidate.state != Candidate.State.OPEN:
            decided.append(candidate)
    return decided


def _reference(candidate: Candidate) -> bool | None:
    """What a new vote on `candidate` is rated against (CandidateVote.reference): gold's known
    answer; a candidate settled while the grid was out, its state (the vote made no part of
    it); else what the votes before this one alone had settled, if anything."""
    if candidate.is_gold:
        return candidate.gold_answer
    if candidate.state == Candidate.State.ACCEPTED:
        return True
    if candidate.state == Candidate.State.REJECTED:
        return False
    if candidate.posterior is None:
        return None
    return consensus_math.rating_reference(posterior_before=candidate.posterior)


def candidate_image_settle(*, project: Project, candidate: Candidate) -> None:
    """What a decided candidate means for its image: accepted decides the image with the
    label; the last rejection sends it to its next candidate, the classify queue or out, per
    the project; a dispute puts it in the review queue."""
    image = Image.objects.select_for_update().get(pk=candidate.image_id)
    if image.state != Image.State.OPEN:
        return  # decided otherwise meanwhile (classify votes, a reviewer): that stands
    if candidate.state == Candidate.State.ACCEPTED:
        decision_record(
            image=image,
            label_id=candidate.label_id,
            rule=Decision.Rule.VERIFIED,
            confidence=candidate.posterior,
            votes_count=candidate.yes_count + candidate.no_count,
        )
        image.state, image.free_slots = Image.State.CONSENSUS, 0
        image.save(update_fields=["state", "free_slots", "updated_at"])
    elif candidate.state == Candidate.State.DISPUTED:
        image.flagged_for_review = True
        image.flag_reason = flag_reason(
            VERIFICATION_DISPUTED,
            wnid=candidate.label.wnid,
            yes=candidate.yes_count,
            no=candidate.no_count,
        )
        image.save(update_fields=["flagged_for_review", "flag_reason", "updated_at"])
    elif (
        not Candidate.objects.filter(image_id=image.pk, is_gold=False)
        .exclude(state=Candidate.State.REJECTED)
        .exists()
    ):
        _all_rejected(project=project, image=image, candidate=candidate)


def _all_rejected(*, project: Project, image: Image, candidate: Candidate) -> None:
    rule = project.when_all_rejected
    if rule == Project.AllRejected.NEXT_CANDIDATE:
        if verification_candidates.candidate_next_from_model(project=project, image_id=image.pk):
            return
        rule = Project.AllRejected.CLASSIFY
    if rule == Project.AllRejected.EXCLUDE:
        decision_record(
            image=image,
            label_id=None,
            rule=Decision.Rule.VERIFIED,
            confidence=1.0 - (candidate.posterior or 0.0),
            votes_count=candidate.yes_count + candidate.no_count,
        )
        image.state, image.free_slots = Image.State.EXCLUDED, 0
    else:
        image.free_slots = image_free_slots(image=image, project=project)
    image.save(update_fields=["state", "free_slots", "updated_at"])
