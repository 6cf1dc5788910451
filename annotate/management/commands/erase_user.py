from django.core.management.base import BaseCommand, CommandError

from annotate.models import User
from annotate.services import erase


class Command(BaseCommand):
    help = (
        "Delete a user and everything they did, for a privacy request, putting right the counts "
        "and decisions their votes made (annotate.services.erase). The Django admin only "
        "deactivates users with votes."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--yes", action="store_true", help="do it (otherwise: say what)")

    def handle(self, *args, username: str, yes: bool, **options):
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        if not yes:
            self.stdout.write(
                f"{username}: {user.votes.count()} votes would be erased; add --yes to do it."
            )
            return
        report = erase.user_erase(user=user)
        self.stdout.write(
            f"Erased {username}: {report.images} images corrected, {len(report.reopened)} "
            f"reopened, {len(report.redecided)} decided again; "
            f"{len(report.candidates)} verification candidates decided again."
        )
