"""The client's address as this deployment can trust it.

Behind TRUSTED_PROXY_COUNT proxies (bin/proxy's nginx is one), each proxy appends the address
it saw to X-Forwarded-For, so only the last TRUSTED_PROXY_COUNT entries were written by proxies
of ours; whatever comes before them the client wrote itself and is ignored. With no proxy (0)
the header is ignored altogether and the socket's address counts. DRF's throttles read the same
setting (REST_FRAMEWORK["NUM_PROXIES"]), so every limit keys on this one address.
"""

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str:
    remote = str(request.META.get("REMOTE_ADDR", ""))
    proxies = int(settings.TRUSTED_PROXY_COUNT)
    if proxies <= 0:
        return remote
    forwarded = [
        part.strip()
        for part in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")
        if part.strip()
    ]
    if not forwarded:
        return remote
    return forwarded[-min(proxies, len(forwarded))]
