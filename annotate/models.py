"""Data and the invariants the database can enforce. Business rules live in annotate.services."""

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q


class TimeStamped(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class User(AbstractUser):
    class Role(models.TextChoices):
        VOLUNTEER = "volunteer"
        REVIEWER = "reviewer"
        ADMIN = "admin"

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VOLUNTEER)
    # Kept in the vote's transaction so "rank" never counts the votes table.
    votes_count = models.PositiveIntegerField(default=0, db_index=True)
    show_on_leaderboard = models.BooleanField(
        default=False, help_text="Show my name in the volunteers' ranking (hidden by default)."
    )

    @property
    def is_reviewer(self) -> bool:
        return self.role in (self.Role.REVIEWER, self.Role.ADMIN) or self.is_superuser

    @property
    def is_project_admin(self) -> bool:
        return self.role == self.Role.ADMIN or self.is_superuser


class Project(TimeStamped):
    class Mode(models.TextChoices):
        MAJORITY = "majority"
        DYNAMIC = "dynamic"

    class ServingOrder(models.TextChoices):
        CLOSEST = "closest", "closest to a decision first"
        UNCERTAIN = "uncertain", "the model's least certain first"
        RANDOM = "random"

    class Task(models.TextChoices):
        CLASSIFY = "classify", "classify: one image, pick its label"
        VERIFY = "verify", "verify: one label, mark the candidate images that show it"

    class AllRejected(models.TextChoices):
        NEXT_CANDIDATE = "next_candidate", "the model's next candidate, else the classify queue"
        CLASSIFY = "classify", "the classify queue"
        EXCLUDE = "exclude", "excluded"

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    # Consensus policy (PRODUCT.md section 3).
    min_votes = models.PositiveSmallIntegerField(default=2, validators=[MinValueValidator(1)])
    max_votes = models.PositiveSmallIntegerField(default=5, validators=[MinValueValidator(1)])
    agreement = models.FloatField(
        default=0.75,
        validators=[MinValueValidator(0.5), MaxValueValidator(1.0)],
        help_text="Share of the votes the top label needs (majority mode).",
    )
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.MAJORITY)
    target_confidence = models.FloatField(
        default=0.95, validators=[MinValueValidator(0.5), MaxValueValidator(0.9999)]
    )
    show_suggestions = models.BooleanField(default=True)
    serving_order = models.CharField(
        max_length=16, choices=ServingOrder.choices, default=ServingOrder.CLOSEST
    )
    # Gold schedule: a new volunteer sees gold at `gold_rate`, falling toward `gold_rate_min`
    # (halving every `gold_half_life` votes); an unreliable volunteer stays at `gold_rate`.
    gold_rate = models.FloatField(
        default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    gold_rate_min = models.FloatField(
        default=0.02, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    gold_half_life = models.PositiveIntegerField(default=50, validators=[MinValueValidator(1)])
    reliability_threshold = models.FloatField(
        default=0.6,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Volunteers estimated below this accuracy are flagged as unreliable.",
    )
    # Share of each answer among decided images ({label id or "none": count}), refreshed by
    # the periodic re-aggregation: the dynamic consensus's prior when no model suggests.
    answer_counts = models.JSONField(default=dict, blank=True)
    lease_seconds = models.PositiveIntegerField(
        default=600, validators=[MinValueValidator(10), MaxValueValidator(24 * 3600)]
    )
    # Verification (issue 15): the candidate-grid task.
    task = models.CharField(max_length=16, choices=Task.choices, default=Task.CLASSIFY)
    grid_size = models.PositiveSmallIntegerField(
        default=16,
        validators=[MinValueValidator(12), MaxValueValidator(24)],
        help_text="Candidate images per verification grid.",
    )
    candidate_min_probability = models.FloatField(
        default=0.2,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="The model's top-k labels at or above this probability become candidates.",
    )
    when_all_rejected = models.CharField(
        max_length=16,
        choices=AllRejected.choices,
        default=AllRejected.NEXT_CANDIDATE,
        help_text="What becomes of an image once every candidate label of it is rejected.",
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(max_votes__gte=F("min_votes")), name="project_max_votes_gte_min"
            ),
            models.CheckConstraint(
                condition=Q(min_votes__gte=1), name="project_min_votes_positive"
            ),
            models.CheckConstraint(
                condition=Q(agreement__gte=0.5, agreement__lte=1.0), name="project_agreement_range"
            ),
            models.CheckConstraint(
                condition=Q(gold_rate_min__lte=F("gold_rate")) | Q(gold_rate=0),
                name="project_gold_rate_min_lte_rate",
            ),
        ]

    def __str__(self) -> str:
        return self.name


label_key_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
    "A label id is a WordNet id like n02123045 or a slug of letters, digits, '_', '.', '-'.",
)


class Label(TimeStamped):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="labels")
    wnid = models.CharField(max_length=64, validators=[label_key_validator])
    name = models.CharField(max_length=200)
    gloss = models.TextField(blank=True)
    position = models.PositiveIntegerField(default=0, help_text="Order on the labeling page.")
    # WordNet context, optional (import_labels --words/--is-a): other names volunteers may
    # search by, and the synset one level up (often not a label of the project itself).
    synonyms = models.JSONField(default=list, blank=True)
    parent_wnid = models.CharField(max_length=64, blank=True)
    parent_name = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "wnid"], name="label_unique_wnid"),
        ]

    def __str__(self) -> str:
        return f"{self.wnid} {self.name}"


def image_upload_to(instance: "Image", filename: str) -> str:
    return f"images/{instance.project_id}/{instance.sha256[:2]}/{instance.sha256}/{filename}"


class Image(TimeStamped):
    class State(models.TextChoices):
        OPEN = "open"
        CONSENSUS = "consensus"
        DISPUTED = "disputed"
        REVIEWED = "reviewed"
        EXCLUDED = "excluded"

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
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    is_gold = models.BooleanField(default=False)
    gold_label = models.ForeignKey(
        Label, null=True, blank=True, on_delete=models.RESTRICT, related_name="+"
    )
    # Set by the periodic re-aggregation when Dawid-Skene disagrees with the crowd's decision.
    flagged_for_review = models.BooleanField(default=False)
    flag_reason = models.CharField(max_length=200, blank=True)
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
        ACTIVE = "active"
        VOTED = "voted"
        SKIPPED = "skipped"
        EXPIRED = "expired"

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
        MAJORITY = "majority"
        DYNAMIC = "dynamic"
        GOLD = "gold"
        REVIEW = "review"
        VERIFIED = "verified"

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


class QueuedJob(models.Model):
    """A background task waiting to reach the broker (a transactional outbox).

    Written in the transaction that asks for the work, so the work is never lost: sent right
    after the commit when the broker is up, else by the periodic flush once it is back.
    """

    task_name = models.CharField(max_length=200)
    args = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.task_name}{tuple(self.args)}"


# --- exports (PRODUCT.md section 6) -----------------------------------------------------------


class Export(TimeStamped):
    """One ImageNet-style export of a project's decided images. The row exists before its job
    runs; the job fills it in (pretix's pattern). Files live at `location` once `state` is done."""

    class State(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        EXPIRED = "expired", "expired (files removed)"

    class ValLayout(models.TextChoices):
        FOLDERS = "folders", "val/<wnid>/<wnid>_<id>.JPEG"
        FLAT = "flat", "val/ILSVRC_val_<n>.JPEG with ground truth files"

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
        TRAIN = "train"
        VAL = "val"

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


# --- the ML loop (PRODUCT.md section 5) -------------------------------------------------------


class TrainingRun(TimeStamped):
    """One training of a project's model, created before its task runs.

    A worker claims it with a conditional update (PENDING -> RUNNING), so a redelivered or
    duplicated task finds it taken and exits. While it trains it records a heartbeat; a
    RUNNING run whose heartbeat went stale lost its worker.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    class Reason(models.TextChoices):
        REQUESTED = "requested", "an admin asked"
        GROWTH = "growth", "verified labels grew"

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


# --- verification: the candidate-grid task (issue 15) ------------------------------------------


class Candidate(TimeStamped):
    """A label an image may show, to be verified by yes/no votes; one per (image, label).

    Gold candidates (from gold images) have a known answer: they are mixed into grids to
    measure the volunteers and are never decided."""

    class Source(models.TextChoices):
        IMPORT = "import", "import folder"
        UPLOAD = "upload"
        MODEL = "model", "the model's top-k"
        GOLD = "gold", "a gold image"

    class State(models.TextChoices):
        OPEN = "open"
        ACCEPTED = "accepted"
        REJECTED = "rejected"
        DISPUTED = "disputed"

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
