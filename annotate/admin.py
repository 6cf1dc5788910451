from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from annotate.models import (
    Assignment,
    Candidate,
    Decision,
    Grid,
    Image,
    Label,
    Project,
    ProjectMember,
    User,
    Vote,
)
from annotate.services import accounts
from annotate.services.projects import control_character


class LabelingUserChangeForm(UserChangeForm):
    """The admin's user form keeps the API's rule: the last active admin stays an admin."""

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        stored = User.objects.filter(pk=self.instance.pk).first()
        role, active = cleaned.get("role"), cleaned.get("is_active", True)
        if (
            stored is not None
            and (role != User.Role.ADMIN or not active)
            and accounts.user_is_last_admin(user=stored)
        ):
            self.add_error("role", "This is the last active admin; make another admin first.")
        return cleaned


@admin.register(User)
class LabelingUserAdmin(UserAdmin):
    form = LabelingUserChangeForm
    list_display = ["username", "email", "role", "votes_count", "is_staff", "date_joined"]
    list_filter = ["role", "is_staff", "is_superuser"]
    fieldsets = [*(UserAdmin.fieldsets or ()), ("Labeling", {"fields": ["role", "votes_count"]})]
    readonly_fields = ["votes_count"]
    actions = ["delete_selected"]

    # A user's votes, answers and leases cascade with the account, which would leave image
    # counters, states and decisions resting on votes that are gone (issue 19). Such a user is
    # deactivated instead; a user with none of them may still be deleted.
    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        user = self.get_object(request, unquote(object_id))
        if user is None or not accounts.user_has_labeling_history(user=user):
            return super().delete_view(request, object_id, extra_context)
        if not self.has_delete_permission(request, user):
            raise PermissionDenied
        if request.method == "POST":
            accounts.user_deactivate(user=user)
            self.log_change(request, user, "Deactivated instead of deleted (has votes).")
            self.message_user(
                request,
                f"{user} has votes, so the account was deactivated, not deleted.",
                messages.WARNING,
            )
            return HttpResponseRedirect(reverse("admin:annotate_user_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Deactivate {user}?",
            "object": user,
            "opts": self.opts,
            **(extra_context or {}),
        }
        return TemplateResponse(
            request, "admin/annotate/user/deactivate_confirmation.html", context
        )

    @admin.action(
        permissions=["delete"],
        description="Delete selected users (those with votes are deactivated instead)",
    )
    def delete_selected(self, request: HttpRequest, queryset: QuerySet[User]) -> Any:
        """Replaces the site-wide action of the same name for users."""
        keep = [u for u in queryset if accounts.user_has_labeling_history(user=u)]
        for user in keep:
            accounts.user_deactivate(user=user)
            self.log_change(request, user, "Deactivated instead of deleted (has votes).")
        if keep:
            self.message_user(
                request,
                f"{len(keep)} user(s) with votes deactivated, not deleted: "
                + ", ".join(str(user) for user in keep),
                messages.WARNING,
            )
        others = queryset.exclude(pk__in=[user.pk for user in keep])
        if not others.exists():
            return None
        # The rest have nothing that would go with them: Django's own confirmation and delete.
        return django_delete_selected(self, request, others)


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


class ProjectMemberInline(admin.TabularInline):
    """The project's team (issue 19): each member's role in this project."""

    model = ProjectMember
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "task", "mode", "min_votes", "max_votes", "agreement", "serving_order"]
    list_filter = ["private"]
    inlines = [LabelInline, ProjectMemberInline]


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

    # Read-only: a vote counts in its image's votes_count and state, its voter's votes_count
    # and the image's decision; one added, changed or deleted here would leave those behind.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Vote | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Vote | None = None) -> bool:
        return False


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
