"""Reads of the volunteer loop: the project a lease reads, the suggestion every
lease answer carries, the owner of an API token. Each runs on every request of a volunteer,
hence SQL text (see annotate.rows) and copies read recently (see annotate.recent)."""

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, QuerySet
from rest_framework.authtoken.models import Token

from annotate import recent, rows
from annotate.models import Assignment, Image, Project, User
from annotate.rows import lookups as lookup_sql
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


SUGGESTION_TOP = 5  # the model's most probable labels offered first (keys 1-5 on the page)


def image_suggestion(*, project_id: int, image_id: int) -> dict[str, Any] | None:
    """The suggestion for an image as a lease answer shows it (see suggestion_of); the lease
    statement reads it with the image on PostgreSQL (annotate.rows.lease)."""
    return suggestion_of(rows.fetch_one(lookup_sql.image_suggestion(), [image_id, project_id]))


def suggestion_of(row: Sequence[Any] | None) -> dict[str, Any] | None:
    """{label, confidence, top: [{label, probability}] (at most SUGGESTION_TOP)} from a row (or
    JSON array) of lookup_sql.image_suggestion(); None without a suggestion."""
    if row is None:
        return None
    label_id, confidence, top = row
    if isinstance(top, str):  # SQLite gives the JSON column as text
        top = json.loads(top)
    return {
        "label": label_id,
        "confidence": confidence,
        "top": [
            {"label": item["label"], "probability": item["probability"]}
            for item in (top or [])[:SUGGESTION_TOP]
        ],
    }


def images_awaiting_others(*, project: Project, user: User) -> QuerySet[Image]:
    """Open images `user` has not seen whose every slot is leased to someone else right now:
    work may come back to this user when those leases end in a vote-less way or need more."""
    already_seen = Assignment.objects.filter(user=user, image=OuterRef("pk"))
    return Image.objects.filter(project=project, state=Image.State.OPEN).exclude(
        Exists(already_seen)
    )


def user_for_token(*, key: str) -> User | None:
    """The owner of an API token, in one statement (every API call of a volunteer reads it).
    With CACHE_TOKEN_OWNERS, none when this process read both up to READ_CACHE_SECONDS ago
    (annotate.recent); by default every request reads it, so that a demotion, deactivation or
    deleted token applies to the next request in every process."""
    user_columns = rows.columns(User, "u")
    if not settings.CACHE_TOKEN_OWNERS:
        row = rows.fetch_one(lookup_sql.token_owner(), [key])
        return None if row is None else user_columns.build(row)
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


def token_created(*, key: str) -> datetime | None:
    """When the API token `key` was made (kept by the process like its owner: it never
    changes), or None when there is no such token."""
    created = recent.get(("token-created", key))
    if created is None:
        created = Token.objects.filter(key=key).values_list("created", flat=True).first()
        recent.put(("token-created", key), created)
    return created
