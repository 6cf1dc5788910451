"""Images, the hash bands that find near duplicates, and the leases that serve them."""

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils.translation import pgettext_lazy

from annotate.models.base import TimeStamped
from annotate.models.projects import Label, Project


def image_upload_to(instance: "Image", filename: str) -> str:
    return f"images/{instance.project_id}/{instance.sha256[:2]}/{instance.sha256}/{filename}"


class Image(TimeStamped):
    class State(models.TextChoices):
        OPEN = "open", pgettext_lazy("image state", "Open")
        CONSENSUS = "consensus", pgettext_lazy("image state", "Consensus")
        DISPUTED = "disputed", pgettext_lazy("image state", "Disputed")
        REVIEWED = "reviewed", pgettext_lazy("image state", "Reviewed")
        EXCLUDED = "excluded", pgettext_lazy("image state", "Excluded")

    # Not indexed alone: every index below starts with the project (and each index is more
    # work on every vote, which rewrites the row).
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="images", db_index=False
    )
    file = models.FileField(upload_to=image_upload_to, max_length=400)
    original_name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField()
    format = models.CharField(max_length=16)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    preprocessed = models.FileField(max_length=400, blank=True)
    # What volunteers and reviewers are shown instead of the original: upright, RGB, no
    # metadata, the longer side at most DISPLAY_MAX_SIDE. The original's own name when the
    # upload had nothing to drop or change (so never delete it as a copy). Empty for images
    # ingested before it existed until `display_copies` (or the first view) makes it.
    display = models.FileField(max_length=400, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    is_gold = models.BooleanField(default=False)
    gold_label = models.ForeignKey(
        Label, null=True, blank=True, on_delete=models.RESTRICT, related_name="+"
    )
    # Set by the periodic re-aggregation when Dawid-Skene disagrees with the crowd's decision.
    flagged_for_review = models.BooleanField(default=False)
    flag_reason = models.CharField(max_length=200, blank=True)
    # The model's part in the current crowd decision (issue 16): the share of the decided
    # answer's probability it added, and whether that was most of it.
    model_share = models.FloatField(default=0.0)
    model_decided = models.BooleanField(default=False)
    # Hot-path counters, changed only inside the transaction that changes their rows.
    votes_count = models.PositiveSmallIntegerField(default=0)
    leases_count = models.PositiveSmallIntegerField(default=0)
    # How many more volunteers may lease this image now: derived from the state, the counters
    # and the project's policy, but stored so the serving index can skip full images.
    free_slots = models.PositiveSmallIntegerField(default=0)
    # Perceptual hash (64 bits, hex) and, when an earlier image of the project looks the same,
    # that image and the Hamming distance between the hashes. Set by the ingest service.
    phash = models.CharField(max_length=16, blank=True)
    near_duplicate_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="near_duplicates"
    )
    near_duplicate_distance = models.PositiveSmallIntegerField(null=True, blank=True)
    # 1 - (top-1 minus top-2 probability) under the active model; 1.0 until it has a
    # suggestion, so that images the model has not seen count as the least certain.
    uncertainty = models.FloatField(default=1.0)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "sha256"], name="image_unique_sha256"),
        ]
        indexes = [
            models.Index(fields=["project", "state"], name="image_project_state"),
            # Serving, "closest to a decision first": walk this index, skip what V has seen.
            models.Index(
                "project",
                F("votes_count").desc(),
                "id",
                condition=Q(state="open", free_slots__gt=0),
                name="image_serving_closest",
            ),
            models.Index(
                fields=["project", "id"],
                condition=Q(state="open", free_slots__gt=0),
                name="image_serving_by_id",
            ),
            # Serving, "the model's least certain first" (active learning).
            models.Index(
                "project",
                F("uncertainty").desc(),
                "id",
                condition=Q(state="open", free_slots__gt=0),
                name="image_serving_uncertain",
            ),
            models.Index(fields=["project", "id"], condition=Q(is_gold=True), name="image_gold"),
            models.Index(
                fields=["project", "id"],
                condition=Q(state="disputed") | Q(flagged_for_review=True),
                name="image_review_queue",
            ),
        ]

    def __str__(self) -> str:
        return f"image {self.pk} ({self.original_name})"


class ImageHashBand(models.Model):
    """One 16-bit quarter of an image's perceptual hash, indexed for near-duplicate search.

    Two hashes within Hamming distance 3 share at least one quarter exactly, so an indexed
    lookup of the four quarters finds every candidate without scanning the project.
    """

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="hash_bands")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    # band number * 65536 + the band's value: one indexed integer per band.
    key = models.PositiveIntegerField()

    class Meta:
        indexes = [models.Index(fields=["project", "key"], name="imagehashband_lookup")]

    def __str__(self) -> str:
        return f"hash band {self.key} of image {self.image_id}"


class Assignment(TimeStamped):
    """A lease of one image to one volunteer. One per (user, image): nobody sees an image twice."""

    class State(models.TextChoices):
        ACTIVE = "active", pgettext_lazy("assignment state", "Active")
        VOTED = "voted", pgettext_lazy("assignment state", "Voted")
        SKIPPED = "skipped", pgettext_lazy("assignment state", "Skipped")
        EXPIRED = "expired", pgettext_lazy("assignment state", "Expired")

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="assignments")
    # Indexed by the unique (user, image) constraint.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="assignments",
        db_index=False,
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    expires_at = models.DateTimeField()
    # Not a column: the image's suggestion, when the lease read it with the image
    # (serving._lease_in_one_statement); absent otherwise.
    leased_suggestion: dict[str, Any] | None

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "image"], name="assignment_unique_user_image"),
        ]
        indexes = [
            models.Index(
                fields=["expires_at"], condition=Q(state="active"), name="assignment_active_expiry"
            ),
        ]

    def __str__(self) -> str:
        return f"assignment {self.pk}: image {self.image_id} to user {self.user_id} ({self.state})"
