"""OpenAPI: the one error shape (labeling_api.exceptions) as the `Error` component, and as the
answer of every operation's errors. A drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS)."""

from typing import Any

ERROR_COMPONENT = "Error"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every 4xx and 5xx answer of the API.",
    "properties": {
        "detail": {"type": "string", "description": "What went wrong, for people."},
        "code": {
            "type": "string",
            "description": "What went wrong, for programs: invalid, parse_error, "
            "not_authenticated, authentication_failed, permission_denied, not_found, "
            "method_not_allowed, not_acceptable, conflict, too_large, unsupported_media_type, "
            "throttled, server_error, unavailable.",
        },
        "fields": {
            "type": "object",
            "description": "Present only when fields are at fault: each one's messages. Nested "
            "fields are named `parent.child`, list items `items.0`.",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
    },
    "required": ["detail", "code"],
    "additionalProperties": False,
}
_ERROR_CONTENT = {
    "application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}}
}
_METHODS = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _ERROR_CONTENT}


def _errors_of(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The error answers an operation can give, by what it takes and who may call it."""
    parameters = operation.get("parameters", [])
    errors = {}
    if "requestBody" in operation or any(p.get("in") == "query" for p in parameters):
        errors["400"] = _error("Invalid input (`fields` names the fields at fault).")
    if {} not in operation.get("security", [{}]):
        errors["401"] = _error("No credentials, or invalid ones.")
        errors["403"] = _error("The caller's role may not do this.")
    if any(p.get("in") == "path" for p in parameters):
        errors["404"] = _error("No such object, or one the caller may not see.")
    if "requestBody" in operation:
        errors["413"] = _error("The request is over the size limits.")
    errors["default"] = _error(
        "Any other error, in the same shape: 405, 409, 415, 429, 500, 503 (with Retry-After)."
    )
    return errors


def error_responses(
    result: dict[str, Any], generator: object, request: object, public: bool
) -> dict[str, Any]:
    """Add the Error component and the error answers an operation does not document itself."""
    result.setdefault("components", {}).setdefault("schemas", {})[ERROR_COMPONENT] = ERROR_SCHEMA
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for status, answer in _errors_of(operation).items():
                responses.setdefault(status, answer)
    return result
