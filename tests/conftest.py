import pytest
from rest_framework.test import APIClient

from annotate.models import User
from tests.factories import LabelFactory, ProjectFactory, UserFactory


@pytest.fixture(autouse=True)
def postgresql_when_marked(request):
    """A test marked `postgresql` fails, never skips, on another database: CI must not pass
    without running it. `make test` points DATABASE_URL at PostgreSQL; the SQLite pass selects
    only tests that run on both."""
    if request.node.get_closest_marker("postgresql"):
        from django.db import connection

        if connection.vendor != "postgresql":
            pytest.fail(
                f"{request.node.nodeid} needs PostgreSQL (run `make test`, or set DATABASE_URL)",
                pytrace=False,
            )


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def nothing_recent():
    """Each test starts with no rows kept in this process (annotate.recent): a row kept by an
    earlier test could carry an id that SQLite hands out again after a rollback."""
    from annotate import recent

    recent.forget_all()
    yield
    recent.forget_all()


@pytest.fixture
def volunteer(db):
    return UserFactory(role=User.Role.VOLUNTEER)


@pytest.fixture
def other_volunteer(db):
    return UserFactory(role=User.Role.VOLUNTEER)


@pytest.fixture
def reviewer(db):
    return UserFactory(role=User.Role.REVIEWER)


@pytest.fixture
def admin_user(db):
    return UserFactory(role=User.Role.ADMIN, is_staff=True)


@pytest.fixture
def project(db):
    return ProjectFactory()


@pytest.fixture
def labels(project):
    return [LabelFactory(project=project, wnid=f"n0000000{i}", name=f"class {i}") for i in range(3)]


class ClosingAPIClient(APIClient):
    """An APIClient that remembers its responses, so the fixture can close them: a file
    answer (FileResponse) holds its file open until closed, which a test that only checks the
    status code never does."""

    def __init__(self, responses: list, **defaults):
        super().__init__(**defaults)
        self._responses = responses

    def request(self, *args, **kwargs):
        response = super().request(*args, **kwargs)
        self._responses.append(response)
        return response


@pytest.fixture
def client_for():
    """An API client signed in as the given user (or anonymous for None)."""
    responses: list = []

    def make(user):
        client = ClosingAPIClient(responses)
        if user is not None:
            client.force_authenticate(user)
        return client

    yield make
    for response in responses:
        response.close()


@pytest.fixture(autouse=True)
def fresh_throttle_counters(request):
    """Throttle counters live in the database cache; each database test starts with none."""
    uses_db = request.node.get_closest_marker("django_db") or {
        "db",
        "transactional_db",
        "live_server",
    } & set(request.fixturenames)
    if uses_db:
        from django.core.cache import cache

        request.getfixturevalue(
            "transactional_db"
            if "transactional_db" in request.fixturenames
            else "_django_db_helper"
        )
        cache.clear()


@pytest.fixture(autouse=True)
def own_image_cache(settings, tmp_path_factory):
    """Each test has its own ML image cache: test images reuse stored names (SQLite hands out
    ids again), which real ones never do (their names hold their SHA-256)."""
    settings.IMAGE_CACHE_DIR = tmp_path_factory.mktemp("image-cache")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 server (moto's), once per session, on a free loopback port (tests/s3.py)."""
    from tests.s3 import S3Server

    server = S3Server(tmp_path_factory.mktemp("s3") / "moto.log")
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server, settings):
    """The default storage becomes S3 (django-storages) on a bucket of this test's own."""
    bucket = s3_server.new_bucket()
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": s3_server.storage_options(bucket),
        },
    }
    return bucket


@pytest.fixture(params=["local", "s3"])
def storage(request):
    """Run the test with the local file storage, then with S3: the name of the one in use."""
    if request.param == "s3":
        request.getfixturevalue("s3_bucket")
    return request.param
