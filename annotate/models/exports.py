"""Exports (PRODUCT.md section 6) and the stable train/val side of each image."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import pgettext_lazy

from annotate.models.base import TimeStamped
from annotate.models.images import Image
from annotate.models.projects import Project


class Export(TimeStamped):
    """One ImageNet-style export of a project's decided images. The row exists before its job
    runs; the job fills it in (pretix's pattern). Files live at `location` once `state` is done."""

    class State(models.TextChoices):
        PENDING = "pending", pgettext_lazy("export state", "Pending")
        RUNNING = "running", pgettext_lazy("export state", "Running")
        DONE = "done", pgettext_lazy("export state", "Done")
        FAILED = "failed", pgettext_lazy("export state", "Failed")
        EXPIRED = "expired", pgettext_lazy("export state", "expired (files removed)")

    class ValLayout(models.TextChoices):
        FOLDERS = "folders", "val/<wnid>/<wnid>_<id>.JPEG"
        FLAT = (
            "flat",
            pgettext_lazy(
                "export layout",
                "ImageNet's validation layout: val/ILSVRC2012_val_<n>.JPEG, ground truth files",
            ),
        )

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="exports")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    name = models.CharField(max_length=80, help_text="The top folder of the dataset.")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    val_fraction = models.FloatField(
        default=0.1, validators=[MinValueValidator(0.001), MaxValueValidator(0.999)]
    )
    seed = models.BigIntegerField(default=0, validators=[MinValueValidator(0)])
    val_layout = models.CharField(
        max_length=16, choices=ValLayout.choices, default=ValLayout.FOLDERS
    )
    resize = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(8), MaxValueValidator(8192)],
        help_text="Shorter side in pixels (never enlarged); empty keeps the size.",
    )
    include_gold = models.BooleanField(default=False)
    blur_faces = models.BooleanField(
        default=False, help_text="Blur the faces found in the exported images."
    )
    min_per_class = models.PositiveIntegerField(
        default=2,
        validators=[MinValueValidator(2)],
        help_text="Classes with fewer decided images are left out (and reported).",
    )
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    counts = models.JSONField(
        default=dict, blank=True, help_text="The manifest without file lists."
    )
    location = models.CharField(max_length=1000, blank=True, help_text="Where the files are.")
    size_bytes = models.PositiveBigIntegerField(default=0)
    error = models.TextField(blank=True)
    # Claim of the job that runs it: a redelivered message carries the same token and may take
    # the export over; any other copy of the job leaves it alone.
    run_token = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["state", "updated_at"], name="export_state_updated")]

    def __str__(self) -> str:
        return f"export {self.pk} of project {self.project_id} ({self.state})"


class SplitAssignment(TimeStamped):
    """The side (train or val) an image took in a project's exports for one (seed, val fraction).

    Kept so that later exports with more images never move an image between sides. `key` is
    SHA-256(seed, image SHA-256): new images are ranked by it when a class needs more val images.

    A project's first export writes one row per image, so the table is kept lean: no project
    column (the image has it), one index (the unique one, which every read uses from the
    image side), and no database-level foreign key, whose deferred check took a share lock on
    every image row at COMMIT (a quarter of the split's time at 20,000 images). Deleting an
    image through Django still deletes its rows (on_delete=CASCADE runs in Django); a row left
    behind by a raw delete is never read, since reads start from the images.
    """

    class Side(models.TextChoices):
        TRAIN = "train", pgettext_lazy("export side", "Train")
        VAL = "val", pgettext_lazy("export side", "Val")

    image = models.ForeignKey(
        Image,
        on_delete=models.CASCADE,
        related_name="split_assignments",
        db_constraint=False,
        db_index=False,
    )
    seed = models.BigIntegerField()
    val_fraction = models.FloatField()
    key = models.CharField(max_length=64)
    side = models.CharField(max_length=8, choices=Side.choices, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["image", "seed", "val_fraction"], name="split_unique_image_seed_fraction"
            ),
        ]

    def __str__(self) -> str:
        return f"image {self.image_id}: {self.side or 'unassigned'} (seed {self.seed})"
