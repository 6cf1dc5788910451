"""Every page on a 360 px phone and on a desktop (issue 18): nothing wider than the screen
(the annotator table was 762 px, the dashboard 580, the export page 453: tables now scroll
inside themselves), and the dashboard's charts readable at both sizes, with their numbers in
a collapsed table and a one-point line drawn as a labelled point."""

import io

import pytest
from django.utils import timezone

from annotate.models import ActiveModel, ModelVersion, User
from annotate.services import serving, voting
from annotate.services.ingest import images_upload
from tests.browser.conftest import TIMEOUT_MS, sign_in
from tests.factories import LabelFactory, ProjectFactory, UserFactory, image_bytes

pytestmark = [pytest.mark.browser, pytest.mark.postgresql]

NARROW = {"width": 360, "height": 740}
DESKTOP = {"width": 1280, "height": 800}


def busy_project():
    """Long label names, a dozen volunteers with votes, one model version: what made the
    tables and charts overflow."""
    project = ProjectFactory(
        name="A project with a rather long name for a phone", min_votes=2, max_votes=3
    )
    labels = [
        LabelFactory(
            project=project,
            wnid=f"n0210000{i}",
            name=f"great spotted woodpecker variety {i}",
            position=i,
        )
        for i in range(3)
    ]
    created = images_upload(
        project=project,
        files=[(f"{i}.jpg", io.BytesIO(image_bytes((20 * i, 90, 200 - 15 * i)))) for i in range(6)],
    ).created
    assert len(created) == 6
    for n in range(12):
        volunteer = UserFactory(username=f"volunteer-with-a-long-name-{n}")
        assignment = serving.assignment_lease(project=project, user=volunteer)
        if assignment is not None:
            voting.vote_submit(
                assignment_id=assignment.pk, user=volunteer, label_id=labels[n % 3].pk
            )
    version = ModelVersion.objects.create(
        project=project,
        arch="resnet18",
        file="v1.pt",
        weights_source="scratch",
        device="cpu",
        train_size=40,
        holdout_size=10,
        training_seconds=1.0,
        top1=0.8,
    )
    ActiveModel.objects.create(project=project, version=version, promoted_at=timezone.now())
    return project


PAGES = ["/", "label/", "review/", "annotators/", "dashboard/", "export/", "/me/", "verify/"]


@pytest.mark.parametrize("viewport", [NARROW, DESKTOP], ids=["phone-360", "desktop"])
def test_every_page_fits_the_screen_and_charts_are_readable(
    transactional_db, browser, live_server, screenshot_path, viewport
):
    project = busy_project()
    admin = UserFactory(username="adminwithalongname", role=User.Role.ADMIN, is_staff=True)
    phone = viewport is NARROW
    context = browser.new_context(
        base_url=live_server.url, viewport=viewport, has_touch=phone, is_mobile=phone
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        for path in ("/accounts/signup/", "/accounts/login/"):
            assert page.goto(path).status == 200
            width = page.evaluate("document.scrollingElement.scrollWidth")
            assert width <= viewport["width"], (path, width)
        sign_in(page, admin)
        for path in PAGES:
            url = path if path.startswith("/") else f"/projects/{project.pk}/{path}"
            assert page.goto(url).status == 200, url
            page.wait_for_load_state("networkidle")
            width = page.evaluate("document.scrollingElement.scrollWidth")
            assert width <= viewport["width"], (url, width)
            name = url.strip("/").replace("/", "-") or "projects"
            size = "phone" if phone else "desktop"
            page.screenshot(path=screenshot_path(f"page-{name}-{size}.png"), full_page=True)

        page.goto(f"/projects/{project.pk}/dashboard/")
        # States, votes per day, model accuracy (and decided images per class, once any is).
        drawn = page.locator("svg.chart").count()
        assert drawn >= 3
        # Every chart's text at least 11 px tall as drawn, at either size.
        smallest = page.evaluate(
            "() => Math.min(...Array.from(document.querySelectorAll('svg.chart text'))"
            ".map(t => t.getBoundingClientRect().height))"
        )
        assert smallest >= 11, smallest
        # Their numbers too, in a table closed until asked for.
        tables = page.locator("details.chart-data")
        assert tables.count() == drawn
        assert page.locator("details.chart-data[open]").count() == 0
        model = page.locator("#models details.chart-data")
        model.locator("summary").click()
        assert "80%" in model.locator("table").inner_text()
        # One model version: a labelled point, not a lone dot.
        point = page.locator("#models svg circle.single-point")
        assert point.count() == 1
        assert "80%" in page.locator("#models svg").text_content()

        page.goto(f"/projects/{project.pk}/annotators/")
        note = page.locator("#ds-note")
        assert "“–” until" in note.inner_text()
        assert page.locator("th a[href='#ds-note']").count() == 1
        assert errors == []
    finally:
        context.close()
