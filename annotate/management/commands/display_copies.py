from django.core.management.base import BaseCommand

from annotate.management.arguments import project_argument
from annotate.services import ingest


class Command(BaseCommand):
    help = (
        "Make the display copy (what volunteers and reviewers see: upright, RGB, no metadata) "
        "of every image stored before ingest made them. Safe to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument("project", nargs="?", help="project id or name; default: all")

    def handle(self, *args, project: str | None, **options):
        project_id = project_argument(project).pk if project else None
        result = ingest.display_copies_backfill(project_id=project_id)
        for problem in result.failed:
            self.stderr.write(f"image {problem['id']}: {problem['reason']}")
        self.stdout.write(
            f"{result.made} display copies made, {len(result.failed)} images without one."
        )
