"""Schemathesis against /api/schema/: generated requests, as an admin and as a volunteer, on
every operation. No answer may be a 5xx, every documented answer must match the schema, and
every error answer is the API's one error shape."""

import gc
import io
import json
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from annotate.models import User
from annotate.services import ingest, serving
from annotate.wsgi import application
from tests.api_errors import assert_error_body
from tests.factories import LabelFactory, ProjectFactory, UserFactory, image_bytes

# Committed data: the WSGI app runs in this process with its own request signals, which
# would close a connection that is inside a test transaction.
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)


@pytest.fixture(autouse=True)
def no_garbage_collection_inside_ast():
    """Hypothesis parses source code with `ast` while it generates cases. On CPython 3.11.7 a
    garbage collection inside that parse can run a finalizer that parses too (a traceback or
    warning being formatted); the nested parse resets the constructor's depth counter, and the
    outer one fails with "SystemError: AST constructor recursion depth mismatch" (seen here after
    the rest of the suite, never alone; python/cpython#106905 is the same counter). Collect
    first, then keep the collector off while the cases run."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()


@pytest.fixture
def tokens():
    """A small project with a leased image, and a token per role."""
    # Real objects for list endpoints; generated ids in paths mostly miss (404s are checked too).
    project = ProjectFactory(min_votes=2, max_votes=3)
    LabelFactory(project=project)
    ingest.images_upload(
        project=project, files=[("a.png", io.BytesIO(image_bytes((1, 2, 3), fmt="PNG")))]
    )
    users = {role: UserFactory(role=role) for role in (User.Role.VOLUNTEER, User.Role.ADMIN)}
    serving.assignment_lease(project=project, user=users[User.Role.VOLUNTEER])
    return {role: Token.objects.create(user=user).key for role, user in users.items()}


def error_in_the_one_shape(ctx: Any, response: Any, case: Any) -> None:
    """A schemathesis check: every 4xx and 5xx answer is JSON in the one error shape, whether
    the schema documents its status or not."""
    if response.status_code < 400:
        return
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type == "application/json", (response.status_code, content_type)
    assert_error_body(json.loads(response.content))


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@pytest.mark.parametrize("role", [User.Role.ADMIN, User.Role.VOLUNTEER])
def test_api_answers_match_the_schema_and_never_5xx(case, tokens, role):
    # Raises with a reproducible curl command when a check fails.
    response = case.call_and_validate(
        headers={"Authorization": f"Token {tokens[role]}"},
        checks=[not_a_server_error, response_schema_conformance, error_in_the_one_shape],
    )
    assert response.status_code < 500
