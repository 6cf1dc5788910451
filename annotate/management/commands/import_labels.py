from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotate.management.arguments import project_argument
from annotate.services import ingest, wordnet
from annotate.services.errors import ServiceError


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise CommandError(f"Cannot read {path}: {error}") from None


class Command(BaseCommand):
    help = (
        "Import a synset mapping file (`n02123045 tabby, tabby cat` per line, optionally a "
        "tab and `zh-hans=虎斑猫` after the names: the name in another language) into a project; "
        "with ImageNet's words.txt, wordnet.is_a.txt or gloss.txt, also give its labels their "
        "synonyms, parent synset and definition."
    )

    def add_arguments(self, parser):
        parser.add_argument("project", help="project id or name")
        parser.add_argument(
            "mapping_file",
            type=Path,
            nargs="?",
            help="the labels to add; leave out to only add WordNet context to existing labels",
        )
        parser.add_argument(
            "--words", type=Path, help="ImageNet's words.txt: wnid<TAB>names, comma-separated"
        )
        parser.add_argument(
            "--is-a", type=Path, help="ImageNet's wordnet.is_a.txt: parent_wnid child_wnid"
        )
        parser.add_argument("--gloss", type=Path, help="ImageNet's gloss.txt: wnid<TAB>gloss")

    def handle(
        self,
        *args,
        project: str,
        mapping_file: Path | None,
        words: Path | None,
        is_a: Path | None,
        gloss: Path | None,
        **options,
    ):
        target = project_argument(project)
        context_files = {"words_text": words, "is_a_text": is_a, "gloss_text": gloss}
        if mapping_file is None and not any(context_files.values()):
            raise CommandError("Give a mapping file, or --words, --is-a or --gloss (or both).")
        texts = {key: read_text(path) for key, path in context_files.items() if path}
        mapping = read_text(mapping_file) if mapping_file else None
        try:
            if mapping is not None:
                result = ingest.labels_import(project=target, text=mapping)
                for problem in result.errors:
                    self.stderr.write(f"line {problem['line']}: {problem['reason']}")
                self.stdout.write(
                    f"{result.created} labels created, {result.existing} already present, "
                    f"{len(result.errors)} lines with problems."
                )
            if texts:
                context = wordnet.labels_wordnet_apply(project=target, **texts)
                for problem in context.errors:
                    self.stderr.write(
                        f"{problem['file']} line {problem['line']}: {problem['reason']}"
                    )
                self.stdout.write(
                    f"WordNet context: {context.updated} labels updated, {context.unknown} "
                    f"not in the given files, {context.bad_lines} lines with problems."
                )
        except ServiceError as error:
            raise CommandError(error.message) from None
