"""Permission-checked getters: the only way a face fetches an object for a user.

Each takes the user and an id and returns the object the user may see, or raises NotFound
(no such object) or PermissionDenied (it exists but is not the user's to see), as the
services' errors that every face maps to its own 404 and 403. Role rules that need no object
(an admin-only endpoint) stay with the faces' permission classes, which run first; the
getters check them again so that none of them hands an object to the wrong user when called
from elsewhere.

Teams (issue 19). What a user may do in a project is the higher of two roles:
- their membership's role in that project (ProjectMember: volunteer, reviewer or admin);
- their global role (User.role), but only on a public project.
A global admin (or superuser) is an admin of every project, private ones included. So a global
reviewer reviews every public project and no private one they are not a member of, and a
member's role counts on their project only. A private project does not exist for a user with
no role in it: every getter answers NotFound (404, as for a missing project, so its existence
does not leak), where a visible project the user lacks the role for answers PermissionDenied.
"""

from django.db.models import Exists, OuterRef, Q, QuerySet

from annotate.models import Assignment, Export, Image, Project, ProjectMember, User
from annotate.selectors.exports import export_get
from annotate.selectors.serving import project_get
from annotate.services.errors import NotFound, PermissionDenied

# The same sentences as labeling_api.permissions, so a refusal reads the same from both.
ADMINS_ONLY = "Only admins may do this."
PROJECT_ADMINS_ONLY = "Only admins of this project may do this."
PROJECT_REVIEWERS_ONLY = "Only reviewers and admins of this project may do this."

Role = ProjectMember.Role
_RANK = {Role.VOLUNTEER: 1, Role.REVIEWER: 2, Role.ADMIN: 3}


def _higher(first: str | None, second: str | None) -> str | None:
    if first is None or second is None:
        return first or second
    return first if _RANK[Role(first)] >= _RANK[Role(second)] else second


def global_project_role(*, user: User, project: Project) -> str | None:
    """The role `user`'s global role alone gives them in `project` (no query): admin for a
    global admin, their role on a public project, none on a private one."""
    if user.is_project_admin:
        return Role.ADMIN
    if project.private:
        return None
    return Role.REVIEWER if user.is_reviewer else Role.VOLUNTEER


def combined_role(*, user: User, project: Project, member: str | None) -> str | None:
    """The higher of `user`'s global role in `project` and `member`, their membership role
    there as read already (the project list reads all of a user's memberships at once)."""
    return _higher(global_project_role(user=user, project=project), member)


def member_role(*, user: User, project_id: int) -> str | None:
    """`user`'s membership role in the project, or None (one query by the unique key)."""
    role: str | None = (
        ProjectMember.objects.filter(user_id=user.pk, project_id=project_id)
        .values_list("role", flat=True)
        .first()
    )
    return role


def project_role(*, user: User, project: Project, need: str = Role.VOLUNTEER) -> str | None:
    """The role `user` has in `project` (see the module's note), None when they may not see it.
    The membership is read only when the global role does not already grant `need`: a
    volunteer's lease on a public project reads no more than before teams."""
    role = global_project_role(user=user, project=project)
    if role is not None and _RANK[Role(role)] >= _RANK[Role(need)]:
        return role
    return combined_role(
        user=user, project=project, member=member_role(user=user, project_id=project.pk)
    )


def project_role_grants(*, user: User, project: Project, need: str) -> bool:
    role = project_role(user=user, project=project, need=need)
    return role is not None and _RANK[Role(role)] >= _RANK[Role(need)]


def _refuse(*, project: Project, role: str | None, need: str) -> None:
    """NotFound when `role` is none (the project is hidden), PermissionDenied below `need`."""
    if role is None:
        raise NotFound(f"Project {project.pk} does not exist.")
    if _RANK[Role(role)] < _RANK[Role(need)]:
        raise PermissionDenied(
            PROJECT_ADMINS_ONLY if need == Role.ADMIN else PROJECT_REVIEWERS_ONLY
        )


def access_project(
    *, user: User, project_id: int, recent_ok: bool = False, need: str = Role.VOLUNTEER
) -> Project:
    """A project `user` may see, in which they have at least the role `need` (volunteer: any
    role; reviewer; admin). NotFound for a missing or hidden project, PermissionDenied for a
    visible one where their role is lower. `recent_ok` as for project_get (the lease: its
    project's `private` flag may then be up to READ_CACHE_SECONDS old in other processes)."""
    project = project_get(project_id=project_id, recent_ok=recent_ok)
    _refuse(project=project, role=project_role(user=user, project=project, need=need), need=need)
    return project


def visible_projects(*, user: User) -> QuerySet[Project]:
    """The projects `user` may see: every one for a global admin, else the public ones and
    those they are a member of."""
    projects = Project.objects.all()
    if user.is_project_admin:
        return projects
    member = ProjectMember.objects.filter(project=OuterRef("pk"), user_id=user.pk)
    return projects.filter(Q(private=False) | Exists(member))


def member_roles(*, user: User) -> dict[int, str]:
    """{project id: role} of `user`'s memberships, in one query (the project list's links)."""
    return dict(ProjectMember.objects.filter(user_id=user.pk).values_list("project_id", "role"))


def holds_role_somewhere(*, user: User, need: str) -> bool:
    """Whether `user` has at least `need` in some project, globally or as a member: what the
    API's permission classes let through before the view checks the project itself."""
    if need == Role.ADMIN and user.is_project_admin:
        return True
    if need == Role.REVIEWER and user.is_reviewer:
        return True
    if need == Role.VOLUNTEER:
        return True
    wanted = [role for role in Role.values if _RANK[Role(role)] >= _RANK[Role(need)]]
    return ProjectMember.objects.filter(user_id=user.pk, role__in=wanted).exists()


def _image_project(image: Image) -> Project:
    """The image's project as the lease keeps it (annotate.recent): role checks read only its
    `private` flag."""
    return project_get(project_id=image.project_id, recent_ok=True)


def access_image_file(*, user: User, image_id: int) -> Image:
    """An image whose file `user` may see: one leased to them; for a reviewer or admin of its
    project any; for others one shown to them in a verification grid (its candidates or the
    label's examples) or a decided one the class guide may show as an example. An image of a
    project hidden from `user` that they were never leased is NotFound."""
    from annotate.selectors.projects import image_is_class_example
    from annotate.selectors.verification import image_visible_in_verification

    image = Image.objects.filter(pk=image_id).first()
    if image is None:
        raise NotFound(f"Image {image_id} does not exist.")
    # The volunteer's own lease first: the labeling page's case, read as before teams.
    if Assignment.objects.filter(image=image, user=user).exists():
        return image
    role = project_role(user=user, project=_image_project(image), need=Role.REVIEWER)
    if role is None:
        raise NotFound(f"Image {image_id} does not exist.")
    if (
        role == Role.VOLUNTEER
        and not image_visible_in_verification(user=user, image_id=image.pk)
        and not image_is_class_example(image=image)
    ):
        raise PermissionDenied("This image is not assigned to you.")
    return image


def _image_for(*, user: User, image_id: int, need: Role) -> Image:
    """The image, for a caller holding `need` (or more) in its project; NotFound also for an
    image of a project hidden from them."""
    image = Image.objects.filter(pk=image_id).first()
    if image is None:
        raise NotFound(f"Image {image_id} does not exist.")
    role = project_role(user=user, project=_image_project(image), need=need)
    if role is None:
        raise NotFound(f"Image {image_id} does not exist.")
    if _RANK[Role(role)] < _RANK[need]:
        raise PermissionDenied(
            PROJECT_ADMINS_ONLY if need == Role.ADMIN else PROJECT_REVIEWERS_ONLY
        )
    return image


def access_image_for_reviewer(*, user: User, image_id: int) -> Image:
    """An image with everything about it (votes, decisions, history): reviewers and admins
    of its project. NotFound also for an image of a project hidden from `user`."""
    return _image_for(user=user, image_id=image_id, need=Role.REVIEWER)


def access_image_original(*, user: User, image_id: int) -> Image:
    """An image's original upload, metadata and all: admins of its project only (volunteers
    and reviewers see the display copy). NotFound also for an image of a hidden project."""
    return _image_for(user=user, image_id=image_id, need=Role.ADMIN)


def access_user_for_admin(*, user: User, user_id: int) -> User:
    """Another user's account, to change their role: admins."""
    if not user.is_project_admin:
        raise PermissionDenied(ADMINS_ONLY)
    target = User.objects.filter(pk=user_id).first()
    if target is None:
        raise NotFound(f"User {user_id} does not exist.")
    return target


def access_export(*, user: User, export_id: int) -> Export:
    """An export, its state and its files: admins of its project. NotFound also for an export
    of a project hidden from `user`."""
    export = export_get(export_id=export_id)
    role = project_role(user=user, project=export.project, need=Role.ADMIN)
    if role is None:
        raise NotFound(f"Export {export_id} does not exist.")
    if role != Role.ADMIN:
        raise PermissionDenied(PROJECT_ADMINS_ONLY)
    return export
