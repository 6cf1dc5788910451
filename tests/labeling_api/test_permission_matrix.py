"""Every endpoint x every kind of caller, with the expected status of each (PRODUCT.md 9).

Roles: anonymous, the volunteer who holds the assignment, another volunteer, a reviewer, an
admin. Each case runs on fresh data, so a write by one caller never changes another's case.
"""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotate.models import Candidate, Image, User
from annotate.services import export as export_service
from annotate.services import ingest, review, serving, verification, verification_candidates, voting
from tests.api_errors import assert_error_shape
from tests.factories import LabelFactory, ProjectFactory, UserFactory, image_bytes

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "volunteer", "other", "reviewer", "admin"]


@pytest.fixture
def world():
    project = ProjectFactory(min_votes=2, max_votes=4)
    labels = [LabelFactory(project=project) for _ in range(2)]
    ingest.images_upload(
        project=project,
        files=[(f"{i}.png", io.BytesIO(image_bytes((30 * i, 5, 5), fmt="PNG"))) for i in range(8)],
    )
    users = {
        "volunteer": UserFactory(role=User.Role.VOLUNTEER),
        "other": UserFactory(role=User.Role.VOLUNTEER),
        "reviewer": UserFactory(role=User.Role.REVIEWER),
        "admin": UserFactory(role=User.Role.ADMIN),
    }
    assignment = serving.assignment_lease(project=project, user=users["volunteer"])
    voted = serving.assignment_lease(project=project, user=users["volunteer"])
    voting.vote_submit(assignment_id=voted.pk, user=users["volunteer"], label_id=labels[0].pk)
    leased = {assignment.image_id, voted.image_id}
    for image in Image.objects.filter(project=project).exclude(pk__in=leased)[:4]:
        review.review_decide(image_id=image.pk, reviewer=users["reviewer"], label_id=labels[1].pk)
    export = export_service.export_create(project=project, enqueue=False)
    # Verification: all but one of the images nobody leased are candidates of a label (the one
    # left stays in the classify queue); the volunteer holds a grid of them (so a second lease
    # of theirs finds nothing: 204).
    waiting = list(Image.objects.filter(project=project, state=Image.State.OPEN, leases_count=0))[
        :-1
    ]
    verification_candidates.candidates_add(
        project=project,
        pairs=[(image.pk, labels[0].pk) for image in waiting],
        source=Candidate.Source.UPLOAD,
    )
    grid = verification.grid_lease(project=project, user=users["volunteer"])
    return {
        "p": project.pk,
        "label": labels[0].pk,
        "a": assignment.pk,
        "voted": voted.pk,
        "image": assignment.image_id,
        "user": users["other"].pk,
        "export": export.pk,
        "grid": grid.pk,
        "users": users,
    }


def upload():
    return {"files": [SimpleUploadedFile("x.png", image_bytes((9, 9, 9), fmt="PNG"), "image/png")]}


# (method, path, body maker, format, {role: status}); "other" defaults to "volunteer"'s status
# where the endpoint does not depend on ownership.
# One-letter role keys keep each row of the table on one line.
A, V, O, R, D = "anonymous", "volunteer", "other", "reviewer", "admin"  # noqa: E741
CASES = [
    ("get", "/api/me/", None, {A: 401, V: 200, O: 200, R: 200, D: 200}),
    ("patch", "/api/me/", lambda w: {"daily_goal": 30}, {A: 401, V: 200, O: 200, R: 200, D: 200}),
    ("post", "/api/auth/logout/", None, {A: 401, V: 204, O: 204, R: 204, D: 204}),
    (
        "patch",
        "/api/users/{user}/",
        lambda w: {"role": "reviewer"},
        {A: 401, V: 403, O: 403, R: 403, D: 200},
    ),
    ("get", "/api/projects/", None, {A: 401, V: 200, O: 200, R: 200, D: 200}),
    (
        "post",
        "/api/projects/",
        lambda w: {"name": "new project"},
        {A: 401, V: 403, O: 403, R: 403, D: 201},
    ),
    ("get", "/api/projects/{p}/", None, {A: 401, V: 200, O: 200, R: 200, D: 200}),
    (
        "patch",
        "/api/projects/{p}/",
        lambda w: {"min_votes": 3},
        {A: 401, V: 403, O: 403, R: 403, D: 200},
    ),
    ("get", "/api/projects/{p}/labels/", None, {A: 401, V: 200, O: 200, R: 200, D: 200}),
    (
        "post",
        "/api/projects/{p}/labels/",
        lambda w: {"wnid": "n99", "name": "new"},
        {A: 401, V: 403, O: 403, R: 403, D: 201},
    ),
    (
        "post",
        "/api/projects/{p}/labels/import/",
        lambda w: {"text": "n98 other"},
        {A: 401, V: 403, O: 403, R: 403, D: 201},
    ),
    ("get", "/api/projects/{p}/images/", None, {A: 401, V: 403, O: 403, R: 200, D: 200}),
    ("post", "/api/projects/{p}/images/", "upload", {A: 401, V: 403, O: 403, R: 403, D: 201}),
    (
        "get",
        "/api/projects/{p}/images/near-duplicates/",
        None,
        {A: 401, V: 403, O: 403, R: 403, D: 200},
    ),
    ("post", "/api/projects/{p}/assignments/", None, {A: 401, V: 201, O: 201, R: 201, D: 201}),
    (
        "post",
        "/api/assignments/{a}/vote/",
        lambda w: {"label": w["label"]},
        {A: 401, V: 201, O: 403, R: 403, D: 403},
    ),
    ("post", "/api/assignments/{a}/skip/", None, {A: 401, V: 204, O: 403, R: 403, D: 403}),
    ("post", "/api/assignments/{a}/release/", None, {A: 401, V: 204, O: 403, R: 403, D: 403}),
    ("post", "/api/assignments/{voted}/undo/", None, {A: 401, V: 200, O: 403, R: 403, D: 403}),
    ("get", "/api/images/{image}/file/", None, {A: 401, V: 200, O: 403, R: 200, D: 200}),
    ("get", "/api/projects/{p}/review/", None, {A: 401, V: 403, O: 403, R: 200, D: 200}),
    ("get", "/api/projects/{p}/annotators/", None, {A: 401, V: 403, O: 403, R: 200, D: 200}),
    ("get", "/api/images/{image}/decision/", None, {A: 401, V: 403, O: 403, R: 200, D: 200}),
    (
        "post",
        "/api/images/{image}/decision/",
        lambda w: {"label": w["label"]},
        {A: 401, V: 403, O: 403, R: 201, D: 201},
    ),
    (
        "post",
        "/api/projects/{p}/exports/",
        lambda w: {"val_fraction": 0.2},
        {A: 401, V: 403, O: 403, R: 403, D: 202},
    ),
    (
        "get",
        "/api/projects/{p}/exports/preview/",
        None,
        {A: 401, V: 403, O: 403, R: 403, D: 200},
    ),
    ("get", "/api/exports/{export}/", None, {A: 401, V: 403, O: 403, R: 403, D: 200}),
    ("get", "/api/exports/{export}/download/", None, {A: 401, V: 403, O: 403, R: 403, D: 409}),
    ("get", "/api/projects/{p}/models/", None, {A: 401, V: 403, O: 403, R: 403, D: 200}),
    # Too few verified labels for a training yet: the admin is let through and told so.
    ("post", "/api/projects/{p}/models/train/", None, {A: 401, V: 403, O: 403, R: 403, D: 400}),
    ("post", "/api/projects/{p}/grids/", None, {A: 401, V: 204, O: 201, R: 201, D: 201}),
    (
        "post",
        "/api/grids/{grid}/answers/",
        lambda w: {"yes": []},
        {A: 401, V: 201, O: 403, R: 403, D: 403},
    ),
    ("post", "/api/grids/{grid}/release/", None, {A: 401, V: 204, O: 403, R: 403, D: 403}),
    (
        "get",
        "/api/schema/",
        None,
        {A: 200, V: 200, O: 200, R: 200, D: 200},
    ),  # the contract is public
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("method", "path", "body", "expected"), CASES, ids=[f"{c[0]} {c[1]}" for c in CASES]
)
def test_permission_matrix(client_for, world, role, method, path, body, expected):
    client = client_for(None if role == "anonymous" else world["users"][role])
    url = path.format(**world)
    if body == "upload":
        response = getattr(client, method)(url, upload(), format="multipart")
    elif body is not None:
        response = getattr(client, method)(url, body(world), format="json")
    else:
        response = getattr(client, method)(url)
    assert response.status_code == expected[role], (role, method, url, response.content[:300])
    if response.status_code >= 400:
        assert_error_shape(response)


def test_every_api_route_is_in_the_matrix():

    from labeling_api import urls

    routes = {str(p.pattern) for p in urls.urlpatterns}
    covered = {path.removeprefix("/api/") for _, path, _, _ in CASES}
    normalise = lambda route: __import__("re").sub(r"<\w+:(\w+)>|\{(\w+)\}", "{}", route)  # noqa: E731
    missing = (
        {normalise(r) for r in routes}
        - {normalise(c) for c in covered}
        - {
            "auth/register/",
            "auth/token/",
            "docs/",
            "exports/{}/manifest/",
        }
    )
    assert missing == set(), f"add these endpoints to the permission matrix: {sorted(missing)}"
