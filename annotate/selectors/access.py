"""Permission-checked getters: the only way a face fetches an object for a user.

Each takes the user and an id and returns the object the user may see, or raises NotFound
(no such object) or PermissionDenied (it exists but is not the user's to see), as the
services' errors that every face maps to its own 404 and 403. Role rules that need no object
(an admin-only endpoint) stay with the faces' permission classes, which run first; the
getters check them again so that none of them hands an object to the wrong user when called
from elsewhere.
"""

from annotate.models import Assignment, Export, Image, Project, User
from annotate.selectors.exports import export_get
from annotate.selectors.serving import project_get
from annotate.services.errors import NotFound, PermissionDenied

# The same sentences as labeling_api.permissions, so a refusal reads the same from both.
ADMINS_ONLY = "Only admins may do this."
REVIEWERS_ONLY = "Only reviewers and admins may do this."


def access_project(*, user: User, project_id: int, recent_ok: bool = False) -> Project:
    """A project: every signed-in user sees every project and its labels (what they may do
    in it is their role's business). `recent_ok` as for project_get (the lease)."""
    return project_get(project_id=project_id, recent_ok=recent_ok)


def access_image_file(*, user: User, image_id: int) -> Image:
    """An image whose file `user` may see: a volunteer only an image leased to them, shown
    to them in a verification grid (its candidates or the label's examples) or a decided one
    the class guide may show as an example; a reviewer or admin any."""
    from annotate.selectors.projects import image_is_class_example
    from annotate.selectors.verification import image_visible_in_verification

    image = Image.objects.filter(pk=image_id).first()
    if image is None:
        raise NotFound(f"Image {image_id} does not exist.")
    if (
        not user.is_reviewer
        and not Assignment.objects.filter(image=image, user=user).exists()
        and not image_visible_in_verification(user=user, image_id=image.pk)
        and not image_is_class_example(image=image)
    ):
        raise PermissionDenied("This image is not assigned to you.")
    return image


def access_image_for_reviewer(*, user: User, image_id: int) -> Image:
    """An image with everything about it (votes, decisions, history): reviewers and admins."""
    if not user.is_reviewer:
        raise PermissionDenied(REVIEWERS_ONLY)
    image = Image.objects.filter(pk=image_id).first()
    if image is None:
        raise NotFound(f"Image {image_id} does not exist.")
    return image


def access_user_for_admin(*, user: User, user_id: int) -> User:
    """Another user's account, to change their role: admins."""
    if not user.is_project_admin:
        raise PermissionDenied(ADMINS_ONLY)
    target = User.objects.filter(pk=user_id).first()
    if target is None:
        raise NotFound(f"User {user_id} does not exist.")
    return target


def access_export(*, user: User, export_id: int) -> Export:
    """An export, its state and its files: admins."""
    if not user.is_project_admin:
        raise PermissionDenied(ADMINS_ONLY)
    return export_get(export_id=export_id)
