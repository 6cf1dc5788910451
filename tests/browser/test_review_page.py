"""A reviewer clears a disputed image with one key; volunteers are refused the review pages."""

import io
from typing import Any

import pytest

from annotate.models import Decision, Image
from annotate.services import serving, voting
from annotate.services.ingest import images_upload
from tests.browser.conftest import sign_in
from tests.factories import LabelFactory, ProjectFactory, UserFactory, image_bytes

pytestmark = [pytest.mark.browser, pytest.mark.postgresql]


def disputed_project(colors=((200, 120, 40), (60, 60, 60))):
    project = ProjectFactory(name="Disputes", min_votes=2, max_votes=2, agreement=1.0)
    labels = [
        LabelFactory(project=project, name=name, position=i)
        for i, name in enumerate(["cat", "dog"])
    ]
    stored = images_upload(
        project=project,
        files=[
            (f"pet-{i}.jpg", io.BytesIO(image_bytes(color, size=(320, 240))))
            for i, color in enumerate(colors)
        ],
    )
    images = list(Image.objects.filter(pk__in=stored.created).order_by("id"))
    for label in labels:  # two volunteers disagree on both images
        user = UserFactory()
        for _ in images:
            assignment = serving.assignment_lease(project=project, user=user)
            voting.vote_submit(assignment_id=assignment.pk, user=user, label_id=label.pk)
    for image in images:
        image.refresh_from_db()
        assert image.state == Image.State.DISPUTED
    return project, labels, images


def decide_by_key(page, image_id: int, key: str, queue_after: int | None = None) -> None:
    """Press a decision key on the shown image and check the API took it (201); with
    `queue_after`, also wait for the queue count and check the message names the image."""
    with page.expect_response(
        lambda r: r.url.endswith(f"/api/images/{image_id}/decision/")
    ) as answer:
        page.keyboard.press(key)
    assert answer.value.status == 201
    if queue_after is not None:
        page.wait_for_function(
            "() => document.getElementById('remaining').textContent === "
            f"'{queue_after} in the queue'"
        )
        assert page.locator("#message").inner_text() == f"Image {image_id} decided."


def test_reviewer_decides_with_hotkeys(transactional_db, page, screenshot_path):
    project, labels, images = disputed_project()
    sign_in(page, UserFactory(role="reviewer"))
    page.goto(f"/projects/{project.pk}/review/")
    page.wait_for_function("() => document.getElementById('image').dataset.image")
    first = int(page.get_attribute("#image", "data-image"))
    assert first == images[0].pk
    votes_text = page.locator("#votes").inner_text()
    assert "cat" in votes_text and "dog" in votes_text and "1 vote" in votes_text
    page.screenshot(path=screenshot_path("review.png"), full_page=True)

    decide_by_key(page, first, "2")
    page.wait_for_function(
        f"() => document.getElementById('image').dataset.image === '{images[1].pk}'"
    )
    decide_by_key(page, images[1].pk, "x")
    page.locator("#empty").wait_for(state="visible")

    decided = {d.image_id: d for d in Decision.objects.filter(is_current=True)}
    assert decided[images[0].pk].label == labels[1] and decided[images[0].pk].rule == "review"
    assert decided[images[1].pk].excluded
    assert page.js_errors == []


def test_volunteer_is_refused_review_and_admin_pages(transactional_db, page):
    project = ProjectFactory()
    sign_in(page, UserFactory(role="volunteer"))
    for path in [
        f"/projects/{project.pk}/review/",
        f"/projects/{project.pk}/annotators/",
        "/admin/",
    ]:
        response = page.goto(path)
        assert response.status == 403 or "/admin/login/" in page.url, path
        assert "Disputes" not in page.content()


def test_queue_count_and_message_follow_each_action(transactional_db, page):
    project, labels, images = disputed_project(colors=[(200, 120, 40), (60, 60, 60), (20, 90, 200)])
    sign_in(page, UserFactory(role="reviewer"))
    page.goto(f"/projects/{project.pk}/review/")
    remaining = page.locator("#remaining")
    message = page.locator("#message")
    page.wait_for_function(
        f"() => document.getElementById('image').dataset.image === '{images[0].pk}'"
    )
    assert remaining.inner_text() == "3 in the queue"

    decide_by_key(page, images[0].pk, "1", queue_after=2)

    # Passing over an image leaves it in the queue, and the message says what was done.
    page.wait_for_function(
        f"() => document.getElementById('image').dataset.image === '{images[1].pk}'"
    )
    page.keyboard.press("s")
    page.wait_for_function(
        f"() => document.getElementById('image').dataset.image === '{images[2].pk}'"
    )
    assert message.inner_text() == f"Image {images[1].pk} passed over: it stays in the queue."
    assert remaining.inner_text() == "2 in the queue"

    decide_by_key(page, images[2].pk, "x", queue_after=1)
    assert page.js_errors == []


def test_a_queue_read_older_than_a_saved_decision_does_not_count_it(transactional_db, page):
    # The race CI once met: the page reads the queue while a decision is on its way, the
    # server answers that read before it stores the decision, and the read's answer reaches
    # the page after the decision's. The count must stay without the decided image.
    project, labels, images = disputed_project(colors=[(200, 120, 40), (60, 60, 60)])
    sign_in(page, UserFactory(role="reviewer"))
    page.goto(f"/projects/{project.pk}/review/")
    remaining = page.locator("#remaining")
    page.wait_for_function(
        f"() => document.getElementById('image').dataset.image === '{images[0].pk}'"
    )
    page.keyboard.press("s")  # passed over: it stays in the queue; images[1] is the last one
    page.wait_for_function(
        f"() => document.getElementById('image').dataset.image === '{images[1].pk}'"
    )
    assert remaining.inner_text() == "2 in the queue"

    held: dict[str, Any] = {}

    def hold_decision(route):
        held["decision"] = route  # answered later, after the queue was read

    def read_queue_now_answer_later(route):
        held["queue"] = (route, route.fetch())  # the server reads the queue now

    page.route(f"**/api/images/{images[1].pk}/decision/", hold_decision)
    page.route(f"**/api/projects/{project.pk}/review/", read_queue_now_answer_later)
    page.keyboard.press("x")
    deadline = 100
    while len(held) < 2 and deadline:
        page.wait_for_timeout(50)
        deadline -= 1
    assert set(held) == {"decision", "queue"}
    with page.expect_response(lambda r: r.url.endswith(f"/api/images/{images[1].pk}/decision/")):
        held["decision"].continue_()
    page.wait_for_function(
        "() => document.getElementById('remaining').textContent === '1 in the queue'"
    )
    queue_route, stale = held["queue"]
    assert images[1].pk in [item["id"] for item in stale.json()["results"]]
    queue_route.fulfill(response=stale)
    page.wait_for_timeout(300)
    assert remaining.inner_text() == "1 in the queue"
    assert page.js_errors == []
