"""Honest consensus (issue 16): leave-one-out reliability, the model as a bounded voter,
smoothed Dawid-Skene and its flags, policies that can decide, quality settings."""

import random

import numpy as np
import pytest

from annotate import selectors
from annotate.models import (
    AnnotatorStats,
    CrowdConfusion,
    Decision,
    Image,
    Project,
    VolunteerConfusion,
)
from annotate.services import aggregation, confusions, ml_suggestions, policies, reliability
from annotate.services import dawid_skene as ds
from tests.annotate.services.test_quality import reliable_user, vote
from tests.api_errors import assert_error_shape
from tests.factories import ImageFactory, LabelFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


# --- leave-one-out reliability -----------------------------------------------------------------


def test_standing_voters_leave_each_voter_out():
    # Alone, a vote stands on nothing; two agreeing votes vouch for each other; in a 2-1 split
    # the dissenter is scored against the two, and each of the two against a tie: not at all.
    assert confusions.standing_voters([(1, 5)], 5) == []
    assert confusions.standing_voters([(1, 5), (2, 5)], 5) == [1, 2]
    assert confusions.standing_voters([(1, 5), (2, 5), (3, 6)], 5) == [3]
    assert confusions.standing_voters([(1, 5), (2, 5), (3, 5), (4, 6)], 5) == [1, 2, 3, 4]


def test_a_volunteer_deciding_alone_earns_no_agreement():
    """Two volunteers who decide images alone (min_votes 1) used to read agreement 1.00."""
    project = ProjectFactory(min_votes=1, max_votes=1, agreement=1.0)
    label = LabelFactory(project=project)
    alone = UserFactory()
    for _ in range(5):
        ImageFactory(project=project)
        vote(project, alone, label)
    stats = AnnotatorStats.objects.get(project=project, user=alone)
    assert (stats.votes, stats.decided_votes, stats.agreed_votes) == (5, 0, 0)
    assert stats.estimated_accuracy == pytest.approx(reliability.PRIOR_ACCURACY)
    assert not VolunteerConfusion.objects.filter(user=alone).exists()


def test_leave_one_out_counts_agreement():
    project = ProjectFactory(min_votes=3, max_votes=3, agreement=0.6)
    a, b = LabelFactory(project=project), LabelFactory(project=project)
    image = ImageFactory(project=project)
    first, second, dissenter = UserFactory(), UserFactory(), UserFactory()
    vote(project, first, a)
    vote(project, second, a)
    vote(project, dissenter, b)
    image.refresh_from_db()
    assert image.state == Image.State.CONSENSUS
    counted = {
        s.user_id: (s.decided_votes, s.agreed_votes)
        for s in AnnotatorStats.objects.filter(project=project)
    }
    # Without its own vote each "a" voter faces a tie: not scored; the dissenter is.
    assert counted == {first.pk: (0, 0), second.pk: (0, 0), dissenter.pk: (1, 0)}
    # Where mistakes go is learned from gold only: a decision may be the crowd's own mistake.
    assert not VolunteerConfusion.objects.exists() and not CrowdConfusion.objects.exists()


def test_crowd_confusions_are_appended_and_compacted():
    project = ProjectFactory()
    for weight in (1.0, 2.0, -3.0):
        CrowdConfusion.objects.create(project=project, true_key=5, given_key=6, weight=weight)
    CrowdConfusion.objects.create(project=project, true_key=5, given_key=-1, weight=1.0)
    assert confusions.crowd_compact(project_id=project.pk) == 1
    assert list(CrowdConfusion.objects.values_list("given_key", "weight")) == [(-1, 1.0)]


def test_gold_answers_count_in_the_confusions_at_gold_weight():
    project = ProjectFactory(gold_rate=1.0, gold_rate_min=1.0)
    a, b = LabelFactory(project=project), LabelFactory(project=project)
    ImageFactory(project=project, is_gold=True, gold_label=a, state=Image.State.CONSENSUS)
    user = UserFactory()
    vote(project, user, b)
    assert list(VolunteerConfusion.objects.values_list("true_key", "given_key", "weight")) == [
        (a.pk, b.pk, confusions.GOLD_WEIGHT)
    ]


def test_a_volunteer_whose_mistakes_go_to_one_partner_is_modelled_so():
    """Gold showed this volunteer reads a as b: their b vote then says little; the same vote
    from a volunteer of the same accuracy whose mistakes spread evenly decides."""

    def project_and_vote(confused: bool) -> str:
        project = ProjectFactory(
            mode=Project.Mode.DYNAMIC, min_votes=1, max_votes=3, target_confidence=0.9
        )
        a, b = (LabelFactory(project=project) for _ in range(2))
        for _ in range(3):
            LabelFactory(project=project)
        user = reliable_user(project, 0.9)
        if confused:
            VolunteerConfusion.objects.create(
                project=project, user=user, true_key=a.pk, given_key=b.pk, weight=10
            )
            for given in (b.pk, -1):  # the crowd's pool holds every volunteer's mistakes
                CrowdConfusion.objects.create(
                    project=project, true_key=a.pk, given_key=given, weight=10
                )
        ImageFactory(project=project)
        return vote(project, user, b).state

    assert project_and_vote(confused=True) == Image.State.OPEN
    assert project_and_vote(confused=False) == Image.State.CONSENSUS


# --- the model as a bounded voter --------------------------------------------------------------


@pytest.fixture
def model_says(monkeypatch):
    said: dict[int, float] = {}
    monkeypatch.setattr(
        ml_suggestions, "image_model_vote", lambda image_id: (dict(said), 0.0) if said else None
    )
    return said


# A model measured right on every one of 1,000 images its volunteers agreed on at 0.95-1.0.
MEASURED_SURE = {"0.95": [1000, 1000]}


def dynamic_project(**fields):
    policy = {
        "mode": Project.Mode.DYNAMIC,
        "min_votes": 1,
        "max_votes": 3,
        "target_confidence": 0.95,
        "reliability_threshold": 0.6,
        "model_reliability": MEASURED_SURE,
    }
    project = ProjectFactory(**{**policy, **fields})
    return project, [LabelFactory(project=project) for _ in range(10)]


def test_the_model_never_decides_a_label_no_volunteer_gave(model_says):
    project, labels = dynamic_project()
    model_says[labels[6].pk] = 0.999
    image = ImageFactory(project=project)
    # The two spammers of the issue: votes 7 and 9, and a model that says 6.
    assert vote(project, reliable_user(project, 0.2), labels[7]).state == Image.State.OPEN
    assert vote(project, reliable_user(project, 0.2), labels[9]).state == Image.State.OPEN
    image.refresh_from_db()
    assert not image.decisions.exists()
    # A reliable volunteer who disagrees with a sure model is not outvoted: the image waits
    # for another vote.
    project, labels = dynamic_project()
    model_says.clear()
    model_says[labels[6].pk] = 0.999
    image = ImageFactory(project=project)
    assert vote(project, reliable_user(project, 0.97), labels[2]).state == Image.State.OPEN
    assert not image.decisions.exists()


def test_the_model_never_decides_with_only_unreliable_votes(model_says):
    project, labels = dynamic_project()
    model_says[labels[3].pk] = 0.999
    image = ImageFactory(project=project)
    # One vote below reliability_threshold agreeing with a sure model: not enough.
    assert vote(project, reliable_user(project, 0.5), labels[3]).state == Image.State.OPEN
    assert not image.decisions.exists()


def test_the_model_weighs_at_most_as_its_cap_and_its_share_is_recorded(model_says):
    project, labels = dynamic_project(model_max_accuracy=0.9)
    model_says[labels[3].pk] = 0.999
    image = ImageFactory(project=project)
    decided = vote(project, reliable_user(project, 0.8), labels[3])
    assert decided.state == Image.State.CONSENSUS
    decision = Decision.objects.get(image=image)
    # Uniform prior over 11 answers; the model a voter of accuracy 0.9 (its cap), not 0.999.
    # Were another answer the truth, the volunteer's mistake is one of ten (0.2 / 10) and the
    # model's the same mistake as the volunteer's, which the crowd's urn (concentration 1)
    # makes (1 + 1/10) / (1 + 1) likely: mistakes go to look-alikes, the model's too.
    expected = 0.8 * 0.9 / (0.8 * 0.9 + 10 * (0.02 * 0.1 * 0.55))
    assert decision.confidence == pytest.approx(expected)
    image.refresh_from_db()
    humans_only = 0.8 / (0.8 + 10 * 0.02)
    assert image.model_share == pytest.approx((expected - humans_only) / expected)
    assert not image.model_decided

    # A capped model cannot carry an image to the target by itself.
    weak, labels = dynamic_project(model_max_accuracy=0.3)
    model_says.clear()
    model_says[labels[0].pk] = 0.999
    ImageFactory(project=weak)
    assert vote(weak, reliable_user(weak, 0.8), labels[0]).state == Image.State.OPEN


def test_model_decided_labels_are_left_out_of_training(model_says):
    # A volunteer just above the threshold: alone, 0.35 for their answer; the model adds the
    # rest, so the label is mostly the model's.
    project, labels = dynamic_project(
        model_max_accuracy=0.95, target_confidence=0.9, reliability_threshold=0.3
    )
    model_says[labels[1].pk] = 0.999
    image = ImageFactory(project=project)
    vote(project, reliable_user(project, 0.35), labels[1])
    image.refresh_from_db()
    assert image.state == Image.State.CONSENSUS and image.model_decided
    assert image.model_share >= 0.5
    assert not selectors.verified_decisions(project=project).exists()
    project.train_on_model_decided = True
    assert list(
        selectors.verified_decisions(project=project).values_list("image_id", flat=True)
    ) == [image.pk]


# --- Dawid-Skene -------------------------------------------------------------------------------

# Found by search: unsmoothed EM prefers 9 for the first item, voted 4, 4, 4, 9, because the
# 9-voter's two answers look consistent and the three 4-voters are seen on few items.
UNANIMOUS_CASE = [
    (0, 0, 4), (0, 1, 4), (0, 2, 4), (0, 3, 9), (1, 4, 1), (2, 3, 9), (3, 4, 0), (3, 1, 0),
    (4, 4, 2), (5, 0, 8), (5, 4, 8), (6, 3, 5), (6, 1, 7), (7, 4, 3), (8, 2, 10), (8, 0, 10),
]  # fmt: skip


def test_smoothed_dawid_skene_keeps_a_three_to_one_image():
    items, workers, answers = map(np.array, zip(*UNANIMOUS_CASE, strict=True))

    def run(
        confusion_strength: float = ds.CONFUSION_STRENGTH,
        class_strength: float = ds.CLASS_STRENGTH,
    ) -> ds.DawidSkeneResult:
        return ds.dawid_skene(
            items,
            workers,
            answers,
            n_items=9,
            n_workers=5,
            n_classes=11,
            confusion_strength=confusion_strength,
            class_strength=class_strength,
        )

    unsmoothed = run(confusion_strength=1e-6, class_strength=1e-9)
    assert unsmoothed.posteriors[0].argmax() == 9  # the old EM's mistake
    smoothed = run()
    assert smoothed.posteriors[0].argmax() == 4 and smoothed.posteriors[0, 4] > 0.9
    assert smoothed.converged and smoothed.iterations < 500


def flag_project():
    """The trap of test_quality: two liars decide an image the experts never saw."""
    project = ProjectFactory(min_votes=5, max_votes=5, agreement=0.6, flag_confidence=0.9)
    a = LabelFactory(project=project, name="tabby cat")
    b = LabelFactory(project=project, name="tiger cat")
    experts = [UserFactory() for _ in range(3)]
    liars = [UserFactory() for _ in range(2)]
    rng = random.Random(1)
    for _ in range(12):
        ImageFactory(project=project)
        truth, lie = (a, b) if rng.random() < 0.5 else (b, a)
        for user in experts:
            vote(project, user, truth)
        for user in liars:
            vote(project, user, lie)
    project.min_votes, project.max_votes, project.agreement = 2, 2, 1.0
    project.save()
    trap = ImageFactory(project=project)
    for user in liars:
        vote(project, user, a)
    return project, a, b, trap


def test_flags_name_labels_and_a_rerun_rewrites_or_withdraws_them():
    project, a, b, trap = flag_project()
    agreeing = Image.objects.filter(project=project, state=Image.State.CONSENSUS).first()
    assert agreeing is not None
    # Flags of an earlier run: one with an old text, one DS no longer supports.
    Image.objects.filter(pk=trap.pk).update(
        flagged_for_review=True, flag_reason="Dawid-Skene prefers label 16 (100%)"
    )
    Image.objects.filter(pk=agreeing.pk).update(
        flagged_for_review=True, flag_reason="Dawid-Skene prefers label 16 (51%)"
    )
    report = aggregation.project_reaggregate(project=project)
    trap.refresh_from_db()
    agreeing.refresh_from_db()
    assert trap.flagged_for_review
    assert trap.flag_reason.startswith("Dawid-Skene prefers \u201ctiger cat\u201d (")
    assert trap.flag_reason.endswith("to \u201ctabby cat\u201d")
    assert not agreeing.flagged_for_review and agreeing.flag_reason == ""
    assert report.flagged == 1 and report.unflagged == 1
    assert report.converged and 0 < report.iterations < 500

    # Below the project's confidence, or with fewer votes than min_votes, no flag.
    project.flag_confidence = 1.0
    project.save()
    aggregation.project_reaggregate(project=project)
    trap.refresh_from_db()
    assert not trap.flagged_for_review
    project.flag_confidence, project.min_votes, project.max_votes = 0.9, 3, 3
    project.save()
    aggregation.project_reaggregate(project=project)
    trap.refresh_from_db()
    assert not trap.flagged_for_review


def test_other_flags_are_left_alone():
    project, a, b, trap = flag_project()
    Image.objects.filter(project=project).exclude(pk=trap.pk).update(
        flagged_for_review=True, flag_reason="All candidate labels were rejected"
    )
    aggregation.project_reaggregate(project=project)
    assert (
        Image.objects.filter(
            project=project, flag_reason="All candidate labels were rejected"
        ).count()
        == Image.objects.filter(project=project).count() - 1
    )


# --- policies and settings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("min_votes", "max_votes", "agreement", "can"),
    [
        (3, 5, 0.75, False),  # the policy: four undecided votes, a fifth can't decide
        (2, 5, 0.75, False),  # the old default
        (2, 4, 0.75, True),
        (3, 5, 0.6, True),
        (2, 3, 1.0, False),
        (2, 2, 1.0, True),
        (1, 5, 0.5, True),
    ],
)
def test_last_vote_can_decide(min_votes, max_votes, agreement, can):
    assert (
        policies.last_vote_can_decide(min_votes=min_votes, max_votes=max_votes, agreement=agreement)
        is can
    )


def test_a_policy_that_cannot_decide_is_refused_with_the_reason(client_for, admin_user):
    client = client_for(admin_user)
    bad = {"name": "Digits", "min_votes": 3, "max_votes": 5, "agreement": 0.75}
    body = assert_error_shape(client.post("/api/projects/", bad, format="json"), 400)
    assert "vote 5 can never decide" in body["detail"] and "max_votes" in body["fields"]
    assert not Project.objects.filter(name="Digits").exists()
    # Deciding by plurality at max_votes makes the same policy work.
    created = client.post("/api/projects/", {**bad, "plurality_at_max_votes": True}, format="json")
    assert created.status_code == 201, created.content
    project_id = created.json()["id"]
    # And an update that breaks it is refused, changing nothing.
    refused = client.patch(
        f"/api/projects/{project_id}/", {"plurality_at_max_votes": False}, format="json"
    )
    assert_error_shape(refused, 400)
    assert Project.objects.get(pk=project_id).plurality_at_max_votes
    # The defaults make a policy that works.
    assert client.post("/api/projects/", {"name": "Defaults"}, format="json").status_code == 201


def test_plurality_at_max_votes_decides_a_unique_top():
    project = ProjectFactory(min_votes=3, max_votes=5, agreement=0.75, plurality_at_max_votes=True)
    a, b, c = (LabelFactory(project=project) for _ in range(3))
    image = ImageFactory(project=project)
    for label in (a, b, a, c, b):
        state = vote(project, UserFactory(), label).state
    assert state == Image.State.DISPUTED  # 2-2-1: no unique top
    ImageFactory(project=project)
    for label in (a, b, a, c, a):
        state = vote(project, UserFactory(), label).state
    assert state == Image.State.CONSENSUS
    assert image.pk


def test_every_quality_setting_goes_through_the_api(client_for, admin_user):
    client = client_for(admin_user)
    project_id = client.post("/api/projects/", {"name": "Q"}, format="json").json()["id"]
    settings = {
        "gold_rate": 0.2,
        "gold_rate_min": 0.01,
        "gold_half_life": 30,
        "reliability_threshold": 0.65,
        "model_max_accuracy": 0.85,
        "flag_confidence": 0.95,
        "train_on_model_decided": True,
        "plurality_at_max_votes": True,
    }
    answer = client.patch(f"/api/projects/{project_id}/", settings, format="json")
    assert answer.status_code == 200, answer.content
    assert {key: answer.json()[key] for key in settings} == settings
    bad = client.patch(f"/api/projects/{project_id}/", {"flag_confidence": 0.2}, format="json")
    assert_error_shape(bad, 400)


def test_gold_rate_defaults_to_a_small_share_and_gold_is_then_served(client_for, admin_user):
    created = client_for(admin_user).post("/api/projects/", {"name": "G"}, format="json")
    project = Project.objects.get(pk=created.json()["id"])
    assert 0 < created.json()["gold_rate"] == project.gold_rate == Project().gold_rate <= 0.1
    label = LabelFactory(project=project)
    ImageFactory(project=project, is_gold=True, gold_label=label, state=Image.State.CONSENSUS)

    class Draw(random.Random):
        """A draw that always comes out at `value`."""

        def __init__(self, value: float):
            super().__init__()
            self.value = value

        def random(self) -> float:
            return self.value

    user = UserFactory()
    assert reliability.gold_due(project=project, user=user, rng=Draw(0.0))
    assert not reliability.gold_due(project=project, user=user, rng=Draw(project.gold_rate))
    project.gold_rate = 0.0
    assert not reliability.gold_due(project=project, user=user, rng=Draw(0.0))


def test_mistake_concentration_tells_look_alike_mistakes_from_spread_ones():
    k, rng = 10, np.random.default_rng(4)
    truth = rng.integers(0, k, 2000)
    posteriors = np.eye(k)[truth]
    look_alike = np.where(rng.random(2000) < 0.8, truth ^ 1, (truth + 2) % k)
    spread = (truth + rng.integers(1, k, 2000)) % k
    concentrated = ds.mistake_concentration(posteriors, look_alike, n_classes=k)
    even = ds.mistake_concentration(posteriors, spread, n_classes=k)
    assert concentrated < 1.0 < 20.0 < even


def test_dawid_skene_counts_the_model_as_the_decision_did():
    """A split the model settled is not flagged for DS not seeing the model; without the
    model's suggestion, the same votes are."""
    from django.utils import timezone

    from annotate.models import ActiveModel, ModelVersion, Suggestion, Vote

    project = ProjectFactory(min_votes=2, max_votes=3, agreement=0.6)
    a, b = LabelFactory(project=project), LabelFactory(project=project)
    weak, expert, other = UserFactory(), UserFactory(), UserFactory()
    version = ModelVersion.objects.create(
        project=project,
        arch="test",
        classes=[a.pk, b.pk],
        file="test",
        weights_source="test",
        device="cpu",
        train_size=0,
        holdout_size=0,
        training_seconds=0,
        top1=1.0,
    )
    ActiveModel.objects.create(project=project, version=version, promoted_at=timezone.now())

    def decided(votes, label, suggestion):
        image = ImageFactory(project=project, state=Image.State.CONSENSUS)
        for user, answer in votes:
            Vote.objects.create(image=image, user=user, label=answer)
        Decision.objects.create(image=image, label=label, rule=Decision.Rule.DYNAMIC)
        if suggestion is not None:
            Suggestion.objects.create(
                image=image, model_version=version, label=suggestion, confidence=0.99
            )
        return image

    rng = random.Random(2)
    for _ in range(40):  # the expert, the other volunteer and the model are right; weak guesses
        truth = a if rng.random() < 0.5 else b
        guess = a if rng.random() < 0.5 else b
        decided([(weak, guess), (expert, truth), (other, truth)], truth, truth)
    settled = decided([(weak, a), (expert, b)], a, a)  # the model sided with the weak vote
    unseen = decided([(weak, a), (expert, b)], a, None)
    aggregation.project_reaggregate(project=project)
    settled.refresh_from_db()
    unseen.refresh_from_db()
    assert unseen.flagged_for_review
    assert not settled.flagged_for_review
