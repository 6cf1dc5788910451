"""Reads of projects and their labels."""

import unicodedata
from collections import defaultdict
from typing import Any

from django.db.models import Count, F, QuerySet, Window
from django.db.models.functions import RowNumber

from annotate.converters import parse_id
from annotate.models import Decision, Image, Label, Project, ProjectMember, User
from annotate.models.projects import label_name_in
from annotate.selectors.access import visible_projects


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


# Images that may illustrate a class in the class guide: decided by the crowd or a reviewer as
# that label. Gold images are never among them (a volunteer who saw one as an example would
# know its answer when it comes as a check).
EXAMPLE_STATES = (Image.State.CONSENSUS, Image.State.REVIEWED)


def label_examples(*, project: Project, per_label: int = 3) -> dict[int, list[int]]:
    """{label id: ids of up to `per_label` of its decided images, oldest first}, in one query."""
    ranked = (
        Decision.objects.filter(
            image__project=project,
            image__state__in=EXAMPLE_STATES,
            image__is_gold=False,
            is_current=True,
            excluded=False,
            label__isnull=False,
        )
        .annotate(
            rank=Window(RowNumber(), partition_by=[F("label_id")], order_by=F("image_id").asc())
        )
        .filter(rank__lte=per_label)
        .order_by("label_id", "image_id")
        .values_list("label_id", "image_id")
    )
    examples: dict[int, list[int]] = defaultdict(list)
    for label_id, image_id in ranked:
        examples[label_id].append(image_id)
    return dict(examples)


def image_is_class_example(*, image: Image) -> bool:
    """Whether the image may be shown in the class guide (see EXAMPLE_STATES)."""
    return (
        image.state in EXAMPLE_STATES
        and not image.is_gold
        and Decision.objects.filter(
            image=image, is_current=True, excluded=False, label__isnull=False
        ).exists()
    )


def projects_for_user(*, user: User) -> QuerySet[Project]:
    """The projects `user` may see (selectors.access.visible_projects), with their labels."""
    return visible_projects(user=user).prefetch_related("labels").order_by("id")


def project_members(*, project: Project) -> QuerySet[ProjectMember]:
    """The project's team, each member with their user, in the order they joined."""
    return ProjectMember.objects.filter(project=project).select_related("user").order_by("id")


def project_with_labels(*, project_id: int) -> Project:
    """The project with its labels read in the same go, as its API answer shows them."""
    return Project.objects.prefetch_related("labels").get(pk=project_id)


def project_by_key(*, key: str) -> Project | None:
    """The project whose id (when `key` is ASCII digits) or else whose name is `key`."""
    project_id = parse_id(key)
    by_id = Project.objects.filter(pk=project_id).first() if project_id is not None else None
    return by_id or Project.objects.filter(name=key).first()


def project_labels(*, project: Project) -> QuerySet[Label]:
    """The project's labels in the order volunteers see them."""
    return Label.objects.filter(project=project)


def label_by_key(*, project: Project, key: str) -> Label | None:
    """The project's label whose id (when `key` is ASCII digits) or else whose wnid is `key`."""
    labels = project_labels(project=project)
    label_id = parse_id(key)
    by_id = labels.filter(pk=label_id).first() if label_id is not None else None
    return by_id or labels.filter(wnid=key).first()


_CATALOG_FIELDS = ("id", "wnid", "name", "gloss", "position", "synonyms", "names", "parent_wnid")


def label_catalog(*, project_id: int) -> list[dict[str, Any]]:
    """The project's labels as the API and the labeling page show them, in page order:
    {id, wnid, name, gloss, position, synonyms, names, parent: {wnid, name} or null}. The
    labels come once per page load (or GET .../labels/ with an ETag), never with each lease."""
    found = (
        Label.objects.filter(project_id=project_id)
        .order_by("position", "id")
        .values_list(*_CATALOG_FIELDS, "parent_name")
    )
    return [
        dict(zip(_CATALOG_FIELDS[:-1], row[:-2], strict=True))
        | {"parent": {"wnid": row[-2], "name": row[-1]} if row[-2] else None}
        for row in found
    ]


def labels_in_language(labels: list[dict[str, Any]], language: str | None) -> list[dict[str, Any]]:
    """label_catalog() rows, each with its `display_name`: the name in `language`."""
    return [
        label | {"display_name": label_name_in(label["name"], label["names"], language)}
        for label in labels
    ]


def search_key(text: str) -> str:
    """`text` folded for matching: compatibility forms unified (full-width letters), accents
    dropped, case folded. CJK text has no case or accents and stays as it is. The labeling
    page folds the same way (label_search.js, searchKey)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def labels_matching(labels: list[dict[str, Any]], query: str) -> list[dict[str, Any]]:
    """The labels (label_catalog() rows) whose name (in any language), synonyms, wnid or gloss
    contain every word of `query`, case- and accent-insensitively; in their order.

    Matched here rather than in SQL: a project has at most some thousands of labels, already
    read whole for the ETag, and this folding is the same on every database and in the page."""
    words = search_key(query).split()
    found = []
    for label in labels:
        haystack = search_key(
            " ".join(
                [label["name"], label["wnid"], label["gloss"], *label["synonyms"]]
                + list(label.get("names", {}).values())
            )
        )
        if all(word in haystack for word in words):
            found.append(label)
    return found
