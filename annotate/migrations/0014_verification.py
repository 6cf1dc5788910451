"""Verification, the candidate-grid task (issue 15): candidates, grids, their votes."""

import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotate", "0013_label_wordnet"),
    ]

    operations = [
        migrations.AddField(
            model_name="project",
            name="candidate_min_probability",
            field=models.FloatField(
                default=0.2,
                help_text="The model's top-k labels at or above this probability become candidates.",  # noqa: E501
                validators=[
                    django.core.validators.MinValueValidator(0.0),
                    django.core.validators.MaxValueValidator(1.0),
                ],
            ),
        ),
        migrations.AddField(
            model_name="project",
            name="grid_size",
            field=models.PositiveSmallIntegerField(
                default=16,
                help_text="Candidate images per verification grid.",
                validators=[
                    django.core.validators.MinValueValidator(12),
                    django.core.validators.MaxValueValidator(24),
                ],
            ),
        ),
        migrations.AddField(
            model_name="project",
            name="task",
            field=models.CharField(
                choices=[
                    ("classify", "classify: one image, pick its label"),
                    ("verify", "verify: one label, mark the candidate images that show it"),
                ],
                default="classify",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="project",
            name="when_all_rejected",
            field=models.CharField(
                choices=[
                    ("next_candidate", "the model's next candidate, else the classify queue"),
                    ("classify", "the classify queue"),
                    ("exclude", "excluded"),
                ],
                default="next_candidate",
                help_text="What becomes of an image once every candidate label of it is rejected.",
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="decision",
            name="rule",
            field=models.CharField(
                choices=[
                    ("majority", "Majority"),
                    ("dynamic", "Dynamic"),
                    ("gold", "Gold"),
                    ("review", "Review"),
                    ("verified", "Verified"),
                ],
                max_length=16,
            ),
        ),
        migrations.CreateModel(
            name="Candidate",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "source",
                    models.CharField(
                        choices=[
                            ("import", "import folder"),
                            ("upload", "Upload"),
                            ("model", "the model's top-k"),
                            ("gold", "a gold image"),
                        ],
                        max_length=16,
                    ),
                ),
                ("probability", models.FloatField(blank=True, null=True)),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("open", "Open"),
                            ("accepted", "Accepted"),
                            ("rejected", "Rejected"),
                            ("disputed", "Disputed"),
                        ],
                        default="open",
                        max_length=16,
                    ),
                ),
                ("is_gold", models.BooleanField(default=False)),
                ("gold_answer", models.BooleanField(blank=True, null=True)),
                ("yes_count", models.PositiveSmallIntegerField(default=0)),
                ("no_count", models.PositiveSmallIntegerField(default=0)),
                ("leases_count", models.PositiveSmallIntegerField(default=0)),
                ("posterior", models.FloatField(blank=True, null=True)),
                (
                    "image",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="candidates",
                        to="annotate.image",
                    ),
                ),
                (
                    "label",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="candidates",
                        to="annotate.label",
                    ),
                ),
                (
                    "project",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="candidates",
                        to="annotate.project",
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="Grid",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("expires_at", models.DateTimeField()),
                ("answered_at", models.DateTimeField(blank=True, null=True)),
                ("expired", models.BooleanField(default=False)),
                (
                    "label",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="annotate.label",
                    ),
                ),
                (
                    "project",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="grids",
                        to="annotate.project",
                    ),
                ),
                (
                    "volunteer",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="grids",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="GridItem",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "candidate",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="grid_items",
                        to="annotate.candidate",
                    ),
                ),
                (
                    "grid",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="items",
                        to="annotate.grid",
                    ),
                ),
                (
                    "volunteer",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="CandidateVote",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("answer", models.BooleanField()),
                ("reference", models.BooleanField(blank=True, null=True)),
                (
                    "candidate",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="votes",
                        to="annotate.candidate",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="candidate_votes",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "grid_item",
                    models.OneToOneField(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="vote",
                        to="annotate.griditem",
                    ),
                ),
            ],
        ),
        migrations.AddIndex(
            model_name="candidate",
            index=models.Index(
                condition=models.Q(("is_gold", False), ("state", "open")),
                fields=["project", "label", "id"],
                name="candidate_open_by_label",
            ),
        ),
        migrations.AddIndex(
            model_name="candidate",
            index=models.Index(
                condition=models.Q(("is_gold", True)),
                fields=["project", "label", "id"],
                name="candidate_gold_by_label",
            ),
        ),
        migrations.AddConstraint(
            model_name="candidate",
            constraint=models.UniqueConstraint(
                fields=("image", "label"), name="candidate_unique_image_label"
            ),
        ),
        migrations.AddConstraint(
            model_name="candidate",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("gold_answer__isnull", True), ("is_gold", False)),
                    models.Q(("gold_answer__isnull", False), ("is_gold", True)),
                    _connector="OR",
                ),
                name="candidate_gold_has_answer",
            ),
        ),
        migrations.AddIndex(
            model_name="grid",
            index=models.Index(
                condition=models.Q(("answered_at__isnull", True), ("expired", False)),
                fields=["expires_at"],
                name="grid_outstanding_expiry",
            ),
        ),
        migrations.AddConstraint(
            model_name="griditem",
            constraint=models.UniqueConstraint(
                fields=("volunteer", "candidate"), name="griditem_unique_volunteer_candidate"
            ),
        ),
        migrations.AddConstraint(
            model_name="candidatevote",
            constraint=models.UniqueConstraint(
                fields=("candidate", "user"), name="candidatevote_unique_candidate_user"
            ),
        ),
    ]
