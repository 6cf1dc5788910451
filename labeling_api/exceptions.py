"""One shape for every API error, 4xx and 5xx:

    {"detail": "<a sentence for people>", "code": "<a stable word for programs>",
     "fields": {"<field>": ["<message>", ...]}}

`fields` is there only when named fields are at fault (nested ones as `parent.child`, items of a
list as `items.0`). `exception_handler` is DRF's EXCEPTION_HANDLER: it answers whatever an API view
raises. labeling_api.error_handlers answers what Django refuses itself on /api/ paths (an unknown
URL, a crash, a request too big) in the same shape, and the OpenAPI schema documents it as the
`Error` component (labeling_api.schema).
"""

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import (
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from annotate.services.errors import ServiceError

ErrorFields = dict[str, list[str]]

SOME_FIELDS_INVALID = "Some fields are invalid."
DATABASE_UNAVAILABLE = "The database is unavailable right now; nothing was changed. Retry shortly."
# Seconds a client should wait after a 503: the database usually answers again within that.
RETRY_AFTER_SECONDS = 2

# The code of an answer whose exception does not name one: DRF's default_code where DRF has
# such an exception, so that both kinds of answer agree.
CODE_OF_STATUS = {
    400: "invalid",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    429: "throttled",
    500: "server_error",
    503: "unavailable",
}

# Django's refusals of a request over its size settings (all SuspiciousOperation).
TOO_LARGE = (RequestDataTooBig, TooManyFilesSent, TooManyFieldsSent)


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request is too large."
    default_code = "too_large"


def error_body(
    detail: str, code: str, fields: Mapping[str, list[str]] | None = None
) -> dict[str, Any]:
    """The one error shape; `fields` only when it names at least one field."""
    body: dict[str, Any] = {"detail": detail, "code": code}
    if fields:
        body["fields"] = {name: list(messages) for name, messages in fields.items()}
    return body


def too_large_message(error: SuspiciousOperation) -> str:
    """What a client should change when Django refused the request for its size."""
    if isinstance(error, TooManyFilesSent):
        return (
            f"The request carries more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files. "
            "Send them in several requests."
        )
    if isinstance(error, TooManyFieldsSent):
        return f"The request carries more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} fields."
    return (
        f"The request's data is over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes "
        "(uploaded files do not count)."
    )


def _collect(detail: Any, name: str, into: ErrorFields) -> None:
    """Flatten DRF's nested error details into {dotted name: [messages]}."""
    if isinstance(detail, Mapping):
        for key, value in detail.items():
            _collect(value, f"{name}.{key}" if name else str(key), into)
    elif isinstance(detail, list | tuple):
        for index, item in enumerate(detail):
            if isinstance(item, Mapping | list | tuple):
                _collect(item, f"{name}.{index}" if name else str(index), into)
            else:
                into.setdefault(name, []).append(str(item))
    else:
        into.setdefault(name, []).append(str(detail))


def _split(fields: ErrorFields, *general_keys: str) -> tuple[str, ErrorFields]:
    """The detail sentence and the fields at fault: messages about no field (under one of
    `general_keys`) make the sentence; a single field message is the sentence itself."""
    general = [message for key in general_keys for message in fields.pop(key, [])]
    if general:
        return " ".join(general), fields
    messages = [(name, message) for name, found in fields.items() for message in found]
    if len(messages) == 1:
        name, message = messages[0]
        return f"{name}: {message}", fields
    return SOME_FIELDS_INVALID, fields


def _detail_and_fields(detail: Any) -> tuple[str, ErrorFields]:
    fields: ErrorFields = {}
    _collect(detail, "", fields)
    return _split(fields, "", api_settings.NON_FIELD_ERRORS_KEY)


def _django_validation(error: DjangoValidationError) -> tuple[str, ErrorFields]:
    if hasattr(error, "error_dict"):
        fields = {name: list(messages) for name, messages in error.message_dict.items()}
        return _split(fields, "__all__")
    return " ".join(error.messages), {}


def _service_error(error: ServiceError) -> Response:
    code = error.code or CODE_OF_STATUS.get(error.status, "invalid")
    fields = None
    if error.field:
        # Services often start the message with the field's name; the field list need not.
        message = error.message.removeprefix(f"{error.field}: ")
        fields = {error.field: [message]}
    return Response(error_body(error.message, code, fields), status=error.status)


def database_unavailable_body() -> dict[str, Any]:
    return error_body(DATABASE_UNAVAILABLE, CODE_OF_STATUS[503])


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER. None (an unexpected exception) lets Django log it and answer a
    500 through labeling_api.error_handlers.server_error."""
    response = _error_response(exc, context)
    request = context.get("request")
    if response is not None and request is not None:
        _render_as_json(request)
    return response


def _render_as_json(request: Request) -> None:
    """An error is JSON even from a view that answers in another format when all goes well (the
    schema's YAML, the docs' HTML) or whose negotiation failed (406, an unknown ?format=); the
    browsable API (DEBUG) keeps showing errors its way."""
    if not isinstance(
        getattr(request, "accepted_renderer", None), JSONRenderer | BrowsableAPIRenderer
    ):
        request.accepted_renderer = JSONRenderer()
        request.accepted_media_type = JSONRenderer.media_type


def _error_response(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ServiceError):
        return _service_error(exc)
    if isinstance(exc, OperationalError | InterfaceError):
        # The database went away mid-request: the transaction rolled back, so nothing was
        # half-applied and the client may simply retry.
        unavailable = Response(
            database_unavailable_body(), status=status.HTTP_503_SERVICE_UNAVAILABLE
        )
        unavailable["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return unavailable
    if isinstance(exc, DjangoValidationError):
        detail, fields = _django_validation(exc)
        return Response(error_body(detail, "invalid", fields), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, TOO_LARGE):  # raised while DRF parsed a form
        exc = RequestTooLarge(too_large_message(exc))
    elif isinstance(exc, Http404):
        # Not Django's message: it can name a model ("No Project matches the given query.").
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    # DRF's own handler for the headers (WWW-Authenticate, Retry-After) and the rollback.
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    if isinstance(exc, exceptions.ValidationError):
        detail, fields = _detail_and_fields(exc.detail)
        code = exceptions.ValidationError.default_code
    elif isinstance(exc.detail, str):
        detail, fields = str(exc.detail), {}
        code = getattr(exc.detail, "code", None) or exc.default_code
    else:
        detail, fields = _detail_and_fields(exc.detail)
        code = exc.default_code
    response.data = error_body(detail, str(code), fields)
    return response
