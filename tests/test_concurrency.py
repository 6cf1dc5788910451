"""32 and 64 volunteers leasing and voting at once on PostgreSQL until a small project is
finished: nothing lost, doubled or over-filled."""

import random
import threading
import time

import pytest
from django.db import connections
from django.db.models import Count, Q
from rest_framework.test import APIClient

from annotate.models import Assignment, Decision, Image, Vote
from tests.factories import ImageFactory, LabelFactory, ProjectFactory, UserFactory

IMAGES = 40


@pytest.mark.slow
@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("volunteers", [32, 64])
def test_concurrent_volunteers_never_overfill_or_double_vote(volunteers):
    project = ProjectFactory(min_votes=2, max_votes=4, agreement=0.75)
    labels = [LabelFactory(project=project) for _ in range(3)]
    for _ in range(IMAGES):
        ImageFactory(project=project)
    users = [UserFactory() for _ in range(volunteers)]
    start = threading.Barrier(volunteers)
    errors: list[str] = []
    answered = {user.pk: 0 for user in users}

    def volunteer(user, seed):
        rng = random.Random(seed)
        client = APIClient()
        client.force_authenticate(user)
        try:
            start.wait()
            while True:
                leased = client.post(f"/api/projects/{project.pk}/assignments/")
                if leased.status_code == 204 and leased.has_header("Retry-After"):
                    time.sleep(0.02)  # others hold the last slots; they may need us later
                    continue
                if leased.status_code == 204:
                    return
                if leased.status_code != 201:
                    errors.append(f"lease {leased.status_code} {leased.content[:200]!r}")
                    return
                assignment = leased.json()["id"]
                if rng.random() < 0.1:
                    response = client.post(f"/api/assignments/{assignment}/skip/")
                    expected = 204
                else:
                    label = labels[0] if rng.random() < 0.7 else rng.choice(labels)
                    response = client.post(
                        f"/api/assignments/{assignment}/vote/", {"label": label.pk}, format="json"
                    )
                    expected = 201
                    answered[user.pk] += 1
                if response.status_code != expected:
                    errors.append(f"{response.status_code} {response.content[:200]!r}")
        except Exception as error:  # reported below; a thread's exception would be lost
            errors.append(repr(error))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=volunteer, args=(u, i)) for i, u in enumerate(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "volunteers hung"
    assert errors == []

    # No vote lost or duplicated.
    assert Vote.objects.count() == sum(answered.values())
    assert not Vote.objects.values("user", "image").annotate(n=Count("id")).filter(n__gt=1).exists()
    images = Image.objects.filter(project=project).annotate(
        real_votes=Count("votes", distinct=True),
        active_leases=Count("assignments", filter=Q(assignments__state="active"), distinct=True),
    )
    for image in images:
        # Counters equal their rows; no image over-filled; every image finished.
        assert image.votes_count == image.real_votes, image
        assert image.leases_count == image.active_leases == 0, image
        assert image.votes_count <= project.max_votes, image
        assert image.state in {"consensus", "disputed", "excluded"}, image
        decided = Decision.objects.filter(image=image, is_current=True).exists()
        assert decided == (image.state != "disputed"), image
    assert not Assignment.objects.filter(state="active").exists()
    states = set(images.values_list("state", flat=True))
    assert "consensus" in states  # the crowd agreed on most images
