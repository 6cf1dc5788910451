"""Volunteers' votes, the decisions they lead to, and each volunteer's record."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import pgettext_lazy

from annotate.models.base import TimeStamped
from annotate.models.images import Assignment, Image
from annotate.models.projects import Label, Project


class Vote(TimeStamped):
    """One volunteer's answer for one image. A null label means "none of these"."""

    # Indexed by vote_image and by the unique (user, image) constraint.
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="votes", db_index=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="votes", db_index=False
    )
    assignment = models.OneToOneField(
        Assignment, null=True, on_delete=models.SET_NULL, related_name="vote"
    )
    label = models.ForeignKey(Label, null=True, blank=True, on_delete=models.RESTRICT)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "image"], name="vote_unique_user_image"),
        ]
        indexes = [models.Index(fields=["image"], name="vote_image")]

    def __str__(self) -> str:
        return f"vote by {self.user_id} on image {self.image_id}: {self.label_id}"


class Decision(TimeStamped):
    """The final label of an image and how it was reached. Older decisions stay as history."""

    class Rule(models.TextChoices):
        MAJORITY = "majority", pgettext_lazy("decision rule", "Majority")
        DYNAMIC = "dynamic", pgettext_lazy("decision rule", "Dynamic")
        GOLD = "gold", pgettext_lazy("decision rule", "Gold")
        REVIEW = "review", pgettext_lazy("decision rule", "Review")
        VERIFIED = "verified", pgettext_lazy("decision rule", "Verified")

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="decisions")
    label = models.ForeignKey(Label, null=True, blank=True, on_delete=models.RESTRICT)
    excluded = models.BooleanField(default=False, help_text="No label fits or the image is bad.")
    rule = models.CharField(max_length=16, choices=Rule.choices)
    confidence = models.FloatField(null=True, blank=True)
    votes_count = models.PositiveSmallIntegerField(default=0)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    replaces = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replaced_by"
    )
    is_current = models.BooleanField(default=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["image"], condition=Q(is_current=True), name="decision_one_current"
            ),
            models.CheckConstraint(
                condition=Q(excluded=True, label__isnull=True)
                | Q(excluded=False, label__isnull=False),
                name="decision_label_xor_excluded",
            ),
        ]

    def __str__(self) -> str:
        return f"decision on image {self.image_id}: {self.label_id} by {self.rule}"


class AnnotatorStats(TimeStamped):
    """One volunteer's record in one project, updated in the transactions that change it."""

    # Indexed by the unique (project, user) constraint.
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="annotators", db_index=False
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="annotator_stats"
    )
    votes = models.PositiveIntegerField(default=0)
    decided_votes = models.PositiveIntegerField(default=0, help_text="Votes on decided images.")
    agreed_votes = models.PositiveIntegerField(default=0, help_text="...that match the decision.")
    gold_votes = models.PositiveIntegerField(default=0)
    gold_correct = models.PositiveIntegerField(default=0)
    estimated_accuracy = models.FloatField()
    # Dawid-Skene's estimate from the last batch re-aggregation (null before the first).
    batch_accuracy = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="annotator_stats_unique"),
        ]

    def __str__(self) -> str:
        return f"user {self.user_id} in project {self.project_id}: {self.estimated_accuracy:.2f}"


# Answer keys of the confusion counts: a label's id, or NONE_KEY for "none of these".
NONE_KEY = 0


class VolunteerConfusion(models.Model):
    """How often a volunteer gave `given_key` when the answer was `true_key`: weighted counts
    from gold answers and from decisions that stand without the volunteer's own vote. Sparse:
    only the pairs seen have a row (issue 16)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, db_index=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    true_key = models.BigIntegerField()
    given_key = models.BigIntegerField()
    weight = models.FloatField(default=0.0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "user", "true_key", "given_key"], name="volunteer_confusion_key"
            ),
        ]

    def __str__(self) -> str:
        return f"user {self.user_id}: {self.given_key} for {self.true_key} x{self.weight:g}"


class CrowdConfusion(models.Model):
    """The crowd's mistakes pooled: weighted counts of `given_key` answered for `true_key`
    (never equal), the prior a volunteer's own confusions are shrunk toward. Append-only on
    the vote path (a pair's count is the sum of its rows: no row every decision would wait
    on), compacted to a row per pair by the periodic re-aggregation."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, db_index=False)
    true_key = models.BigIntegerField()
    given_key = models.BigIntegerField()
    weight = models.FloatField(default=0.0)

    class Meta:
        indexes = [
            models.Index(fields=["project", "given_key", "true_key"], name="crowd_confusion_given"),
        ]

    def __str__(self) -> str:
        return f"project {self.project_id}: {self.given_key} for {self.true_key} x{self.weight:g}"
