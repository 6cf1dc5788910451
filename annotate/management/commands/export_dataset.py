"""Export a project's decided images as an ImageNet-style dataset folder (or tar file)."""

import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotate.management.arguments import project_argument
from annotate.models import Export
from annotate.services import export as export_service
from annotate.services.errors import ServiceError


class Command(BaseCommand):
    help = (
        "Export the decided images of a project as train/<wnid>/... and val/... with "
        "LOC_synset_mapping.txt, meta.bin, train.txt, val.txt and manifest.json. "
        "The folder appears only once it is complete."
    )

    def add_arguments(self, parser):
        parser.add_argument("project", help="project id or name")
        parser.add_argument(
            "out", type=Path, help="dataset folder to create (a .tar file with --tar)"
        )
        parser.add_argument("--val-fraction", type=float, default=0.1)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--val-layout", choices=Export.ValLayout.values, default="folders")
        parser.add_argument("--resize", type=int, default=None, help="shorter side in pixels")
        parser.add_argument("--include-gold", action="store_true")
        parser.add_argument("--min-per-class", type=int, default=2)
        parser.add_argument(
            "--blur-faces", action="store_true", help="blur the faces found in the images"
        )
        parser.add_argument("--tar", action="store_true", help="write one tar file at OUT")

    def handle(self, *args, project: str, out: Path, tar: bool, **options):
        target = project_argument(project)
        out = out.expanduser().absolute()
        if out.exists() and not (out.is_dir() and not tar and not any(out.iterdir())):
            raise CommandError(f"{out} exists; choose a new path (an empty folder is fine).")
        if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
            raise CommandError(f"{out.parent} is not a folder this command may write to.")
        try:
            export = export_service.export_create(
                project=target,
                val_fraction=options["val_fraction"],
                seed=options["seed"],
                val_layout=options["val_layout"],
                resize=options["resize"],
                include_gold=options["include_gold"],
                min_per_class=options["min_per_class"],
                blur_faces=options["blur_faces"],
                enqueue=False,
            )
        except ServiceError as error:
            raise CommandError(error.message) from None

        bar = tqdm(desc=f"export {export.pk}", unit="img", disable=None)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            outcome = export_service.export_run(
                export_id=export.pk,
                run_token=f"command-{os.getpid()}-{export.pk}",
                destination=out,
                tar=tar,
                progress=progress,
            )
        finally:
            bar.close()
        export.refresh_from_db()
        if outcome != "done":
            raise CommandError(f"Export {export.pk} {export.state}: {export.error or outcome}")
        counts = export.counts["counts"]
        for wnid, size in sorted(export.counts["classes_too_small"].items()):
            self.stderr.write(f"left out class {wnid}: only {size} decided images")
        if counts["unreadable"]:
            self.stderr.write(f"{counts['unreadable']} unreadable images left out (see manifest)")
        self.stdout.write(
            self.style.SUCCESS(
                f"Export {export.pk}: {counts['train']} train and {counts['val']} val images in "
                f"{counts['classes']} classes written to {out}"
            )
        )
