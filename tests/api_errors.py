"""The API's one error shape (labeling_api.exceptions), as the tests check it."""

import json
from typing import Any

ERROR_KEYS = {"detail", "code", "fields"}


def assert_error_body(body: Any) -> None:
    """Assert `body` (parsed JSON) is {"detail": str, "code": str, "fields"?: {name: [str]}}."""
    assert isinstance(body, dict) and set(body) <= ERROR_KEYS, body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    assert isinstance(body.get("code"), str) and body["code"], body
    if "fields" in body:
        fields = body["fields"]
        assert isinstance(fields, dict) and fields, body
        for name, messages in fields.items():
            assert isinstance(name, str) and name, body
            assert isinstance(messages, list) and messages, body
            assert all(isinstance(m, str) and m for m in messages), body


def assert_error_shape(
    response: Any, status: int | None = None, code: str | None = None
) -> dict[str, Any]:
    """Assert `response` (a Django response) is an error in the one shape, of `status` and
    `code` when given, and return its body."""
    if status is not None:
        assert response.status_code == status, (response.status_code, response.content[:300])
    assert response.status_code >= 400, response.status_code
    assert response["Content-Type"] == "application/json", response["Content-Type"]
    body: dict[str, Any] = json.loads(response.content)
    assert_error_body(body)
    if code is not None:
        assert body["code"] == code, body
    return body
