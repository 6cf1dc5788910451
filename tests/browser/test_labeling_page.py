"""The volunteer's labeling flow in a real browser: sign up, open a project, label with the
keyboard only, skip, run out of work; and label names are shown as text, never as markup."""

import io

import pytest

from annotate.models import Assignment, Image, Label, User, Vote
from annotate.services.ingest import images_upload
from tests.factories import LabelFactory, ProjectFactory, UserFactory, image_bytes

pytestmark = [pytest.mark.browser, pytest.mark.postgresql]

# Six distinct images (distinct bytes, so none is dropped as a duplicate).
COLORS = [
    (220, 30, 30),
    (30, 160, 40),
    (30, 60, 220),
    (230, 200, 20),
    (150, 40, 180),
    (20, 190, 190),
]
PASSWORD = "Lab3ling-is-fun!"

IMAGE_ID = "() => document.getElementById('image').dataset.assignment || ''"


def make_project(*, name, label_names, n_images):
    # Each vote decides its image: one vote needed, one allowed, full agreement.
    project = ProjectFactory(name=name, min_votes=1, max_votes=1, agreement=1.0)
    labels = [
        LabelFactory(project=project, wnid=f"n0000000{i}", name=label_name, position=i)
        for i, label_name in enumerate(label_names)
    ]
    result = images_upload(
        project=project,
        files=[
            (f"image-{i}.jpg", io.BytesIO(image_bytes(color)))
            for i, color in enumerate(COLORS[:n_images])
        ],
    )
    assert len(result.created) == n_images, result
    return project, labels


def shown_assignment(page) -> int:
    """Wait until an image is on screen and loaded; return its assignment id."""
    page.wait_for_function(
        "() => { const img = document.getElementById('image');"
        " return !img.hidden && img.dataset.assignment && img.complete && img.naturalWidth > 0; }"
    )
    return int(page.evaluate(IMAGE_ID))


def press_and_wait(page, key: str, assignment_id: int, action: str) -> None:
    """Press `key` on the image of `assignment_id`; wait for the API's answer and for the page
    to show what comes next (another assignment, or none)."""
    url = f"/api/assignments/{assignment_id}/{action}/"

    def is_answer(response):
        return response.url.endswith(url) and response.request.method == "POST"

    with page.expect_response(is_answer) as answer:
        page.keyboard.press(key)
    expected = 201 if action == "vote" else 204
    assert answer.value.status == expected, (key, answer.value.status, answer.value.text())
    page.wait_for_function(f"(before) => ({IMAGE_ID})() !== before", arg=str(assignment_id))


def test_volunteer_labels_with_the_keyboard(transactional_db, live_server, page, screenshot_path):
    project, labels = make_project(
        name="Browser birds", label_names=["heron", "stork", "crane"], n_images=6
    )

    # Sign up through the form, like a new volunteer.
    page.goto("/accounts/signup/")
    page.fill("#id_username", "vera")
    page.fill("#id_email", "vera@example.org")
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url(f"{live_server.url}/")  # signed in and sent to the project list
    card = page.locator("li.card", has_text="Browser birds")
    assert card.count() == 1, page.content()
    card.get_by_role("link", name="Start labeling").click()
    page.wait_for_url(f"**/projects/{project.pk}/label/")
    user = User.objects.get(username="vera")
    assert user.role == User.Role.VOLUNTEER

    first = shown_assignment(page)
    page.screenshot(path=screenshot_path("labeling.png"), full_page=True)
    assert page.locator("#count").inner_text() == "0"
    assert page.locator("#empty").is_hidden()
    assert page.locator("#loading").is_hidden()
    first_image = Assignment.objects.get(pk=first, user=user).image_id
    assert page.get_attribute("#image", "src") == f"/api/images/{first_image}/file/"

    # Five votes with the keyboard: "1".."3" are the labels by position, "N" none of these.
    expected = {"1": labels[0].pk, "2": labels[1].pk, "3": labels[2].pk, "N": None}
    voted = []
    assignment_id = first
    for done, key in enumerate(["1", "2", "3", "1", "N"], start=1):
        press_and_wait(page, key, assignment_id, "vote")
        voted.append((assignment_id, key))
        page.wait_for_function(
            "(n) => document.getElementById('count').textContent.trim() === String(n)", arg=done
        )
        assignment_id = shown_assignment(page)

    votes = {v.assignment_id: v for v in Vote.objects.filter(user=user)}
    assert len(votes) == 5
    for assignment_id_voted, key in voted:
        vote = votes[assignment_id_voted]
        assert vote.label_id == expected[key], (key, vote)
        assert vote.image_id == Assignment.objects.get(pk=assignment_id_voted).image_id
    assert len({v.image_id for v in votes.values()}) == 5
    # One vote decides each image: four labelled, the "none of these" one excluded.
    states = sorted(Image.objects.filter(votes__user=user).values_list("state", flat=True))
    assert states == [Image.State.CONSENSUS] * 4 + [Image.State.EXCLUDED]
    assert Assignment.objects.filter(user=user, state=Assignment.State.VOTED).count() == 5

    # The sixth image: skip it; nothing is left after that.
    sixth = assignment_id
    assert sixth not in votes
    press_and_wait(page, "S", sixth, "skip")
    assert Assignment.objects.get(pk=sixth).state == Assignment.State.SKIPPED
    assert Assignment.objects.filter(user=user).count() == 6
    empty = page.locator("#empty")
    empty.wait_for(state="visible")
    assert "Nothing left" in empty.inner_text()
    assert page.locator("#image").is_hidden()
    assert page.locator("#count").inner_text() == "5"
    assert page.locator("#message").inner_text() == ""
    assert page.js_errors == []


def test_label_names_are_text_not_markup(transactional_db, page):
    markup = "<img src=x onerror=alert(1)>"
    make_project(name="Escaping", label_names=[markup, "plain"], n_images=1)
    user = UserFactory(username="eve")
    dialogs = []

    def on_dialog(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto("/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "correct-horse-battery")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Start labeling").click()
    shown_assignment(page)  # the script ran and rendered an image
    page.wait_for_load_state("networkidle")

    button = page.locator("#labels button[data-key='1']")
    assert markup in button.inner_text()
    assert button.locator("img").count() == 0
    assert page.locator("img[src='x']").count() == 0
    assert dialogs == []
    assert page.js_errors == []
    assert Label.objects.filter(name=markup).count() == 1


def test_undo_and_zoom_with_the_keyboard(transactional_db, page):
    project, labels = make_project(name="Undo", label_names=["heron", "stork"], n_images=3)
    # Two votes per image, so a single vote decides nothing and may be taken back.
    from annotate.services.projects import project_update

    project_update(project=project, min_votes=2, max_votes=2, agreement=1.0)
    user = UserFactory(username="uma")
    page.goto("/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "correct-horse-battery")
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"/projects/{project.pk}/label/")
    first = shown_assignment(page)

    page.keyboard.press("z")
    assert "zoomed" in page.get_attribute("figure.frame", "class")
    page.keyboard.press("z")
    assert "zoomed" not in page.get_attribute("figure.frame", "class")

    press_and_wait(page, "1", first, "vote")
    page.wait_for_function("() => document.getElementById('count').textContent.trim() === '1'")
    with page.expect_response(
        lambda r: r.url.endswith(f"/api/assignments/{first}/undo/")
    ) as answer:
        page.keyboard.press("u")
    assert answer.value.status == 200
    page.wait_for_function(
        f"() => document.getElementById('image').dataset.assignment === '{first}'"
    )
    assert page.locator("#count").inner_text() == "0"
    assert not Vote.objects.filter(user=user).exists()

    press_and_wait(page, "2", first, "vote")
    assert Vote.objects.get(user=user).label == labels[1]
    assert page.js_errors == []


def test_labeling_works_by_touch_on_a_phone(transactional_db, browser, live_server):
    project, labels = make_project(name="Phone", label_names=["heron", "stork"], n_images=2)
    user = UserFactory(username="pia")
    context = browser.new_context(
        base_url=live_server.url,
        viewport={"width": 390, "height": 844},
        has_touch=True,
        is_mobile=True,
    )
    page = context.new_page()
    try:
        page.goto("/accounts/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", "correct-horse-battery")
        page.get_by_role("button", name="Sign in").tap()
        page.wait_for_url(f"{live_server.url}/")
        page.goto(f"/projects/{project.pk}/label/")
        first = shown_assignment(page)
        # One column on a phone: the label buttons sit below the image, within the screen width.
        button = page.locator("#labels button[data-key='2']")
        box = button.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390
        assert box["y"] > page.locator("figure.frame").bounding_box()["y"]
        with page.expect_response(
            lambda r: r.url.endswith(f"/api/assignments/{first}/vote/")
        ) as answer:
            button.tap()
        assert answer.value.status == 201
        assert Vote.objects.get(user=user).label == labels[1]
    finally:
        context.close()
