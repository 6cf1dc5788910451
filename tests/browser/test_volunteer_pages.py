"""The labeling page where volunteers stay (issue 18), at a desktop size and on a 390x844
phone: the image and the first labels on one screen without scrolling, each new image from the
top, touch targets of 44 px; leases handed back when the page is hidden or closed; the class
guide opened with ? or a tap; the count today against a goal, the project's bar, a thanks at
the goal, the chosen label flashing."""

import io
import time

import pytest
from PIL import Image as PILImage
from PIL import ImageDraw

from annotate.models import Assignment, Image, User
from annotate.services.ingest import images_upload
from tests.browser.conftest import TIMEOUT_MS, sign_in
from tests.export_helpers import decide
from tests.factories import LabelFactory, ProjectFactory, UserFactory
from tests.label_catalog import suggest

pytestmark = [pytest.mark.browser, pytest.mark.postgresql]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
SHOWN = (
    "() => { const img = document.getElementById('image');"
    " return !img.hidden && img.dataset.assignment && img.complete && img.naturalWidth > 0; }"
)


def labeling_project(n_images: int, *, size=(640, 480), examples: int = 0):
    """Four labels; each vote decides its image. `examples` images of the first label are
    decided already (the class guide shows them)."""
    project = ProjectFactory(name="Garden birds", min_votes=1, max_votes=1, agreement=1.0)
    labels = [
        LabelFactory(
            project=project,
            wnid=f"n0150000{i}",
            name=name,
            gloss=f"a bird called {name}",
            position=i,
        )
        for i, name in enumerate(["robin", "wren", "blackbird", "sparrow"])
    ]
    result = images_upload(
        project=project,
        files=[(f"{i}.jpg", io.BytesIO(scene(i, size))) for i in range(n_images + examples)],
    )
    assert len(result.created) == n_images + examples, result
    for image in Image.objects.filter(pk__in=result.created[:examples]):
        decide(image, labels[0])
    return project, labels


def scene(seed: int, size) -> bytes:
    """A distinct picture per seed: a sky, a hill and a round bird (for the screenshots)."""
    width, height = size
    picture = PILImage.new("RGB", size)
    draw = ImageDraw.Draw(picture)
    for y in range(height):
        shade = int(120 + 100 * y / height)
        draw.line([(0, y), (width, y)], fill=(shade - 60, shade - 20 + seed, 235))
    draw.ellipse([-width // 4, height * 2 // 3, width * 5 // 4, height * 2], fill=(70, 140, 60))
    x, y = width // 3 + 20 * seed, height // 2
    draw.ellipse([x, y - 60, x + 150, y + 50], fill=(150 + 10 * seed, 70, 40))
    draw.ellipse([x + 110, y - 95, x + 190, y - 25], fill=(120, 60, 35))
    draw.polygon([(x + 185, y - 65), (x + 225, y - 55), (x + 185, y - 45)], fill=(230, 180, 40))
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=85)
    return out.getvalue()


def open_page(browser, live_server, viewport, *, mobile: bool):
    context = browser.new_context(
        base_url=live_server.url, viewport=viewport, has_touch=mobile, is_mobile=mobile
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.js_errors = []
    page.on("pageerror", lambda error: page.js_errors.append(str(error)))
    return context, page


def assignment_on_screen(page) -> int:
    page.wait_for_function(SHOWN)
    return int(page.evaluate("() => document.getElementById('image').dataset.assignment"))


def vote_by(page, action, assignment_id: int) -> None:
    """Do `action` (a click, tap or key) and wait for the vote's answer and the next image."""
    with page.expect_response(
        lambda r: r.url.endswith(f"/api/assignments/{assignment_id}/vote/")
    ) as answer:
        action()
    assert answer.value.status == 201
    page.wait_for_function(
        "(before) => document.getElementById('image').dataset.assignment !== before",
        arg=str(assignment_id),
    )


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_one_screen_per_image_from_the_top(
    transactional_db, browser, live_server, screenshot_path, viewport
):
    project, labels = labeling_project(4)
    for image in Image.objects.filter(project=project):  # a confident suggestion, marked
        suggest(image, labels, confidence=0.86)
    user = UserFactory(username="pia", daily_goal=60)
    phone = viewport is PHONE
    context, page = open_page(browser, live_server, viewport, mobile=phone)
    try:
        sign_in(page, user)
        page.goto(f"/projects/{project.pk}/label/")
        first = assignment_on_screen(page)
        height = viewport["height"]
        button = page.locator("#labels button[data-key='1']")
        box = button.bounding_box()
        # The first label button is wholly on the first screen, without scrolling.
        assert box["y"] >= 0 and box["y"] + box["height"] <= height, box
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], box
        image_box = page.locator("#image").bounding_box()
        if phone:
            assert image_box["height"] <= 0.45 * height, image_box
            # Touch targets: every label button and action button at least 44 px high.
            for target in page.locator(
                "#labels button, .side-actions button, #goal-setting summary"
            ).all():
                target_box = target.bounding_box()
                assert target_box["height"] >= 44 and target_box["width"] >= 44, target_box
        assert page.evaluate("document.scrollingElement.scrollWidth") <= viewport["width"]
        assert "suggested" in page.get_attribute("#labels button[data-key='1']", "class")
        name = "phone" if phone else "desktop"
        page.screenshot(path=screenshot_path(f"labeling-{name}.png"))

        # A volunteer who scrolled down (to read the guide line, say) gets the next image
        # from the top.
        page.evaluate("window.scrollTo(0, document.scrollingElement.scrollHeight)")
        tap_or_click = button.tap if phone else button.click
        vote_by(page, tap_or_click, first)
        page.wait_for_function("() => document.scrollingElement.scrollTop === 0")
        assert page.js_errors == []
    finally:
        context.close()


def test_a_left_page_hands_its_images_back(transactional_db, browser, live_server):
    project, _ = labeling_project(3)
    user = UserFactory(username="cleo")
    context, page = open_page(browser, live_server, DESKTOP, mobile=False)
    try:
        sign_in(page, user)
        page.goto(f"/projects/{project.pk}/label/")
        assignment_on_screen(page)
        # The image on screen and the next one are leased to this volunteer.
        page.wait_for_function(
            "() => performance.getEntriesByType('resource')"
            ".filter(e => e.name.endsWith('/assignments/')).length >= 2"
        )
        assert Assignment.objects.filter(user=user, state="active").count() == 2
        # The volunteer leaves the page (another address, or the tab closes): pagehide, and a
        # beacon per lease.
        page.goto("about:blank")
        wait_until(lambda: not Assignment.objects.filter(user=user, state="active").exists())
        assert list(Image.objects.values_list("leases_count", flat=True)) == [0, 0, 0]
    finally:
        context.close()


def test_a_closed_tab_hands_its_images_back(transactional_db, browser, live_server):
    """The tab itself closes (not a navigation): the browser still delivers the beacons."""
    project, _ = labeling_project(3)
    user = UserFactory(username="edda")
    context, page = open_page(browser, live_server, DESKTOP, mobile=False)
    try:
        sign_in(page, user)
        page.goto(f"/projects/{project.pk}/label/")
        assignment_on_screen(page)
        wait_until(lambda: Assignment.objects.filter(user=user, state="active").count() == 2)
        # A second tab of the same browser stays open, as when one of several tabs is closed.
        other = context.new_page()
        page.close(run_before_unload=True)
        wait_until(lambda: not Assignment.objects.filter(user=user, state="active").exists())
        assert list(Image.objects.values_list("leases_count", flat=True)) == [0, 0, 0]
        assert not other.is_closed()
    finally:
        context.close()


def wait_until(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_hidden_page_hands_its_images_back_and_leases_anew_when_shown(transactional_db, page):
    project, _ = labeling_project(3)
    user = UserFactory(username="dora")
    sign_in(page, user)
    page.goto(f"/projects/{project.pk}/label/")
    assignment_on_screen(page)
    wait_until(lambda: Assignment.objects.filter(user=user, state="active").count() == 2)
    # The tab goes to the background (another tab, the phone's home screen).
    page.evaluate(
        "() => { Object.defineProperty(document, 'visibilityState',"
        " {value: 'hidden', configurable: true});"
        " document.dispatchEvent(new Event('visibilitychange')); }"
    )
    wait_until(lambda: not Assignment.objects.filter(user=user, state="active").exists())
    assert sum(Image.objects.values_list("leases_count", flat=True)) == 0
    # Back: the page leases again and shows an image, never "nothing left".
    page.evaluate(
        "() => { Object.defineProperty(document, 'visibilityState',"
        " {value: 'visible', configurable: true});"
        " document.dispatchEvent(new Event('visibilitychange')); }"
    )
    assignment_on_screen(page)
    assert page.locator("#empty").is_hidden()
    wait_until(lambda: Assignment.objects.filter(user=user, state="active").count() == 2)
    assert page.js_errors == []


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_the_class_guide_opens_with_a_key_or_a_tap(
    transactional_db, browser, live_server, viewport
):
    project, labels = labeling_project(2, examples=2)
    user = UserFactory(username="gus")
    phone = viewport is PHONE
    context, page = open_page(browser, live_server, viewport, mobile=phone)
    try:
        sign_in(page, user)
        page.goto(f"/projects/{project.pk}/label/")
        first = assignment_on_screen(page)
        guide = page.locator("#guide")
        if phone:
            page.locator("#guide-open").tap()
        else:
            page.keyboard.press("?")
        guide.wait_for(state="visible")
        robin = guide.locator(f"#guide-{labels[0].pk}")
        assert "a bird called robin" in robin.inner_text()
        # Its examples are decided images of the label, which the volunteer may see.
        examples = robin.locator(".guide-examples img")
        assert examples.count() == 2
        page.wait_for_function(
            "() => Array.from(document.querySelectorAll('#guide .guide-examples img'))"
            ".every(img => img.complete && img.naturalWidth > 0)"
        )
        assert "No decided example yet" in guide.locator(f"#guide-{labels[1].pk}").inner_text()
        box = guide.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
        # While it is open a label's key does not vote; Esc (or Close) shuts it.
        page.keyboard.press("1")
        if phone:
            page.locator("#guide-close").tap()
        else:
            page.keyboard.press("Escape")
        guide.wait_for(state="hidden")
        assert not Assignment.objects.filter(pk=first, state="voted").exists()
        assert page.js_errors == []
    finally:
        context.close()


def test_progress_today_against_a_goal_and_the_chosen_label_flashes(transactional_db, page):
    project, labels = labeling_project(4)
    user = UserFactory(username="ines")
    sign_in(page, user)
    page.goto(f"/projects/{project.pk}/label/")
    first = assignment_on_screen(page)
    assert page.inner_text("#project-progress-text") == "0 of 4 images decided"
    assert page.locator("#goal-of").is_hidden()

    # The goal is set on the page and kept on the account.
    page.locator("#goal-setting summary").click()
    page.fill("#goal-input", "2")
    page.locator("#goal-form button").click()
    page.locator("#goal-of").wait_for(state="visible")
    assert page.inner_text("#goal") == "2"
    user.refresh_from_db()
    assert user.daily_goal == 2

    # Each vote: the chosen button flashes, today's count moves, the project's bar fills.
    page.evaluate(
        "() => { window.flashed = []; new MutationObserver((records) => records.forEach(r =>"
        " r.target.classList.contains('chosen') && window.flashed.push(r.target.dataset.label)))"
        ".observe(document.getElementById('labels'), {attributes: true, subtree: true,"
        " attributeFilter: ['class']}); }"
    )
    vote_by(page, lambda: page.keyboard.press("2"), first)
    page.wait_for_function("() => document.getElementById('today').textContent === '1'")
    assert set(page.evaluate("window.flashed")) == {str(labels[1].pk)}
    page.wait_for_function(
        "() => document.getElementById('project-progress-text').textContent"
        " === '1 of 4 images decided'"
    )
    second = assignment_on_screen(page)
    vote_by(page, lambda: page.keyboard.press("3"), second)
    milestone = page.locator("#milestone")
    milestone.wait_for(state="visible")
    assert "Goal reached: 2 votes today" in milestone.inner_text()
    assert page.inner_text("#today") == "2" and page.inner_text("#goal") == "2"
    assert float(page.get_attribute("#project-progress", "value") or 0) == 2
    assert User.objects.get(pk=user.pk).daily_goal == 2
    assert page.js_errors == []


def test_a_weak_suggestion_is_not_shown_and_enter_does_not_vote_for_it(transactional_db, page):
    project, labels = labeling_project(2)
    weak, strong = Image.objects.filter(project=project).order_by("id")
    suggest(weak, labels, confidence=0.5)  # below the default threshold, 0.7
    suggest(strong, labels[::-1], confidence=0.9)
    sign_in(page, UserFactory(username="otto"))
    page.goto(f"/projects/{project.pk}/label/")
    first = assignment_on_screen(page)
    assert Assignment.objects.get(pk=first).image_id == weak.pk
    assert page.locator("#labels button.suggested").count() == 0
    assert page.locator("#suggestion").is_hidden()
    page.keyboard.press("Enter")  # nothing suggested: Enter votes for nothing
    vote_by(page, lambda: page.keyboard.press("2"), first)
    assert Assignment.objects.get(pk=first).vote.label_id == labels[1].pk
    assignment_on_screen(page)
    marked = page.locator("#labels button.suggested")
    assert marked.count() == 1 and marked.get_attribute("data-label") == str(labels[-1].pk)
    assert "90%" in page.inner_text("#suggestion")
    assert page.js_errors == []
