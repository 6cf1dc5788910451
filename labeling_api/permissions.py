from collections.abc import Callable

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from annotate import recent
from annotate.models import User


def _granted_now(request: Request, allows: Callable[[User], bool]) -> bool:
    """Whether `allows` admits the caller, asking the database again before refusing: a
    process may hold the caller's row from up to READ_CACHE_SECONDS ago (annotate.recent), and a
    promotion made since must not be answered with a 403 (issue 19). The fresh row replaces the
    remembered one, so the next request is admitted without another read."""
    user = request.user
    if not (user and user.is_authenticated):
        return False
    if allows(user):
        return True
    recent.forget(("user", user.pk))
    fresh = User.objects.filter(pk=user.pk, is_active=True).first()
    if fresh is None:
        return False
    request.user = fresh
    return allows(fresh)


class IsProjectAdmin(BasePermission):
    message = "Only admins may do this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return _granted_now(request, lambda user: user.is_project_admin)


class IsReviewer(BasePermission):
    message = "Only reviewers and admins may do this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return _granted_now(request, lambda user: user.is_reviewer)


class ReadOrAdmin(BasePermission):
    """Any signed-in user reads; only admins write."""

    message = "Only admins may change this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or _granted_now(
            request, lambda user: user.is_project_admin
        )
