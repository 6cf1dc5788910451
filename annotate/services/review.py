"""Review: reviewers' decisions. (The queue and what it shows are reads: selectors.review.)"""

from django.db import transaction

from annotate.models import Decision, Image, Label, Project, User
from annotate.services import verification_candidates
from annotate.services.consensus import decision_record
from annotate.services.errors import Conflict, InvalidInput, NotFound


class NotReviewable(Conflict):
    """409: the image is not the reviewers' to decide in its state (code `not_reviewable`)."""

    code = "not_reviewable"


def _not_reviewable(image: Image) -> str | None:
    """Why a reviewer may not decide `image` now, or None when they may: unless its project
    has `review_any_state`, only a disputed or flagged image is a reviewer's to decide, or one
    whose current decision is already a review's (a reviewer or admin changing it)."""
    if image.state == Image.State.DISPUTED or image.flagged_for_review:
        return None
    if Project.objects.filter(pk=image.project_id, review_any_state=True).exists():
        return None
    if Decision.objects.filter(image=image, is_current=True, rule=Decision.Rule.REVIEW).exists():
        return None
    if image.state == Image.State.OPEN:
        return (
            f"Image {image.pk} is still open to volunteers ({image.votes_count} votes); "
            "reviewers decide disputed and flagged images only in this project."
        )
    return (
        f"Image {image.pk} was decided by the crowd ({image.state}) and is not flagged; "
        "reviewers decide disputed and flagged images only in this project."
    )


def review_decide(
    *, image_id: int, reviewer: User, label_id: int | None, exclude: bool = False
) -> Decision:
    """A reviewer's final answer: a label, or exclude (no label fits, or a bad image).

    Overrides the crowd (and any earlier review), keeps the replaced decision as history, and
    updates the voters' agreement. Conflict for an image that is not the reviewers' to decide
    (see _not_reviewable). Whether `reviewer` may review the image's project at all is the
    faces' check (selectors.access_image_for_reviewer).
    """
    if exclude and label_id is not None:
        raise InvalidInput("Give a label or exclude the image, not both.", field="exclude")
    with transaction.atomic():
        image = Image.objects.select_for_update().filter(pk=image_id).first()
        if image is None:
            raise NotFound(f"Image {image_id} does not exist.")
        refusal = _not_reviewable(image)
        if refusal is not None:
            raise NotReviewable(refusal)
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
