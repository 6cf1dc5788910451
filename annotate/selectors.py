"""Reads that deserve a name. No writes here."""

import json
import unicodedata
from collections import defaultdict
from collections.abc import Sequence

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from annotate import recent, rows
from annotate.models import (
    ActiveModel,
    AnnotatorStats,
    Assignment,
    Decision,
    Image,
    Label,
    ModelVersion,
    Project,
    User,
    Vote,
)
from annotate.services.errors import NotFound


def project_get(*, project_id: int, recent_ok: bool = False) -> Project:
    """The project, or a NotFound that every face turns into its own 404. (Every lease reads
    it, hence SQL text: see annotate.rows.)

    `recent_ok`: a copy read by this process up to READ_CACHE_SECONDS ago will do (see
    annotate.recent); for the lease, which reads only settings that rarely change."""
    project_columns = rows.columns(Project, "p")
    row = recent.get(("project", project_id)) if recent_ok else None
    if row is None:
        row = rows.fetch_one(
            f"SELECT {project_columns.sql} FROM annotate_project p WHERE p.id = %s", [project_id]
        )
        if row is None:
            raise NotFound(f"Project {project_id} does not exist.")
        recent.put(("project", project_id), row)
    return project_columns.build(row)


# --- the labels and the suggestion a volunteer sees -------------------------------------------
#
# The labels are read once per page load (the page, or GET /api/projects/{id}/labels/ with an
# ETag), never with each lease: at 1,000 labels they were 100 KB on every image. A lease
# answer carries only the image's suggestion, whose size does not grow with the label count.

SUGGESTION_TOP = 5  # the model's most probable labels offered first (keys 1-5 on the page)

# The active model's suggestion for an image where its project shows suggestions: the top
# label, its confidence, and the most probable labels (Suggestion.top). `{image}` is where the
# statement has the image's id; the parameter is the project's id.
_SUGGESTION = (
    " FROM annotate_suggestion s JOIN annotate_activemodel m ON m.version_id = s.model_version_id"
    " JOIN annotate_project p ON p.id = m.project_id AND p.show_suggestions"
    " WHERE s.image_id = {image} AND p.id = %s LIMIT 1"
)


def image_suggestion(*, project_id: int, image_id: int) -> dict | None:
    """The suggestion for an image as a lease answer shows it (see suggestion_of)."""
    row = rows.fetch_one(
        f"SELECT s.label_id, s.confidence, s.top{_SUGGESTION.format(image='%s')}",
        [image_id, project_id],
    )
    return suggestion_of(row)


def suggestion_json(*, image: str) -> str:
    """image_suggestion() as a subquery giving one JSON array (PostgreSQL), for a statement
    that has the image's id as the SQL expression `image`; its parameter is the project's id.
    The lease statement carries it: one round trip less per image served."""
    return (
        "(SELECT json_build_array(s.label_id, s.confidence, s.top)"
        f"{_SUGGESTION.format(image=image)})"
    )


def suggestion_of(row: Sequence | None) -> dict | None:
    """{label, confidence, top: [{label, probability}] (at most SUGGESTION_TOP)} from a row (or
    JSON array) of the statements above; None without a suggestion."""
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


_LABEL_COLUMNS = ("id", "wnid", "name", "gloss", "position", "synonyms", "parent_wnid")


def project_labels(*, project_id: int) -> list[dict]:
    """The project's labels as the API and the labeling page show them, in page order:
    {id, wnid, name, gloss, position, synonyms, parent: {wnid, name} or null}."""
    found = (
        Label.objects.filter(project_id=project_id)
        .order_by("position", "id")
        .values_list(*_LABEL_COLUMNS, "parent_name")
    )
    return [
        dict(zip(_LABEL_COLUMNS[:-1], row[:-2], strict=True))
        | {"parent": {"wnid": row[-2], "name": row[-1]} if row[-2] else None}
        for row in found
    ]


def search_key(text: str) -> str:
    """`text` folded for matching: compatibility forms unified (full-width letters), accents
    dropped, case folded. CJK text has no case or accents and stays as it is. The labeling
    page folds the same way (label.js, searchKey)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def labels_matching(labels: list[dict], query: str) -> list[dict]:
    """The labels (project_labels() rows) whose name, synonyms, wnid or gloss contain every
    word of `query`, case- and accent-insensitively; in their order.

    Matched here rather than in SQL: a project has at most some thousands of labels, already
    read whole for the ETag, and this folding is the same on every database and in the page."""
    words = search_key(query).split()
    found = []
    for label in labels:
        haystack = search_key(
            " ".join([label["name"], label["wnid"], label["gloss"], *label["synonyms"]])
        )
        if all(word in haystack for word in words):
            found.append(label)
    return found


def project_progress(*, project_ids: list[int]) -> dict[int, dict[str, int]]:
    """Image counts per state for each project, in one grouped query."""
    progress: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(Image.State.values, 0))
    rows = (
        Image.objects.filter(project_id__in=project_ids)
        .values("project_id", "state")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in rows:
        progress[row["project_id"]][row["state"]] = row["n"]
    result = {}
    for project_id in project_ids:
        counts = dict(progress[project_id])
        counts["total"] = sum(counts.values())
        result[project_id] = counts
    return result


def projects_for_user(*, user: User) -> QuerySet[Project]:
    return Project.objects.prefetch_related("labels").order_by("id")


def images_for_review(*, project: Project, state: str | None = None) -> QuerySet[Image]:
    images = Image.objects.filter(project=project).order_by("id")
    if state:
        images = images.filter(state=state)
    return images


def images_awaiting_others(*, project: Project, user: User) -> QuerySet[Image]:
    """Open images `user` has not seen whose every slot is leased to someone else right now:
    work may come back to this user when those leases end in a vote-less way or need more."""
    already_seen = Assignment.objects.filter(user=user, image=OuterRef("pk"))
    return Image.objects.filter(project=project, state=Image.State.OPEN).exclude(
        Exists(already_seen)
    )


def project_annotators(*, project: Project) -> QuerySet[AnnotatorStats]:
    """The project's volunteers with their record, most active first."""
    return (
        AnnotatorStats.objects.filter(project=project)
        .select_related("user")
        .order_by("-votes", "user_id")
    )


def user_stats(*, user: User) -> dict:
    """A user's own figures: votes, agreement with decisions, rank among volunteers."""
    current = Decision.objects.filter(image=OuterRef("image"), is_current=True)
    decided = Vote.objects.filter(user=user).filter(Exists(current))
    agreed = decided.filter(
        Exists(current.filter(label=OuterRef("label"), excluded=False))
        | Q(label__isnull=True, image__state=Image.State.EXCLUDED)
    )
    decided_count = decided.count()
    agreement = agreed.count() / decided_count if decided_count else None
    votes = User.objects.filter(pk=user.pk).values_list("votes_count", flat=True).first() or 0
    rank = User.objects.filter(votes_count__gt=votes).count() + 1 if votes else None
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    today = Vote.objects.filter(user=user, created_at__gte=midnight).count()
    return {
        "votes": votes,
        "today": today,
        "decided_votes": decided_count,
        "agreement": agreement,
        "rank": rank,
    }


def leaderboard(*, viewer: User, limit: int = 10) -> list[dict]:
    """The most active volunteers; names only of those who opted in (and the viewer's own)."""
    rows = User.objects.filter(votes_count__gt=0).order_by("-votes_count", "id")[:limit]
    return [
        {
            "rank": index,
            "name": user.username
            if user.show_on_leaderboard or user.pk == viewer.pk
            else "anonymous volunteer",
            "votes": user.votes_count,
            "me": user.pk == viewer.pk,
        }
        for index, user in enumerate(rows, start=1)
    ]


def project_class_counts(*, project: Project) -> list[tuple[str, int]]:
    """Decided images per label (and excluded), most first."""
    rows = (
        Decision.objects.filter(image__project=project, is_current=True)
        .values("label__wnid", "label__name")
        .annotate(n=Count("id"))
        .order_by("-n")
    )
    return [
        (f"{row['label__name']}" if row["label__wnid"] else "excluded", row["n"]) for row in rows
    ]


def project_votes_per_day(*, project: Project, days: int = 30) -> list[tuple[str, int]]:
    since = timezone.now() - timezone.timedelta(days=days)
    rows = (
        Vote.objects.filter(image__project=project, created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(n=Count("id"))
        .order_by("day")
    )
    return [(row["day"].isoformat(), row["n"]) for row in rows]


def project_active_volunteers(*, project: Project, days: int) -> int:
    since = timezone.now() - timezone.timedelta(days=days)
    return (
        Vote.objects.filter(image__project=project, created_at__gte=since)
        .values("user_id")
        .distinct()
        .count()
    )


def project_model_versions(*, project: Project) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(project=project).order_by("id")


def project_active_model_id(*, project: Project) -> int | None:
    return ActiveModel.objects.filter(project=project).values_list("version_id", flat=True).first()


def user_for_token(*, key: str) -> User | None:
    """The owner of an API token, in one statement (every API call of a volunteer reads it),
    or none when this process read both up to READ_CACHE_SECONDS ago (see annotate.recent)."""
    user_columns = rows.columns(User, "u")
    owner_id = recent.get(("token", key))
    row = None if owner_id is None else recent.get(("user", owner_id))
    if row is None:
        row = rows.fetch_one(
            f"SELECT {user_columns.sql} FROM authtoken_token t JOIN annotate_user u ON u.id = t.user_id"
            " WHERE t.key = %s",
            [key],
        )
        if row is None:
            return None
        user = user_columns.build(row)
        recent.put(("token", key), user.pk)
        recent.put(("user", user.pk), row)
        return user
    return user_columns.build(row)
