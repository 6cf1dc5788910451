"""The admin's export flow in a real browser: sign in, open the export page from the project
list, start an export, watch the progress bar fill, download the tar, load it in torchvision."""

import random
import tarfile
import threading

import pytest
from django.db import connection
from torchvision.datasets import ImageFolder, ImageNet

from annotate.models import Export, Image, User
from annotate.services import export as export_service
from annotate.services import export_worker
from annotate.services.export import layout as export_layout
from tests.export_helpers import decided_images
from tests.factories import LabelFactory, ProjectFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.postgresql]

PASSWORD = "Exp0rt-all-the-things!"


@pytest.fixture
def jobs_in_a_thread(monkeypatch, settings, tmp_path):
    """The export job runs in a thread of this process instead of a worker (the live server
    and the browser are here too), a little slowed down so that the page sees it running."""
    settings.EXPORT_DIR = tmp_path / "exports"
    settings.EXPORT_PROGRESS_SECONDS = 0.0
    # Copied in this process, in batches of 4 images, each read a little slowly.
    settings.EXPORT_PROCESSES = 0
    monkeypatch.setattr(export_layout, "COPY_BATCH", 4)
    real_read = export_worker.Copier.read

    def slow_read(self, batch, names):
        threading.Event().wait(0.03)
        return real_read(self, batch, names)

    monkeypatch.setattr(export_worker.Copier, "read", slow_read)
    threads = []

    def run_in_thread(name, *args):
        if name != "annotate.export_run":
            return True  # image preprocessing: not needed here

        def run():
            try:
                export_service.export_run(export_id=args[0], run_token="browser")
            finally:
                connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        threads.append(thread)
        return True

    monkeypatch.setattr("annotate.services.jobs.publish", run_in_thread)
    yield threads
    for thread in threads:
        thread.join(30)


def test_admin_exports_from_the_page_and_gets_a_loadable_tar(
    transactional_db, live_server, page, jobs_in_a_thread, tmp_path, screenshot_path
):
    rng = random.Random(3)
    project = ProjectFactory(name="Browser shapes")
    for i, name in enumerate(["circle", "square"]):
        label = LabelFactory(project=project, wnid=f"n0300000{i}", name=name)
        decided_images(project, label, 15, rng)
    for image in decided_images(project, label, 2, rng):  # gold: not exported by default
        Image.objects.filter(pk=image.pk).update(is_gold=True)
    admin = UserFactory(username="ada", role=User.Role.ADMIN, is_staff=True)
    admin.set_password(PASSWORD)
    admin.save()

    page.goto("/accounts/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/")
    page.locator("li.card", has_text="Browser shapes").get_by_role("link", name="Export").click()
    page.wait_for_url(f"**/projects/{project.pk}/export/")

    # Before starting: what these options export (issue 18: "195 decided images" was shown
    # while the export held 34, gold left out unsaid), and the count follows the options.
    preview = page.locator("#export-preview")
    preview.filter(has_text="export 30 images in 2 classes").wait_for()
    assert "2 gold images are left out" in preview.inner_text()
    page.check("#include_gold")
    preview.filter(has_text="export 32 images").wait_for()
    page.fill("#min_per_class", "16")  # square has 17 with its gold ones, circle 15
    preview.filter(has_text="export 17 images in 1 classes").wait_for()
    assert "15 images of 1 classes" in preview.inner_text()
    page.fill("#min_per_class", "2")
    page.uncheck("#include_gold")
    preview.filter(has_text="export 30 images").wait_for()
    assert page.locator("#exports-none").is_visible()

    page.fill("#val_fraction", "0.2")
    page.fill("#seed", "4")
    page.check("#blur_faces")
    # Record every value the progress bar takes, as the admin would see it move.
    page.evaluate(
        "() => { window.seen = []; const bar = document.getElementById('export-progress');"
        " new MutationObserver(() => window.seen.push(bar.value))"
        ".observe(bar, {attributes: true}); }"
    )
    page.get_by_role("button", name="Export").click()
    download_link = page.locator("#export-download")
    assert download_link.is_hidden()
    page.locator("#export-progress").wait_for(state="visible")
    download_link.wait_for(state="visible")
    assert page.inner_text("#export-error") == ""
    assert "6 val images in 2 classes" in page.inner_text("#export-text")
    seen = page.evaluate("window.seen")
    assert seen[-1] == 1 and seen == sorted(seen), seen
    # The list of exports shows the new one once it is done, without a reload.
    page.locator("#exports-list tr", has_text="done").wait_for()
    assert page.locator("#exports-none").is_hidden()
    page.screenshot(path=screenshot_path("export-done.png"))

    with page.expect_download() as info:
        download_link.click()
    saved = tmp_path / "download.tar"
    info.value.save_as(saved)
    export = Export.objects.get()
    assert (
        export.state,
        export.seed,
        export.val_fraction,
        export.created_by,
        export.blur_faces,
    ) == ("done", 4, 0.2, admin, True)
    with tarfile.open(saved) as tar:
        tar.extractall(tmp_path / "got", filter="data")
    root = tmp_path / "got" / export.name
    val = ImageNet(str(root), split="val")
    assert len(val) == 6 and val.wnids == ["n03000000", "n03000001"]
    assert len(ImageFolder(root / "train")) == 24
    assert page.js_errors == []


def test_refused_options_are_shown_with_each_field_at_fault(transactional_db, live_server, page):
    """The API's error answer (detail, fields) reaches the admin as one readable line."""
    project = ProjectFactory(name="Refused options")
    admin = UserFactory(username="ada", role=User.Role.ADMIN, is_staff=True)
    admin.set_password(PASSWORD)
    admin.save()
    page.goto("/accounts/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/")
    page.goto(f"/projects/{project.pk}/export/")
    # Past the browser's own checks of the inputs, as a script or an older browser would be.
    page.evaluate("() => { document.getElementById('export-form').noValidate = true; }")
    page.fill("#seed", "-3")
    page.fill("#min_per_class", "1")
    page.get_by_role("button", name="Export").click()
    error = page.locator("#export-error")
    error.filter(has_text="seed").wait_for()
    text = error.inner_text()
    assert text.startswith("Some fields are invalid."), text
    assert "seed: " in text and "min_per_class: " in text, text
    assert not Export.objects.exists()
    assert page.js_errors == []
