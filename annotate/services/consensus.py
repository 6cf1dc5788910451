"""Consensus: when do the votes on an image decide it (PRODUCT.md section 3)."""

from collections import Counter
from dataclasses import dataclass

from annotate.models import Decision, Image, Project, Vote

# The key for "none of these" among vote counts (a vote whose label is null).
NONE_OF_THESE = None


@dataclass(frozen=True)
class Outcome:
    """What the votes say. `state` is the image's next state; label None means "none of these"."""

    state: str
    label_id: int | None = None
    confidence: float | None = None


def majority_outcome(
    counts: Counter, *, min_votes: int, max_votes: int, agreement: float
) -> Outcome:
    """Majority rule: decided once at least `min_votes` votes are in and one answer holds at
    least `agreement` of them and strictly more than any other; disputed at `max_votes`."""
    total = sum(counts.values())
    if total >= min_votes and counts:
        ranked = counts.most_common(2)
        top_label, top_count = ranked[0]
        share = top_count / total
        unique_top = len(ranked) == 1 or ranked[1][1] < top_count
        if unique_top and share >= agreement:
            state = Image.State.EXCLUDED if top_label is NONE_OF_THESE else Image.State.CONSENSUS
            return Outcome(state=state, label_id=top_label, confidence=share)
    if total >= max_votes:
        return Outcome(state=Image.State.DISPUTED)
    return Outcome(state=Image.State.OPEN)


def image_vote_counts(*, image: Image) -> Counter:
    return Counter(Vote.objects.filter(image=image).values_list("label_id", flat=True))


def image_apply_consensus(*, image: Image, project: Project) -> Outcome:
    """Evaluate the policy on the image's votes and record a decision if they decide it.

    Call inside the transaction that holds the image row lock; the caller saves `image.state`.
    """
    counts = image_vote_counts(image=image)
    outcome = majority_outcome(
        counts,
        min_votes=project.min_votes,
        max_votes=project.max_votes,
        agreement=project.agreement,
    )
    if outcome.state in (Image.State.CONSENSUS, Image.State.EXCLUDED):
        decision_record(
            image=image,
            label_id=outcome.label_id,
            rule=Decision.Rule.MAJORITY,
            confidence=outcome.confidence,
            votes_count=sum(counts.values()),
        )
    image.state = outcome.state
    return outcome


def decision_record(
    *,
    image: Image,
    label_id: int | None,
    rule: str,
    confidence: float | None = None,
    votes_count: int = 0,
    decided_by=None,
) -> Decision:
    """Make `label_id` (None: excluded) the image's current decision, keeping the old one as
    history. Call while holding the image row lock."""
    previous = Decision.objects.filter(image=image, is_current=True).first()
    if previous is not None:
        previous.is_current = False
        previous.save(update_fields=["is_current", "updated_at"])
    decision = Decision(
        image=image,
        label_id=label_id,
        excluded=label_id is None,
        rule=rule,
        confidence=confidence,
        votes_count=votes_count,
        decided_by=decided_by,
        replaces=previous,
    )
    decision.full_clean(exclude=["image", "label", "decided_by", "replaces"])
    decision.save()
    return decision
