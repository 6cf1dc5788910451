"""Figures about volunteers and a project's activity: own stats, leaderboard, dashboard."""

from datetime import timedelta

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.translation import gettext, pgettext

from annotate.models import AnnotatorStats, Decision, Image, Project, User, Vote


def project_annotators(*, project: Project) -> QuerySet[AnnotatorStats]:
    """The project's volunteers with their record, most active first."""
    return (
        AnnotatorStats.objects.filter(project=project)
        .select_related("user")
        .order_by("-votes", "user_id")
    )


def user_stats(*, user: User) -> dict:
    """A user's own figures: votes, agreement with decisions, rank among volunteers."""
    current = Decision.objects.filter(image=OuterRef("image"), is_current=True)
    decided = Vote.objects.filter(user=user).filter(Exists(current))
    agreed = decided.filter(
        Exists(current.filter(label=OuterRef("label"), excluded=False))
        | Q(label__isnull=True, image__state=Image.State.EXCLUDED)
    )
    decided_count = decided.count()
    agreement = agreed.count() / decided_count if decided_count else None
    votes = User.objects.filter(pk=user.pk).values_list("votes_count", flat=True).first() or 0
    rank = User.objects.filter(votes_count__gt=votes).count() + 1 if votes else None
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    today = Vote.objects.filter(user=user, created_at__gte=midnight).count()
    return {
        "votes": votes,
        "today": today,
        "decided_votes": decided_count,
        "agreement": agreement,
        "rank": rank,
    }


def leaderboard(*, viewer: User, limit: int = 10) -> list[dict]:
    """The most active volunteers; names only of those who opted in (and the viewer's own)."""
    rows = User.objects.filter(votes_count__gt=0).order_by("-votes_count", "id")[:limit]
    return [
        {
            "rank": index,
            "name": user.username
            if user.show_on_leaderboard or user.pk == viewer.pk
            else gettext("anonymous volunteer"),
            "votes": user.votes_count,
            "me": user.pk == viewer.pk,
        }
        for index, user in enumerate(rows, start=1)
    ]


def project_class_counts(*, project: Project) -> list[tuple[str, int]]:
    """Decided images per label (and excluded), most first."""
    rows = (
        Decision.objects.filter(image__project=project, is_current=True)
        .values("label__wnid", "label__name")
        .annotate(n=Count("id"))
        .order_by("-n")
    )
    return [
        (
            f"{row['label__name']}" if row["label__wnid"] else pgettext("class chart", "excluded"),
            row["n"],
        )
        for row in rows
    ]


def project_votes_per_day(*, project: Project, days: int = 30) -> list[tuple[str, int]]:
    since = timezone.now() - timedelta(days=days)
    rows = (
        Vote.objects.filter(image__project=project, created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(n=Count("id"))
        .order_by("day")
    )
    return [(row["day"].isoformat(), row["n"]) for row in rows]


def project_active_volunteers(*, project: Project, days: int) -> int:
    since = timezone.now() - timedelta(days=days)
    return (
        Vote.objects.filter(image__project=project, created_at__gte=since)
        .values("user_id")
        .distinct()
        .count()
    )
