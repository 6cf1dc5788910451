"""Review: reviewers' decisions. (The queue and what it shows are reads: selectors.review.)"""

from django.db import transaction

from annotate.models import Decision, Image, Label, User
from annotate.services import verification_candidates
from annotate.services.consensus import decision_record
from annotate.services.errors import InvalidInput, NotFound


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
