"""Reads about what ingest stored: the near duplicates an admin should look at."""

from django.db.models import QuerySet

from annotate.models import Image, Project


def near_duplicates_for_review(*, project: Project) -> QuerySet[Image]:
    """Stored images that look like an earlier image of the project, newest first."""
    return (
        Image.objects.filter(project=project, near_duplicate_of__isnull=False)
        .select_related("near_duplicate_of")
        .order_by("-id")
    )
