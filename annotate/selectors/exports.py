"""Reads of dataset exports."""

from django.db.models import Count, QuerySet

from annotate.models import Decision, Export, Image, Project
from annotate.services.errors import NotFound


def export_get(*, export_id: int) -> Export:
    """The export with its project, or NotFound."""
    export = Export.objects.select_related("project").filter(pk=export_id).first()
    if export is None:
        raise NotFound(f"Export {export_id} does not exist.")
    return export


def project_exports(*, project: Project) -> QuerySet[Export]:
    """The project's exports, newest first."""
    return Export.objects.filter(project=project).order_by("-id")


# What an export may hold (annotate.services.export.split): images decided by the crowd or a
# reviewer, with a current, non-excluding decision that names a label.
_EXPORTED_STATES = (Image.State.CONSENSUS, Image.State.REVIEWED)


def export_preview(*, project: Project, include_gold: bool, min_per_class: int) -> dict:
    """How many images and classes an export with these options would hold right now, and
    what it would leave out (gold images, classes under `min_per_class`), so that the export
    page says so before the export starts."""
    decisions = Decision.objects.filter(
        image__project=project,
        image__state__in=_EXPORTED_STATES,
        is_current=True,
        excluded=False,
        label__isnull=False,
    )
    per_class_gold = dict.fromkeys(("gold", "other"), 0)
    sizes: dict[int, int] = {}
    for label_id, is_gold, n in (
        decisions.values_list("label_id", "image__is_gold").annotate(n=Count("id")).order_by()
    ):
        per_class_gold["gold" if is_gold else "other"] += n
        if include_gold or not is_gold:
            sizes[label_id] = sizes.get(label_id, 0) + n
    kept = {label_id: n for label_id, n in sizes.items() if n >= min_per_class}
    return {
        "images": sum(kept.values()),
        "classes": len(kept),
        "left_out": {
            "gold": 0 if include_gold else per_class_gold["gold"],
            "small_classes": len(sizes) - len(kept),
            "small_class_images": sum(sizes.values()) - sum(kept.values()),
        },
    }
