from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from annotate.models import (
    Assignment,
    Candidate,
    Decision,
    Grid,
    Image,
    Label,
    Project,
    User,
    Vote,
)
from annotate.services.projects import control_character


@admin.register(User)
class LabelingUserAdmin(UserAdmin):
    list_display = ["username", "email", "role", "votes_count", "is_staff", "date_joined"]
    list_filter = ["role", "is_staff", "is_superuser"]
    fieldsets = [*(UserAdmin.fieldsets or ()), ("Labeling", {"fields": ["role", "votes_count"]})]
    readonly_fields = ["votes_count"]


class LabelForm(forms.ModelForm):
    """The admin's label rows refuse control characters as the API and import_labels do."""

    class Meta:
        model = Label
        fields = [
            "project",
            "wnid",
            "name",
            "gloss",
            "position",
            "synonyms",
            "parent_wnid",
            "parent_name",
        ]

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        for field in ("wnid", "name", "gloss", "parent_wnid", "parent_name"):
            found = control_character(str(cleaned.get(field) or ""))
            if found is not None:
                self.add_error(field, f"{field} contains {found}.")
        return cleaned


class LabelInline(admin.TabularInline):
    model = Label
    form = LabelForm
    extra = 0


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "task", "mode", "min_votes", "max_votes", "agreement", "serving_order"]
    inlines = [LabelInline]


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "project",
        "original_name",
        "state",
        "votes_count",
        "leases_count",
        "is_gold",
    ]
    list_filter = ["project", "state", "is_gold"]
    search_fields = ["original_name", "sha256"]
    # Counters and state change only through the services, which keep them consistent.
    readonly_fields = ["sha256", "votes_count", "leases_count", "free_slots", "state"]
    raw_id_fields = ["gold_label"]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "image", "user", "state", "expires_at"]
    list_filter = ["state"]
    raw_id_fields = ["image", "user"]


@admin.register(Vote)
class VoteAdmin(admin.ModelAdmin):
    list_display = ["id", "image", "user", "label", "created_at"]
    raw_id_fields = ["image", "user", "assignment", "label"]


@admin.register(Decision)
class DecisionAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "image",
        "label",
        "excluded",
        "rule",
        "confidence",
        "is_current",
        "created_at",
    ]
    list_filter = ["rule", "is_current"]
    raw_id_fields = ["image", "label", "decided_by", "replaces"]

    # Read-only: decisions are made by votes, reviewers and ingest, together with the image's
    # state and the voters' records (annotate.services.serving's docstring); one added or
    # changed here would leave those behind.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# Exports (issue 6): read-only; they are made and changed by the export service.
from annotate.models import Export  # noqa: E402


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "state", "val_fraction", "seed", "val_layout", "created_at"]
    list_filter = ["state", "project"]
    readonly_fields = [field.name for field in Export._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


# Verification (issue 15): read-only views; the services keep counters and states consistent.
@admin.register(Candidate)
class CandidateAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "image", "label", "source", "state", "yes_count", "no_count"]
    list_filter = ["project", "state", "source", "is_gold"]
    raw_id_fields = ["image", "label"]
    readonly_fields = [
        "state",
        "yes_count",
        "no_count",
        "leases_count",
        "posterior",
        "is_gold",
        "gold_answer",
    ]


@admin.register(Grid)
class GridAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "volunteer", "label", "expires_at", "answered_at", "expired"]
    list_filter = ["project", "expired"]
    readonly_fields = ["volunteer", "label", "expires_at", "answered_at", "expired"]
