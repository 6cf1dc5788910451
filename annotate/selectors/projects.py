"""Reads of projects and their labels."""

from collections import defaultdict

from django.db.models import Count, QuerySet

from annotate.models import Image, Label, Project, User


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


def project_with_labels(*, project_id: int) -> Project:
    """The project with its labels read in the same go, as its API answer shows them."""
    return Project.objects.prefetch_related("labels").get(pk=project_id)


def project_by_key(*, key: str) -> Project | None:
    """The project whose id (when `key` is all digits) or else whose name is `key`."""
    by_id = Project.objects.filter(pk=int(key)).first() if key.isdigit() else None
    return by_id or Project.objects.filter(name=key).first()


def project_labels(*, project: Project) -> QuerySet[Label]:
    """The project's labels in the order volunteers see them."""
    return Label.objects.filter(project=project)


def label_by_key(*, project: Project, key: str) -> Label | None:
    """The project's label whose id (when `key` is all digits) or else whose wnid is `key`."""
    labels = project_labels(project=project)
    by_id = labels.filter(pk=int(key)).first() if key.isdigit() else None
    return by_id or labels.filter(wnid=key).first()
