"""Verification, the candidate-grid task (issue 15): candidates, grids, their votes."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import pgettext_lazy

from annotate.models.base import TimeStamped
from annotate.models.images import Image
from annotate.models.projects import Label, Project


class Candidate(TimeStamped):
    """A label an image may show, to be verified by yes/no votes; one per (image, label).

    Gold candidates (from gold images) have a known answer: they are mixed into grids to
    measure the volunteers and are never decided."""

    class Source(models.TextChoices):
        IMPORT = "import", pgettext_lazy("candidate source", "import folder")
        UPLOAD = "upload", pgettext_lazy("candidate source", "Upload")
        MODEL = "model", pgettext_lazy("candidate source", "the model's top-k")
        GOLD = "gold", pgettext_lazy("candidate source", "a gold image")

    class State(models.TextChoices):
        OPEN = "open", pgettext_lazy("candidate state", "Open")
        ACCEPTED = "accepted", pgettext_lazy("candidate state", "Accepted")
        REJECTED = "rejected", pgettext_lazy("candidate state", "Rejected")
        DISPUTED = "disputed", pgettext_lazy("candidate state", "Disputed")

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="candidates", db_index=False
    )
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="candidates")
    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="candidates")
    source = models.CharField(max_length=16, choices=Source.choices)
    # The model's probability for a model candidate (ranks an image's next candidate).
    probability = models.FloatField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    is_gold = models.BooleanField(default=False)
    gold_answer = models.BooleanField(null=True, blank=True)
    yes_count = models.PositiveSmallIntegerField(default=0)
    no_count = models.PositiveSmallIntegerField(default=0)
    # Grids out now that hold this candidate: the votes on their way.
    leases_count = models.PositiveSmallIntegerField(default=0)
    posterior = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["image", "label"], name="candidate_unique_image_label"),
            models.CheckConstraint(
                condition=Q(is_gold=False, gold_answer__isnull=True)
                | Q(is_gold=True, gold_answer__isnull=False),
                name="candidate_gold_has_answer",
            ),
        ]
        indexes = [
            # Grid leasing: a project's open candidates, label by label.
            models.Index(
                fields=["project", "label", "id"],
                condition=Q(state="open", is_gold=False),
                name="candidate_open_by_label",
            ),
            models.Index(
                fields=["project", "label", "id"],
                condition=Q(is_gold=True),
                name="candidate_gold_by_label",
            ),
        ]

    def __str__(self) -> str:
        return f"candidate {self.label_id} for image {self.image_id} ({self.state})"


class Grid(TimeStamped):
    """One volunteer's lease of a grid of candidates of one label; answered once."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="grids")
    volunteer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="grids"
    )
    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="+")
    expires_at = models.DateTimeField()
    answered_at = models.DateTimeField(null=True, blank=True)
    # Set when an expired grid's leases were given back.
    expired = models.BooleanField(default=False)

    class Meta:
        indexes = [
            models.Index(
                fields=["expires_at"],
                condition=Q(answered_at__isnull=True, expired=False),
                name="grid_outstanding_expiry",
            ),
        ]

    def __str__(self) -> str:
        return f"grid {self.pk} of label {self.label_id} for user {self.volunteer_id}"


class GridItem(models.Model):
    """One candidate in one grid. Unique per (volunteer, candidate): nobody sees an (image,
    label) twice, whether they answered it or let it expire."""

    grid = models.ForeignKey(Grid, on_delete=models.CASCADE, related_name="items")
    candidate = models.ForeignKey(Candidate, on_delete=models.CASCADE, related_name="grid_items")
    volunteer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["volunteer", "candidate"], name="griditem_unique_volunteer_candidate"
            ),
        ]

    def __str__(self) -> str:
        return f"item {self.pk} of grid {self.grid_id}: candidate {self.candidate_id}"


class CandidateVote(TimeStamped):
    """A volunteer's yes or no for one candidate."""

    candidate = models.ForeignKey(Candidate, on_delete=models.CASCADE, related_name="votes")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="candidate_votes"
    )
    grid_item = models.OneToOneField(
        GridItem, null=True, on_delete=models.SET_NULL, related_name="vote"
    )
    answer = models.BooleanField()
    # What this vote is rated against, for its voter's reliability: True (a right candidate),
    # False (a wrong one), None (it rates no one). Gold: its known answer. Otherwise fixed when
    # the vote arrives, from the votes before it alone (verification_consensus.
    # rating_reference), so that no voter is measured by a decision their own vote made.
    reference = models.BooleanField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["candidate", "user"], name="candidatevote_unique_candidate_user"
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{'yes' if self.answer else 'no'} by {self.user_id} on candidate {self.candidate_id}"
        )
