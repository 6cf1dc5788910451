"""The ML loop (PRODUCT.md section 5): trainings, model versions, the active one, suggestions."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import pgettext_lazy

from annotate.models.base import TimeStamped
from annotate.models.images import Image
from annotate.models.projects import Label, Project


class TrainingRun(TimeStamped):
    """One training of a project's model, created before its task runs.

    A worker claims it with a conditional update (PENDING -> RUNNING), so a redelivered or
    duplicated task finds it taken and exits. While it trains it records a heartbeat; a
    RUNNING run whose heartbeat went stale lost its worker.
    """

    class Status(models.TextChoices):
        PENDING = "pending", pgettext_lazy("training status", "Pending")
        RUNNING = "running", pgettext_lazy("training status", "Running")
        SUCCEEDED = "succeeded", pgettext_lazy("training status", "Succeeded")
        FAILED = "failed", pgettext_lazy("training status", "Failed")

    class Reason(models.TextChoices):
        REQUESTED = "requested", pgettext_lazy("training reason", "an admin asked")
        GROWTH = "growth", pgettext_lazy("training reason", "verified labels grew")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(max_length=16, choices=Reason.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Overrides of the configured TrainConfig for this run (e.g. {"epochs": 5}).
    config = models.JSONField(default=dict, blank=True)
    # Verified labels in the project when the run was created: the baseline of the next
    # "grew by N" check, whether this run succeeds or not.
    verified_count = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    promoted = models.BooleanField(default=False)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # One training at a time per project: the beat check and an admin's request can't
            # both start one.
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(status__in=["pending", "running"]),
                name="trainingrun_one_open_per_project",
            ),
        ]

    def __str__(self) -> str:
        return f"training run {self.pk} of project {self.project_id} ({self.status})"


class ModelVersion(TimeStamped):
    """A trained checkpoint and its held-out figures. The file is complete before the row exists."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    training_run = models.OneToOneField(
        TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="model_version"
    )
    arch = models.CharField(max_length=64)
    config = models.JSONField(default=dict)
    # Label ids in the order of the network's outputs (class index -> label id).
    classes = models.JSONField(default=list)
    file = models.CharField(max_length=400, help_text="Checkpoint path under ML_MODELS_DIR.")
    weights_source = models.CharField(max_length=200, help_text="checkpoint, pretrained or scratch")
    device = models.CharField(max_length=32)
    train_size = models.PositiveIntegerField()
    holdout_size = models.PositiveIntegerField()
    training_seconds = models.FloatField()
    temperature = models.FloatField(default=1.0)
    top1 = models.FloatField(help_text="Held-out top-1 accuracy.")
    top5 = models.FloatField(
        null=True, blank=True, help_text="Held-out top-5, more than 5 classes."
    )
    nll = models.FloatField(null=True, blank=True, help_text="Held-out log loss, calibrated.")
    # label id (as a string: JSON keys) -> {"support", "precision", "recall"}
    per_class = models.JSONField(default=dict)
    # The active model's top-1 on this version's held-out set when it was trained (None: none).
    baseline_top1 = models.FloatField(null=True, blank=True)
    # Calibration (issue 22): expected calibration error of the calibrated confidences, and
    # per confidence band [{"low", "high", "claimed", "measured", "count"}], estimated by
    # cross-validation over `calibration_size` images (`calibration_method` says which).
    ece = models.FloatField(null=True, blank=True, help_text="Expected calibration error.")
    reliability = models.JSONField(default=list, blank=True)
    calibration_method = models.CharField(max_length=80, blank=True)
    calibration_size = models.PositiveIntegerField(default=0)
    # Unlabeled images the training also learnt from (semi-supervised; 0: supervised only).
    unlabeled_size = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return (
            f"model version {self.pk} of project {self.project_id} ({self.arch}, {self.top1:.3f})"
        )


class ActiveModel(models.Model):
    """Which version serves suggestions for a project: one row per project, switched by one
    compare-and-set UPDATE when a better version is promoted."""

    project = models.OneToOneField(
        Project, primary_key=True, on_delete=models.CASCADE, related_name="active_model"
    )
    version = models.ForeignKey(ModelVersion, on_delete=models.RESTRICT, related_name="active_in")
    promoted_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"project {self.project_id} uses model version {self.version_id}"


class Suggestion(TimeStamped):
    """A model version's calibrated top-k labels for an image; one per (image, version)."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="suggestions")
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="suggestions"
    )
    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="+")
    confidence = models.FloatField()
    # [{"label": id, "probability": p}, ...], most probable first.
    top = models.JSONField(default=list)
    # Full calibrated distribution, label id (string) -> probability: the dynamic consensus
    # prior needs every label's probability, not only the top ones.
    probabilities = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["image", "model_version"], name="suggestion_unique_image_version"
            ),
        ]

    def __str__(self) -> str:
        return f"suggestion {self.label_id} ({self.confidence:.2f}) for image {self.image_id}"
