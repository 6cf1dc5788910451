"""Reads of the volunteer loop: the project a lease reads, the labels and suggestion every
lease answer carries, the owner of an API token. Each runs on every request of a volunteer,
hence SQL text (see annotate.rows) and copies read recently (see annotate.recent)."""

from django.db.models import Exists, OuterRef, QuerySet

from annotate import recent, rows
from annotate.models import Assignment, Image, Project, User
from annotate.rows import lookups as lookup_sql
from annotate.rows.lookups import LABEL_FIELDS
from annotate.services.errors import NotFound


def project_get(*, project_id: int, recent_ok: bool = False) -> Project:
    """The project, or a NotFound that every face turns into its own 404. (Every lease reads
    it, hence SQL text: see annotate.rows.)

    `recent_ok`: a copy read by this process up to READ_CACHE_SECONDS ago will do (see
    annotate.recent); for the lease, which reads only settings that rarely change."""
    project_columns = rows.columns(Project, "p")
    row = recent.get(("project", project_id)) if recent_ok else None
    if row is None:
        row = rows.fetch_one(lookup_sql.project(), [project_id])
        if row is None:
            raise NotFound(f"Project {project_id} does not exist.")
        recent.put(("project", project_id), row)
    return project_columns.build(row)


def labels_and_suggestion(
    *, project_id: int, image_id: int | None
) -> tuple[list[dict], dict | None]:
    """The project's labels as the volunteer sees them, in their order, and the active model's
    suggestion for the image ({label, confidence}) where the project shows suggestions.

    Both in one statement, as every lease answer needs them."""
    found = rows.fetch_all(lookup_sql.labels_and_suggestion(), [image_id, project_id])
    return labels_and_suggestion_of(found)


def labels_and_suggestion_of(found: list) -> tuple[list[dict], dict | None]:
    """The labels and the suggestion from the rows of labels_and_suggestion() or the JSON
    arrays of the lease's statement (annotate.rows.lookups): LABEL_FIELDS, then the suggested
    label's confidence."""
    labels = [dict(zip(LABEL_FIELDS, row[:-1], strict=True)) for row in found]
    suggestion = next(
        ({"label": row[0], "confidence": row[-1]} for row in found if row[-1] is not None), None
    )
    return labels, suggestion


def images_awaiting_others(*, project: Project, user: User) -> QuerySet[Image]:
    """Open images `user` has not seen whose every slot is leased to someone else right now:
    work may come back to this user when those leases end in a vote-less way or need more."""
    already_seen = Assignment.objects.filter(user=user, image=OuterRef("pk"))
    return Image.objects.filter(project=project, state=Image.State.OPEN).exclude(
        Exists(already_seen)
    )


def user_for_token(*, key: str) -> User | None:
    """The owner of an API token, in one statement (every API call of a volunteer reads it),
    or none when this process read both up to READ_CACHE_SECONDS ago (see annotate.recent)."""
    user_columns = rows.columns(User, "u")
    owner_id = recent.get(("token", key))
    row = None if owner_id is None else recent.get(("user", owner_id))
    if row is None:
        row = rows.fetch_one(lookup_sql.token_owner(), [key])
        if row is None:
            return None
        user = user_columns.build(row)
        recent.put(("token", key), user.pk)
        recent.put(("user", user.pk), row)
        return user
    return user_columns.build(row)
