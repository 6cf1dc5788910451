"""Reads of dataset exports."""

from django.db.models import QuerySet

from annotate.models import Export, Project
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
