from collections.abc import Callable

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from annotate import recent, selectors
from annotate.models import ProjectMember, User


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
    """A global admin (the role of User, not of a team): changing users' roles."""

    message = "Only admins may do this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return _granted_now(request, lambda user: user.is_project_admin)


class ReadOrAdmin(BasePermission):
    """Any signed-in user reads; only global admins write (creating a project)."""

    message = "Only admins may change this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or _granted_now(
            request, lambda user: user.is_project_admin
        )


# Teams (issue 19). The classes below let through whoever holds the role in some project,
# globally or as a member (a membership is read only when the global role falls short); the
# view then asks selectors.access_project (or access_image_for_reviewer, access_export) with
# the same need, which answers 404 for a project hidden from the caller and 403 for one where
# their role is lower. A caller with the role nowhere gets 403 here, the same for a missing,
# a private and a public project, so this first check leaks nothing either.


class IsTeamAdmin(BasePermission):
    """A global admin or an admin of some project; the view checks which."""

    message = "Only admins may do this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return _granted_now(
            request,
            lambda user: selectors.holds_role_somewhere(user=user, need=ProjectMember.Role.ADMIN),
        )


class IsTeamReviewer(BasePermission):
    """A global reviewer or admin, or a reviewer or admin of some project; the view checks
    which."""

    message = "Only reviewers and admins may do this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return _granted_now(
            request,
            lambda user: selectors.holds_role_somewhere(
                user=user, need=ProjectMember.Role.REVIEWER
            ),
        )


class ReadOrTeamAdmin(BasePermission):
    """Any signed-in user reads (what the view's access_project lets them see); global admins
    and admins of some project write, the view checking which."""

    message = "Only admins may change this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or IsTeamAdmin().has_permission(request, view)
