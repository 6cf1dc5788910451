"""Server-rendered pages. The labeling page talks to the REST API from its small script."""

from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET

from annotate import selectors
from annotate.forms import SignupForm
from annotate.models import Label, Project
from annotate.services import accounts
from annotate.services.errors import ServiceError

# Hotkeys for labels: 1-9, then letters not taken by actions (N none, S skip, U undo, Z zoom).
LABEL_KEYS = list("123456789") + [c for c in "abcdefghijklmopqrtvwxy"]


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
def project_list(request: HttpRequest) -> HttpResponse:
    projects = list(selectors.projects_for_user(user=request.user))
    progress = selectors.project_progress(project_ids=[p.pk for p in projects])
    rows = [{"project": p, "progress": progress[p.pk]} for p in projects]
    return render(request, "annotate/project_list.html", {"rows": rows})


@login_required
def label_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = get_object_or_404(Project, pk=project_id)
    labels = [
        {
            "id": label.pk,
            "wnid": label.wnid,
            "name": label.name,
            "gloss": label.gloss,
            "key": LABEL_KEYS[index] if index < len(LABEL_KEYS) else "",
        }
        for index, label in enumerate(Label.objects.filter(project=project))
    ]
    stats = selectors.user_stats(user=request.user)
    return render(
        request,
        "annotate/label.html",
        {"project": project, "labels": labels, "stats": stats},
    )


@login_required
def my_stats(request: HttpRequest) -> HttpResponse:
    return render(request, "annotate/my_stats.html", {"stats": selectors.user_stats(user=request.user)})


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})


# --- export page (issue 6): a form, a progress bar and a download link; the script uses the API.


@login_required
def export_page(request: HttpRequest, project_id: int) -> HttpResponse:
    from django.core.exceptions import PermissionDenied as PageForbidden

    from annotate.models import Export

    project = get_object_or_404(Project, pk=project_id)
    if not request.user.is_project_admin:
        raise PageForbidden("Only admins export datasets.")
    progress = selectors.project_progress(project_ids=[project.pk])[project.pk]
    return render(
        request,
        "annotate/export.html",
        {
            "project": project,
            "decided": progress["consensus"] + progress["reviewed"],
            "exports": Export.objects.filter(project=project).order_by("-id")[:20],
            "layouts": Export.ValLayout.choices,
        },
    )
