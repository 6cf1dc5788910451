"""Server-rendered pages. The labeling page talks to the REST API from its small script."""

from collections.abc import Iterable

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.translation import get_language, gettext
from django.views.decorators.http import require_GET

from annotate import charts, selectors
from annotate.forms import SignupForm
from annotate.models import Export, Image, Label, Project, ProjectMember, User
from annotate.selectors import verification as verification_selectors
from annotate.services import accounts
from annotate.services.errors import NotFound, ServiceError
from annotate.services.errors import PermissionDenied as RoleTooLow
from labeling_api.throttles import throttle_posts

# Hotkeys for labels: 1-9, then letters not taken by actions (N none, S skip, U undo, Z zoom).
LABEL_KEYS = list("123456789") + list("abcdefghijklmopqrtvwxy")


class AuthenticatedHttpRequest(HttpRequest):
    """The request of a view behind login_required: its `user` is a User, never
    AnonymousUser. An annotation only; Django makes plain HttpRequests."""

    user: User


@throttle_posts(per_account=True)
def signup(request: HttpRequest) -> HttpResponse:
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user, _ = accounts.user_register(**form.cleaned_data)
        except ServiceError as error:
            form.add_error(error.field if error.field in form.fields else None, error.message)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("project-list")
    return render(request, "registration/signup.html", {"form": form})


@login_required
def project_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    projects = list(selectors.projects_for_user(user=request.user))
    progress = selectors.project_progress(project_ids=[p.pk for p in projects])
    memberships = selectors.member_roles(user=request.user)
    rows = []
    for p in projects:
        # The links each project shows: the higher of the global and the team role there.
        role = selectors.combined_role(user=request.user, project=p, member=memberships.get(p.pk))
        rows.append(
            {
                "project": p,
                "progress": progress[p.pk],
                "can_review": role in (ProjectMember.Role.REVIEWER, ProjectMember.Role.ADMIN),
                "can_admin": role == ProjectMember.Role.ADMIN,
            }
        )
    return render(request, "annotate/project_list.html", {"rows": rows})


# Up to this many labels the labeling page shows them all as buttons, most with a key; past it,
# a search box, and the page reads the labels from the API (kept by the browser with their
# ETag), so that it stays small at any label count.
BUTTONS_UP_TO = 35


@login_required
def label_page(request: AuthenticatedHttpRequest, project_id: int) -> HttpResponse:
    project = _page_project(request, project_id)
    first = list(selectors.project_labels(project=project)[: BUTTONS_UP_TO + 1])
    searchable = len(first) > BUTTONS_UP_TO
    stats = selectors.user_stats(user=request.user)
    rows = [] if searchable else _rows_of(first)
    if rows:  # the class guide: a few decided images of each label
        examples = selectors.label_examples(project=project)
        for row in rows:
            row["examples"] = [
                reverse("api:image-file", args=[image_id])
                for image_id in examples.get(row["id"], [])
            ]
    progress = selectors.project_progress(project_ids=[project.pk])[project.pk]
    decided = progress["total"] - progress["open"] - progress["disputed"]
    return render(
        request,
        "annotate/label.html",
        {
            "project": project,
            "labels": rows,
            "searchable": searchable,
            "stats": stats,
            "goal": request.user.daily_goal,
            "project_done": decided,
            "project_total": progress["total"],
        },
    )


def _page_project(
    request: AuthenticatedHttpRequest,
    project_id: int,
    need: str = ProjectMember.Role.VOLUNTEER,
    refusal: str = "",
) -> Project:
    """The project as selectors.access_project gives it (with the caller's role there at least
    `need`): a missing or hidden one as the 404 page, a lower role as the 403 page (`refusal`,
    else the selector's sentence). As in the API, a role the caller holds in no project is
    refused first, the same for every project id."""
    if not selectors.holds_role_somewhere(user=request.user, need=need):
        raise PermissionDenied(refusal)
    try:
        return selectors.access_project(user=request.user, project_id=project_id, need=need)
    except NotFound as error:
        raise Http404(error.message) from None
    except RoleTooLow as error:
        raise PermissionDenied(refusal or error.message) from None


def _label_rows(project: Project) -> list[dict]:
    return _rows_of(selectors.project_labels(project=project))


def _rows_of(labels: Iterable[Label]) -> list[dict]:
    language = get_language()
    return [
        {
            "id": label.pk,
            "wnid": label.wnid,
            "name": label.name,
            "display_name": label.name_in(language),
            "gloss": label.gloss,
            "parent": label.parent_name or label.parent_wnid,
            "key": LABEL_KEYS[index] if index < len(LABEL_KEYS) else "",
        }
        for index, label in enumerate(labels)
    ]


@login_required
def review_page(request: AuthenticatedHttpRequest, project_id: int) -> HttpResponse:
    project = _page_project(
        request, project_id, ProjectMember.Role.REVIEWER, "Only reviewers and admins may review."
    )
    return render(
        request, "annotate/review.html", {"project": project, "labels": _label_rows(project)}
    )


@login_required
def annotators_page(request: AuthenticatedHttpRequest, project_id: int) -> HttpResponse:
    project = _page_project(
        request,
        project_id,
        ProjectMember.Role.REVIEWER,
        "Only reviewers and admins may see the annotator table.",
    )
    annotators = list(selectors.project_annotators(project=project)[:500])
    verification = verification_selectors.annotators_verification(
        project_id=project.pk, user_ids=[stats.user_id for stats in annotators]
    )
    rows = [
        {
            "stats": stats,
            "agreement": stats.agreed_votes / stats.decided_votes if stats.decided_votes else None,
            "gold_accuracy": stats.gold_correct / stats.gold_votes if stats.gold_votes else None,
            "unreliable": stats.estimated_accuracy < project.reliability_threshold,
            "verification": verification.get(stats.user_id, {}),
        }
        for stats in annotators
    ]
    return render(request, "annotate/annotators.html", {"project": project, "rows": rows})


@login_required
def dashboard_page(request: AuthenticatedHttpRequest, project_id: int) -> HttpResponse:
    """Where an admin sees where a project stands: progress, classes, activity, volunteers."""
    project = _page_project(
        request, project_id, ProjectMember.Role.ADMIN, "Only admins see the project dashboard."
    )
    progress = selectors.project_progress(project_ids=[project.pk])[project.pk]
    # Each state by its name in the page's language (the stored values stay English).
    states = [(str(label), progress[value]) for value, label in Image.State.choices]
    annotators = list(selectors.project_annotators(project=project)[:10])
    context = {
        "project": project,
        "progress": progress,
        "progress_chart": charts.bar_chart(
            states, title=gettext("Images by state"), column=gettext("State")
        ),
        "class_chart": charts.bar_chart(
            selectors.project_class_counts(project=project)[:30],
            title=gettext("Decided images per class"),
            column=gettext("Class"),
        ),
        "votes_chart": charts.line_chart(
            selectors.project_votes_per_day(project=project),
            title=gettext("Votes per day (30 days)"),
            column=gettext("Day"),
        ),
        "active_today": selectors.project_active_volunteers(project=project, days=1),
        "active_week": selectors.project_active_volunteers(project=project, days=7),
        "annotators": [
            {"stats": s, "unreliable": s.estimated_accuracy < project.reliability_threshold}
            for s in annotators
        ],
        "upload_limit_mb": settings.UPLOAD_MAX_REQUEST_BYTES // (1024 * 1024),
    }
    context.update(_model_context(project))
    return render(request, "annotate/dashboard.html", context)


def _model_context(project: Project) -> dict:
    """The model section: versions with held-out accuracy, oldest first, and which is active."""
    versions = list(selectors.project_model_versions(project=project))
    if not versions:
        return {}
    active = selectors.project_active_model_id(project=project)
    rows = [
        {
            "label": f"v{v.pk}",
            "train_size": v.train_size,
            "accuracy": v.top1,
            "active": v.pk == active,
            "ece": v.ece,
            "unlabeled": v.unlabeled_size,
        }
        for v in versions
    ]
    # The reliability table of the active version (else the newest): claimed vs measured.
    shown = next((v for v in versions if v.pk == active), versions[-1])
    return {
        "model_versions": rows,
        "reliability_version": f"v{shown.pk}",
        "reliability_method": shown.calibration_method,
        "reliability": [
            {
                "band": f"{band['low']:.0%}–{band['high']:.0%}",
                "claimed": f"{band['claimed']:.0%}",
                "measured": f"{band['measured']:.0%}",
                "count": band["count"],
            }
            for band in shown.reliability
        ],
        "accuracy_chart": charts.line_chart(
            [(f"v{v.pk} ({v.train_size} images)", v.top1) for v in versions],
            title=gettext("Held-out top-1 accuracy by version (training images)"),
            y_max=1.0,
            percent=True,
            column=gettext("Version (training images)"),
        ),
    }


@login_required
def my_stats(request: AuthenticatedHttpRequest) -> HttpResponse:
    if request.method == "POST":
        accounts.user_set_leaderboard_visibility(
            user=request.user, visible=request.POST.get("show_on_leaderboard") == "on"
        )
        return redirect("my-stats")
    return render(
        request,
        "annotate/my_stats.html",
        {
            "stats": selectors.user_stats(user=request.user),
            "leaderboard": selectors.leaderboard(viewer=request.user),
        },
    )


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})


@method_decorator(throttle_posts(per_account=True), name="dispatch")
class LoginView(auth_views.LoginView):
    """Django's sign-in page, with limits on attempts per client address and per account."""


# --- export page (issue 6): a form, a progress bar and a download link; the script uses the API.


@login_required
def export_page(request: AuthenticatedHttpRequest, project_id: int) -> HttpResponse:
    project = _page_project(
        request, project_id, ProjectMember.Role.ADMIN, "Only admins export datasets."
    )
    progress = selectors.project_progress(project_ids=[project.pk])[project.pk]
    return render(
        request,
        "annotate/export.html",
        {
            "project": project,
            "decided": progress["consensus"] + progress["reviewed"],
            "exports": selectors.project_exports(project=project)[:20],
            "layouts": Export.ValLayout.choices,
        },
    )
