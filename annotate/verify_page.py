"""The verification page (issue 15): one label, a grid of its candidate images to mark."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from annotate.models import Project, User
from annotate.selectors import verification as verification_selectors


@login_required
def verify_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = get_object_or_404(Project, pk=project_id)
    user = request.user
    assert isinstance(user, User)  # login_required
    done = verification_selectors.grids_done(project_id=project.pk, user=user)
    return render(request, "annotate/verify.html", {"project": project, "grids_done": done})
