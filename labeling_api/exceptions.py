"""Every error answer is a 4xx with a message: {"detail": "...", "field"?: "..."}."""

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from annotate.services.errors import ServiceError
from annotate.services.projects import validation_message


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ServiceError):
        body: dict[str, Any] = {"detail": exc.message}
        if exc.field:
            body["field"] = exc.field
        return Response(body, status=exc.status)
    if isinstance(exc, (OperationalError, InterfaceError)):
        # The database went away mid-request: the transaction rolled back, so nothing was
        # half-applied and the client may simply retry.
        unavailable = Response(
            {
                "detail": (
                    "The database is unavailable right now; nothing was changed. Retry shortly."
                )
            },
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
        unavailable["Retry-After"] = "2"
        return unavailable
    if isinstance(exc, DjangoValidationError):
        return Response({"detail": validation_message(exc)}, status=status.HTTP_400_BAD_REQUEST)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, Http404):
        response.data = {"detail": "Not found."}
    return response
