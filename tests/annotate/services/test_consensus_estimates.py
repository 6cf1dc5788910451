"""Honest consensus (issue 16), second pass: the estimates the dynamic rule and the flags stand
on: the model's measured weight, young projects re-aggregated early, the mistakes'
concentration, the DS flag gate."""

import numpy as np
import pytest

from annotate.models import Decision, Image, Project
from annotate.services import aggregation, posterior
from annotate.services import dawid_skene as ds
from tests.annotate.services.test_honest_consensus import MEASURED_SURE, flag_project
from tests.factories import ImageFactory, LabelFactory, ProjectFactory

pytestmark = pytest.mark.django_db


def test_a_few_spread_mistakes_do_not_pass_for_a_spread_crowd():
    """Early in a project a handful of mistakes that happen to differ must not read as a
    crowd whose mistakes spread evenly (which makes decisions overclaim on a look-alike
    crowd): the estimate stays near the default until the pairs outweigh PRIOR_PAIRS."""
    k = 10
    truth = np.repeat(np.arange(k), 2)  # two mistakes on each true answer, never alike
    posteriors = np.eye(k)[truth]
    spread = (truth + np.tile([1, 2], k)) % k
    few = ds.mistake_concentration(posteriors, spread, n_classes=k)
    assert few < 3.0  # without the prior pairs: MAX_CONCENTRATION, mistakes read as spread
    many_truth = np.repeat(np.arange(k), 40)
    many = ds.mistake_concentration(
        np.eye(k)[many_truth], (many_truth + np.tile(np.arange(1, k), 45)[:400]) % k, n_classes=k
    )
    assert many > 20.0


def crowd_decisions(project, count):
    label = LabelFactory(project=project)
    for _ in range(count):
        image = ImageFactory(project=project, state=Image.State.CONSENSUS)
        Decision.objects.create(image=image, label=label, rule=Decision.Rule.DYNAMIC)


def test_a_young_project_is_reaggregated_as_its_decisions_double():
    project = ProjectFactory(mode=Project.Mode.DYNAMIC)
    crowd_decisions(project, aggregation.YOUNG_FIRST - 1)
    assert not aggregation.reaggregation_due(project=project)
    crowd_decisions(project, 1)
    assert aggregation.reaggregation_due(project=project)
    aggregation.project_reaggregate(project=project)  # counts the decided images it saw
    assert sum(project.answer_counts.values()) == aggregation.YOUNG_FIRST
    assert not aggregation.reaggregation_due(project=project)
    crowd_decisions(project, aggregation.YOUNG_FIRST - 1)
    assert not aggregation.reaggregation_due(project=project)
    crowd_decisions(project, 1)
    assert aggregation.reaggregation_due(project=project)
    # Past YOUNG_LIMIT the hourly run is enough.
    project.answer_counts = {"1": aggregation.YOUNG_LIMIT}
    assert not aggregation.reaggregation_due(project=project)


def test_the_beat_queues_only_young_dynamic_projects_that_are_due(monkeypatch):
    from worker import tasks

    due = ProjectFactory(mode=Project.Mode.DYNAMIC)
    crowd_decisions(due, aggregation.YOUNG_FIRST)
    majority = ProjectFactory(mode=Project.Mode.MAJORITY)
    crowd_decisions(majority, aggregation.YOUNG_FIRST)
    ProjectFactory(mode=Project.Mode.DYNAMIC)  # nothing decided yet
    queued: list[int] = []
    monkeypatch.setattr(tasks.project_reaggregate, "delay", queued.append)
    assert tasks.young_projects_reaggregate() == 1
    assert queued == [due.pk]


def test_the_report_lists_every_disagreement_flagged_or_not():
    project, a, b, trap = flag_project()
    project.flag_confidence = 1.0
    project.save()
    report = aggregation.project_reaggregate(project=project)
    assert report.flagged == 0
    confidence, own, votes, now = report.disagreements[trap.pk]
    assert confidence > 0.9 and own < 0.1 and votes == 2
    # The decision's own rule, with the liars now known for what they are, doubts it too.
    assert now < aggregation.FLAG_DECIDED_MAX


def test_a_flag_needs_the_calibrated_posterior_to_doubt_the_decision_too(monkeypatch):
    """DS alone flagged mostly correct decisions on the bench: a flag needs both."""
    project, a, b, trap = flag_project()
    report = aggregation.project_reaggregate(project=project)
    now = report.disagreements[trap.pk][3]
    assert report.flagged == 1
    monkeypatch.setattr(aggregation, "FLAG_DECIDED_MAX", now / 2)
    report = aggregation.project_reaggregate(project=project)
    trap.refresh_from_db()
    assert report.flagged == 0 and report.unflagged == 1 and not trap.flagged_for_review


def test_unreliable_answers_do_not_make_look_alike_mistakes_read_as_spread():
    k, rng = 10, np.random.default_rng(5)
    truth = rng.integers(0, k, 3000)
    honest = np.where(rng.random(3000) < 0.8, truth ^ 1, (truth + 2) % k)
    spammer = rng.random(3000) < 0.5  # half the mistakes: random answers of spammers
    answers = np.where(spammer, (truth + rng.integers(1, k, 3000)) % k, honest)
    posteriors = np.eye(k)[truth]
    pooled = ds.mistake_concentration(posteriors, answers, n_classes=k)
    reliable = ds.mistake_concentration(posteriors, answers, n_classes=k, counted=~spammer)
    assert reliable < 1.0 < 2 * reliable < pooled


def test_the_model_weighs_what_it_was_measured_to_be_not_what_it_claims():
    """The weak overconfident model of the bench claims 0.9-1.0 for a top-1 of 0.75."""
    project = ProjectFactory(model_max_accuracy=0.9, model_reliability={})

    def worth(confidence):
        return posterior.model_accuracy(project=project, confidence=confidence)

    # Unmeasured: a newcomer's prior, whatever it claims (and never above its claim); with a
    # held-out top-1 from training, that.
    assert worth(0.999) == pytest.approx(posterior.MODEL_PRIOR_ACCURACY)
    assert worth(0.55) == pytest.approx(0.55)
    assert posterior.model_accuracy(
        project=project, confidence=0.999, holdout=0.75
    ) == pytest.approx(0.75)
    assert posterior.model_accuracy(project=project, confidence=0.999, holdout=0.98) == 0.9
    # Measured at 0.75 over every band: its 0.95 claims are worth 0.75, its band's own
    # measurement moving that by as much as it weighs against MODEL_SHRINK answers.
    project.model_reliability = {"0.95": [150, 200], "0.90": [75, 100]}
    overall = (225 + posterior.MODEL_PRIOR_STRENGTH * posterior.MODEL_PRIOR_ACCURACY) / (
        300 + posterior.MODEL_PRIOR_STRENGTH
    )
    assert worth(0.99) == pytest.approx((150 + posterior.MODEL_SHRINK * overall) / 210)
    assert worth(0.99) < 0.76
    # A band never measured borrows the overall figure; the cap still bounds a sure model.
    assert worth(0.82) == pytest.approx(overall)
    project.model_reliability = MEASURED_SURE
    assert worth(0.99) == 0.9


def test_the_task_result_leaves_the_disagreements_out():
    import json

    from worker import tasks

    project, a, b, trap = flag_project()
    result = tasks.project_reaggregate(project.pk)
    assert "disagreements" not in result and result["flagged"] == 1
    json.dumps(result)
