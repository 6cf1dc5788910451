"""Django's error views (handler400/403/404/500 and CSRF_FAILURE_VIEW): under /api/ they answer
in the API's one error shape (labeling_api.exceptions), elsewhere with the styled pages of
annotate.errors.

DRF answers what its views raise itself; these cover what never reaches a DRF view or escapes
one: an unknown /api/ URL, an exception DRF does not handle (a bug: a 500, or the database gone:
a 503), a request Django refuses before any view runs. With DEBUG on, Django shows its debug
pages for an unknown URL and a crash instead, to a browser on this machine only
(annotate.errors.LocalDebugOnly).
"""

import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse

from annotate import errors
from labeling_api.exceptions import (
    CODE_OF_STATUS,
    RETRY_AFTER_SECONDS,
    TOO_LARGE,
    database_unavailable_body,
    error_body,
    too_large_message,
)

API_PREFIX = "/api/"


def is_api(request: HttpRequest) -> bool:
    """Whether the request is for the API (the path after any script prefix)."""
    return request.path_info.startswith(API_PREFIX)


def _answer(status: int, detail: str) -> JsonResponse:
    return JsonResponse(error_body(detail, CODE_OF_STATUS[status]), status=status)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not is_api(request):
        return errors.page(request, 400)
    if isinstance(exception, TOO_LARGE):
        return _answer(413, too_large_message(exception))
    return JsonResponse(error_body("The request is malformed.", "bad_request"), status=400)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not is_api(request):
        return errors.page(request, 403)
    return _answer(403, "You do not have permission to perform this action.")


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not is_api(request):
        return errors.page(request, 404)
    return _answer(
        404, f"There is no API endpoint at this address; see {reverse('api:docs')} for the list."
    )


def server_error(request: HttpRequest) -> HttpResponse:
    if not is_api(request):
        return errors.server_error_page(request)
    # Django calls this inside its `except` block, so the exception is still at hand.
    if isinstance(sys.exc_info()[1], OperationalError | InterfaceError):
        response = JsonResponse(database_unavailable_body(), status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return _answer(500, "The server failed to answer this request; the error has been logged.")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    if not is_api(request):
        return errors.csrf_page(request)
    # The words of DRF's own answer (SessionAuthentication) to the same failure.
    return _answer(403, f"CSRF Failed: {reason}")
