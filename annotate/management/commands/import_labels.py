from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotate.management.arguments import project_argument
from annotate.services import ingest
from annotate.services.errors import ServiceError


class Command(BaseCommand):
    help = "Import a synset mapping file (`n02123045 tabby, tabby cat` per line) into a project."

    def add_arguments(self, parser):
        parser.add_argument("project", help="project id or name")
        parser.add_argument("mapping_file", type=Path)

    def handle(self, *args, project: str, mapping_file: Path, **options):
        target = project_argument(project)
        try:
            text = mapping_file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as error:
            raise CommandError(f"Cannot read {mapping_file}: {error}") from None
        try:
            result = ingest.labels_import(project=target, text=text)
        except ServiceError as error:
            raise CommandError(error.message) from None
        for problem in result.errors:
            self.stderr.write(f"line {problem['line']}: {problem['reason']}")
        self.stdout.write(
            f"{result.created} labels created, {result.existing} already present, "
            f"{len(result.errors)} lines with problems."
        )
