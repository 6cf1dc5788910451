"""Verification (issue 15): candidates, grid leasing, answers, consensus per synset, gold."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from annotate.models import (
    ActiveModel,
    Candidate,
    CandidateVote,
    Decision,
    GridItem,
    Image,
    Label,
    ModelVersion,
    Project,
    Suggestion,
)
from annotate.services import verification, verification_candidates
from annotate.services.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from tests.factories import ImageFactory, LabelFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def verify_project(**fields) -> Project:
    settings = {"task": Project.Task.VERIFY, "min_votes": 2, "max_votes": 4, "grid_size": 12}
    return ProjectFactory(**(settings | fields))


def with_candidates(project: Project, label, count: int) -> list[Candidate]:
    images = [ImageFactory(project=project) for _ in range(count)]
    verification_candidates.candidates_add(
        project=project, pairs=[(i.pk, label.pk) for i in images], source=Candidate.Source.IMPORT
    )
    return list(Candidate.objects.filter(image__in=images).order_by("id"))


def candidate_ids(grid) -> list[int]:
    return sorted(GridItem.objects.filter(grid=grid).values_list("candidate_id", flat=True))


def answer_all(grid, user, yes: bool) -> verification.GridAnswer:
    items = list(GridItem.objects.filter(grid=grid).values_list("id", flat=True))
    return verification.grid_answer(grid_id=grid.pk, user=user, yes_item_ids=items if yes else [])


def model_version(project: Project, labels: list[Label], *, active: bool) -> ModelVersion:
    """A stored model over these labels (no weights file); `active` promotes it."""
    version = ModelVersion.objects.create(
        project=project,
        arch="test",
        classes=[label.pk for label in labels],
        file="x.pt",
        weights_source="scratch",
        device="cpu",
        train_size=1,
        holdout_size=1,
        training_seconds=1.0,
        top1=0.5,
    )
    if active:
        ActiveModel.objects.create(project=project, version=version, promoted_at=timezone.now())
    return version


# --- candidates -------------------------------------------------------------------------------


def test_candidates_hold_images_out_of_the_classify_queue():
    project = verify_project()
    label = LabelFactory(project=project)
    image = ImageFactory(project=project)
    assert image.free_slots == 2

    made = verification_candidates.candidates_add(
        project=project, pairs=[(image.pk, label.pk)] * 2, source=Candidate.Source.UPLOAD
    )

    image.refresh_from_db()
    assert made == 1 and image.free_slots == 0
    # The same pair again adds nothing.
    assert (
        verification_candidates.candidates_add(
            project=project, pairs=[(image.pk, label.pk)], source=Candidate.Source.UPLOAD
        )
        == 0
    )


def test_candidates_from_folders_take_the_first_folder_as_the_wnid():
    project = verify_project()
    cat = LabelFactory(project=project, wnid="n02123045")
    named = ImageFactory(project=project, original_name="n02123045/a.jpg")
    trained = ImageFactory(project=project, original_name="train/n02123045/b.jpg")
    unknown = ImageFactory(project=project, original_name="n99999999/c.jpg")
    loose = ImageFactory(project=project, original_name="d.jpg")

    result = verification_candidates.candidates_from_folders(
        project=project, image_ids=[named.pk, trained.pk, unknown.pk, loose.pk]
    )

    assert result.created == 2
    assert result.unknown_folders == {"n99999999": 1}
    assert set(Candidate.objects.values_list("image_id", "label_id", "source")) == {
        (named.pk, cat.pk, "import"),
        (trained.pk, cat.pk, "import"),
    }


def test_model_candidates_are_the_top_k_above_the_project_threshold():
    project = verify_project(candidate_min_probability=0.3)
    a, b, c = (LabelFactory(project=project) for _ in range(3))
    image = ImageFactory(project=project)
    version = model_version(project, [a, b, c], active=False)
    top = [
        {"label": a.pk, "probability": 0.5},
        {"label": b.pk, "probability": 0.35},
        {"label": c.pk, "probability": 0.15},
    ]
    suggestion = Suggestion.objects.create(
        image=image, model_version=version, label=a, confidence=0.5, top=top
    )

    made = verification_candidates.candidates_from_suggestions(
        project_id=project.pk, suggestions=[suggestion]
    )

    assert made == 2
    assert dict(Candidate.objects.values_list("label_id", "probability")) == {a.pk: 0.5, b.pk: 0.35}
    # A classify project gets none.
    classify = ProjectFactory()
    assert (
        verification_candidates.candidates_from_suggestions(
            project_id=classify.pk, suggestions=[suggestion]
        )
        == 0
    )


# --- leasing ----------------------------------------------------------------------------------


def test_a_grid_holds_one_label_and_never_repeats_an_item_for_a_volunteer():
    project = verify_project(grid_size=12, max_votes=20, min_votes=20)
    cat, dog = LabelFactory(project=project), LabelFactory(project=project)
    cats = with_candidates(project, cat, 20)
    dogs = with_candidates(project, dog, 5)
    user = UserFactory()

    first = verification.grid_lease(project=project, user=user)
    second = verification.grid_lease(project=project, user=user)
    third = verification.grid_lease(project=project, user=user)

    assert first.label_id == cat.pk and len(candidate_ids(first)) == 12
    assert second.label_id == cat.pk and len(candidate_ids(second)) == 8
    assert third.label_id == dog.pk and candidate_ids(third) == [c.pk for c in dogs]
    assert set(candidate_ids(first)).isdisjoint(candidate_ids(second))
    assert verification.grid_lease(project=project, user=user) is None
    assert Candidate.objects.get(pk=cats[0].pk).leases_count == 1


def test_leases_never_go_past_the_votes_an_item_still_needs():
    project = verify_project(min_votes=2, max_votes=2)
    label = LabelFactory(project=project)
    with_candidates(project, label, 3)
    users = [UserFactory() for _ in range(3)]

    grids = [verification.grid_lease(project=project, user=u) for u in users]

    assert [g is not None for g in grids] == [True, True, False]
    assert set(Candidate.objects.values_list("leases_count", flat=True)) == {2}


def test_past_min_votes_one_volunteer_at_a_time():
    project = verify_project(min_votes=1, max_votes=5)
    label = LabelFactory(project=project)
    with_candidates(project, label, 1)

    assert verification.grid_lease(project=project, user=UserFactory()) is not None
    assert verification.grid_lease(project=project, user=UserFactory()) is None


def test_expired_grids_give_their_items_back_but_not_to_the_same_volunteer():
    project = verify_project(min_votes=1, max_votes=1, lease_seconds=60)
    label = LabelFactory(project=project)
    (candidate,) = with_candidates(project, label, 1)
    first, second = UserFactory(), UserFactory()
    grid = verification.grid_lease(project=project, user=first)
    assert verification.grid_lease(project=project, user=second) is None

    later = timezone.now() + timedelta(seconds=61)
    assert verification.grid_lease(project=project, user=first, now=later) is None
    grid.refresh_from_db()
    candidate.refresh_from_db()
    assert grid.expired and candidate.leases_count == 0
    again = verification.grid_lease(project=project, user=second, now=later)
    assert candidate_ids(again) == [candidate.pk]
    with pytest.raises(Conflict):
        answer_all(grid, first, yes=True)


def test_only_open_images_are_leased():
    project = verify_project()
    label = LabelFactory(project=project)
    (candidate,) = with_candidates(project, label, 1)
    Image.objects.filter(pk=candidate.image_id).update(state=Image.State.CONSENSUS)

    assert verification.grid_lease(project=project, user=UserFactory()) is None


@pytest.mark.postgresql  # SKIP LOCKED is PostgreSQL's
@pytest.mark.django_db(transaction=True)
def test_concurrent_leases_take_different_items():
    project = verify_project(min_votes=1, max_votes=1, grid_size=12)
    label = LabelFactory(project=project)
    with_candidates(project, label, 48)
    users = [UserFactory() for _ in range(4)]
    got: dict[int, list[int]] = {}
    start = threading.Barrier(len(users))

    def lease(user):
        try:
            start.wait()
            grid = verification.grid_lease(project=project, user=user)
            got[user.pk] = candidate_ids(grid) if grid else []
        finally:
            connection.close()

    threads = [threading.Thread(target=lease, args=(u,)) for u in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    taken = [c for ids in got.values() for c in ids]
    assert len(taken) == len(set(taken)) == 48
    assert set(Candidate.objects.values_list("leases_count", flat=True)) == {1}


# --- answers and decisions --------------------------------------------------------------------


def test_answer_errors():
    project = verify_project()
    label = LabelFactory(project=project)
    with_candidates(project, label, 3)
    owner, stranger = UserFactory(), UserFactory()
    grid = verification.grid_lease(project=project, user=owner)
    other_grid = verification.grid_lease(project=project, user=stranger)
    foreign_item = GridItem.objects.filter(grid=other_grid).first()

    with pytest.raises(NotFound):
        verification.grid_answer(grid_id=grid.pk + 1000, user=owner, yes_item_ids=[])
    with pytest.raises(PermissionDenied):
        verification.grid_answer(grid_id=grid.pk, user=stranger, yes_item_ids=[])
    with pytest.raises(InvalidInput):
        verification.grid_answer(grid_id=grid.pk, user=owner, yes_item_ids=[foreign_item.pk])
    assert not CandidateVote.objects.exists()
    answer_all(grid, owner, yes=True)
    with pytest.raises(Conflict):
        answer_all(grid, owner, yes=True)
    assert CandidateVote.objects.count() == 3


def test_yes_for_marked_items_no_for_the_rest():
    project = verify_project(min_votes=3, max_votes=5)
    label = LabelFactory(project=project)
    first, second = with_candidates(project, label, 2)
    user = UserFactory()
    grid = verification.grid_lease(project=project, user=user)
    marked = GridItem.objects.get(grid=grid, candidate=first)

    result = verification.grid_answer(grid_id=grid.pk, user=user, yes_item_ids=[marked.pk])

    first.refresh_from_db()
    second.refresh_from_db()
    assert result.decided == 0
    assert (first.yes_count, first.no_count, first.leases_count) == (1, 0, 0)
    assert (second.yes_count, second.no_count) == (0, 1)
    assert first.posterior > second.posterior


def test_agreeing_yes_votes_accept_and_decide_the_image():
    project = verify_project(min_votes=2, max_votes=6, target_confidence=0.9)
    label = LabelFactory(project=project)
    (candidate,) = with_candidates(project, label, 1)

    decided = 0
    for _ in range(6):
        grid = verification.grid_lease(project=project, user=UserFactory())
        if grid is None:
            break
        decided += answer_all(grid, grid.volunteer, yes=True).decided

    candidate.refresh_from_db()
    image = Image.objects.get(pk=candidate.image_id)
    decision = Decision.objects.get(image=image, is_current=True)
    assert decided == 1 and candidate.state == Candidate.State.ACCEPTED
    assert candidate.posterior >= 0.9
    assert image.state == Image.State.CONSENSUS and image.free_slots == 0
    assert (decision.label_id, decision.rule) == (label.pk, Decision.Rule.VERIFIED)


@pytest.mark.parametrize(
    ("rule", "state", "slots"),
    [
        (Project.AllRejected.CLASSIFY, Image.State.OPEN, 2),
        (Project.AllRejected.NEXT_CANDIDATE, Image.State.OPEN, 2),  # no model: classify
        (Project.AllRejected.EXCLUDE, Image.State.EXCLUDED, 0),
    ],
)
def test_an_image_whose_candidates_are_all_rejected(rule, state, slots):
    project = verify_project(
        min_votes=2, max_votes=6, target_confidence=0.9, when_all_rejected=rule
    )
    label = LabelFactory(project=project)
    (candidate,) = with_candidates(project, label, 1)

    for _ in range(6):
        grid = verification.grid_lease(project=project, user=UserFactory())
        if grid is None:
            break
        answer_all(grid, grid.volunteer, yes=False)

    candidate.refresh_from_db()
    image = Image.objects.get(pk=candidate.image_id)
    assert candidate.state == Candidate.State.REJECTED
    assert (image.state, image.free_slots) == (state, slots)
    if rule == Project.AllRejected.EXCLUDE:
        decision = Decision.objects.get(image=image, is_current=True)
        assert decision.excluded and decision.rule == Decision.Rule.VERIFIED


def test_rejection_moves_on_to_the_models_next_candidate():
    project = verify_project(min_votes=2, max_votes=6, target_confidence=0.9)
    first, second = LabelFactory(project=project), LabelFactory(project=project)
    (candidate,) = with_candidates(project, first, 1)
    version = model_version(project, [first, second], active=True)
    Suggestion.objects.create(
        image_id=candidate.image_id,
        model_version=version,
        label=first,
        confidence=0.6,
        top=[{"label": first.pk, "probability": 0.6}, {"label": second.pk, "probability": 0.4}],
    )

    while (grid := verification.grid_lease(project=project, user=UserFactory())) is not None:
        if grid.label_id != first.pk:
            break
        answer_all(grid, grid.volunteer, yes=False)

    follow_up = Candidate.objects.get(image_id=candidate.image_id, label=second)
    assert follow_up.source == Candidate.Source.MODEL and follow_up.state == Candidate.State.OPEN
    assert Image.objects.get(pk=candidate.image_id).free_slots == 0


def test_split_votes_at_max_votes_are_disputed_and_go_to_review():
    project = verify_project(min_votes=2, max_votes=4, target_confidence=0.99)
    label = LabelFactory(project=project)
    (candidate,) = with_candidates(project, label, 1)

    for index in range(4):
        grid = verification.grid_lease(project=project, user=UserFactory())
        answer_all(grid, grid.volunteer, yes=index % 2 == 0)

    candidate.refresh_from_db()
    image = Image.objects.get(pk=candidate.image_id)
    assert candidate.state == Candidate.State.DISPUTED
    assert image.flagged_for_review and label.wnid in image.flag_reason
    assert verification.grid_lease(project=project, user=UserFactory()) is None


def test_consensus_is_per_synset():
    """The same votes say more for a label whose candidates are mostly right."""
    project = verify_project(min_votes=3, max_votes=9)
    good, bad = LabelFactory(project=project), LabelFactory(project=project)
    for label, state in ((good, Candidate.State.ACCEPTED), (bad, Candidate.State.REJECTED)):
        settled = with_candidates(project, label, 10)
        Candidate.objects.filter(pk__in=[c.pk for c in settled]).update(state=state)
    (good_one,) = with_candidates(project, good, 1)
    (bad_one,) = with_candidates(project, bad, 1)
    user = UserFactory()

    for _ in range(2):
        answer_all(verification.grid_lease(project=project, user=user), user, yes=True)

    good_one.refresh_from_db()
    bad_one.refresh_from_db()
    assert good_one.posterior > bad_one.posterior


# --- gold -------------------------------------------------------------------------------------


def test_gold_items_join_grids_and_measure_the_volunteer():
    project = verify_project(gold_rate=0.2, min_votes=5, max_votes=9)
    cat, dog = LabelFactory(project=project), LabelFactory(project=project)
    gold_cats = [
        ImageFactory(project=project, is_gold=True, gold_label=cat, state=Image.State.CONSENSUS)
        for _ in range(3)
    ]
    gold_dogs = [
        ImageFactory(project=project, is_gold=True, gold_label=dog, state=Image.State.CONSENSUS)
        for _ in range(3)
    ]
    with_candidates(project, cat, 12)
    gold = Candidate.objects.filter(label=cat, is_gold=True)
    assert {c.image_id for c in gold.filter(gold_answer=True)} == {i.pk for i in gold_cats}
    assert {c.image_id for c in gold.filter(gold_answer=False)} <= {i.pk for i in gold_dogs}

    careful, careless = UserFactory(), UserFactory()
    for user, says_yes in ((careful, None), (careless, True)):
        grid = verification.grid_lease(project=project, user=user)
        items = GridItem.objects.filter(grid=grid).select_related("candidate")
        gold_items = [i for i in items if i.candidate.is_gold]
        assert len(gold_items) == 2  # 20% of 12, rounded
        yes = [
            i.pk
            for i in items
            if (i.candidate.gold_answer if i.candidate.is_gold and says_yes is None else True)
        ]
        verification.grid_answer(grid_id=grid.pk, user=user, yes_item_ids=yes)

    counts = verification.selectors.voter_counts(
        project_id=project.pk, user_ids=[careful.pk, careless.pk]
    )
    careful_wrong = counts[careful.pk]["false_yes"] + counts[careful.pk]["false_no"]
    careless_right = counts[careless.pk]["true_yes"] + counts[careless.pk]["true_no"]
    assert careful_wrong == 0 and sum(counts[careful.pk].values()) == 2
    assert counts[careless.pk]["false_yes"] == 2 - careless_right
    # Gold is never decided and holds no lease.
    assert set(gold.values_list("state", "leases_count", "yes_count", "no_count")) == {
        ("open", 0, 0, 0)
    }


def test_a_policy_change_keeps_images_held_for_verification():
    from annotate.services import projects

    project = verify_project()
    label = LabelFactory(project=project)
    (candidate,) = with_candidates(project, label, 1)
    plain = ImageFactory(project=project, free_slots=0)

    projects.project_update(project=project, min_votes=3)

    assert Image.objects.get(pk=candidate.image_id).free_slots == 0
    assert Image.objects.get(pk=plain.pk).free_slots == 3


def test_a_vote_is_rated_only_against_what_the_votes_before_it_settled():
    """No voter is measured by a decision their own vote made: a vote rates its voter only
    when the votes before it alone had taken the item past RATING_CONFIDENCE."""
    from annotate.services.verification_consensus import RATING_CONFIDENCE

    project = verify_project(min_votes=2, max_votes=12, target_confidence=0.999)
    label = LabelFactory(project=project)
    (candidate,) = with_candidates(project, label, 1)
    voters, before = [], []
    while (grid := verification.grid_lease(project=project, user=UserFactory())) is not None:
        candidate.refresh_from_db()
        voters.append(grid.volunteer)
        before.append(candidate.posterior)
        answer_all(grid, grid.volunteer, yes=True)

    candidate.refresh_from_db()
    assert candidate.state == Candidate.State.ACCEPTED
    counts = verification.selectors.voter_counts(
        project_id=project.pk, user_ids=[v.pk for v in voters]
    )
    rated = [counts[v.pk]["true_yes"] for v in voters]
    expected = [int(p is not None and p >= RATING_CONFIDENCE) for p in before]
    assert rated == expected
    assert rated[0] == 0 and rated[-1] == 1, (before, rated)  # the first vote rates no one


def test_the_beat_task_releases_expired_grids():
    from worker import tasks

    project = verify_project(lease_seconds=10)
    label = LabelFactory(project=project)
    (candidate,) = with_candidates(project, label, 1)
    grid = verification.grid_lease(
        project=project, user=UserFactory(), now=timezone.now() - timedelta(seconds=11)
    )

    assert tasks.grids_expire() == 1
    grid.refresh_from_db()
    candidate.refresh_from_db()
    assert grid.expired and candidate.leases_count == 0


class TopTwoBackend:
    """A stand-in model that is torn between the first two labels for every image."""

    def predict(self, checkpoint_path, paths, *, config):
        return [[0.55, 0.35, 0.10] for _ in paths]


def test_suggestions_of_the_active_model_become_candidates(settings, tmp_path):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from annotate.services import ml_suggestions

    settings.MEDIA_ROOT = tmp_path / "media"
    project = verify_project(candidate_min_probability=0.3)
    labels = [LabelFactory(project=project) for _ in range(3)]
    stored = default_storage.save(f"preprocessed/{project.pk}/a.jpg", ContentFile(b"jpeg"))
    image = ImageFactory(project=project, preprocessed=stored)
    model_version(project, labels, active=True)

    assert ml_suggestions.suggestions_compute(project_id=project.pk, backend=TopTwoBackend()) == 1

    found = dict(Candidate.objects.filter(image=image).values_list("label_id", "source"))
    assert found == {labels[0].pk: "model", labels[1].pk: "model"}
    image.refresh_from_db()
    assert image.free_slots == 0


def test_a_review_settles_the_disputed_candidate_and_measures_its_voters():
    from annotate.services import review

    project = verify_project(min_votes=2, max_votes=2, target_confidence=0.99)
    label = LabelFactory(project=project)
    (candidate,) = with_candidates(project, label, 1)
    voters = []
    for says_yes in (True, False):
        grid = verification.grid_lease(project=project, user=UserFactory())
        voters.append(grid.volunteer)
        answer_all(grid, grid.volunteer, yes=says_yes)
    candidate.refresh_from_db()
    assert candidate.state == Candidate.State.DISPUTED

    review.review_decide(
        image_id=candidate.image_id, reviewer=UserFactory(role="reviewer"), label_id=label.pk
    )

    candidate.refresh_from_db()
    image = Image.objects.get(pk=candidate.image_id)
    assert candidate.state == Candidate.State.ACCEPTED
    assert image.state == Image.State.REVIEWED and not image.flagged_for_review
    counts = verification.selectors.voter_counts(
        project_id=project.pk, user_ids=[v.pk for v in voters]
    )
    assert counts[voters[0].pk]["true_yes"] == 1 and counts[voters[1].pk]["false_no"] == 1


@pytest.mark.postgresql  # threads writing at once: SQLite locks the whole database
@pytest.mark.django_db(transaction=True)
def test_concurrent_answers_on_the_same_items_are_all_counted():
    project = verify_project(min_votes=3, max_votes=5, grid_size=12)
    label = LabelFactory(project=project)
    candidates = with_candidates(project, label, 12)
    grids = [verification.grid_lease(project=project, user=UserFactory()) for _ in range(3)]
    assert all(set(candidate_ids(g)) == {c.pk for c in candidates} for g in grids)
    errors = []
    start = threading.Barrier(len(grids))

    def answer(grid):
        try:
            start.wait()
            answer_all(grid, grid.volunteer, yes=True)
        except Exception as error:  # reported below, with the others'
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=answer, args=(g,)) for g in grids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert set(
        Candidate.objects.filter(is_gold=False).values_list("yes_count", "leases_count")
    ) == {(3, 0)}
