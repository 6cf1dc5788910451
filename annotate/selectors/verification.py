"""Reads for verification (issue 15): grids as shown, voters' records, what reviewers see.
No writes here."""

from collections import defaultdict
from typing import Any

from django.db.models import Count

from annotate import rows
from annotate.models import Candidate, CandidateVote, Grid, User
from annotate.rows import verification as statements

EXAMPLES_PER_LABEL = 3


def voter_counts(*, project_id: int, user_ids: list[int]) -> dict[int, dict[str, int]]:
    """Each voter's confusion counts on settled candidates of the project (gold and decided,
    leave-one-out): true_yes, false_no, true_no, false_yes. Zeros for a newcomer."""
    counts: dict[int, dict[str, int]] = {
        user_id: {"true_yes": 0, "false_no": 0, "true_no": 0, "false_yes": 0}
        for user_id in user_ids
    }
    if not user_ids:
        return counts
    found = rows.fetch_all(
        statements.voter_counts(len(user_ids)),
        [project_id, *user_ids],
    )
    for user_id, true_yes, false_no, true_no, false_yes in found:
        counts[user_id] = {
            "true_yes": int(true_yes),
            "false_no": int(false_no),
            "true_no": int(true_no),
            "false_yes": int(false_yes),
        }
    return counts


def label_settled_counts(*, project_id: int, label_id: int) -> dict[str, float]:
    """Expected right and wrong candidates of the label and of the whole project (gold aside),
    over every candidate with a vote or settled: the sum of their posteriors and of one minus
    them, a settled one counting as settled. The per-synset prior, ImageNet's "share of good
    images" of a synset (verification_consensus.label_prior says why expected counts)."""
    found = rows.fetch_all(
        statements.label_settled_counts(),
        [label_id, project_id],
    )
    counts = {"accepted": 0.0, "rejected": 0.0, "pool_accepted": 0.0, "pool_rejected": 0.0}
    for this_label, accepted, rejected in found:
        counts["pool_accepted"] += float(accepted)
        counts["pool_rejected"] += float(rejected)
        if this_label:
            counts["accepted"], counts["rejected"] = float(accepted), float(rejected)
    return counts


def candidate_votes(*, candidate_ids: list[int]) -> dict[int, list[tuple[int, int, bool]]]:
    """Each candidate's (vote id, user id, answer) votes, in the order they came."""
    votes: dict[int, list[tuple[int, int, bool]]] = defaultdict(list)
    found = (
        CandidateVote.objects.filter(candidate_id__in=candidate_ids)
        .order_by("id")
        .values_list("candidate_id", "id", "user_id", "answer")
    )
    for candidate_id, vote_id, user_id, answer in found:
        votes[candidate_id].append((vote_id, user_id, bool(answer)))
    return votes


def label_examples(*, label_id: int, limit: int = EXAMPLES_PER_LABEL) -> list[int]:
    """Image ids of accepted images of the label (known-yes gold ones first), for the grid's
    header."""
    gold = Candidate.objects.filter(label_id=label_id, is_gold=True, gold_answer=True)
    accepted = Candidate.objects.filter(
        label_id=label_id, is_gold=False, state=Candidate.State.ACCEPTED
    )
    found = list(gold.order_by("id").values_list("image_id", flat=True)[:limit])
    if len(found) < limit:
        found += list(
            accepted.order_by("id").values_list("image_id", flat=True)[: limit - len(found)]
        )
    return found


def grid_view(*, grid: Grid) -> dict[str, Any]:
    """What the volunteer sees of a grid: its label (name, gloss, example image ids) and its
    items with their image ids and sizes, in a stable shuffled order (gold not at fixed
    places)."""
    label = grid.label
    items = rows.fetch_all(
        statements.grid_items(),
        [grid.pk],
    )
    items.sort(key=lambda item: (hash((grid.pk, item[0])), item[0]))
    return {
        "id": grid.pk,
        "label": {
            "id": label.pk,
            "wnid": label.wnid,
            "name": label.name,
            "names": label.names,
            "gloss": label.gloss,
            "examples": label_examples(label_id=label.pk),
        },
        "items": [
            {"id": item_id, "image": {"id": image_id, "width": width, "height": height}}
            for item_id, image_id, width, height in items
        ],
        "expires_at": grid.expires_at,
    }


def grids_done(*, project_id: int, user: User) -> int:
    return Grid.objects.filter(
        project_id=project_id, volunteer=user, answered_at__isnull=False
    ).count()


def image_visible_in_verification(*, user: User, image_id: int) -> bool:
    """Whether a volunteer may see the image for verification: it is in one of their grids,
    or it shows a label's accepted example (known-yes gold or accepted)."""
    found = rows.fetch_one(
        statements.image_visible(),
        [user.pk, image_id, image_id],
    )
    return bool(found and found[0])


def candidates_for_review(*, image_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """For each image: its non-gold candidates with their state, yes/no counts, posterior and
    who answered what (for the review queue)."""
    if not image_ids:
        return {}
    candidates = list(
        Candidate.objects.filter(image_id__in=image_ids, is_gold=False)
        .select_related("label")
        .order_by("image_id", "id")
    )
    voters: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for vote in (
        CandidateVote.objects.filter(candidate__in=candidates).select_related("user").order_by("id")
    ):
        voters[vote.candidate_id].append(
            {"id": vote.user_id, "username": vote.user.username, "answer": vote.answer}
        )
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for candidate in candidates:
        found[candidate.image_id].append(
            {
                "id": candidate.pk,
                "label": candidate.label_id,
                "wnid": candidate.label.wnid,
                "name": candidate.label.name,
                "source": candidate.source,
                "state": candidate.state,
                "yes_count": candidate.yes_count,
                "no_count": candidate.no_count,
                "posterior": candidate.posterior,
                "voters": voters[candidate.pk],
            }
        )
    return dict(found)


def annotators_verification(*, project_id: int, user_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Each volunteer's verification record: how many yes/no votes, and their measured
    sensitivity (yes when the image shows the label) and specificity (no when it does not) on
    settled candidates (None before any)."""
    totals = dict(
        CandidateVote.objects.filter(candidate__project_id=project_id, user_id__in=user_ids)
        .values_list("user_id")
        .annotate(n=Count("id"))
        .values_list("user_id", "n")
    )
    records = {}
    for user_id, counts in voter_counts(project_id=project_id, user_ids=user_ids).items():
        shown = counts["true_yes"] + counts["false_no"]
        absent = counts["true_no"] + counts["false_yes"]
        records[user_id] = {
            "verify_votes": totals.get(user_id, 0),
            "verify_sensitivity": counts["true_yes"] / shown if shown else None,
            "verify_specificity": counts["true_no"] / absent if absent else None,
        }
    return records
