"""The size limit of API requests, checked on the Content-Length before any of the body is read.

Django applies DATA_UPLOAD_MAX_MEMORY_SIZE to `request.body` and to forms, but DRF reads a JSON
body from the stream itself, so without this a JSON body of any size would be read into memory.
Multipart bodies (uploads) may be up to UPLOAD_MAX_REQUEST_BYTES, as the upload endpoint says.
A body without a Content-Length is never read by DRF (it takes it as empty).
"""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from annotate.services import ingest
from labeling_api.error_handlers import is_api
from labeling_api.exceptions import CODE_OF_STATUS, error_body


class ApiRequestSizeLimit:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        length = request.META.get("CONTENT_LENGTH")
        if length and is_api(request):
            refusal = self._refusal(request, length)
            if refusal is not None:
                return JsonResponse(error_body(refusal, CODE_OF_STATUS[413]), status=413)
        return self.get_response(request)

    @staticmethod
    def _refusal(request: HttpRequest, length: str) -> str | None:
        """Why the body is too large, or None."""
        try:
            size = int(length)
        except ValueError:
            return None  # Django and DRF take it as empty
        if request.META.get("CONTENT_TYPE", "").startswith("multipart/"):
            try:
                ingest.upload_size_check(content_length=size)
            except ingest.UploadTooLarge as error:
                return error.message
            return None
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and size > limit:
            return f"The request's body is {size} bytes; it may be at most {limit} bytes."
        return None
