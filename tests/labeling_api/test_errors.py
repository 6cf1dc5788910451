"""The one error shape (labeling_api.exceptions, README "API") for every kind of API error, from
DRF views and from Django itself; pages outside /api/ keep their HTML."""

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import OperationalError
from django.test import RequestFactory
from pytest_django.fixtures import Settings
from rest_framework import exceptions
from rest_framework.test import APIClient

from annotate.models import Label, Project, User
from labeling_api import error_handlers
from labeling_api.exceptions import SOME_FIELDS_INVALID, exception_handler
from tests.api_errors import assert_error_shape
from tests.factories import ImageFactory

pytestmark = pytest.mark.django_db

ClientFor = Callable[[User | None], APIClient]


def crashing_client(user: User | None) -> APIClient:
    """A client that gets the 500 answer, as a real one would, instead of the exception."""
    client = APIClient(raise_request_exception=False)
    if user is not None:
        client.force_authenticate(user)
    return client


# --- Django's own errors under /api/ ------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_an_unknown_api_url_is_a_json_404(
    client_for: ClientFor, volunteer: User, method: str
) -> None:
    response = getattr(client_for(volunteer), method)("/api/no/such/endpoint/")
    body = assert_error_shape(response, 404, "not_found")
    assert "/api/docs/" in body["detail"]


def test_pages_keep_their_html_404(client_for: ClientFor, volunteer: User) -> None:
    response = client_for(volunteer).get("/no/such/page/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


def test_an_unhandled_exception_in_an_api_view_is_a_json_500(
    monkeypatch: pytest.MonkeyPatch, volunteer: User, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("a bug")

    monkeypatch.setattr("annotate.selectors.user_stats", broken)
    response = crashing_client(volunteer).get("/api/me/")
    body = assert_error_shape(response, 500, "server_error")
    assert "a bug" not in body["detail"]  # nothing of the internals leaks
    assert any(record.exc_info and "a bug" in str(record.exc_info[1]) for record in caplog.records)


def test_the_database_gone_in_an_api_view_is_a_503_with_retry_after(
    monkeypatch: pytest.MonkeyPatch, volunteer: User
) -> None:
    def gone(**kwargs: Any) -> dict[str, Any]:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("annotate.selectors.user_stats", gone)
    response = crashing_client(volunteer).get("/api/me/")
    body = assert_error_shape(response, 503, "unavailable")
    assert response["Retry-After"] == "2" and "nothing was changed" in body["detail"]


def test_django_level_500_and_503_under_api_and_html_elsewhere() -> None:
    """What escapes before or outside DRF reaches handler500, inside Django's `except` block."""
    factory = RequestFactory()
    for error, status, code in [
        (RuntimeError("a bug"), 500, "server_error"),
        (OperationalError("gone"), 503, "unavailable"),
    ]:
        try:
            raise error
        except Exception:
            api = error_handlers.server_error(factory.get("/api/me/"))
            page = error_handlers.server_error(factory.get("/"))
        assert_error_shape(api, status, code)
        assert page.status_code == 500 and page["Content-Type"].startswith("text/html")
    assert api["Retry-After"] == "2"


def test_django_level_400_403_and_csrf_failure_under_api_and_html_elsewhere() -> None:
    factory = RequestFactory()
    api, page = factory.post("/api/projects/"), factory.post("/accounts/login/")
    too_big = RequestDataTooBig("Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.")
    assert_error_shape(error_handlers.bad_request(api, too_big), 413, "too_large")
    assert_error_shape(error_handlers.bad_request(api, SuspiciousOperation()), 400, "bad_request")
    assert_error_shape(error_handlers.permission_denied(api, Exception()), 403, "permission_denied")
    csrf = assert_error_shape(
        error_handlers.csrf_failure(api, reason="CSRF cookie not set."), 403, "permission_denied"
    )
    assert csrf["detail"] == "CSRF Failed: CSRF cookie not set."
    for answer in (
        error_handlers.bad_request(page, SuspiciousOperation()),
        error_handlers.permission_denied(page, Exception()),
        error_handlers.csrf_failure(page, reason="CSRF cookie not set."),
    ):
        assert answer["Content-Type"].startswith("text/html"), answer


def test_a_disallowed_host_on_an_api_path_is_a_json_400(
    client_for: ClientFor, volunteer: User
) -> None:
    response = client_for(volunteer).get("/api/me/", HTTP_HOST="elsewhere.example")
    assert_error_shape(response, 400, "bad_request")


def test_a_session_post_without_the_csrf_token_is_a_json_403(
    volunteer: User, project: Project
) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(volunteer)
    response = client.post(f"/api/projects/{project.pk}/assignments/")
    body = assert_error_shape(response, 403, "permission_denied")
    assert body["detail"].startswith("CSRF Failed")


# --- DRF's errors -------------------------------------------------------------------------------


def test_405_names_the_method(client_for: ClientFor, volunteer: User) -> None:
    body = assert_error_shape(client_for(volunteer).delete("/api/me/"), 405, "method_not_allowed")
    assert "DELETE" in body["detail"]


def test_415_for_a_body_of_an_unknown_type(client_for: ClientFor, admin_user: User) -> None:
    response = client_for(admin_user).post("/api/projects/", "name=x", content_type="text/plain")
    assert_error_shape(response, 415, "unsupported_media_type")
    assert not Project.objects.exists()


def test_406_for_an_answer_type_no_renderer_gives(client_for: ClientFor, volunteer: User) -> None:
    response = client_for(volunteer).get("/api/me/", HTTP_ACCEPT="application/xml")
    assert_error_shape(response, 406, "not_acceptable")


@pytest.mark.parametrize(
    ("method", "path", "accept", "status"),
    [
        ("post", "/api/docs/", "*/*", 405),
        ("post", "/api/schema/", "*/*", 405),
        ("get", "/api/schema/?format=xml", "*/*", 404),
        ("get", "/api/schema/", "application/xml", 406),
        ("get", "/api/docs/", "application/xml", 406),
    ],
)
def test_views_that_answer_yaml_or_html_give_errors_in_json(
    client_for: ClientFor, volunteer: User, method: str, path: str, accept: str, status: int
) -> None:
    response = getattr(client_for(volunteer), method)(path, HTTP_ACCEPT=accept)
    assert_error_shape(response, status)


def test_401_without_or_with_bad_credentials(client_for: ClientFor) -> None:
    missing = client_for(None).get("/api/me/")
    assert_error_shape(missing, 401, "not_authenticated")
    assert missing["WWW-Authenticate"].startswith("Token")
    bad = client_for(None).get("/api/me/", HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert_error_shape(bad, 401, "authentication_failed")


def test_429_keeps_retry_after(client_for: ClientFor) -> None:
    from rest_framework.throttling import SimpleRateThrottle

    before = SimpleRateThrottle.THROTTLE_RATES  # read once, when DRF loaded
    SimpleRateThrottle.THROTTLE_RATES = {"auth": "1/min"}
    try:
        client = client_for(None)
        payload = {"username": "nobody", "password": "x"}
        assert client.post("/api/auth/token/", payload, format="json").status_code == 400
        response = client.post("/api/auth/token/", payload, format="json")
    finally:
        SimpleRateThrottle.THROTTLE_RATES = before
    assert_error_shape(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0


def test_413_for_a_json_body_over_the_limit(
    client_for: ClientFor, admin_user: User, settings: Settings
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    client = client_for(admin_user)
    response = client.post("/api/projects/", {"name": "x" * 2000}, format="json")
    body = assert_error_shape(response, 413, "too_large")
    assert "at most 1000 bytes" in body["detail"]
    assert client.post("/api/projects/", {"name": "small"}, format="json").status_code == 201
    assert list(Project.objects.values_list("name", flat=True)) == ["small"]


def test_413_for_form_fields_over_the_limit(
    client_for: ClientFor, admin_user: User, settings: Settings
) -> None:
    """Multipart bodies may be large (uploads), but Django still bounds their form fields."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = client_for(admin_user).post(
        "/api/projects/", {"name": "x" * 2000}, format="multipart"
    )
    body = assert_error_shape(response, 413, "too_large")
    assert "1000 bytes" in body["detail"]
    assert not Project.objects.exists()


# --- invalid input ------------------------------------------------------------------------------


def test_one_bad_field_is_the_detail_and_is_named_in_fields(
    client_for: ClientFor, volunteer: User, project: Project, labels: list[Label]
) -> None:
    ImageFactory(project=project)
    client = client_for(volunteer)
    lease = client.post(f"/api/projects/{project.pk}/assignments/").json()
    response = client.post(f"/api/assignments/{lease['id']}/vote/", {"label": "abc"}, format="json")
    body = assert_error_shape(response, 400, "invalid")
    assert body["fields"] == {"label": ["A valid integer is required."]}
    assert body["detail"] == "label: A valid integer is required."


def test_several_bad_fields_are_all_named(client_for: ClientFor) -> None:
    response = client_for(None).post("/api/auth/register/", {}, format="json")
    body = assert_error_shape(response, 400, "invalid")
    assert body["detail"] == SOME_FIELDS_INVALID
    assert set(body["fields"]) == {"username", "password"}
    assert not User.objects.exists()


def test_an_error_about_no_field_has_no_fields(client_for: ClientFor, admin_user: User) -> None:
    response = client_for(admin_user).post("/api/projects/", [1, 2], format="json")
    body = assert_error_shape(response, 400, "invalid")
    assert "fields" not in body and "dictionary" in body["detail"]


def test_a_service_error_about_a_field_names_it(client_for: ClientFor) -> None:
    client = client_for(None)
    payload = {"username": "ada", "password": "a-long-passphrase"}
    assert client.post("/api/auth/register/", payload, format="json").status_code == 201
    body = assert_error_shape(
        client.post("/api/auth/register/", payload, format="json"), 409, "conflict"
    )
    assert body["fields"] == {"username": ["That username is taken."]}


def test_nested_and_listed_field_errors_are_flattened() -> None:
    error = exceptions.ValidationError(
        {
            "items": [{}, {"name": ["Required."]}],
            "image": {"id": ["Not a number."], "tags": {"0": ["Too long."]}},
            "non_field_errors": ["Start before end."],
        }
    )
    response = exception_handler(error, {})
    assert response is not None and response.status_code == 400
    assert response.data == {
        "detail": "Start before end.",
        "code": "invalid",
        "fields": {
            "items.1.name": ["Required."],
            "image.id": ["Not a number."],
            "image.tags.0": ["Too long."],
        },
    }


def test_an_unexpected_exception_is_left_to_django() -> None:
    assert exception_handler(RuntimeError("a bug"), {}) is None


# --- the schema ---------------------------------------------------------------------------------


def test_the_schema_documents_every_error_as_the_error_component(
    client_for: ClientFor, volunteer: User
) -> None:
    schema = client_for(volunteer).get("/api/schema/", {"format": "json"}).json()
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["detail", "code"] and set(error["properties"]) == {
        "detail",
        "code",
        "fields",
    }
    reference = {"$ref": "#/components/schemas/Error"}
    operations = [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]
    assert len(operations) > 20
    for path, method, operation in operations:
        errors = {
            status: answer
            for status, answer in operation["responses"].items()
            if status == "default" or int(status) >= 400
        }
        assert "default" in errors, (method, path)
        if "{" in path:
            assert "404" in errors, (method, path)
        for status, answer in errors.items():
            assert answer["content"] == {"application/json": {"schema": reference}}, (
                method,
                path,
                status,
            )


def test_error_bodies_are_json_documents() -> None:
    """error_body() is what every face answers; it must be plain JSON (no lazy strings)."""
    from labeling_api.exceptions import error_body

    body = error_body("Bad.", "invalid", {"name": ["Required."]})
    assert json.loads(json.dumps(body)) == body
    assert "fields" not in error_body("Bad.", "invalid", {})
