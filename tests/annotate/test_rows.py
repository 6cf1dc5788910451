"""annotate.rows: the hot path's SQL text must load and write exactly what the ORM would."""

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotate import rows, selectors
from annotate.models import Assignment, Image, Project, User, Vote
from annotate.services import serving
from tests.factories import ImageFactory, LabelFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def _field_values(instance):
    return {
        field.attname: getattr(instance, field.attname) for field in instance._meta.concrete_fields
    }


@pytest.mark.parametrize(
    "model, make",
    [
        (
            Project,
            lambda: ProjectFactory(
                answer_counts={"3": 4, "none": 1}, gold_rate=0.2, gold_rate_min=0.1
            ),
        ),
        (Image, lambda: ImageFactory(is_gold=True)),
        (User, lambda: UserFactory(is_superuser=True)),
    ],
)
def test_columns_build_what_the_orm_loads(model, make):
    instance = make()
    columns = rows.columns(model, "t")
    row = rows.fetch_one(
        f'SELECT {columns.sql} FROM "{model._meta.db_table}" t WHERE t.id = %s', [instance.pk]
    )
    built = columns.build(row)
    loaded = model.objects.get(pk=instance.pk)
    assert _field_values(built) == _field_values(loaded)
    # Types too: a datetime is a datetime and a JSON field a dict on every database.
    assert {k: type(v) for k, v in _field_values(built).items()} == {
        k: type(v) for k, v in _field_values(loaded).items()
    }
    # Nothing more and nothing less than the ORM's instance holds, and a state that saves
    # it as an update of its row.
    assert set(built.__dict__) == set(loaded.__dict__)
    assert (built._state.adding, built._state.db) == (loaded._state.adding, loaded._state.db)
    assert built == loaded and str(built) == str(loaded)
    rows_before = model.objects.count()
    built.save()  # an UPDATE of its row (an INSERT would fail on the primary key)
    assert model.objects.count() == rows_before
    assert _field_values(model.objects.get(pk=built.pk)) == _field_values(built)


def test_insert_sets_defaults_and_auto_fields(project, volunteer):
    image = ImageFactory(project=project)
    assignment = rows.insert(Assignment(image=image, user=volunteer, expires_at=image.created_at))
    stored = Assignment.objects.get(pk=assignment.pk)
    assert stored.state == Assignment.State.ACTIVE and stored.created_at is not None
    assert _field_values(stored) == _field_values(assignment)


def test_write_together_applies_every_statement_and_returns_the_first_row(
    project, volunteer, labels
):
    image = ImageFactory(project=project)
    vote = Vote(image=image, user=volunteer, label=labels[0])
    row = rows.write_together(
        [
            rows.insert_statement(vote),
            ("UPDATE annotate_image SET votes_count = votes_count + 1 WHERE id = %s", [image.pk]),
            (
                "UPDATE annotate_user SET votes_count = votes_count + 1 WHERE id = %s",
                [volunteer.pk],
            ),
        ]
    )
    assert Vote.objects.get().pk == row[0]
    image.refresh_from_db()
    volunteer.refresh_from_db()
    assert (image.votes_count, volunteer.votes_count) == (1, 1)


def test_write_together_is_all_or_nothing(project, volunteer, labels):
    from django.db import IntegrityError, transaction

    image = ImageFactory(project=project)
    Vote.objects.create(image=image, user=volunteer, label=labels[0])
    with pytest.raises(IntegrityError), transaction.atomic():
        rows.write_together(
            [
                ("UPDATE annotate_image SET votes_count = 7 WHERE id = %s", [image.pk]),
                rows.insert_statement(
                    Vote(image=image, user=volunteer, label=labels[1])
                ),  # a second vote
            ]
        )
    image.refresh_from_db()
    assert image.votes_count == 0


@pytest.mark.postgresql
def test_the_serving_statements_are_prepared(project, volunteer):
    # Prepared statements are PostgreSQL's.
    for _ in range(4):
        ImageFactory(project=project)
    for _ in range(4):
        assert serving.assignment_lease(project=project, user=volunteer) is not None
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [statement for (statement,) in cursor.fetchall()]
    assert any("WITH picked AS" in statement for statement in prepared), prepared


def test_token_authentication_reads_the_user_and_refuses_bad_tokens(project, settings):
    # Read on every request here; what a process keeps is tested in test_recent_reads.
    settings.READ_CACHE_SECONDS = 0
    LabelFactory(project=project)
    ImageFactory(project=project)
    user = UserFactory()
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.post(f"/api/projects/{project.pk}/assignments/").status_code == 201
    assert selectors.user_for_token(key=token.key) == user
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    refused = client.post(f"/api/projects/{project.pk}/assignments/")
    assert (refused.status_code, refused.json()["detail"]) == (401, "Invalid token.")
    User.objects.filter(pk=user.pk).update(is_active=False)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    inactive = client.post(f"/api/projects/{project.pk}/assignments/")
    assert (inactive.status_code, inactive.json()["detail"]) == (401, "User inactive or deleted.")


def test_columns_of_some_fields_leave_the_others_deferred(django_assert_num_queries):
    image = ImageFactory(original_name="cat.jpg", votes_count=2)
    columns = rows.columns(Image, "i", ("project", "votes_count"))
    assert columns.sql == 'i."id", i."project_id", i."votes_count"'
    row = rows.fetch_one(f"SELECT {columns.sql} FROM annotate_image i WHERE i.id = %s", [image.pk])
    built = columns.build(row)
    with django_assert_num_queries(0):
        assert (built.pk, built.project_id, built.votes_count) == (image.pk, image.project_id, 2)
    assert "original_name" in built.get_deferred_fields()
    with django_assert_num_queries(1):  # read when used, as QuerySet.only() does
        assert built.original_name == "cat.jpg"
    with pytest.raises(ValueError, match="unknown fields"):
        rows.columns(Image, "i", ("votes_count", "no_such_field"))
