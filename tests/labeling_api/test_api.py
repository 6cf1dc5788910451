"""The REST contract of PRODUCT.md section 7 for the labeling loop."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from annotate.models import AnnotatorStats, Assignment, Image, Label, Project, User, Vote
from tests.api_errors import assert_error_shape
from tests.factories import ImageFactory, UserFactory, image_bytes

pytestmark = pytest.mark.django_db


def upload(name: str, data: bytes, content_type: str = "image/jpeg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


# --- accounts ---------------------------------------------------------------------------------


def test_register_makes_a_volunteer_with_a_token(client_for):
    client = client_for(None)
    response = client.post(
        "/api/auth/register/", {"username": "ada", "password": "a-long-passphrase"}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "username", "token"}
    assert User.objects.get(pk=body["id"]).role == User.Role.VOLUNTEER

    me = client_for(None)
    me.credentials(HTTP_AUTHORIZATION=f"Token {body['token']}")
    assert me.get("/api/me/").json()["username"] == "ada"


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ({"username": "ada", "password": "short"}, 400, "password"),
        ({"username": "", "password": "a-long-passphrase"}, 400, "username"),
        ({"password": "a-long-passphrase"}, 400, "username"),
    ],
)
def test_register_rejects_bad_input(client_for, payload, status, field):
    response = client_for(None).post("/api/auth/register/", payload, format="json")
    body = assert_error_shape(response, status, "invalid")
    assert list(body["fields"]) == [field]
    assert not User.objects.exists()


def test_register_twice_is_a_conflict(client_for):
    client = client_for(None)
    payload = {"username": "ada", "password": "a-long-passphrase"}
    assert client.post("/api/auth/register/", payload, format="json").status_code == 201
    response = client.post("/api/auth/register/", payload, format="json")
    assert_error_shape(response, 409, "conflict")
    assert User.objects.count() == 1


def test_token_for_good_and_bad_credentials(client_for, volunteer):
    client = client_for(None)
    good = client.post(
        "/api/auth/token/",
        {"username": volunteer.username, "password": "correct-horse-battery"},
        format="json",
    )
    bad = client.post(
        "/api/auth/token/", {"username": volunteer.username, "password": "wrong"}, format="json"
    )
    assert good.status_code == 200 and len(good.json()["token"]) == 40
    assert bad.status_code == 400 and "Unable to sign in" in bad.json()["detail"]


def test_logout_revokes_the_token_and_a_new_sign_in_gets_another(client_for, volunteer):
    password = {"username": volunteer.username, "password": "correct-horse-battery"}
    first = client_for(None).post("/api/auth/token/", password, format="json").json()["token"]
    caller = client_for(None)
    caller.credentials(HTTP_AUTHORIZATION=f"Token {first}")

    out = caller.post("/api/auth/logout/")

    assert out.status_code == 204 and out.content == b""
    assert_error_shape(caller.get("/api/me/"), 401, "authentication_failed")
    assert_error_shape(client_for(None).post("/api/auth/logout/"), 401, "not_authenticated")
    second = client_for(None).post("/api/auth/token/", password, format="json").json()["token"]
    assert second != first


def test_admin_sets_roles_and_others_cannot(client_for, admin_user, volunteer, reviewer):
    url = f"/api/users/{volunteer.pk}/"
    assert client_for(reviewer).patch(url, {"role": "admin"}, format="json").status_code == 403
    assert client_for(volunteer).patch(url, {"role": "admin"}, format="json").status_code == 403
    assert client_for(admin_user).patch(url, {"role": "boss"}, format="json").status_code == 400
    volunteer.refresh_from_db()
    assert volunteer.role == User.Role.VOLUNTEER

    response = client_for(admin_user).patch(url, {"role": "reviewer"}, format="json")
    assert response.status_code == 200 and response.json()["role"] == "reviewer"
    volunteer.refresh_from_db()
    assert volunteer.role == User.Role.REVIEWER
    assert (
        client_for(admin_user)
        .patch("/api/users/999999/", {"role": "admin"}, format="json")
        .status_code
        == 404
    )


# --- projects and labels ----------------------------------------------------------------------


def test_project_list_has_labels_and_progress(client_for, volunteer, project, labels):
    ImageFactory(project=project)
    ImageFactory(project=project, state=Image.State.DISPUTED)
    body = client_for(volunteer).get("/api/projects/").json()
    assert body["count"] == 1
    listed = body["results"][0]
    assert [label["wnid"] for label in listed["labels"]] == [label.wnid for label in labels]
    assert listed["progress"]["open"] == 1
    assert listed["progress"]["disputed"] == 1
    assert listed["progress"]["total"] == 2


def test_anonymous_is_refused(client_for, project):
    for path in ["/api/projects/", "/api/me/", f"/api/projects/{project.pk}/labels/"]:
        assert client_for(None).get(path).status_code == 401


def test_only_admins_create_and_change_projects(client_for, admin_user, volunteer, reviewer):
    payload = {"name": "Birds", "min_votes": 3, "max_votes": 5, "agreement": 0.6}
    for user in (volunteer, reviewer):
        assert client_for(user).post("/api/projects/", payload, format="json").status_code == 403
    response = client_for(admin_user).post("/api/projects/", payload, format="json")
    assert response.status_code == 201
    project_id = response.json()["id"]
    assert response.json()["progress"]["total"] == 0

    patch = client_for(admin_user).patch(
        f"/api/projects/{project_id}/", {"serving_order": "random"}, format="json"
    )
    assert patch.status_code == 200 and patch.json()["serving_order"] == "random"
    assert (
        client_for(volunteer)
        .patch(f"/api/projects/{project_id}/", {"min_votes": 1}, format="json")
        .status_code
        == 403
    )
    assert Project.objects.get(pk=project_id).min_votes == 3


@pytest.mark.parametrize(
    "payload",
    [
        {"min_votes": 4, "max_votes": 3},
        {"agreement": 0.2},
        {"min_votes": 0},
        {"mode": "telepathy"},
    ],
)
def test_bad_policy_is_a_400_and_changes_nothing(client_for, admin_user, project, payload):
    before = Project.objects.values().get(pk=project.pk)
    response = client_for(admin_user).patch(f"/api/projects/{project.pk}/", payload, format="json")
    assert_error_shape(response, 400, "invalid")
    assert Project.objects.values().get(pk=project.pk) == before


def test_duplicate_project_name_is_a_400(client_for, admin_user, project):
    response = client_for(admin_user).post("/api/projects/", {"name": project.name}, format="json")
    body = assert_error_shape(response, 400, "invalid")
    assert "name" in body["detail"] and list(body["fields"]) == ["name"]


def test_missing_project_is_a_404_with_a_message(client_for, volunteer):
    for method, path in [
        ("get", "/api/projects/999/"),
        ("post", "/api/projects/999/assignments/"),
        ("get", "/api/projects/999/labels/"),
    ]:
        response = getattr(client_for(volunteer), method)(path)
        assert "does not exist" in assert_error_shape(response, 404, "not_found")["detail"]


def test_labels_add_and_list(client_for, admin_user, volunteer, project):
    url = f"/api/projects/{project.pk}/labels/"
    payload = {"wnid": "n02123045", "name": "tabby, tabby cat", "gloss": "a striped cat"}
    assert client_for(volunteer).post(url, payload, format="json").status_code == 403
    created = client_for(admin_user).post(url, payload, format="json")
    assert created.status_code == 201 and created.json()["wnid"] == "n02123045"
    assert client_for(admin_user).post(url, payload, format="json").status_code == 409
    bad = client_for(admin_user).post(url, {"wnid": "../etc", "name": "x"}, format="json")
    assert bad.status_code == 400
    listed = client_for(volunteer).get(url).json()
    assert [label["wnid"] for label in listed] == ["n02123045"]


@pytest.mark.parametrize(
    ("name", "named"),
    [
        ("tabby\ncat", "a newline (U+000A)"),
        ("tabby\tcat", "a tab (U+0009)"),
        ("tabby\x1bcat", "(U+001B)"),
        ("tabby\u2028cat", "LINE SEPARATOR (U+2028)"),
        ("tabby\u202ecat", "RIGHT-TO-LEFT OVERRIDE (U+202E)"),
    ],
)
def test_label_names_with_control_characters_are_refused_naming_the_character(
    client_for, admin_user, project, name, named
):
    url = f"/api/projects/{project.pk}/labels/"
    response = client_for(admin_user).post(url, {"wnid": "n02123045", "name": name}, format="json")
    assert response.status_code == 400
    assert_error_shape(response, status=400, code="invalid")
    assert named in response.json()["detail"] and "name" in response.json()["fields"]
    gloss = client_for(admin_user).post(
        url, {"wnid": "n02123045", "name": "tabby", "gloss": f"a {name}"}, format="json"
    )
    assert gloss.status_code == 400 and named in gloss.json()["detail"]
    nul = client_for(admin_user).post(url, {"wnid": "n1", "name": "a\x00b"}, format="json")
    assert nul.status_code == 400
    assert not Label.objects.exists()
    # A person's script may need the joiners; they are no control characters.
    joined = client_for(admin_user).post(
        url,
        {"wnid": "n1", "name": "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"},
        format="json",
    )
    assert joined.status_code == 201


def test_labels_import_reports_lines_with_control_characters_and_imports_the_rest(
    client_for, admin_user, project
):
    mapping = (
        "n01440764 tench\nn01443537 gold\tfish\nn01484850 great\u2028white shark\n"
        "n01491361 tiger\x00shark\nn01494475 hammerhead\n"
    )
    url = f"/api/projects/{project.pk}/labels/import/"
    file = upload("map.txt", mapping.encode(), "text/plain")
    response = client_for(admin_user).post(url, {"file": file})
    assert response.status_code == 201
    body = response.json()
    assert body["created"] == 2
    assert [(error["line"], error["reason"]) for error in body["errors"]] == [
        (2, "name contains a tab (U+0009)"),
        (3, "name contains the character LINE SEPARATOR (U+2028)"),
        (4, "name contains a NUL (U+0000)"),
    ]
    assert sorted(Label.objects.values_list("wnid", flat=True)) == ["n01440764", "n01494475"]


def test_labels_import_reports_bad_lines(client_for, admin_user, project):
    mapping = (
        b"n01440764 tench, Tinca tinca\nn01443537 goldfish\n\nbad-line-without-name\n"
        b"n01440764 again\n"
    )
    url = f"/api/projects/{project.pk}/labels/import/"
    response = client_for(admin_user).post(url, {"file": upload("map.txt", mapping, "text/plain")})
    assert response.status_code == 201
    body = response.json()
    assert (body["created"], body["existing"]) == (2, 0)
    assert [error["line"] for error in body["errors"]] == [3, 4, 5]
    again = client_for(admin_user).post(url, {"text": mapping.decode()}, format="json").json()
    assert (again["created"], again["existing"]) == (0, 2)
    assert Label.objects.filter(project=project).count() == 2
    binary = client_for(admin_user).post(url, {"file": upload("x.bin", b"\xff\xfe\x00garbage")})
    assert binary.status_code == 400


# --- images -----------------------------------------------------------------------------------


def test_upload_stores_images_and_reports_duplicates_and_rejects(client_for, admin_user, project):
    url = f"/api/projects/{project.pk}/images/"
    red = image_bytes((255, 0, 0))
    files = [
        upload("red.jpg", red),
        upload("red-again.jpg", red),
        upload("blue.png", image_bytes((0, 0, 255), fmt="PNG"), "image/png"),
        upload("notes.txt", b"hello, not an image", "text/plain"),
        upload("cut.jpg", red[: len(red) // 2]),
    ]
    response = client_for(admin_user).post(url, {"files": files})
    assert response.status_code == 201
    body = response.json()
    assert (body["created"], body["duplicates"]) == (2, 1)
    assert {r["name"] for r in body["rejected"]} == {"notes.txt", "cut.jpg"}
    images = Image.objects.filter(project=project).order_by("id")
    assert [
        (i.original_name, i.format, i.width, i.height, i.state, i.free_slots) for i in images
    ] == [
        ("red.jpg", "JPEG", 64, 48, "open", 2),
        ("blue.png", "PNG", 64, 48, "open", 2),
    ]
    with images[0].file.open("rb") as f:
        assert f.read() == red  # stored as uploaded


def test_upload_needs_admin_and_files(client_for, admin_user, volunteer, project):
    url = f"/api/projects/{project.pk}/images/"
    assert (
        client_for(volunteer).post(url, {"files": [upload("a.jpg", image_bytes())]}).status_code
        == 403
    )
    assert client_for(admin_user).post(url, {}).status_code == 400
    assert not Image.objects.exists()


def test_gold_upload_is_decided(client_for, admin_user, project, labels):
    url = f"/api/projects/{project.pk}/images/"
    response = client_for(admin_user).post(
        url, {"files": [upload("g.jpg", image_bytes())], "gold_label": labels[1].wnid}
    )
    assert response.status_code == 201
    image = Image.objects.get()
    assert (image.is_gold, image.gold_label, image.state) == (
        True,
        labels[1],
        Image.State.CONSENSUS,
    )
    bad = client_for(admin_user).post(
        url, {"files": [upload("h.jpg", image_bytes((1, 2, 3)))], "gold_label": "nope"}
    )
    assert bad.status_code == 400 and Image.objects.count() == 1


@pytest.mark.parametrize("key", ["\u00b2", "\u0663", "\uff11", "99999999999999999999999"])
def test_a_gold_label_that_only_looks_like_an_id_is_an_unknown_label(
    client_for, admin_user, project, labels, key
):
    # "²" and "٣" pass str.isdigit(); int() then fails or the number overflows the column.
    url = f"/api/projects/{project.pk}/images/"
    response = client_for(admin_user).post(
        url, {"files": [upload("g.jpg", image_bytes())], "gold_label": key}
    )
    body = assert_error_shape(response, status=400, code="invalid")
    assert "No label" in body["detail"] and "gold_label" in body["fields"]
    assert not Image.objects.exists()


def test_a_label_id_in_other_digits_is_no_id(client_for, admin_user, project, labels):
    # int() reads Arabic-Indic digits; an id is ASCII digits only.
    arabic_indic = "".join(chr(0x660 + int(digit)) for digit in str(labels[0].pk))
    url = f"/api/projects/{project.pk}/images/"
    response = client_for(admin_user).post(
        url, {"files": [upload("g.jpg", image_bytes())], "gold_label": arabic_indic}
    )
    assert_error_shape(response, status=400, code="invalid")
    assert not Image.objects.exists()


def test_image_list_is_for_reviewers(client_for, volunteer, reviewer, project):
    ImageFactory(project=project)
    ImageFactory(project=project, state=Image.State.DISPUTED)
    url = f"/api/projects/{project.pk}/images/"
    assert client_for(volunteer).get(url).status_code == 403
    body = client_for(reviewer).get(url, {"state": "disputed"}).json()
    assert body["count"] == 1 and body["results"][0]["state"] == "disputed"
    assert client_for(reviewer).get(url, {"state": "nonsense"}).status_code == 400


# --- the volunteer loop -----------------------------------------------------------------------


def test_lease_vote_skip_round_trip(client_for, volunteer, project, labels):
    first, second = ImageFactory(project=project), ImageFactory(project=project)
    client = client_for(volunteer)

    leased = client.post(f"/api/projects/{project.pk}/assignments/")
    assert leased.status_code == 201
    body = leased.json()
    assert set(body) == {"id", "image", "suggestion", "expires_at"}
    assert body["image"] == {
        "id": first.pk,
        "url": f"/api/images/{first.pk}/file/",
        "width": 64,
        "height": 48,
    }
    assert body["suggestion"] is None

    voted = client.post(
        f"/api/assignments/{body['id']}/vote/", {"label": labels[0].pk}, format="json"
    )
    assert voted.status_code == 201 and voted.json()["image_state"] == "open"
    again = client.post(
        f"/api/assignments/{body['id']}/vote/", {"label": labels[0].pk}, format="json"
    )
    assert again.status_code == 409

    second_lease = client.post(f"/api/projects/{project.pk}/assignments/").json()
    assert second_lease["image"]["id"] == second.pk
    assert client.post(f"/api/assignments/{second_lease['id']}/skip/").status_code == 204
    assert client.post(f"/api/projects/{project.pk}/assignments/").status_code == 204
    assert Vote.objects.filter(user=volunteer).count() == 1


@pytest.mark.parametrize("payload", [{"label": 999999}, {"label": "cat"}, {}])
def test_bad_vote_is_a_400_and_stores_nothing(client_for, volunteer, project, labels, payload):
    ImageFactory(project=project)
    client = client_for(volunteer)
    assignment = client.post(f"/api/projects/{project.pk}/assignments/").json()
    response = client.post(f"/api/assignments/{assignment['id']}/vote/", payload, format="json")
    assert response.status_code == 400
    assert response.json()
    assert not Vote.objects.exists()


def test_none_of_these_vote(client_for, volunteer, project, labels):
    ImageFactory(project=project)
    client = client_for(volunteer)
    assignment = client.post(f"/api/projects/{project.pk}/assignments/").json()
    response = client.post(
        f"/api/assignments/{assignment['id']}/vote/", {"label": None}, format="json"
    )
    assert response.status_code == 201
    assert Vote.objects.get().label is None


def test_someone_elses_assignment_is_forbidden(
    client_for, volunteer, other_volunteer, project, labels
):
    ImageFactory(project=project)
    assignment = client_for(volunteer).post(f"/api/projects/{project.pk}/assignments/").json()
    intruder = client_for(other_volunteer)
    assert (
        intruder.post(
            f"/api/assignments/{assignment['id']}/vote/", {"label": labels[0].pk}, format="json"
        ).status_code
        == 403
    )
    assert intruder.post(f"/api/assignments/{assignment['id']}/skip/").status_code == 403
    assert (
        intruder.post("/api/assignments/999999/vote/", {"label": None}, format="json").status_code
        == 404
    )
    assert Assignment.objects.get().state == Assignment.State.ACTIVE


def test_image_file_only_for_its_assignee_and_reviewers(
    client_for, admin_user, volunteer, other_volunteer, reviewer, project
):
    client_for(admin_user).post(
        f"/api/projects/{project.pk}/images/", {"files": [upload("a.jpg", image_bytes())]}
    )
    image = Image.objects.get()
    url = f"/api/images/{image.pk}/file/"
    assert client_for(volunteer).get(url).status_code == 403
    client_for(volunteer).post(f"/api/projects/{project.pk}/assignments/")
    response = client_for(volunteer).get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"".join(response.streaming_content) == image_bytes()
    assert client_for(other_volunteer).get(url).status_code == 403
    assert client_for(reviewer).get(url).status_code == 200
    assert client_for(None).get(url).status_code == 401


def test_me_counts_votes_agreement_and_rank(client_for, project, labels):
    users = [UserFactory() for _ in range(2)]
    image = ImageFactory(project=project)
    for user in users:
        client = client_for(user)
        assignment = client.post(f"/api/projects/{project.pk}/assignments/").json()
        client.post(
            f"/api/assignments/{assignment['id']}/vote/", {"label": labels[0].pk}, format="json"
        )
    extra = ImageFactory(project=project)
    client = client_for(users[0])
    assignment = client.post(f"/api/projects/{project.pk}/assignments/").json()
    assert assignment["image"]["id"] == extra.pk
    client.post(
        f"/api/assignments/{assignment['id']}/vote/", {"label": labels[1].pk}, format="json"
    )

    image.refresh_from_db()
    assert image.state == Image.State.CONSENSUS
    me = client.get("/api/me/").json()
    assert (me["votes"], me["decided_votes"], me["agreement"], me["rank"]) == (2, 1, 1.0, 1)
    other = client_for(users[1]).get("/api/me/").json()
    assert (other["votes"], other["rank"], other["role"]) == (1, 2, "volunteer")


def test_schema_and_docs(client_for, volunteer):
    schema = client_for(volunteer).get("/api/schema/", {"format": "json"})
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in [
        "/api/auth/register/",
        "/api/projects/{project_id}/assignments/",
        "/api/assignments/{assignment_id}/vote/",
        "/api/me/",
    ]:
        assert path in paths
    docs = client_for(volunteer).get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content
    assert b"cdn." not in docs.content  # served from our static files


def test_204_says_when_to_ask_again_while_others_hold_the_last_images(
    client_for, volunteer, other_volunteer, labels
):
    project = labels[0].project
    project.min_votes = project.max_votes = 1
    project.agreement = 1.0
    project.save()
    ImageFactory(project=project)
    holder = client_for(volunteer).post(f"/api/projects/{project.pk}/assignments/").json()

    waiting = client_for(other_volunteer).post(f"/api/projects/{project.pk}/assignments/")
    assert waiting.status_code == 204 and waiting["Retry-After"] == "5"

    client_for(volunteer).post(
        f"/api/assignments/{holder['id']}/vote/", {"label": labels[0].pk}, format="json"
    )
    done = client_for(other_volunteer).post(f"/api/projects/{project.pk}/assignments/")
    assert done.status_code == 204 and not done.has_header("Retry-After")


def test_lease_and_vote_stay_within_their_query_budget(
    client_for, volunteer, project, labels, django_assert_max_num_queries
):
    """The hot path: a regression here costs every volunteer on every image."""
    for _ in range(3):
        ImageFactory(project=project)
    client = client_for(volunteer)
    # The first vote in a project creates the volunteer's record; then the steady state.
    first = client.post(f"/api/projects/{project.pk}/assignments/").json()
    client.post(f"/api/assignments/{first['id']}/vote/", {"label": labels[0].pk}, format="json")
    # PostgreSQL: the project; the lease in one statement, with the suggestion. Then BEGIN,
    # the locking read, the writes in one statement, COMMIT. SQLite runs each write apart, and
    # reads the suggestion apart.
    lease_budget, vote_budget = (2, 4) if connection.vendor == "postgresql" else (7, 8)
    with django_assert_max_num_queries(lease_budget):
        assignment = client.post(f"/api/projects/{project.pk}/assignments/").json()
    with django_assert_max_num_queries(vote_budget):
        response = client.post(
            f"/api/assignments/{assignment['id']}/vote/", {"label": labels[0].pk}, format="json"
        )
    assert response.status_code == 201


def test_a_deciding_vote_stays_within_the_same_budget(
    client_for, volunteer, other_volunteer, project, labels, django_assert_max_num_queries
):
    """The vote that decides an image also writes the decision and every voter's record: on
    PostgreSQL in the same statement as the vote, so it costs no more round trips."""
    project.min_votes, project.max_votes, project.agreement = 2, 3, 0.6
    project.save()
    image = ImageFactory(project=project)
    first = client_for(volunteer).post(f"/api/projects/{project.pk}/assignments/").json()
    client_for(volunteer).post(
        f"/api/assignments/{first['id']}/vote/", {"label": labels[1].pk}, format="json"
    )
    client = client_for(other_volunteer)  # their first vote: it also starts their record
    lease = client.post(f"/api/projects/{project.pk}/assignments/").json()
    assert lease["image"]["id"] == image.pk
    vote_budget = 4 if connection.vendor == "postgresql" else 12
    with django_assert_max_num_queries(vote_budget):
        response = client.post(
            f"/api/assignments/{lease['id']}/vote/", {"label": labels[1].pk}, format="json"
        )
    assert response.status_code == 201 and response.json()["image_state"] == "consensus"
    decision = image.decisions.get(is_current=True)
    assert (decision.label_id, decision.votes_count, decision.rule) == (labels[1].pk, 2, "majority")
    for user in (volunteer, other_volunteer):
        stats = AnnotatorStats.objects.get(project=project, user=user)
        assert (stats.votes, stats.decided_votes, stats.agreed_votes) == (1, 1, 1)


def test_sign_in_and_registration_are_throttled(client_for, volunteer, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"auth": "3/min"},
    }
    from rest_framework.throttling import SimpleRateThrottle

    SimpleRateThrottle.THROTTLE_RATES = {"auth": "3/min"}
    try:
        client = client_for(None)
        answers = [
            client.post(
                "/api/auth/token/", {"username": volunteer.username, "password": "x"}, format="json"
            ).status_code
            for _ in range(4)
        ]
        assert answers == [400, 400, 400, 429]
        assert (
            client.post(
                "/api/auth/register/",
                {"username": "z", "password": "a-long-passphrase"},
                format="json",
            ).status_code
            == 429
        )
        pages = [
            client.post(
                "/accounts/login/", {"username": volunteer.username, "password": "x"}
            ).status_code
            for _ in range(1)
        ]
        assert pages == [429]  # same client address, same budget
        assert not User.objects.filter(username="z").exists()
    finally:
        from rest_framework.settings import api_settings

        SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES


def test_lease_answer_has_the_documented_shape(client_for, volunteer, project, labels):
    """The lease answer is built by hand for speed; it must stay what the schema says."""
    from labeling_api.serializers import AssignmentOutputSerializer

    ImageFactory(project=project)
    body = client_for(volunteer).post(f"/api/projects/{project.pk}/assignments/").json()
    assignment = Assignment.objects.select_related("image").get(pk=body["id"])
    documented = AssignmentOutputSerializer(assignment).data
    assert body == documented


def test_content_negotiation_answers_json_and_still_refuses_what_it_cannot_give(
    client_for, volunteer, project
):
    """JSON for API clients, whatever they accept of it; 406 (in the error shape) for a type no
    renderer gives; the browsable API only where it is configured (DEBUG)."""
    from rest_framework.views import APIView

    client = client_for(volunteer)
    url = f"/api/projects/{project.pk}/"
    for accept in (None, "*/*", "application/json", "application/json; indent=2"):
        headers = {} if accept is None else {"HTTP_ACCEPT": accept}
        response = client.get(url, **headers)
        assert response.status_code == 200 and response["Content-Type"] == "application/json"
        assert response.json()["id"] == project.pk
    refused = client.get(url, HTTP_ACCEPT="application/xml")
    assert_error_shape(refused, 406, "not_acceptable")
    browsable = "api" in {renderer.format for renderer in APIView.renderer_classes}
    browser = client.get(url, HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")
    assert browser.status_code == 200
    assert browser["Content-Type"].startswith("text/html" if browsable else "application/json")


@pytest.mark.parametrize(("debug", "browsable"), [("False", False), ("True", True)])
def test_the_browsable_api_is_there_only_with_debug(debug, browsable):
    """Production answers JSON only (the renderer list is read when settings load)."""
    import os
    import subprocess
    import sys

    code = (
        "from django.conf import settings; "
        "print(settings.REST_FRAMEWORK['DEFAULT_RENDERER_CLASSES'])"
    )
    env = {
        **os.environ,
        "DEBUG": debug,
        "SECRET_KEY": "renderer-test-" + "x" * 40,
        "DJANGO_SETTINGS_MODULE": "annotate.settings",
    }
    found = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "rest_framework.renderers.JSONRenderer" in found
    assert ("BrowsableAPIRenderer" in found) == browsable


def test_image_urls_follow_the_script_prefix():
    """The image URL is built from a reversed template, per script prefix (a deployment under
    a sub-path gets its own)."""
    from django.urls import get_script_prefix, reverse, set_script_prefix

    from labeling_api.serializers import image_url

    before = get_script_prefix()
    try:
        for prefix in ("/", "/labeling/"):
            set_script_prefix(prefix)
            for image_id in (1, 42, 987654321987, 10**17):
                assert image_url(image_id) == reverse("api:image-file", args=[image_id])
        assert image_url(7) == "/labeling/api/images/7/file/"
    finally:
        set_script_prefix(before)
