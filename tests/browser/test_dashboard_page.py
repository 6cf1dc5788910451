"""The admin dashboard in a real browser: charts of where the project stands, and a zip of
images brought in through the import form with a progress bar."""

import zipfile

import pytest

from annotate.models import Image
from annotate.services import serving, voting
from tests.browser.conftest import sign_in
from tests.factories import ImageFactory, LabelFactory, ProjectFactory, UserFactory, image_bytes

pytestmark = [pytest.mark.browser, pytest.mark.postgresql]


def test_admin_sees_the_project_and_imports_a_zip(
    transactional_db, page, tmp_path, screenshot_path
):
    project = ProjectFactory(name="Dashboard birds", min_votes=1, max_votes=1, agreement=1.0)
    labels = [
        LabelFactory(project=project, name=name, position=i)
        for i, name in enumerate(["heron", "stork"])
    ]
    for _ in range(3):
        ImageFactory(project=project)
    volunteer = UserFactory(username="val")
    for label in (labels[0], labels[0], labels[1]):
        assignment = serving.assignment_lease(project=project, user=volunteer)
        voting.vote_submit(assignment_id=assignment.pk, user=volunteer, label_id=label.pk)

    sign_in(page, UserFactory(role="admin"))
    page.get_by_role("link", name="Dashboard").click()
    page.wait_for_url(f"**/projects/{project.pk}/dashboard/")
    assert "3 images" in page.locator("#progress h2").inner_text()
    classes = page.locator("#classes svg").text_content()
    assert "heron" in classes and "stork" in classes
    assert page.locator("#votes-per-day svg circle").count() == 1  # all votes today
    assert page.locator("#active-today").inner_text() == "1"
    assert "val" in page.locator("#annotators").inner_text()

    archive = tmp_path / "birds.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(4):
            zf.writestr(
                f"batch/bird-{i}.png", image_bytes((40 * i, 90, 160), size=(96, 64), fmt="PNG")
            )
        zf.writestr("batch/readme.txt", "not an image")
        zf.writestr("../escape.png", image_bytes((1, 1, 1), fmt="PNG"))
    page.set_input_files("#import-files", str(archive))
    page.wait_for_function(
        "() => document.getElementById('import-status').textContent.startsWith('Done')"
    )
    assert page.locator("#import-progress").get_attribute("value") == "100"
    assert "4 created" in page.locator("#import-status").inner_text()
    rejected = page.locator("#import-rejected").inner_text()
    assert "readme.txt" in rejected and "escape.png" in rejected
    assert Image.objects.filter(project=project).count() == 7
    page.screenshot(path=screenshot_path("dashboard.png"), full_page=True)
    assert page.js_errors == []


def test_dashboard_is_for_admins(transactional_db, page):
    project = ProjectFactory()
    sign_in(page, UserFactory(role="reviewer"))
    assert page.goto(f"/projects/{project.pk}/dashboard/").status == 403
