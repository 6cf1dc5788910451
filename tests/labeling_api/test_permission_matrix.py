"""Every endpoint x every kind of caller, with the expected status of each (PRODUCT.md 9).

Roles: anonymous, the volunteer who holds the assignment, another volunteer, a reviewer, an
admin. Each case runs on fresh data, so a write by one caller never changes another's case.

Then teams (issue 19): two projects with their own teams, each member acting only on theirs.
"""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotate.models import Candidate, Export, Image, ProjectMember, User
from annotate.services import export as export_service
from annotate.services import ingest, review, serving, verification, verification_candidates, voting
from tests.api_errors import assert_error_shape
from tests.factories import ImageFactory, LabelFactory, ProjectFactory, UserFactory, image_bytes

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "volunteer", "other", "reviewer", "admin"]


@pytest.fixture
def world():
    project = ProjectFactory(min_votes=2, max_votes=4)
    labels = [LabelFactory(project=project) for _ in range(2)]
    ingest.images_upload(
        project=project,
        files=[(f"{i}.png", io.BytesIO(image_bytes((30 * i, 5, 5), fmt="PNG"))) for i in range(9)],
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
    decided = list(Image.objects.filter(project=project).exclude(pk__in=leased)[:5])
    # Reviewers decide disputed images: these four as if the crowd had disagreed on them; the
    # fifth stays disputed for the decision rows.
    Image.objects.filter(pk__in=[image.pk for image in decided]).update(
        state=Image.State.DISPUTED, free_slots=0
    )
    for image in decided[:4]:
        review.review_decide(image_id=image.pk, reviewer=users["reviewer"], label_id=labels[1].pk)
    teammate = UserFactory()
    ProjectMember.objects.create(project=project, user=teammate, role=ProjectMember.Role.VOLUNTEER)
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
        "disputed": decided[4].pk,
        "user": users["other"].pk,
        "member": teammate.pk,
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
    ("get", "/api/images/{image}/original/", None, {A: 401, V: 403, O: 403, R: 403, D: 200}),
    ("get", "/api/projects/{p}/review/", None, {A: 401, V: 403, O: 403, R: 200, D: 200}),
    ("get", "/api/projects/{p}/annotators/", None, {A: 401, V: 403, O: 403, R: 200, D: 200}),
    ("get", "/api/images/{image}/decision/", None, {A: 401, V: 403, O: 403, R: 200, D: 200}),
    (
        "post",
        "/api/images/{disputed}/decision/",
        lambda w: {"label": w["label"]},
        {A: 401, V: 403, O: 403, R: 201, D: 201},
    ),
    # An open image nobody voted on is not the reviewers' to decide (review_any_state off).
    (
        "post",
        "/api/images/{image}/decision/",
        lambda w: {"label": w["label"]},
        {A: 401, V: 403, O: 403, R: 409, D: 409},
    ),
    ("get", "/api/projects/{p}/members/", None, {A: 401, V: 403, O: 403, R: 403, D: 200}),
    (
        "post",
        "/api/projects/{p}/members/",
        lambda w: {"user": w["user"], "role": "reviewer"},
        {A: 401, V: 403, O: 403, R: 403, D: 201},
    ),
    (
        "patch",
        "/api/projects/{p}/members/{member}/",
        lambda w: {"role": "admin"},
        {A: 401, V: 403, O: 403, R: 403, D: 200},
    ),
    (
        "delete",
        "/api/projects/{p}/members/{member}/",
        None,
        {A: 401, V: 403, O: 403, R: 403, D: 204},
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


# --- teams (issue 19) ---------------------------------------------------------------------------
# Project A is private: R1 reviews it, PA administers it (both are global volunteers), M is a
# plain member. Project B is public: R2 (a global volunteer) reviews it. G is a global reviewer
# on no team, X a global volunteer on no team, ADMIN a global admin.


@pytest.fixture
def teams():
    a = ProjectFactory(name="team A", private=True, min_votes=2, max_votes=2, agreement=1.0)
    b = ProjectFactory(name="team B", min_votes=2, max_votes=2, agreement=1.0)
    users = {
        name: UserFactory(role=User.Role.REVIEWER if name == "G" else User.Role.VOLUNTEER)
        for name in ("R1", "R2", "PA", "M", "G", "X", "NEW")
    }
    users["ADMIN"] = UserFactory(role=User.Role.ADMIN)
    for project, name, role in [
        (a, "R1", ProjectMember.Role.REVIEWER),
        (a, "PA", ProjectMember.Role.ADMIN),
        (a, "M", ProjectMember.Role.VOLUNTEER),
        (b, "R2", ProjectMember.Role.REVIEWER),
    ]:
        ProjectMember.objects.create(project=project, user=users[name], role=role)
    world = {"users": users, "A": a.pk, "B": b.pk}
    for key, project in (("A", a), ("B", b)):
        world[f"label{key}"] = LabelFactory(project=project).pk
        world[f"disputed{key}"] = ImageFactory(
            project=project, state=Image.State.DISPUTED, votes_count=2
        ).pk
        ImageFactory(project=project)  # open, for a lease
        world[f"export{key}"] = Export.objects.create(project=project).pk
    return world


# (caller, method, path, body, expected status)
TEAM_CASES = [
    # Each reviewer reviews their own project only; A's existence is hidden from non-members.
    ("R1", "get", "/api/projects/{A}/review/", None, 200),
    ("R1", "get", "/api/projects/{B}/review/", None, 403),
    ("R2", "get", "/api/projects/{B}/review/", None, 200),
    ("R2", "get", "/api/projects/{A}/review/", None, 404),
    ("R1", "post", "/api/images/{disputedA}/decision/", lambda w: {"label": w["labelA"]}, 201),
    ("R1", "post", "/api/images/{disputedB}/decision/", lambda w: {"label": w["labelB"]}, 403),
    ("R2", "post", "/api/images/{disputedB}/decision/", lambda w: {"label": w["labelB"]}, 201),
    ("R2", "post", "/api/images/{disputedA}/decision/", lambda w: {"label": w["labelA"]}, 404),
    ("R2", "get", "/api/images/{disputedA}/decision/", None, 404),
    ("R2", "get", "/api/images/{disputedA}/file/", None, 404),
    ("R1", "get", "/api/projects/{A}/annotators/", None, 200),
    ("R1", "get", "/api/projects/{A}/images/", None, 200),
    ("R1", "get", "/api/projects/{A}/members/", None, 403),
    # A global reviewer reviews public projects, not a private one they are not a member of.
    ("G", "get", "/api/projects/{B}/review/", None, 200),
    ("G", "get", "/api/projects/{A}/review/", None, 404),
    ("G", "post", "/api/images/{disputedA}/decision/", lambda w: {"label": w["labelA"]}, 404),
    # A non-member cannot see the private project at all: 404, as for a missing one.
    ("X", "get", "/api/projects/{A}/", None, 404),
    ("X", "get", "/api/projects/{A}/labels/", None, 404),
    ("X", "post", "/api/projects/{A}/assignments/", None, 404),
    ("X", "post", "/api/projects/{A}/grids/", None, 404),
    ("X", "get", "/api/projects/{B}/", None, 200),
    ("X", "post", "/api/projects/{B}/assignments/", None, 201),
    ("M", "get", "/api/projects/{A}/", None, 200),
    ("M", "post", "/api/projects/{A}/assignments/", None, 201),
    ("M", "get", "/api/projects/{A}/review/", None, 403),
    # A project admin manages A (its team, its settings, its images), not B.
    ("PA", "get", "/api/projects/{A}/members/", None, 200),
    (
        "PA",
        "post",
        "/api/projects/{A}/members/",
        lambda w: {"user": w["NEW"], "role": "reviewer"},
        201,
    ),
    ("PA", "patch", "/api/projects/{A}/members/{R1}/", lambda w: {"role": "admin"}, 200),
    ("PA", "delete", "/api/projects/{A}/members/{M}/", None, 204),
    ("PA", "patch", "/api/projects/{A}/", lambda w: {"private": False}, 200),
    ("PA", "get", "/api/projects/{A}/review/", None, 200),
    ("PA", "get", "/api/projects/{A}/models/", None, 200),
    ("PA", "get", "/api/exports/{exportA}/", None, 200),
    ("PA", "get", "/api/exports/{exportB}/", None, 403),
    # Originals (metadata and all): the project's admins only (the main matrix shows an admin
    # getting one); its reviewers see display copies.
    ("PA", "get", "/api/images/{disputedB}/original/", None, 403),
    ("R1", "get", "/api/images/{disputedA}/original/", None, 403),
    ("PA", "get", "/api/projects/{B}/members/", None, 403),
    ("PA", "post", "/api/projects/{B}/members/", lambda w: {"user": w["NEW"]}, 403),
    ("PA", "patch", "/api/projects/{B}/", lambda w: {"private": True}, 403),
    ("PA", "post", "/api/projects/", lambda w: {"name": "mine"}, 403),
    # Admin of no project: refused before any project is read, a missing one alike (no leak).
    ("R2", "get", "/api/projects/{A}/members/", None, 403),
    ("R2", "get", "/api/projects/999999/members/", None, 403),
    ("R2", "get", "/api/projects/{B}/members/", None, 403),
    # A global admin: everything.
    ("ADMIN", "get", "/api/projects/{A}/members/", None, 200),
    ("ADMIN", "get", "/api/projects/{A}/review/", None, 200),
    ("ADMIN", "post", "/api/images/{disputedA}/decision/", lambda w: {"label": w["labelA"]}, 201),
]


@pytest.mark.parametrize(
    ("caller", "method", "path", "body", "expected"),
    TEAM_CASES,
    ids=[f"{c[0]} {c[1]} {c[2]}" for c in TEAM_CASES],
)
def test_teams_act_only_on_their_projects(client_for, teams, caller, method, path, body, expected):
    ids = {name: user.pk for name, user in teams["users"].items()}
    world = {**teams, **ids}
    client = client_for(teams["users"][caller])
    url = path.format(**world)
    if body is not None:
        response = getattr(client, method)(url, body(world), format="json")
    else:
        response = getattr(client, method)(url)
    assert response.status_code == expected, (caller, method, url, response.content[:300])
    if response.status_code >= 400:
        assert_error_shape(response)


def test_the_project_list_shows_a_private_project_to_its_team_only(client_for, teams):
    def listed(name: str) -> set[int]:
        answer = client_for(teams["users"][name]).get("/api/projects/")
        assert answer.status_code == 200
        return {project["id"] for project in answer.json()["results"]}

    both = {teams["A"], teams["B"]}
    assert listed("R1") >= both and listed("PA") >= both and listed("ADMIN") >= both
    for outsider in ("R2", "G", "X"):
        assert teams["A"] not in listed(outsider) and teams["B"] in listed(outsider)


def test_a_removed_member_loses_the_private_project_at_once(client_for, teams):
    admin = client_for(teams["users"]["PA"])
    reviewer = client_for(teams["users"]["R1"])
    assert reviewer.get(f"/api/projects/{teams['A']}/review/").status_code == 200
    removed = admin.delete(f"/api/projects/{teams['A']}/members/{teams['users']['R1'].pk}/")
    assert removed.status_code == 204
    # A reviewer of no project now: refused before the project is read (as for any project).
    assert reviewer.get(f"/api/projects/{teams['A']}/review/").status_code == 403
    assert reviewer.get(f"/api/projects/{teams['A']}/").status_code == 404
    assert reviewer.post(f"/api/projects/{teams['A']}/assignments/").status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"user": "{R1}", "role": "reviewer"}, 409, "conflict"),  # already a member
        ({"username": "nobody-such", "role": "reviewer"}, 400, "invalid"),
        ({"role": "reviewer"}, 400, "invalid"),
        ({"user": "{NEW}", "role": "owner"}, 400, "invalid"),
    ],
)
def test_member_input_is_checked(client_for, teams, body, status, code):
    ids = {f"{{{name}}}": user.pk for name, user in teams["users"].items()}
    payload = {key: ids.get(value, value) for key, value in body.items()}
    admin = client_for(teams["users"]["PA"])
    response = admin.post(f"/api/projects/{teams['A']}/members/", payload, format="json")
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    assert_error_shape(response)
    by_username = admin.post(
        f"/api/projects/{teams['A']}/members/",
        {"username": teams["users"]["NEW"].username},
        format="json",
    )
    assert by_username.status_code == 201 and by_username.json()["role"] == "volunteer"


def test_a_lease_on_a_public_project_reads_no_membership(client_for, teams):
    """The volunteer hot path: teams cost a public project's lease nothing, and a private
    project's one indexed read of the caller's membership."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    member_table = ProjectMember._meta.db_table

    def membership_reads(name: str, project_key: str) -> int:
        client = client_for(teams["users"][name])
        with CaptureQueriesContext(connection) as captured:
            response = client.post(f"/api/projects/{teams[project_key]}/assignments/")
        assert response.status_code == 201, response.content
        return sum(member_table in query["sql"] for query in captured.captured_queries)

    assert membership_reads("X", "B") == 0
    assert membership_reads("M", "A") == 1
