"""Whether a consensus policy can work (issue 16): a majority policy whose last vote can never
decide only wastes that vote, on every image that reaches it."""

from annotate.models import Project


def _decides(top: int, votes: int, *, min_votes: int, agreement: float) -> bool:
    return votes >= min_votes and top >= agreement * votes


def last_vote_can_decide(*, min_votes: int, max_votes: int, agreement: float) -> bool:
    """Whether, under the majority rule, the `max_votes`-th vote can decide an image that the
    votes before it left undecided. At n - 1 votes the top answer held `top` of them (and
    another answer as many, where that is possible, which also leaves it undecided); the last
    vote goes to it."""
    n = max_votes
    if n <= min_votes:
        # The first count that may decide: a unanimous one does.
        return True
    for top in range(1, n):
        tie_possible = 2 * top <= n - 1
        undecided_before = tie_possible or not _decides(
            top, n - 1, min_votes=min_votes, agreement=agreement
        )
        if undecided_before and _decides(top + 1, n, min_votes=min_votes, agreement=agreement):
            return True
    return False


def policy_problem(project: Project) -> str | None:
    """Why the project's consensus policy cannot work, or None when it can."""
    if (
        project.task != Project.Task.CLASSIFY
        or project.mode != Project.Mode.MAJORITY
        or project.plurality_at_max_votes
    ):
        return None  # verification decides each candidate on its own posterior
    if project.max_votes < project.min_votes:
        return None  # the model's own validation says so
    if not last_vote_can_decide(
        min_votes=project.min_votes, max_votes=project.max_votes, agreement=project.agreement
    ):
        return (
            f"With agreement {project.agreement:g}, vote {project.max_votes} can never decide an "
            f"image the first {project.max_votes - 1} left undecided: lower max_votes or "
            "agreement, or set plurality_at_max_votes to decide by plurality there."
        )
    return None
