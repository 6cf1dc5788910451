"""The labeling page does what its keys and buttons show: Enter on a focused button votes for
that button, the suggested label's button is marked, Z enlarges small images and resets on
the next image, and a vote refused because the volunteer was signed out is kept, said, and
sent again after signing in."""

import io

import pytest

from annotate.models import Assignment, Vote
from annotate.services.ingest import images_upload
from tests.browser.conftest import sign_in
from tests.browser.test_labeling_page import COLORS, press_and_wait, shown_assignment
from tests.factories import LabelFactory, ProjectFactory, UserFactory, image_bytes

pytestmark = [pytest.mark.browser, pytest.mark.postgresql]


def shapes_project(*, n_images: int, size: tuple[int, int] = (64, 48)):
    project = ProjectFactory(name="Shapes", min_votes=1, max_votes=1, agreement=1.0)
    labels = [
        LabelFactory(project=project, wnid=f"n0000000{i}", name=name, position=i)
        for i, name in enumerate(["circle", "square"])
    ]
    stored = images_upload(
        project=project,
        files=[
            (f"shape-{i}.png", io.BytesIO(image_bytes(color, size=size, fmt="PNG")))
            for i, color in enumerate(COLORS[:n_images])
        ],
    )
    assert len(stored.created) == n_images, stored
    return project, labels


def suggest_everywhere(page, label_id: int) -> None:
    """Every leased assignment comes with a confident suggestion of `label_id` (the model is
    not what is under test here, the page's handling of its suggestion is)."""

    def add_suggestion(route):
        try:
            response = route.fetch()
        except Exception:  # the test ended (its browser closed) while a lease was in flight
            return
        if response.status not in (200, 201):
            route.fulfill(response=response)
            return
        assignment = response.json()
        assignment["suggestion"] = {"label": label_id, "confidence": 0.93}
        route.fulfill(response=response, json=assignment)

    page.route("**/api/projects/*/assignments/", add_suggestion)


def test_enter_votes_for_the_focused_button_and_the_suggestion_is_marked(transactional_db, page):
    project, (circle, square) = shapes_project(n_images=3)
    user = UserFactory(username="tab")
    sign_in(page, user)
    suggest_everywhere(page, circle.pk)
    page.goto(f"/projects/{project.pk}/label/")
    first = shown_assignment(page)

    circle_button = page.locator(f"#labels button[data-label='{circle.pk}']")
    square_button = page.locator(f"#labels button[data-label='{square.pk}']")
    page.wait_for_function("() => !document.getElementById('suggestion').hidden")
    assert "suggested" in circle_button.get_attribute("class")
    assert "suggestion" in (circle_button.get_attribute("aria-describedby") or "")
    assert "suggested" not in square_button.get_attribute("class")

    # Tab from the top of the page until the square button has the focus, then Enter.
    for _ in range(40):
        if square_button.evaluate("(b) => b === document.activeElement"):
            break
        page.keyboard.press("Tab")
    assert square_button.evaluate("(b) => b === document.activeElement")
    press_and_wait(page, "Enter", first, "vote")
    assert Vote.objects.get(assignment_id=first).label_id == square.pk

    # No control focused (the focus went to the image, not lost to the page): Enter accepts
    # the suggestion.
    second = shown_assignment(page)
    assert page.evaluate("() => document.activeElement.matches('figure.frame')")
    press_and_wait(page, "Enter", second, "vote")
    assert Vote.objects.get(assignment_id=second).label_id == circle.pk
    assert page.js_errors == []
    page.unroute_all(behavior="ignoreErrors")


def test_zoom_enlarges_a_small_image_and_resets_on_the_next(transactional_db, page):
    project, _ = shapes_project(n_images=2, size=(256, 256))
    sign_in(page, UserFactory(username="zed"))
    page.goto(f"/projects/{project.pk}/label/")
    first = shown_assignment(page)
    frame = page.locator("figure.frame")
    image = page.locator("#image")
    before = image.bounding_box()

    page.keyboard.press("z")
    assert "zoomed" in frame.get_attribute("class")
    zoomed = image.bounding_box()
    frame_box = frame.bounding_box()
    # Larger than its natural 256 px and than the fitted view, as wide as the frame at least.
    assert zoomed["width"] > 256 and zoomed["height"] > 256, zoomed
    assert zoomed["width"] >= before["width"] - 1 and zoomed["height"] >= before["height"] - 1
    assert zoomed["width"] >= frame_box["width"] - 20, (zoomed, frame_box)

    press_and_wait(page, "1", first, "vote")
    shown_assignment(page)
    assert "zoomed" not in frame.get_attribute("class")
    assert image.bounding_box() == pytest.approx(before, abs=1)
    assert page.js_errors == []


def test_a_vote_refused_as_signed_out_is_kept_and_sent_after_signing_in(
    transactional_db, page, live_server
):
    project, (circle, _) = shapes_project(n_images=3)
    user = UserFactory(username="sam")
    sign_in(page, user)
    label_path = f"/projects/{project.pk}/label/"
    page.goto(label_path)
    first = shown_assignment(page)
    page.wait_for_load_state("networkidle")  # the next image is leased while signed in

    page.context.clear_cookies()  # as signing out in another tab does
    with page.expect_response(
        lambda r: r.url.endswith(f"/api/assignments/{first}/vote/")
    ) as answer:
        page.keyboard.press("1")
    assert answer.value.status == 401
    message = page.locator("#message")
    page.wait_for_function(
        "() => document.getElementById('message').textContent.includes('Signed out')"
    )
    # The page stays on the image voted on, says so, and links to a sign-in returning here.
    page.wait_for_function(f"() => ({IMAGE_ID_JS})() === '{first}'")
    assert "retrying" not in message.inner_text()
    assert "not saved" in message.inner_text()
    link = message.get_by_role("link", name="sign in again")
    assert link.get_attribute("href") == f"/accounts/login/?next={label_path}"
    assert page.locator("#count").inner_text() == "0"
    assert not Vote.objects.filter(user=user).exists()
    page.keyboard.press("2")  # further keys do not move past the image either
    assert page.evaluate(IMAGE_ID_JS) == str(first)

    link.click()
    page.fill("#id_username", user.username)
    page.fill("#id_password", "correct-horse-battery")
    with page.expect_response(
        lambda r: r.url.endswith(f"/api/assignments/{first}/vote/")
    ) as answer:
        page.get_by_role("button", name="Sign in").click()
    assert answer.value.status == 201
    page.wait_for_url(f"{live_server.url}{label_path}")
    page.wait_for_function("() => document.getElementById('count').textContent.trim() === '1'")
    assert Vote.objects.get(user=user).assignment_id == first
    assert Vote.objects.get(user=user).label_id == circle.pk
    assert Assignment.objects.get(pk=first).state == Assignment.State.VOTED
    next_id = shown_assignment(page)
    assert next_id != first
    assert page.js_errors == []


IMAGE_ID_JS = "() => document.getElementById('image').dataset.assignment || ''"
