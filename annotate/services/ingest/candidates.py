"""What flows through the image pipeline: candidates, the gold label of each, the result."""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from annotate.models import Label, Project
from annotate.services import imaging
from annotate.services.errors import InvalidInput


@dataclass
class UploadResult:
    created: list[int] = field(default_factory=list)
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    # Stored, but an earlier image of the project looks the same: {name, id, near_duplicate_of,
    # distance}.
    near_duplicates: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Candidate:
    """One file to ingest, or (with `problem`) one already refused while expanding."""

    name: str
    source: imaging.Source | None = None
    gold_label: Label | None = None
    problem: str | None = None


# Called with the number of files just finished; what it returns is not used.
Progress = Callable[[int], object]


class GoldRule:
    """Settles each file's gold label: one label for all, or the label folder of its path
    (`<wnid>/...` or `train/<wnid>/...`) with gold_from_folders."""

    def __init__(self, *, project: Project, gold_label: Label | None, from_folders: bool):
        self.gold_label = gold_label
        self.by_wnid = (
            {label.wnid: label for label in Label.objects.filter(project=project)}
            if from_folders
            else None
        )

    def __call__(self, path: str) -> Candidate:
        if self.by_wnid is None:
            return Candidate(name=path, gold_label=self.gold_label)
        folders = [part for part in PurePosixPath(path.replace("\\", "/")).parts[:-1] if part]
        if folders and folders[0] in ("train", "val"):
            folders = folders[1:]
        if not folders:
            return Candidate(name=path, problem="not inside a label folder (<wnid>/...)")
        label = self.by_wnid.get(folders[0])
        if label is None:
            return Candidate(
                name=path, problem=f"folder {folders[0][:70]!r} is not a label of this project"
            )
        return Candidate(name=path, gold_label=label)


def gold_check(project: Project, gold_label: Label | None, from_folders: bool) -> None:
    if gold_label is not None and gold_label.project_id != project.pk:
        raise InvalidInput("The gold label belongs to another project.", field="gold_label")
    if gold_label is not None and from_folders:
        raise InvalidInput(
            "Give either one gold label or gold labels from folders, not both.",
            field="gold_label",
        )
