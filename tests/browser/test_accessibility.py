"""Every page checked with axe-core (the npm package, pinned in package.json), at desktop and
phone (390x844) sizes, in English and Simplified Chinese: no serious or critical violation.
A screenshot of each page in each language and size goes to test-output/screenshots/.

Also: a visible focus ring of at least 3:1, a skip link, and one h1 on every page."""

from pathlib import Path

import pytest
from django.test import Client

from annotate.models import Project
from tests.browser.conftest import REPO_ROOT, TIMEOUT_MS
from tests.browser.test_labeling_page import make_project, shown_assignment
from tests.browser.test_review_page import disputed_project
from tests.factories import ProjectFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.postgresql]

AXE = REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
LANGUAGES = {"en": "en-US", "zh-hans": "zh-CN"}
# What a page shows when it is ready (its script has drawn what it draws).
IMAGE_SHOWN = (
    "() => { const img = document.getElementById('image'); return !img.hidden && img.complete; }"
)
READY = {
    "label": IMAGE_SHOWN,
    "review": IMAGE_SHOWN,
    "verify": "() => document.getElementById('loading').hidden",
}
RUN_AXE = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  if (!result.passes.length) return [{ id: "axe-ran-no-rules" }];
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                   nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
}"""


def axe_violations(page) -> list[dict]:
    if not AXE.is_file():
        pytest.fail(
            f"axe-core is missing at {AXE}: run `npm ci` at the repository root "
            "(package.json pins it).",
            pytrace=False,
        )
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    return page.evaluate(RUN_AXE)


def signed_in_context(browser, live_server, user, *, size: str, language: str):
    """A browser context already signed in as `user` (a session cookie made by Django's test
    client), whose browser asks for `language`."""
    client = Client()
    client.force_login(user)
    # bypass_csp: axe-core is injected as an inline script, which the pages' own
    # Content-Security-Policy rightly refuses; tests/browser/test_csp.py checks the policy.
    context = browser.new_context(
        base_url=live_server.url,
        viewport=SIZES[size],
        locale=LANGUAGES[language],
        bypass_csp=True,
    )
    context.set_default_timeout(TIMEOUT_MS)
    if user is not None:
        cookie = client.cookies["sessionid"]
        context.add_cookies([{"name": "sessionid", "value": cookie.value, "url": live_server.url}])
    return context


def pages_to_check(classify: Project, disputes: Project, verify: Project) -> dict[str, str]:
    return {
        "project-list": "/",
        "label": f"/projects/{classify.pk}/label/",
        "review": f"/projects/{disputes.pk}/review/",
        "verify": f"/projects/{verify.pk}/verify/",
        "dashboard": f"/projects/{classify.pk}/dashboard/",
        "annotators": f"/projects/{disputes.pk}/annotators/",
        "export": f"/projects/{classify.pk}/export/",
        "my-stats": "/me/",
        "not-found": "/no/such/page/",
    }


def check_page(page, name: str, path: str, shot: Path) -> list[str]:
    """Open `path`, wait for its script, check it; the problems found, as lines."""
    response = page.goto(path)
    if name in READY:
        page.wait_for_function(READY[name])
    problems = []
    expected = 404 if name == "not-found" else 200
    if response is None or response.status != expected:
        problems.append(f"{name}: status {response and response.status}")
    if page.locator("h1").count() != 1:
        problems.append(f"{name}: {page.locator('h1').count()} h1 elements")
    if page.locator("a.skip-link[href='#main']").count() != 1:
        problems.append(f"{name}: no skip link")
    for violation in axe_violations(page):
        problems.append(f"{name}: {violation}")
    page.screenshot(path=str(shot), full_page=True)
    return problems


@pytest.mark.parametrize("size", SIZES)
def test_every_page_passes_axe_in_both_languages(
    transactional_db, browser, live_server, screenshot_path, size
):
    # One admin per language: each gets images of their own to label.
    admins = {language: UserFactory(role="admin", is_staff=True) for language in LANGUAGES}
    disputes, _, _ = disputed_project()
    classify, _ = make_project(name="Classify", label_names=["heron", "stork"], n_images=4)
    verify = ProjectFactory(name="Verify", task="verify")
    pages = pages_to_check(classify, disputes, verify)
    problems: list[str] = []
    for language in LANGUAGES:
        context = signed_in_context(
            browser, live_server, admins[language], size=size, language=language
        )
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error, errors=errors: errors.append(str(error)))
        try:
            for name, path in pages.items():
                shot = screenshot_path(f"{name}-{language}-{size}.png")
                problems += check_page(page, name, path, shot)
            # Signed out: the sign-in and sign-up pages, and a page that is not allowed.
            context.clear_cookies()
            for name, path in {"login": "/accounts/login/", "signup": "/accounts/signup/"}.items():
                problems += check_page(
                    page, name, path, screenshot_path(f"{name}-{language}-{size}.png")
                )
        finally:
            context.close()
        problems += [f"script error ({language}): {error}" for error in errors]
    assert problems == []


def contrast(first: str, second: str) -> float:
    """WCAG contrast ratio of two CSS rgb()/rgba() colours."""

    def luminance(css: str) -> float:
        red, green, blue = (
            int(float(part)) for part in css[css.index("(") + 1 : css.index(")")].split(",")[:3]
        )
        channels = []
        for value in (red / 255, green / 255, blue / 255):
            channels.append(value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4)
        return 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]

    light, dark = sorted([luminance(first), luminance(second)], reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_focus_is_visible_and_label_buttons_have_contrast(transactional_db, browser, live_server):
    project, _ = make_project(name="Focus", label_names=["heron", "stork"], n_images=4)
    user = UserFactory(username="kay")
    context = signed_in_context(browser, live_server, user, size="desktop", language="en")
    page = context.new_page()
    try:
        page.goto(f"/projects/{project.pk}/label/")
        shown_assignment(page)
        # The first Tab reaches the skip link, which then shows on the screen.
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.className") == "skip-link"
        assert page.locator(".skip-link").bounding_box()["y"] >= 0
        button = page.locator("#labels button.label-button").first
        button.focus()
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Tab")  # focused by keyboard: :focus-visible
        style = button.evaluate(
            "(b) => { const s = getComputedStyle(b); return {outline: s.outlineColor,"
            " width: parseFloat(s.outlineWidth), style: s.outlineStyle, border: s.borderTopColor,"
            " around: getComputedStyle(b.closest('.panel') || document.body).backgroundColor,"
            " page: getComputedStyle(document.body).backgroundColor}; }"
        )
        assert style["style"] != "none" and style["width"] >= 2, style
        page_background = style["page"]
        assert contrast(style["outline"], page_background) >= 3, style
        assert contrast(style["outline"], "rgb(255, 255, 255)") >= 3, style
        assert contrast(style["border"], "rgb(255, 255, 255)") >= 3, style
    finally:
        context.close()
