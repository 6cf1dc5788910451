from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from annotate.translations import check_translations


class Command(BaseCommand):
    help = (
        "Fail when a message of the pages, the code or the scripts is untranslated or fuzzy in "
        "a shipped language, or a .mo file is not compiled from its .po (`make check`)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--locale-dir",
            type=Path,
            default=Path(settings.LOCALE_PATHS[0]),
            help="the catalogues to check (default: the project's locale/)",
        )

    def handle(self, *args, locale_dir: Path, **options):
        report = check_translations(locale_dir, Path(settings.BASE_DIR))
        for problem in report.problems:
            self.stderr.write(problem)
        if not report.ok:
            raise CommandError(
                f"{len(report.problems)} translation problems; translate in locale/*/LC_MESSAGES"
                "/*.po, then `make messages`."
            )
        self.stdout.write(f"Translations complete: {report.checked} messages checked.")
