"""The error pages people see (400, 403, 404, 500 and a refused CSRF token): styled like every
other page, with the header's navigation, in the visitor's language. The API keeps its JSON
errors (labeling_api.error_handlers picks one or the other by path).

`LocalDebugOnly` keeps Django's debug pages, with their settings and URL patterns, for a
browser on the machine that runs the server: with DEBUG on (`make run`), a request from any
other address gets the styled page instead.
"""

import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from django.utils.translation import gettext as _

from labeling_api.client_address import client_address

logger = logging.getLogger(__name__)

# Statuses whose debug pages (technical_404, technical_500, a refused Host) must stay local.
DEBUG_PAGE_STATUSES = (400, 403, 404, 500)
# Marks a response as one of ours, so LocalDebugOnly leaves it as it is.
STYLED = "styled_error_page"


def _words(status: int) -> tuple[str, str]:
    """The page's heading and its sentence, in the active language."""
    if status == 400:
        return _("Bad request"), _("The request could not be understood. Go back and try again.")
    if status == 403:
        return _("Not allowed"), _("Your account may not open this page.")
    if status == 404:
        return _("Page not found"), _("There is nothing at this address.")
    return (
        _("Something went wrong"),
        _("The server failed to answer; the error has been logged. Try again in a moment."),
    )


def page(request: HttpRequest, status: int, **context: Any) -> HttpResponse:
    """The styled page for `status`; `context` adds to (or replaces) what the page shows."""
    heading, sentence = _words(status)
    context = {"status": status, "heading": heading, "sentence": sentence} | context
    template = loader.get_template(f"{status}.html")
    response = HttpResponse(template.render(context, request), status=status)
    setattr(response, STYLED, True)
    return response


def csrf_page(request: HttpRequest) -> HttpResponse:
    """A form sent with a missing or stale CSRF token (an old tab, cookies blocked)."""
    template = loader.get_template("403_csrf.html")
    response = HttpResponse(template.render({"status": 403}, request), status=403)
    setattr(response, STYLED, True)
    return response


def server_error_page(request: HttpRequest) -> HttpResponse:
    """The 500 page. Its header shows the sign-in links only: reading the signed-in user could
    fail again (the database may be what failed)."""
    try:
        return page(request, 500, user=AnonymousUser())
    except Exception:  # the template itself failed: still an answer, never a second crash
        logger.exception("The 500 page could not be rendered")
        return HttpResponse(
            "Something went wrong.", status=500, content_type="text/plain; charset=utf-8"
        )


def is_local(request: HttpRequest) -> bool:
    """Whether the request comes from this machine (a loopback address). Behind bin/proxy the
    socket is always loopback: the address that counts is the one the trusted proxy passed."""
    try:
        return ipaddress.ip_address(client_address(request)).is_loopback
    except ValueError:
        return False


def _host_refused(request: HttpRequest) -> bool:
    """Whether the request names a host not in ALLOWED_HOSTS. Such a request may come from this
    machine's browser on behalf of another site (DNS rebinding), so it never gets the debug
    page, which lists the settings."""
    try:
        request.get_host()
    except DisallowedHost:
        return True
    return False


class LocalDebugOnly:
    """With DEBUG on, a debug page (Django's technical 404 and 500 pages, a refused Host
    header's 400 with every setting) is swapped for the styled page when the browser is not on
    this machine, and always for a refused Host header; under /api/ for the API's JSON error.
    Near the top of MIDDLEWARE, so that it also sees what the ones after it refused (a bad
    Host). With DEBUG off it does nothing. Behind a proxy on this machine every browser looks
    local: DEBUG must then stay off."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            not settings.DEBUG
            or response.status_code not in DEBUG_PAGE_STATUSES
            or getattr(response, STYLED, False)
            or response.get("Content-Type", "").startswith("application/json")
            or (is_local(request) and not _host_refused(request))
        ):
            return response
        if request.path_info.startswith("/api/"):
            from labeling_api.exceptions import CODE_OF_STATUS, error_body

            status = response.status_code
            return JsonResponse(
                error_body(_words(status)[0], CODE_OF_STATUS[status]), status=status
            )
        if response.status_code == 500:
            return server_error_page(request)
        return page(request, response.status_code)
