"""The demo's verify project (issue 15): shape images in a folder per candidate wnid, as a
search for each shape's name would return them, some of them wrong on purpose; a few gold
images per shape give the grids their examples and known answers."""

import io
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from annotate.models import Project
from annotate.services import ingest, projects, verification_candidates

DEMO_VERIFY_PROJECT = "Demo: verify shapes"
GOLD_PER_LABEL = 4


@dataclass
class VerifyDemo:
    project: Project
    created: int
    wrong: int
    candidates: int


def verify_demo_create(
    *,
    synsets: str,
    draw: Callable[[str, random.Random], bytes],
    per_label: int,
    wrong_share: float,
    seed: int,
) -> VerifyDemo:
    """Create (or refresh) the verify project; re-running adds nothing new."""
    project = Project.objects.filter(name=DEMO_VERIFY_PROJECT).first() or projects.project_create(
        name=DEMO_VERIFY_PROJECT,
        description="Does each image show the shape named at the top? Mark those that do. "
        "The candidates came from folders, and some are wrong on purpose.",
        task=Project.Task.VERIFY,
        grid_size=12,
        min_votes=2,
        max_votes=5,
        target_confidence=0.95,
        gold_rate=0.1,
    )
    ingest.labels_import(project=project, text=synsets)
    labels = {label.wnid: label for label in project.labels.all()}
    kinds = list(labels)
    rng = random.Random(seed)
    for kind in kinds:
        for index in range(GOLD_PER_LABEL):
            ingest.images_upload(
                project=project,
                files=[(f"gold_{kind}_{index}.jpg", io.BytesIO(draw(kind, rng)))],
                gold_label=labels[kind],
            )
    wrong = 0
    with tempfile.TemporaryDirectory(prefix="verify-demo-") as folder:
        for kind in kinds:
            (Path(folder) / kind).mkdir()
            for index in range(per_label):
                shown = kind
                if rng.random() < wrong_share:  # a search result that is not what was asked
                    shown = rng.choice([other for other in kinds if other != kind])
                    wrong += 1
                (Path(folder) / kind / f"{kind}_{index:03d}.jpg").write_bytes(draw(shown, rng))
        result = ingest.images_import(project=project, path=Path(folder))
    added = verification_candidates.candidates_from_folders(
        project=project, image_ids=result.created
    )
    return VerifyDemo(project, len(result.created), wrong, added.created)
