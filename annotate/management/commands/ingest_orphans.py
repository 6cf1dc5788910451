from datetime import timedelta

from django.core.management.base import BaseCommand

from annotate.services import ingest


class Command(BaseCommand):
    help = (
        "List (or with --delete, delete) stored image files that no image row points at: what a "
        "killed import or a deleted project leaves behind."
    )

    def add_arguments(self, parser):
        parser.add_argument("--delete", action="store_true", help="delete them")
        parser.add_argument(
            "--min-age-minutes",
            type=float,
            default=60.0,
            help="spare files younger than this (imports still running); default 60",
        )

    def handle(self, *args, delete: bool, min_age_minutes: float, **options):
        orphans = ingest.storage_orphans(min_age=timedelta(minutes=min_age_minutes), delete=delete)
        for name in orphans:
            self.stdout.write(name)
        verb = "deleted" if delete else "found (use --delete to delete them)"
        self.stdout.write(f"{len(orphans)} files without an image row {verb}.")
