"""What the management commands' arguments name, read through the selectors, or the
CommandError that says nothing has that name."""

from django.core.management.base import CommandError

from annotate import selectors
from annotate.models import Label, Project


def project_argument(key: str) -> Project:
    """The project whose id or name is `key`."""
    project = selectors.project_by_key(key=key)
    if project is None:
        raise CommandError(f"No project with id or name {key!r}.")
    return project


def label_argument(project: Project, key: str) -> Label:
    """The project's label whose id or wnid is `key`."""
    label = selectors.label_by_key(project=project, key=key)
    if label is None:
        raise CommandError(f"No label {key!r} in project {project.name!r}.")
    return label
