"""annotate.rows: the hot path's SQL text must load and write exactly what the ORM would."""

import io
import re
import tokenize
from pathlib import Path

import psycopg
import pytest
from django.apps import apps
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotate import rows, selectors
from annotate.models import Assignment, Image, Project, User, Vote
from annotate.rows import django_private
from annotate.rows import verification as verification_sql
from annotate.rows import vote as vote_sql
from annotate.rows.names import sql
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
            (sql("UPDATE {Image} SET {Image.votes_count} = 1 WHERE {Image.id} = %s"), [image.pk]),
            (vote_sql.user_voted(), [volunteer.pk]),
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
                (
                    sql("UPDATE {Image} SET {Image.votes_count} = 7 WHERE {Image.id} = %s"),
                    [image.pk],
                ),
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
    row = rows.fetch_one(
        sql("SELECT {columns} FROM {Image} i WHERE i.{Image.id} = %s", columns=columns.sql),
        [image.pk],
    )
    built = columns.build(row)
    with django_assert_num_queries(0):
        assert (built.pk, built.project_id, built.votes_count) == (image.pk, image.project_id, 2)
    assert "original_name" in built.get_deferred_fields()
    with django_assert_num_queries(1):  # read when used, as QuerySet.only() does
        assert built.original_name == "cat.jpg"
    with pytest.raises(ValueError, match="unknown fields"):
        rows.columns(Image, "i", ("votes_count", "no_such_field"))


# --- no table or column name typed by hand outside annotate.rows and the migrations ---------

_ROOT = Path(__file__).resolve().parents[2]
_SCANNED = ("annotate", "labeling_api", "worker")
_EXEMPT = (_ROOT / "annotate" / "rows", _ROOT / "annotate" / "migrations")
# Names that look like a table's but are none: the database function of migration 0012.
_NOT_TABLES = ("annotate_unchanged",)


def _table_names() -> list[str]:
    """The db_table of every model of the annotate app (the many-to-many tables too), and the
    API tokens' table."""
    models = apps.get_app_config("annotate").get_models(include_auto_created=True)
    return [model._meta.db_table for model in models] + [Token._meta.db_table]


def _hand_written_tables(source: str, tables: list[str]) -> list[tuple[int, str]]:
    """(line, table name) of each table named as a whole word inside a string literal of
    `source` (f-strings and docstrings too; comments are no string)."""
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, tables)) + r")\b")
    allowed = re.compile(r"\b(" + "|".join(map(re.escape, _NOT_TABLES)) + r")\b")
    kinds = {tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in kinds:
            text = allowed.sub("", token.string)
            found += [(token.start[0], match) for match in pattern.findall(text)]
    return found


def test_the_guard_finds_a_hand_written_table_name():
    tables = _table_names()
    assert {"annotate_image", "annotate_candidate", "authtoken_token"} <= set(tables)
    source = (
        "# FROM annotate_image in a comment is no statement\n"
        "A = 'SELECT 1 FROM annotate_image i'\n"
        'B = f"UPDATE annotate_candidate SET x = {y}"\n'
        "C = 'annotate_unchanged(true)'\n"
        "D = 'annotate_images, my_annotate_image'\n"
        'E = """a docstring on\nauthtoken_token"""\n'
    )
    assert _hand_written_tables(source, tables) == [
        (2, "annotate_image"),
        (3, "annotate_candidate"),
        (6, "authtoken_token"),
    ]


def test_no_table_name_is_typed_by_hand_outside_annotate_rows_and_migrations():
    """Raw SQL takes its table and column names from the models (annotate.rows.names), in a
    statement module of annotate.rows; a table name typed elsewhere is such a statement."""
    tables = _table_names()
    found = []
    for top in _SCANNED:
        for path in sorted((_ROOT / top).rglob("*.py")):
            if any(path.is_relative_to(exempt) for exempt in _EXEMPT):
                continue
            for line, table in _hand_written_tables(path.read_text(), tables):
                found.append(f"{path.relative_to(_ROOT)}:{line}: {table}")
    assert not found, "table names typed by hand (move the statement to annotate.rows):\n" + (
        "\n".join(found)
    )


@pytest.mark.parametrize(
    "statement, args",
    [
        (verification_sql.grid_first_label, ()),
        (verification_sql.grid_pick, ()),
        (verification_sql.candidate_take_lease, ()),
        (verification_sql.candidates_release, (3,)),
        (verification_sql.images_hold, (3,)),
        (verification_sql.model_top, ()),
        (verification_sql.voter_counts, (3,)),
        (verification_sql.label_settled_counts, ()),
        (verification_sql.grid_items, ()),
        (verification_sql.image_visible, ()),
        # Data-modifying WITH clauses and row locks are PostgreSQL's.
        pytest.param(verification_sql.grid_lease_in_one, (), marks=pytest.mark.postgresql),
    ],
)
def test_the_verification_statements_are_built_from_model_names(statement, args):
    # Each one prepared and run by the database (EXPLAIN), with every parameter NULL: a name
    # that is no table or column fails here.
    text = statement(*args)
    assert "{" not in text and "}" not in text
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + text, [None] * text.count("%s"))


# --- canaries: the private Django APIs annotate.rows relies on (annotate.rows.django_private) --
#
# One check per function there, each comparing what the function does with what the ORM does.
# A failure names the API that a Django upgrade changed: fix that function, nothing else.


def _canary_model_fields():
    image = ImageFactory()
    fields = django_private.model_fields(Image)
    loaded = Image.objects.filter(pk=image.pk).values()[0]  # concrete fields by attname
    assert [field.attname for field in fields] == list(loaded)
    with connection.cursor() as cursor:
        table = connection.introspection.get_table_description(cursor, Image._meta.db_table)
    assert {field.column for field in fields} == {column.name for column in table}
    assert {field.name: field.column for field in fields}["project"] == "project_id"


def _canary_field_converters():
    project = ProjectFactory(answer_counts={"3": 4})
    field = Project._meta.get_field("answer_counts")
    column, functions = django_private.field_converters(Project, field)
    assert all(callable(function) for function in functions)
    with connection.cursor() as cursor:
        cursor.execute(
            sql("SELECT {Project.answer_counts} FROM {Project} WHERE {Project.id} = %s"),
            [project.pk],
        )
        value = cursor.fetchone()[0]
    for function in functions:
        value = function(value, column, connection)
    assert value == Project.objects.get(pk=project.pk).answer_counts == {"3": 4}


def _canary_instance_from_row():
    user = UserFactory()
    loaded = User.objects.get(pk=user.pk)
    attnames = [field.attname for field in django_private.model_fields(User)]
    values = [getattr(loaded, attname) for attname in attnames]
    built = django_private.instance_from_row(User, attnames, values)
    assert built == loaded and built.__dict__.keys() == loaded.__dict__.keys()
    assert (built._state.adding, built._state.db) == (False, "default")
    assert built.get_deferred_fields() == set()
    partial = django_private.instance_from_row(User, ["id", "username"], [user.pk, user.username])
    assert "email" in partial.get_deferred_fields() and partial.email == user.email
    users = User.objects.count()
    built.first_name = "changed"
    built.save()  # an UPDATE of its row
    assert User.objects.count() == users
    assert User.objects.get(pk=user.pk).first_name == "changed"


def _canary_mark_saved():
    image, user = ImageFactory(), UserFactory()
    assignment = Assignment(image=image, user=user, expires_at=image.created_at)
    assert assignment._state.adding
    rows.inserted(assignment, rows.fetch_one(*rows.insert_statement(assignment)))
    assert (assignment._state.adding, assignment._state.db) == (False, "default")
    count = Assignment.objects.count()
    assignment.save()  # an UPDATE now, not a second INSERT
    assert Assignment.objects.count() == count


def _canary_datetime_param():
    now = timezone.now()
    field = Assignment._meta.get_field("expires_at")
    assert django_private.datetime_param(now) == field.get_db_prep_value(now, connection)


def _canary_row_lock_support():
    support = django_private.row_lock_support()
    expected = connection.vendor == "postgresql"
    assert support == (expected, expected, expected)


def _canary_logging_queries():
    assert django_private.logging_queries() is False
    with CaptureQueriesContext(connection):
        assert django_private.logging_queries() is True


def _canary_in_transaction():
    # Each canary runs in an atomic block, inside the test's own transaction.
    assert django_private.in_transaction() is True
    assert transaction.get_autocommit() is False


def _canary_server_binding_cursor():
    from django.db.backends.postgresql.base import ServerBindingCursor

    assert issubclass(ServerBindingCursor, psycopg.Cursor)
    assert not issubclass(ServerBindingCursor, psycopg.ClientCursor)
    if connection.vendor != "postgresql":
        return  # the statements use Django's own cursor there
    with django_private.server_binding_cursor() as cursor:
        assert isinstance(cursor.cursor, ServerBindingCursor)
        cursor.execute("SELECT %s::integer + 1", [41])
        assert cursor.fetchone() == (42,)
        with pytest.raises(DatabaseError), transaction.atomic():  # errors wrapped as Django's
            cursor.execute("SELECT no_such_column")


_CANARIES = {
    "model_fields": _canary_model_fields,
    "field_converters": _canary_field_converters,
    "instance_from_row": _canary_instance_from_row,
    "mark_saved": _canary_mark_saved,
    "datetime_param": _canary_datetime_param,
    "row_lock_support": _canary_row_lock_support,
    "logging_queries": _canary_logging_queries,
    "in_transaction": _canary_in_transaction,
    "server_binding_cursor": _canary_server_binding_cursor,
}


def test_every_private_api_has_a_canary():
    assert set(_CANARIES) == set(django_private.PRIVATE_APIS)
    assert all(callable(getattr(django_private, name)) for name in _CANARIES)


@pytest.mark.parametrize("name", sorted(_CANARIES))
def test_the_private_django_apis_still_behave(name):
    try:
        with transaction.atomic():  # a failed statement must not spoil the next check
            _CANARIES[name]()
    except Exception as error:
        pytest.fail(
            f"Django changed {django_private.PRIVATE_APIS[name]}, which"
            f" annotate.rows.django_private.{name}() relies on: {error!r}"
        )
