"""The volunteers' reliability prior, fitted per project at re-aggregation (issue 16): an
empirical-Bayes Beta prior whose strength the crowd's spread decides."""

import numpy as np
import pytest

from annotate.models import AnnotatorStats, Project
from annotate.services import aggregation, reliability
from tests.factories import ProjectFactory, UserFactory


def crowd(accuracies: np.ndarray, answers: int, seed: int = 0) -> tuple[list[float], list[float]]:
    hits = np.random.default_rng(seed).binomial(answers, accuracies)
    return [float(h) for h in hits], [float(answers)] * len(accuracies)


def test_fit_prior_recovers_the_crowds_mean_and_spread():
    rng = np.random.default_rng(1)
    accuracies = rng.beta(0.75 * 10, 0.25 * 10, 400)
    mean, strength = reliability.fit_prior(*crowd(accuracies, 30)) or (0.0, 0.0)
    assert mean == pytest.approx(0.75, abs=0.02)
    assert 7.0 < strength < 14.0


def test_fit_prior_alike_volunteers_weigh_most_and_spread_ones_least():
    alike = reliability.fit_prior(*crowd(np.full(200, 0.8), 20))
    assert alike is not None and alike[1] == reliability.MAX_STRENGTH
    spread = reliability.fit_prior(*crowd(np.tile([0.3, 0.97], 100), 20))
    assert spread is not None and spread[1] < 3.0


def test_fit_prior_needs_enough_volunteers_with_enough_answers():
    few = reliability.FIT_MIN_VOLUNTEERS - 1
    assert reliability.fit_prior([15.0] * few, [20.0] * few) is None
    # Volunteers below FIT_MIN_ANSWERS are not counted.
    assert reliability.fit_prior([3.0] * 50, [4.0] * 50) is None
    assert reliability.fit_prior([15.0] * (few + 1), [20.0] * (few + 1)) is not None


@pytest.mark.django_db
def test_reaggregation_fits_the_prior_and_every_estimate_then_uses_it():
    """A crowd of alike volunteers at 0.75: one who agreed 10 times of 10 reads 0.91 under
    the fixed prior (4 answers at 0.7), close to the crowd once the prior is fitted; the vote's
    upsert afterwards re-estimates with the project's prior, in the database."""
    project = ProjectFactory(mode=Project.Mode.DYNAMIC)
    users = [UserFactory() for _ in range(12)]
    for user in users[:-1]:
        AnnotatorStats.objects.create(
            project=project,
            user=user,
            votes=40,
            decided_votes=40,
            agreed_votes=30,
            estimated_accuracy=0.7,
        )
    lucky = users[-1]
    AnnotatorStats.objects.create(
        project=project,
        user=lucky,
        votes=10,
        decided_votes=10,
        agreed_votes=10,
        estimated_accuracy=0.7,
    )
    fixed = reliability.estimated_accuracy(
        gold_votes=0, gold_correct=0, decided_votes=10, agreed_votes=10
    )
    assert fixed > 0.9
    aggregation.project_reaggregate(project=project)
    project.refresh_from_db()
    prior = reliability.project_prior(project)
    assert prior[0] == pytest.approx(340 / 450)
    assert prior[1] == reliability.MAX_STRENGTH
    stats = AnnotatorStats.objects.get(project=project, user=lucky)
    assert stats.estimated_accuracy == pytest.approx(
        reliability.estimated_accuracy(
            gold_votes=0, gold_correct=0, decided_votes=10, agreed_votes=10, prior=prior
        )
    )
    assert stats.estimated_accuracy < 0.8
    # The vote path's upsert: an existing record, and a newcomer's first one.
    newcomer = UserFactory()
    deltas = {
        lucky.pk: reliability.StatsDelta(votes=1, decided_votes=1, agreed_votes=1),
        newcomer.pk: reliability.StatsDelta(votes=1),
    }
    reliability.stats_apply(project_id=project.pk, deltas=deltas, prior=prior)
    stats.refresh_from_db()
    assert stats.estimated_accuracy == reliability.estimated_accuracy(
        gold_votes=0, gold_correct=0, decided_votes=11, agreed_votes=11, prior=prior
    )
    first = AnnotatorStats.objects.get(project=project, user=newcomer)
    assert first.estimated_accuracy == pytest.approx(prior[0])
    unknown = UserFactory()
    found = reliability.accuracies(project_id=project.pk, user_ids=[unknown.pk], default=prior[0])
    assert found == {unknown.pk: prior[0]}
