"""Review: the queue of disputed and flagged images, and reviewers' decisions."""

from collections import defaultdict

from django.db import transaction
from django.db.models import Q, QuerySet

from annotate.models import AnnotatorStats, Decision, Image, Label, Project, User, Vote
from annotate.services import verification_candidates
from annotate.services.consensus import decision_record
from annotate.services.errors import InvalidInput, NotFound


def review_queue(*, project: Project) -> QuerySet[Image]:
    """Disputed images and decisions flagged by re-aggregation, oldest first."""
    return (
        Image.objects.filter(project=project)
        .filter(Q(state=Image.State.DISPUTED) | Q(flagged_for_review=True))
        .order_by("id")
    )


def vote_breakdowns(*, images: list[Image]) -> dict[int, list[dict]]:
    """For each image: its answers with counts and who gave them, with their reliability."""
    if not images:
        return {}
    project_ids = {image.project_id for image in images}
    votes = list(
        Vote.objects.filter(image__in=images)
        .select_related("user", "label")
        .order_by("image_id", "label_id", "user_id")
    )
    stats = {
        (s.project_id, s.user_id): s
        for s in AnnotatorStats.objects.filter(
            project_id__in=project_ids, user_id__in={v.user_id for v in votes}
        )
    }
    project_of = {image.pk: image.project_id for image in images}
    threshold = {p.pk: p.reliability_threshold for p in Project.objects.filter(pk__in=project_ids)}
    grouped: dict[int, dict] = defaultdict(dict)
    for vote in votes:
        answers = grouped[vote.image_id]
        entry = answers.setdefault(
            vote.label_id,
            {
                "label": vote.label_id,
                "wnid": vote.label.wnid if vote.label else None,
                "name": vote.label.name if vote.label else "none of these",
                "count": 0,
                "voters": [],
            },
        )
        record = stats.get((project_of[vote.image_id], vote.user_id))
        accuracy = record.estimated_accuracy if record else None
        entry["count"] += 1
        entry["voters"].append(
            {
                "id": vote.user_id,
                "username": vote.user.username,
                "estimated_accuracy": accuracy,
                "unreliable": accuracy is not None
                and accuracy < threshold[project_of[vote.image_id]],
            }
        )
    return {
        image_id: sorted(answers.values(), key=lambda a: -a["count"])
        for image_id, answers in grouped.items()
    }


def review_decide(
    *, image_id: int, reviewer: User, label_id: int | None, exclude: bool = False
) -> Decision:
    """A reviewer's final answer: a label, or exclude (no label fits, or a bad image).

    Overrides the crowd (and any earlier review), keeps the replaced decision as history, and
    updates the voters' agreement.
    """
    if exclude and label_id is not None:
        raise InvalidInput("Give a label or exclude the image, not both.", field="exclude")
    with transaction.atomic():
        image = Image.objects.select_for_update().filter(pk=image_id).first()
        if image is None:
            raise NotFound(f"Image {image_id} does not exist.")
        if (
            label_id is not None
            and not Label.objects.filter(pk=label_id, project_id=image.project_id).exists()
        ):
            raise InvalidInput(f"Label {label_id} is not a label of this project.", field="label")
        decision = decision_record(
            image=image,
            label_id=label_id,
            rule=Decision.Rule.REVIEW,
            confidence=1.0,
            votes_count=image.votes_count,
            decided_by=reviewer,
        )
        image.state = Image.State.EXCLUDED if label_id is None else Image.State.REVIEWED
        image.flagged_for_review = False
        image.flag_reason = ""
        image.free_slots = 0
        image.save(
            update_fields=["state", "flagged_for_review", "flag_reason", "free_slots", "updated_at"]
        )
    verification_candidates.candidates_settle_by_review(image_id=image_id, label_id=label_id)
    return decision


def decision_history(*, image: Image) -> QuerySet[Decision]:
    """Every decision ever made on the image, newest first, with who made it."""
    return (
        Decision.objects.filter(image=image).select_related("decided_by", "label").order_by("-id")
    )
