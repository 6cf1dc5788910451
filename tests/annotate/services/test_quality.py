"""Dynamic consensus, annotator reliability, gold scheduling, review and re-aggregation."""

import random

import numpy as np
import pytest

from annotate import selectors
from annotate.models import AnnotatorStats, Decision, Image, Project
from annotate.services import aggregation, consensus, projects, reliability, review, serving, voting
from annotate.services import dawid_skene as ds
from annotate.services.consensus import dynamic_outcome, one_coin_posterior
from annotate.services.errors import InvalidInput
from tests.factories import ImageFactory, LabelFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

UNIFORM3 = np.ones(3) / 3


# --- posterior math, by hand ------------------------------------------------------------------


def test_one_vote_posterior_is_the_voters_accuracy():
    assert one_coin_posterior([0], [0.8], UNIFORM3) == pytest.approx([0.8, 0.1, 0.1])


def test_two_agreeing_votes():
    # 0.8 * 0.6 against 0.1 * 0.2 for each other answer.
    assert one_coin_posterior([0, 0], [0.8, 0.6], UNIFORM3) == pytest.approx(
        np.array([0.48, 0.02, 0.02]) / 0.52
    )


def test_conflicting_votes_weigh_by_accuracy():
    # [0.9 * 0.2, 0.05 * 0.6, 0.05 * 0.2]
    assert one_coin_posterior([0, 1], [0.9, 0.6], UNIFORM3) == pytest.approx(
        np.array([0.18, 0.03, 0.01]) / 0.22
    )


def test_prior_and_chance_level_voters():
    prior = np.array([0.5, 0.25, 0.25])
    assert one_coin_posterior([], [], prior) == pytest.approx(prior)
    # A voter at (or below) chance changes nothing.
    assert one_coin_posterior([1], [1 / 3], prior) == pytest.approx(prior)
    assert one_coin_posterior([1], [0.1], prior) == pytest.approx(prior)


@pytest.mark.parametrize(
    ("posterior", "votes", "state", "label"),
    [
        ([0.96, 0.02, 0.02], 2, Image.State.CONSENSUS, 10),
        ([0.96, 0.02, 0.02], 1, Image.State.OPEN, None),  # below min_votes
        ([0.02, 0.02, 0.96], 2, Image.State.EXCLUDED, None),
        ([0.6, 0.3, 0.1], 3, Image.State.OPEN, None),
        ([0.6, 0.3, 0.1], 4, Image.State.DISPUTED, None),
    ],
)
def test_dynamic_outcome(posterior, votes, state, label):
    outcome = dynamic_outcome(
        np.array(posterior),
        [10, 11, None],
        votes=votes,
        min_votes=2,
        max_votes=4,
        target_confidence=0.95,
    )
    assert (outcome.state, outcome.label_id) == (state, label)


# --- dynamic mode through the serving service ---------------------------------------------------


def vote(project, user, label):
    assignment = serving.assignment_lease(project=project, user=user)
    assert assignment is not None
    return voting.vote_submit(
        assignment_id=assignment.pk, user=user, label_id=label.pk if label else None
    )[1]


def reliable_user(project, accuracy, answers=20):
    """A volunteer estimated at `accuracy` from `answers` decisions that stood without them."""
    user = UserFactory()
    AnnotatorStats.objects.create(
        project=project,
        user=user,
        estimated_accuracy=accuracy,
        decided_votes=answers,
        agreed_votes=round(accuracy * answers),
    )
    return user


def test_dynamic_mode_needs_fewer_votes_from_reliable_volunteers():
    project = ProjectFactory(
        mode=Project.Mode.DYNAMIC, min_votes=1, max_votes=5, target_confidence=0.9
    )
    labels = [LabelFactory(project=project) for _ in range(4)]
    ImageFactory(project=project)
    expert = reliable_user(project, 0.98)
    image = vote(project, expert, labels[2])
    assert image.state == Image.State.CONSENSUS
    decision = Decision.objects.get(image=image, is_current=True)
    assert decision.rule == Decision.Rule.DYNAMIC and decision.label == labels[2]
    assert decision.confidence == pytest.approx(0.98 / (0.98 + 4 * 0.02 / 4))


def test_dynamic_mode_asks_more_of_unreliable_volunteers_and_disputes_at_max():
    project = ProjectFactory(
        mode=Project.Mode.DYNAMIC, min_votes=1, max_votes=3, target_confidence=0.95
    )
    labels = [LabelFactory(project=project) for _ in range(4)]
    image = ImageFactory(project=project)
    states = [vote(project, reliable_user(project, 0.6), labels[i % 2]).state for i in range(3)]
    assert states == [Image.State.OPEN, Image.State.OPEN, Image.State.DISPUTED]
    image.refresh_from_db()
    assert image.votes_count == 3 and not image.decisions.exists()


# --- reliability ------------------------------------------------------------------------------


def test_stats_follow_votes_decisions_and_review_overrides():
    # review_any_state: a reviewer may override this crowd decision without a flag (issue 19).
    project = ProjectFactory(min_votes=2, max_votes=3, agreement=0.6, review_any_state=True)
    a, b = LabelFactory(project=project), LabelFactory(project=project)
    image = ImageFactory(project=project)
    alice, bob = UserFactory(), UserFactory()
    vote(project, alice, a)
    assert AnnotatorStats.objects.get(user=alice).decided_votes == 0
    vote(project, bob, a)  # decides a
    for user in (alice, bob):
        stats = AnnotatorStats.objects.get(project=project, user=user)
        assert (stats.votes, stats.decided_votes, stats.agreed_votes) == (1, 1, 1)
        assert stats.estimated_accuracy == pytest.approx((0.7 * 4 + 1) / 5)

    reviewer = UserFactory(role="reviewer")
    review.review_decide(image_id=image.pk, reviewer=reviewer, label_id=b.pk)
    for user in (alice, bob):
        stats = AnnotatorStats.objects.get(project=project, user=user)
        assert (stats.decided_votes, stats.agreed_votes) == (1, 0)
        assert stats.estimated_accuracy == pytest.approx(0.7 * 4 / 5)
    assert not AnnotatorStats.objects.filter(user=reviewer).exists()


def test_stats_apply_adds_in_the_database_exactly_as_python_estimates():
    """Deltas that only add go as one upsert that re-estimates in SQL; deltas that take away
    go through a locked read. Both must leave the counters and the estimate Python computes."""
    project = ProjectFactory()
    known, new, other = UserFactory(), UserFactory(), UserFactory()
    AnnotatorStats.objects.create(
        project=project,
        user=known,
        votes=7,
        decided_votes=5,
        agreed_votes=3,
        gold_votes=2,
        gold_correct=1,
        estimated_accuracy=0.5,
    )
    AnnotatorStats.objects.create(project=project, user=other, votes=1, estimated_accuracy=0.7)
    added = {
        known.pk: reliability.StatsDelta(
            votes=1, decided_votes=2, agreed_votes=1, gold_votes=1, gold_correct=1
        ),
        new.pk: reliability.StatsDelta(votes=1, decided_votes=1, agreed_votes=1),
    }
    assert reliability.stats_added_statement(project_id=project.pk, deltas=added) is not None
    reliability.stats_apply(project_id=project.pk, deltas=added)
    expected = {known.pk: (8, 7, 4, 3, 2), new.pk: (1, 1, 1, 0, 0), other.pk: (1, 0, 0, 0, 0)}

    def check():
        for stats in AnnotatorStats.objects.filter(project=project):
            counts = (
                stats.votes,
                stats.decided_votes,
                stats.agreed_votes,
                stats.gold_votes,
                stats.gold_correct,
            )
            assert counts == expected[stats.user_id]
            if stats.user_id != other.pk:  # untouched: keeps what it had
                assert stats.estimated_accuracy == reliability.estimated_accuracy(
                    gold_votes=counts[3],
                    gold_correct=counts[4],
                    decided_votes=counts[1],
                    agreed_votes=counts[2],
                )

    check()
    # Taking away: never below zero, and a volunteer with no record yet starts one at zero.
    newest = UserFactory()
    taken = {
        known.pk: reliability.StatsDelta(votes=-1, agreed_votes=-9),
        newest.pk: reliability.StatsDelta(votes=-1),
    }
    assert reliability.stats_added_statement(project_id=project.pk, deltas=taken) is None
    reliability.stats_apply(project_id=project.pk, deltas=taken)
    expected.update({known.pk: (7, 7, 0, 3, 2), newest.pk: (0, 0, 0, 0, 0)})
    check()


def test_gold_schedule_falls_with_experience_and_stays_high_for_the_unreliable():
    project = ProjectFactory(
        gold_rate=0.5, gold_rate_min=0.1, gold_half_life=10, reliability_threshold=0.6
    )
    assert reliability.gold_rate_for(project=project, stats=None) == 0.5
    stats = AnnotatorStats(project=project, votes=10, estimated_accuracy=0.9)
    assert reliability.gold_rate_for(project=project, stats=stats) == pytest.approx(0.1 + 0.4 * 0.5)
    stats.votes = 1000
    assert reliability.gold_rate_for(project=project, stats=stats) == pytest.approx(0.1, abs=1e-6)
    stats.estimated_accuracy = 0.5
    assert reliability.gold_rate_for(project=project, stats=stats) == 0.5
    assert reliability.gold_rate_for(project=ProjectFactory(gold_rate=0.0), stats=None) == 0.0


def test_gold_images_are_served_at_the_rate_and_score_the_volunteer():
    project = ProjectFactory(gold_rate=1.0, gold_rate_min=1.0)
    labels = [LabelFactory(project=project) for _ in range(2)]
    gold = [
        ImageFactory(
            project=project, is_gold=True, gold_label=labels[0], state=Image.State.CONSENSUS
        )
        for _ in range(2)
    ]
    ordinary = ImageFactory(project=project)
    user = UserFactory()
    served = []
    for label in (labels[0], labels[1]):
        assignment = serving.assignment_lease(project=project, user=user)
        served.append(assignment.image_id)
        voting.vote_submit(assignment_id=assignment.pk, user=user, label_id=label.pk)
    assert sorted(served) == sorted(g.pk for g in gold)
    stats = AnnotatorStats.objects.get(project=project, user=user)
    assert (stats.gold_votes, stats.gold_correct, stats.decided_votes) == (2, 1, 0)
    assert stats.estimated_accuracy == pytest.approx((0.7 * 4 + 2 * 1) / (4 + 2 * 2))
    # Out of gold for this user: ordinary work follows.
    assert serving.assignment_lease(project=project, user=user).image_id == ordinary.pk
    for image in gold:
        image.refresh_from_db()
        assert (image.state, image.leases_count) == (Image.State.CONSENSUS, 0)


def test_no_gold_served_at_rate_zero():
    project = ProjectFactory(gold_rate=0.0)
    label = LabelFactory(project=project)
    ImageFactory(project=project, is_gold=True, gold_label=label, state=Image.State.CONSENSUS)
    assert serving.assignment_lease(project=project, user=UserFactory()) is None


# --- review -----------------------------------------------------------------------------------


def test_review_decision_keeps_an_audit_trail():
    project = ProjectFactory(min_votes=2, max_votes=2, agreement=1.0)
    a, b = LabelFactory(project=project), LabelFactory(project=project)
    image = ImageFactory(project=project)
    vote(project, UserFactory(), a)
    image = vote(project, UserFactory(), b)
    assert image.state == Image.State.DISPUTED
    assert list(selectors.review_queue(project=project)) == [image]

    first, second = UserFactory(role="reviewer"), UserFactory(role="admin")
    review.review_decide(image_id=image.pk, reviewer=first, label_id=a.pk)
    review.review_decide(image_id=image.pk, reviewer=second, label_id=None, exclude=True)

    image.refresh_from_db()
    assert image.state == Image.State.EXCLUDED
    history = list(selectors.decision_history(image=image))
    assert [(d.label, d.excluded, d.decided_by, d.is_current) for d in history] == [
        (None, True, second, True),
        (a, False, first, False),
    ]
    assert history[0].replaces == history[1]
    assert list(selectors.review_queue(project=project)) == []
    with pytest.raises(InvalidInput):
        review.review_decide(image_id=image.pk, reviewer=first, label_id=a.pk, exclude=True)


def test_vote_breakdown_shows_voters_and_reliability():
    project = ProjectFactory(min_votes=3, max_votes=3, agreement=1.0, reliability_threshold=0.6)
    a, b = LabelFactory(project=project), LabelFactory(project=project)
    image = ImageFactory(project=project)
    good, bad, unknown = UserFactory(), UserFactory(), UserFactory()
    for user, correct in ((good, 10), (bad, 2)):  # ten gold answers each
        AnnotatorStats.objects.create(
            project=project,
            user=user,
            gold_votes=10,
            gold_correct=correct,
            estimated_accuracy=reliability.estimated_accuracy(
                gold_votes=10, gold_correct=correct, decided_votes=0, agreed_votes=0
            ),
        )
    vote(project, good, a)
    vote(project, bad, b)
    vote(project, unknown, a)
    breakdown = selectors.vote_breakdowns(images=[image])[image.pk]
    assert [(entry["label"], entry["count"]) for entry in breakdown] == [(a.pk, 2), (b.pk, 1)]
    unreliable = {v["username"]: v["unreliable"] for entry in breakdown for v in entry["voters"]}
    assert unreliable == {good.username: False, bad.username: True, unknown.username: False}


# --- Dawid-Skene ------------------------------------------------------------------------------


def simulated_crowd(seed=3, n_items=300, n_workers=25, n_classes=4, per_item=5):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_classes, n_items)
    skill = rng.uniform(0.45, 0.95, n_workers)
    items, workers, answers = [], [], []
    for item in range(n_items):
        for worker in rng.choice(n_workers, per_item, replace=False):
            correct = rng.random() < skill[worker]
            answer = (
                truth[item]
                if correct
                else rng.choice([c for c in range(n_classes) if c != truth[item]])
            )
            items.append(item)
            workers.append(worker)
            answers.append(answer)
    return np.array(items), np.array(workers), np.array(answers), truth


# crowd-kit (the reference, a test dependency) calls pandas APIs that pandas 3 deprecates.
@pytest.mark.filterwarnings("ignore")
def test_numpy_dawid_skene_matches_crowd_kit():
    import pandas as pd
    from crowdkit.aggregation import DawidSkene

    items, workers, answers, truth = simulated_crowd()
    ours = ds.dawid_skene(items, workers, answers, n_items=300, n_workers=25, n_classes=4)
    frame = pd.DataFrame({"task": items, "worker": workers, "label": answers})
    theirs = DawidSkene(n_iter=100).fit(frame)
    their_labels = theirs.labels_.sort_index().to_numpy()
    our_labels = ours.posteriors.argmax(axis=1)
    assert (our_labels == their_labels).mean() >= 0.98
    their_probas = theirs.probas_.sort_index()[list(range(4))].to_numpy()
    assert np.abs(ours.posteriors - their_probas).mean() < 0.02
    # Both beat majority voting on this crowd.
    majority = np.array(
        [np.bincount(answers[items == i], minlength=4).argmax() for i in range(300)]
    )
    assert (our_labels == truth).mean() >= (majority == truth).mean()


def test_reaggregation_flags_decisions_dawid_skene_would_change():
    project = ProjectFactory(min_votes=5, max_votes=5, agreement=0.6)
    a, b = LabelFactory(project=project), LabelFactory(project=project)
    experts = [UserFactory() for _ in range(3)]
    liars = [UserFactory() for _ in range(2)]
    rng = random.Random(1)
    # Calibration images: experts agree on the truth, the two liars always answer the other.
    for _ in range(12):
        ImageFactory(project=project)
        truth, lie = (a, b) if rng.random() < 0.5 else (b, a)
        for user in experts:
            vote(project, user, truth)
        for user in liars:
            vote(project, user, lie)
    # The trap: only the liars voted, and a two-vote majority rule believed them.
    projects.project_update(project=project, min_votes=2, max_votes=2, agreement=1.0)
    trap = ImageFactory(project=project)
    for user in liars:
        vote(project, user, a)
    trap.refresh_from_db()
    assert trap.state == Image.State.CONSENSUS

    report = aggregation.project_reaggregate(project=project)

    trap.refresh_from_db()
    assert trap.flagged_for_review and "Dawid-Skene" in trap.flag_reason
    assert report.flagged >= 1
    assert trap in list(selectors.review_queue(project=project))
    project.refresh_from_db()
    assert sum(project.answer_counts.values()) == Decision.objects.filter(is_current=True).count()
    liar_stats = AnnotatorStats.objects.get(project=project, user=liars[0])
    expert_stats = AnnotatorStats.objects.get(project=project, user=experts[0])
    assert liar_stats.batch_accuracy < 0.3 < 0.9 < expert_stats.batch_accuracy


def test_answer_prior_is_the_decided_answers_frequencies():
    from annotate.services.consensus import answer_keys_for, answer_prior

    project = ProjectFactory(mode=Project.Mode.DYNAMIC, answer_counts={"none": 1})
    LabelFactory(project=project), LabelFactory(project=project)
    keys = answer_keys_for(project=project)
    assert answer_prior(project=project, answer_keys=keys) == pytest.approx([1 / 4, 1 / 4, 2 / 4])


def test_a_project_with_votes_decisions_and_gold_can_be_deleted_but_a_used_label_cannot():
    from django.db.models import RestrictedError

    project = ProjectFactory(min_votes=1, max_votes=1, agreement=1.0)
    label = LabelFactory(project=project)
    ImageFactory(project=project, is_gold=True, gold_label=label, state=Image.State.CONSENSUS)
    ImageFactory(project=project)
    vote(project, UserFactory(), label)
    with pytest.raises(RestrictedError):
        label.delete()  # votes and decisions still name it
    project.delete()
    assert not Image.objects.exists() and not Decision.objects.exists()


def test_one_vote_decides_alone_only_from_a_volunteer_with_a_record():
    """An estimate of 0.98 from no counted answer (a few lucky gold answers) does not let one
    vote decide; the same estimate from 20 answers does; a second vote can."""
    project = ProjectFactory(
        mode=Project.Mode.DYNAMIC, min_votes=1, max_votes=5, target_confidence=0.9
    )
    labels = [LabelFactory(project=project) for _ in range(4)]
    first, second = ImageFactory(project=project), ImageFactory(project=project)
    assert 5 < consensus.LONE_MIN_ANSWERS <= 20
    newcomer = reliable_user(project, 0.98, answers=5)
    image = vote(project, newcomer, labels[2])
    assert image.state == Image.State.OPEN
    expert = reliable_user(project, 0.98, answers=20)
    image = vote(project, expert, labels[2])
    assert image.state == Image.State.CONSENSUS  # the second vote on the first image
    decided = vote(project, reliable_user(project, 0.98), labels[1])
    assert decided.pk == second.pk and decided.state == Image.State.CONSENSUS
    assert image.pk == first.pk
