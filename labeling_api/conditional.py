"""Answers a client may keep: an ETag from the body, and 304 when the client's copy is current."""

import hashlib
import json

from django.utils.cache import patch_cache_control
from django.utils.http import parse_etags, quote_etag
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response


def etag_of(data: object) -> str:
    """A strong ETag that changes whenever the JSON body would."""
    body = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return quote_etag(hashlib.sha256(body.encode()).hexdigest()[:32])


def conditional_response(request: Request, data: object) -> Response:
    """200 with `data`, or 304 with no body when If-None-Match names its ETag. The client must
    ask again each time (no-cache) but keeps the body: after a page load's first request a
    label list of any size costs a 304 until the labels change."""
    etag = etag_of(data)
    # Compared weakly (RFC 9110 13.1.2): a compressed answer carries the weak form, W/"...".
    known = {
        tag.removeprefix("W/") for tag in parse_etags(request.headers.get("If-None-Match", ""))
    }
    if etag in known or "*" in known:
        response = Response(status=status.HTTP_304_NOT_MODIFIED)
    else:
        response = Response(data)
    response["ETag"] = etag
    patch_cache_control(response, private=True, no_cache=True)
    return response
