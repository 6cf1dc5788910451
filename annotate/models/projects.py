"""Projects, their consensus policy, their labels and their teams."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q
from django.utils.translation import pgettext_lazy

from annotate.models.base import TimeStamped


class Project(TimeStamped):
    class Mode(models.TextChoices):
        MAJORITY = "majority", pgettext_lazy("consensus strategy", "Majority")
        DYNAMIC = "dynamic", pgettext_lazy("consensus strategy", "Dynamic")

    class ServingOrder(models.TextChoices):
        CLOSEST = "closest", pgettext_lazy("serving order", "closest to a decision first")
        UNCERTAIN = "uncertain", pgettext_lazy("serving order", "the model's least certain first")
        RANDOM = "random", pgettext_lazy("serving order", "Random")

    class Task(models.TextChoices):
        CLASSIFY = "classify", pgettext_lazy("project task", "classify: one image, pick its label")
        VERIFY = (
            "verify",
            pgettext_lazy(
                "project task", "verify: one label, mark the candidate images that show it"
            ),
        )

    class AllRejected(models.TextChoices):
        NEXT_CANDIDATE = (
            "next_candidate",
            pgettext_lazy(
                "when all rejected", "the model's next candidate, else the classify queue"
            ),
        )
        CLASSIFY = "classify", pgettext_lazy("when all rejected", "the classify queue")
        EXCLUDE = "exclude", pgettext_lazy("when all rejected", "excluded")

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    # Consensus policy (PRODUCT.md section 3).
    min_votes = models.PositiveSmallIntegerField(default=2, validators=[MinValueValidator(1)])
    # 4 with agreement 0.75: at 5, a fifth vote after four undecided ones could never decide
    # (issue 16; annotate.services.policies refuses such a policy).
    max_votes = models.PositiveSmallIntegerField(default=4, validators=[MinValueValidator(1)])
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
    # The model's suggestion is shown to volunteers only at or above this calibrated confidence:
    # a weaker one misleads more often than it helps (issue 18).
    suggestion_threshold = models.FloatField(
        default=0.7,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Suggestions below this calibrated confidence are not shown to volunteers.",
    )
    # The model also learns from the unlabeled images (self-training, worker.ml.selftrain;
    # issue 22): on bench/ml_label_efficiency.py it is as accurate or better than supervised
    # training in the same CPU budget. A project turns it off here.
    semi_supervised = models.BooleanField(default=True)
    serving_order = models.CharField(
        max_length=16, choices=ServingOrder.choices, default=ServingOrder.CLOSEST
    )
    # Gold schedule: a new volunteer sees gold at `gold_rate`, falling toward `gold_rate_min`
    # (halving every `gold_half_life` votes); an unreliable volunteer stays at `gold_rate`.
    # A small share by default: a project with gold images uses them (issue 16); one without
    # finds none to serve. 0 turns gold off.
    gold_rate = models.FloatField(
        default=0.05, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
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
    # Quality (issue 16).
    plurality_at_max_votes = models.BooleanField(
        default=False,
        help_text="Majority mode: at max_votes, decide by a unique plurality instead of disputing.",
    )
    model_max_accuracy = models.FloatField(
        default=0.9,
        validators=[MinValueValidator(0.0), MaxValueValidator(0.99)],
        help_text="Dynamic mode: the model's suggestion counts at most as one volunteer of this "
        "accuracy (0: the model does not vote).",
    )
    flag_confidence = models.FloatField(
        default=0.9,
        validators=[MinValueValidator(0.5), MaxValueValidator(1.0)],
        help_text="Re-aggregation flags a decision only when Dawid-Skene prefers another "
        "answer with at least this probability.",
    )
    train_on_model_decided = models.BooleanField(
        default=False,
        help_text="Train on labels that the model decided mostly by itself.",
    )
    # The active model's measured accuracy per confidence band ({"0.9": [hits, total], ...}),
    # refreshed by the periodic re-aggregation: how much its suggestion is worth as a vote.
    model_reliability = models.JSONField(default=dict, blank=True)
    # How alike the crowd's mistakes on one true answer are (a Dirichlet concentration: small,
    # they go to one look-alike; large, spread evenly), estimated by re-aggregation.
    mistake_concentration = models.FloatField(default=1.0)
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
    # Teams (issue 19): a private project is seen only by its members and global admins.
    private = models.BooleanField(
        default=False, help_text="Only the project's members (and admins) see it."
    )
    # Off: reviewers decide only disputed or flagged images (and may change a review's
    # decision); on: any image in any state, an open one without votes included.
    review_any_state = models.BooleanField(
        default=False, help_text="Reviewers may decide images in any state, not only disputed."
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
    # The name in other languages, by language code ({"zh-hans": "虎斑猫"}), imported as the
    # mapping file's third column; `name` is shown where a language has none.
    names = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "wnid"], name="label_unique_wnid"),
        ]

    def __str__(self) -> str:
        return f"{self.wnid} {self.name}"

    def name_in(self, language: str | None) -> str:
        """The name volunteers of `language` (a code like "zh-hans") see."""
        return label_name_in(self.name, self.names, language)


def label_name_in(name: str, names: dict[str, str], language: str | None) -> str:
    """`names`' entry for `language`, or for its general language ("zh" for "zh-hans"), or
    else `name`."""
    if language and names:
        language = language.lower()
        found = names.get(language) or names.get(language.split("-")[0])
        if found:
            return found
    return name


class ProjectMember(TimeStamped):
    """A user's role in one project, beside their global role (see annotate.selectors.access
    for how the two combine)."""

    class Role(models.TextChoices):
        VOLUNTEER = "volunteer"
        REVIEWER = "reviewer"
        ADMIN = "admin"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="members")
    # Indexed by the unique (user, project) constraint, which a user's own lookups start with.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="memberships",
        db_index=False,
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VOLUNTEER)

    class Meta:
        ordering = ["project_id", "user_id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "project"], name="project_member_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.project_id} as {self.role}"
