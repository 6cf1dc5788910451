"""Project teams (issue 19): who is a member of a project, with which role there.

Who may change a team is the faces' business (selectors.access_project with need=admin: global
admins and the project's own admins); these only keep the team consistent.
"""

from django.db import IntegrityError, transaction

from annotate.models import Project, ProjectMember, User
from annotate.services.errors import Conflict, InvalidInput, NotFound


def _role(role: str) -> str:
    if role not in ProjectMember.Role.values:
        raise InvalidInput(
            f"Unknown role {role!r}; use one of {', '.join(ProjectMember.Role.values)}.",
            field="role",
        )
    return role


def _user_named(*, user_id: int | None, username: str | None) -> User:
    """The user given by id or else by username (a field of the request: 400 when none)."""
    if user_id is not None:
        user = User.objects.filter(pk=user_id).first()
    elif username:
        user = User.objects.filter(username=username).first()
    else:
        raise InvalidInput("Name the user: `user` (an id) or `username`.", field="user")
    if user is None:
        raise InvalidInput(f"No user {user_id or username!r}.", field="user")
    return user


def member_add(
    *, project: Project, role: str, user_id: int | None = None, username: str | None = None
) -> ProjectMember:
    """Make the user (by id, or else by username) a member of `project` with `role`; Conflict
    when they already are one (a change of role is member_change's)."""
    role = _role(role)
    user = _user_named(user_id=user_id, username=username)
    if not user.is_active:
        raise InvalidInput(f"User {user.pk} is deactivated.", field="user")
    try:
        with transaction.atomic():
            return ProjectMember.objects.create(project=project, user=user, role=role)
    except IntegrityError:
        raise Conflict(
            f"{user.username} is already a member of this project; change their role instead.",
            field="user",
        ) from None


def member_get(*, project: Project, user_id: int) -> ProjectMember:
    member = (
        ProjectMember.objects.select_related("user")
        .filter(project=project, user_id=user_id)
        .first()
    )
    if member is None:
        raise NotFound(f"User {user_id} is not a member of this project.")
    return member


def member_change(*, project: Project, user_id: int, role: str) -> ProjectMember:
    """Give a member another role in `project`."""
    role = _role(role)
    member = member_get(project=project, user_id=user_id)
    if member.role != role:
        member.role = role
        member.save(update_fields=["role", "updated_at"])
    return member


def member_remove(*, project: Project, user_id: int) -> None:
    """Take a member off the team. Their leases already handed out run out as usual (within
    the project's lease_seconds); they get no new ones from a private project."""
    member_get(project=project, user_id=user_id).delete()
