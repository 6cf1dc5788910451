"""Reads for reviewers: the queue of disputed and flagged images, what each shows beside it
(vote breakdown, voters' reliability, suggestion), the image list and decision history."""

from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Prefetch, Q, QuerySet

from annotate.models import AnnotatorStats, Decision, Image, Project, Vote
from annotate.selectors.ml import suggestions_for_images


def _with_current_decision(images: QuerySet[Image]) -> QuerySet[Image]:
    """`images`, each with its current decision (and who made it) read in one more query, as
    `current_decisions` (a list of at most one)."""
    return images.prefetch_related(
        Prefetch(
            "decisions",
            queryset=Decision.objects.filter(is_current=True).select_related("decided_by"),
            to_attr="current_decisions",
        )
    )


def review_queue(*, project: Project) -> QuerySet[Image]:
    """Disputed images and decisions flagged by re-aggregation, oldest first, each with its
    current decision."""
    return _with_current_decision(
        Image.objects.filter(project=project)
        .filter(Q(state=Image.State.DISPUTED) | Q(flagged_for_review=True))
        .order_by("id")
    )


def images_for_review(*, project: Project, state: str | None = None) -> QuerySet[Image]:
    """The project's images (in one state, if given), oldest first, each with its current
    decision."""
    images = Image.objects.filter(project=project).order_by("id")
    if state:
        images = images.filter(state=state)
    return _with_current_decision(images)


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


@dataclass(frozen=True)
class ReviewDetails:
    """What the review queue shows beside each image, by image id."""

    breakdowns: dict[int, list[dict]]  # see vote_breakdowns
    suggestions: dict[int, dict]  # the active model's {label, confidence}, where shown


def review_details(*, images: list[Image]) -> ReviewDetails:
    """The ReviewDetails of `images`, in a number of queries that does not grow with theirs."""
    return ReviewDetails(
        breakdowns=vote_breakdowns(images=images),
        suggestions=suggestions_for_images(image_ids=[image.pk for image in images]),
    )


def decision_history(*, image: Image) -> QuerySet[Decision]:
    """Every decision ever made on the image, newest first, with who made it."""
    return (
        Decision.objects.filter(image=image).select_related("decided_by", "label").order_by("-id")
    )
