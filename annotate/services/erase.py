"""Erasing a user for a privacy request: the account and everything it did go, and what its
votes had counted towards is put right first.

The admin deactivates users with votes instead of deleting them (annotate.admin), because a
plain delete cascades their votes away and leaves images' counters, states and decisions
resting on votes that are gone (issue 19). This is the deliberate way to delete one:

- each image the user voted on loses those votes from `votes_count`, and the project's rule
  decides it again on the votes left: a crowd decision (majority or dynamic) that no longer
  holds, for instance a consensus now below `min_votes`, is retired and the image reopened
  (or disputed), and the other voters' agreement records follow; decisions by reviewers and
  gold answers stand;
- the user's leases out now are released (`leases_count`, `free_slots`);
- the user's verification answers leave open candidates' counts, and a decided candidate whose
  decision counted one of them is decided again on the answers left, its image following
  (annotate.services.verification_erase); grids out now release their candidates;
- then the account, its token, its votes and its statistics are deleted.
"""

from collections import Counter
from dataclasses import dataclass, field

from django.db import transaction

from annotate.models import (
    Assignment,
    Decision,
    Image,
    User,
    Vote,
)
from annotate.services import reliability, verification_erase
from annotate.services.consensus import (
    current_decision,
    decides,
    decision_record,
    decision_retire,
    image_outcome,
    image_votes,
)
from annotate.services.reliability import StatsDelta
from annotate.services.serving import image_free_slots

# Decisions the votes made, which a change in the votes may undo.
CROWD_RULES = (Decision.Rule.MAJORITY, Decision.Rule.DYNAMIC)


@dataclass
class EraseReport:
    images: int = 0  # images that lost votes or leases
    reopened: list[int] = field(default_factory=list)  # decided before, open or disputed now
    redecided: list[int] = field(default_factory=list)  # decided again, on fewer votes
    candidates: list[int] = field(default_factory=list)  # verification outcomes changed


def user_erase(*, user: User) -> EraseReport:
    report = EraseReport()
    with transaction.atomic():
        # Candidates first, then images: the order in which grid_answer locks them.
        report.candidates = verification_erase.answers_erase(user=user)
        voted = Counter(Vote.objects.filter(user=user).values_list("image_id", flat=True))
        leased = Counter(
            Assignment.objects.filter(user=user, state=Assignment.State.ACTIVE).values_list(
                "image_id", flat=True
            )
        )
        # Rows locked in id order, as the voting path locks them, so no deadlock with it.
        images = list(
            Image.objects.select_for_update()
            .filter(pk__in=set(voted) | set(leased))
            .select_related("project")
            .order_by("pk")
        )
        Vote.objects.filter(user=user).delete()
        Assignment.objects.filter(user=user).delete()
        for image in images:
            image.votes_count -= voted[image.pk]
            image.leases_count = max(0, image.leases_count - leased[image.pk])
            if voted[image.pk]:
                _decide_again(image, report)
            image.free_slots = image_free_slots(image=image, project=image.project)
            image.save(update_fields=["votes_count", "leases_count", "free_slots", "state"])
        report.images = len(images)
        User.objects.filter(pk=user.pk).delete()
    return report


def _decide_again(image: Image, report: EraseReport) -> None:
    """The project's rule over the votes left, for an image whose last word was the crowd's.
    Call holding the image's row lock, after the erased user's votes are gone."""
    previous = current_decision(image_id=image.pk)
    if previous is not None and previous.rule not in CROWD_RULES:
        return  # a reviewer's or gold decision does not rest on the votes
    if image.is_gold or image.state == Image.State.REVIEWED:
        return
    votes = image_votes(image_id=image.pk)
    outcome, rule = image_outcome(image=image, project=image.project, votes=votes)
    if decides(outcome):
        if previous is None or previous.label_id != outcome.label_id:
            decision_record(
                image=image,
                label_id=outcome.label_id,
                rule=rule,
                confidence=outcome.confidence,
                votes_count=len(votes),
                votes=votes,
            )
        else:
            Decision.objects.filter(pk=previous.pk).update(votes_count=len(votes))
        report.redecided.append(image.pk)
    elif previous is not None:
        decision_retire(previous)
        # The voters left no longer have a decided vote here, nor an agreement with it.
        deltas = {
            user_id: StatsDelta(decided_votes=-1, agreed_votes=-int(label_id == previous.label_id))
            for user_id, label_id in votes
        }
        reliability.stats_apply(project_id=image.project_id, deltas=deltas)
        report.reopened.append(image.pk)
    image.state = outcome.state
