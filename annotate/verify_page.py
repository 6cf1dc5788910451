"""The verification page (issue 15): one label, a grid of its candidate images to mark."""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from annotate import selectors
from annotate.models import User
from annotate.selectors import verification as verification_selectors
from annotate.services.errors import NotFound


@login_required
def verify_page(request: HttpRequest, project_id: int) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)  # login_required
    try:  # a private project of another team is as missing as one that never was
        project = selectors.access_project(user=user, project_id=project_id)
    except NotFound as error:
        raise Http404(error.message) from None
    done = verification_selectors.grids_done(project_id=project.pk, user=user)
    return render(request, "annotate/verify.html", {"project": project, "grids_done": done})
