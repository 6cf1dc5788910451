"""Erasing a user's verification answers (part of annotate.services.erase): what those answers
counted towards is put right before they go.

- An open candidate's `yes_count` / `no_count` lose the user's answers.
- A decided candidate (accepted, rejected or disputed by the answers) whose decision counted
  one of the user's answers is decided again on every answer left, as an open candidate is
  decided (annotate.services.verification.candidates_decide); its counts then hold those
  answers. When the outcome changes, what the old one did to the image is undone (an
  acceptance's or an exclusion's decision retired, the image open again) and the new outcome
  settles the image as an answer would. Answers given after the decision were not counted
  in it: erasing one of those changes nothing.
- Candidates and images that a reviewer settled, and gold ones, stay as they are.
- Grids out now release their candidates.

A decision counted the first `yes_count + no_count` answers of its candidate, in the order they
were given: grid_answer locks a candidate before it records answers to it, and counts an answer
only while the candidate is open.
"""

from django.db.models import F

from annotate.models import Candidate, CandidateVote, Decision, GridItem, Image, User
from annotate.services.consensus import current_decision, decision_retire
from annotate.services.serving import image_free_slots
from annotate.services.verification import candidate_image_settle, candidates_decide

# Candidates that hold their image out of the classify queue (serving.project_refresh_free_slots).
_HOLDING = (Candidate.State.OPEN, Candidate.State.DISPUTED)


def answers_erase(*, user: User) -> list[int]:
    """Take `user`'s verification answers out of every count and decision; the ids of the
    candidates whose outcome changed. Call inside a transaction."""
    answers = list(
        CandidateVote.objects.filter(user=user).values_list("id", "candidate_id", "answer")
    )
    # Rows locked in id order, as grid_answer locks them.
    candidates = {
        candidate.pk: candidate
        for candidate in Candidate.objects.select_for_update()
        .filter(pk__in={candidate_id for _, candidate_id, _ in answers}, is_gold=False)
        .select_related("project")
        .order_by("pk")
    }
    decided_again: list[Candidate] = []
    for answer_id, candidate_id, answer in answers:
        candidate = candidates.get(candidate_id)
        if candidate is None:  # gold: its answer is known, no answer counted towards it
            continue
        if candidate.state == Candidate.State.OPEN:
            counter = "yes_count" if answer else "no_count"
            setattr(candidate, counter, max(0, getattr(candidate, counter) - 1))
            candidate.save(update_fields=["yes_count", "no_count", "updated_at"])
        elif _counted_in_decision(candidate, answer_id):
            decided_again.append(candidate)
    CandidateVote.objects.filter(user=user).delete()
    changed = [c.pk for c in decided_again if _decide_again(c)]
    out_now = GridItem.objects.filter(
        volunteer=user, grid__answered_at__isnull=True, grid__expired=False
    )
    for candidate_id in out_now.values_list("candidate_id", flat=True):
        Candidate.objects.filter(pk=candidate_id, leases_count__gt=0).update(
            leases_count=F("leases_count") - 1
        )
    return changed


def _counted_in_decision(candidate: Candidate, answer_id: int) -> bool:
    """Whether the answer `answer_id` was one of those the candidate's decision counted. False
    when the counts do not match the first answers (a candidate whose counts were changed
    otherwise): its decision is then left as it is."""
    counted = candidate.yes_count + candidate.no_count
    first = list(
        CandidateVote.objects.filter(candidate=candidate)
        .order_by("id")
        .values_list("id", "answer")[:counted]
    )
    yes = sum(1 for _, answer in first if answer)
    if (len(first), yes) != (counted, candidate.yes_count):
        return False
    return any(vote_id == answer_id for vote_id, _ in first)


def _decide_again(candidate: Candidate) -> bool:
    """Decide `candidate` again on the answers left (the user's are gone); whether its
    outcome changed."""
    project = candidate.project
    image = Image.objects.select_for_update().get(pk=candidate.image_id)
    if image.state == Image.State.REVIEWED or image.is_gold:
        return False  # a reviewer's word (or gold) settled it, not the answers
    before = candidate.state
    answers = list(
        CandidateVote.objects.filter(candidate=candidate).values_list("answer", flat=True)
    )
    candidate.yes_count = sum(answers)
    candidate.no_count = len(answers) - candidate.yes_count
    # Open in the database too while it is decided: the label's prior counts the candidates
    # settled, and this one must not count itself.
    candidate.state = Candidate.State.OPEN
    candidate.save(update_fields=["state"])
    candidates_decide(project=project, label_id=candidate.label_id, candidates=[candidate])
    candidate.save(update_fields=["yes_count", "no_count", "state", "posterior", "updated_at"])
    current = current_decision(image_id=image.pk)
    ours = (
        current is not None
        and current.rule == Decision.Rule.VERIFIED
        and current.label_id == (candidate.label_id if before == Candidate.State.ACCEPTED else None)
    )
    if candidate.state == before:
        if ours and before == Candidate.State.ACCEPTED:
            assert current is not None
            Decision.objects.filter(pk=current.pk).update(
                confidence=candidate.posterior, votes_count=len(answers)
            )
        return False
    if ours and before in (Candidate.State.ACCEPTED, Candidate.State.REJECTED):
        decision_retire(current)  # the acceptance, or the exclusion of the image
        image.state = Image.State.OPEN
    if image.state == Image.State.OPEN:
        held = Candidate.objects.filter(image=image, is_gold=False, state__in=_HOLDING).exists()
        image.free_slots = 0 if held else image_free_slots(image=image, project=project)
        image.save(update_fields=["state", "free_slots", "updated_at"])
    if candidate.state != Candidate.State.OPEN:
        candidate_image_settle(project=project, candidate=candidate)
    return True
