"""Every page under the Content-Security-Policy (issue 19), in a real browser: each page is
loaded, its scripts run (the labeling page leases and shows an image, the dashboard draws its
charts), and any violation the browser reports, as a console message or a
securitypolicyviolation event, fails the test."""

import io

import pytest

from annotate.services.ingest import images_upload
from tests.browser.conftest import sign_in
from tests.browser.test_verify_page import verify_project
from tests.factories import LabelFactory, ProjectFactory, UserFactory, image_bytes

pytestmark = [pytest.mark.browser, pytest.mark.postgresql]

# Kept by the page from its first script on: what the browser refused, and why.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def _violations_on(page, path: str, console: list[str]) -> list[str]:
    page.goto(path)
    page.wait_for_load_state("networkidle")
    found = page.evaluate("window.__cspViolations || []")
    return [f"{path}: {v}" for v in found] + [f"{path}: {c}" for c in console]


def test_no_page_breaks_the_content_security_policy(transactional_db, page) -> None:
    project = ProjectFactory(name="CSP birds", min_votes=2, max_votes=3)
    for i, name in enumerate(["heron", "stork"]):
        LabelFactory(project=project, name=name, position=i)
    images_upload(
        project=project,
        files=[
            (f"b{i}.png", io.BytesIO(image_bytes((30 * i, 90, 160), fmt="PNG"))) for i in range(3)
        ],
    )
    verify = verify_project(candidates=4)
    admin = UserFactory(role="admin", is_staff=True, is_superuser=True)

    console: list[str] = []
    page.on(
        "console",
        lambda message: (
            console.append(message.text)
            if "Content Security Policy" in message.text or "Refused to" in message.text
            else None
        ),
    )
    page.add_init_script(RECORD_VIOLATIONS)
    found: list[str] = []
    for path in ("/accounts/login/", "/accounts/signup/"):
        found += _violations_on(page, path, console)
        console.clear()
    sign_in(page, admin)
    pages = [
        "/",
        f"/projects/{project.pk}/label/",
        f"/projects/{project.pk}/review/",
        f"/projects/{project.pk}/dashboard/",
        f"/projects/{project.pk}/annotators/",
        f"/projects/{project.pk}/export/",
        f"/projects/{verify.pk}/verify/",
        "/me/",
        "/admin/",
        "/admin/annotate/user/",
        f"/admin/annotate/project/{project.pk}/change/",
        "/api/docs/",
    ]
    for path in pages:
        found += _violations_on(page, path, console)
        console.clear()
    # The labeling page did its work under the policy: an image is on screen.
    page.goto(f"/projects/{project.pk}/label/")
    page.wait_for_function(
        "() => { const i = document.querySelector('img'); return i && i.naturalWidth > 0; }"
    )
    assert found == [], "\n".join(found)
    assert page.js_errors == []
