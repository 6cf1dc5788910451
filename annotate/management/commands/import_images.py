import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotate.management.arguments import label_argument, project_argument
from annotate.models import Project
from annotate.services import ingest, verification_candidates
from annotate.services.errors import ServiceError


class Command(BaseCommand):
    help = (
        "Import a folder of images (recursively; zip files in it are expanded) or a zip archive "
        "into a project. Re-running the same import adds nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("project", help="project id or name")
        parser.add_argument("path", type=Path, help="a folder or a .zip archive")
        parser.add_argument(
            "--gold-from-folders",
            action="store_true",
            help="gold labels from the folders: <wnid>/... or train/<wnid>/...",
        )
        parser.add_argument("--gold-label", help="label id or wnid: every image is gold")
        parser.add_argument(
            "--candidates-from-folders",
            action="store_true",
            help="the first folder of each file (<wnid>/... or train/<wnid>/...) is a candidate "
            "label to verify, as a search's results for the synset's words",
        )
        parser.add_argument(
            "--workers", type=int, default=1, help="processes that decode images (default 1)"
        )
        parser.add_argument(
            "--show-rejected", type=int, default=50, help="list at most this many refused files"
        )

    def handle(
        self,
        *args,
        project: str,
        path: Path,
        gold_from_folders: bool,
        gold_label: str | None,
        workers: int,
        candidates_from_folders: bool = False,
        show_rejected: int,
        **options,
    ):
        target = project_argument(project)
        label = label_argument(target, gold_label) if gold_label else None
        total = ingest.images_count_files(path=path) if path.exists() else None
        started = time.perf_counter()
        with tqdm(total=total, desc="images", unit="img", disable=None) as bar:
            try:
                result = ingest.images_import(
                    project=target,
                    path=path,
                    gold_label=label,
                    gold_from_folders=gold_from_folders,
                    workers=workers,
                    progress=bar.update,
                )
            except ServiceError as error:
                raise CommandError(error.message) from None
        elapsed = time.perf_counter() - started
        if candidates_from_folders:
            self._candidates(target, result.created)
        for problem in result.rejected[:show_rejected]:
            self.stderr.write(f"rejected {problem['name']}: {problem['reason']}")
        if len(result.rejected) > show_rejected:
            self.stderr.write(f"... and {len(result.rejected) - show_rejected} more rejected")
        for near in result.near_duplicates[:show_rejected]:
            self.stdout.write(
                f"near duplicate {near['name']} (image {near['id']}) looks like image "
                f"{near['near_duplicate_of']} (distance {near['distance']})"
            )
        seen = len(result.created) + result.duplicates + len(result.rejected)
        self.stdout.write(
            f"{len(result.created)} images created ({len(result.near_duplicates)} of them near "
            f"duplicates), {result.duplicates} already in the project, {len(result.rejected)} "
            f"rejected; {seen} files in {elapsed:.1f} s ({seen / max(elapsed, 1e-9):.0f} files/s)."
        )

    def _candidates(self, project: Project, image_ids: list[int]) -> None:
        added = verification_candidates.candidates_from_folders(
            project=project, image_ids=image_ids
        )
        for folder, count in sorted(added.unknown_folders.items()):
            self.stderr.write(f"no candidate for {count} images: {folder!r} is no label here")
        self.stdout.write(f"{added.created} candidate labels to verify.")
