"""Never lose work silently on the review and verify pages (issue 18): a decision or a grid's
answer refused as signed out (401) is not passed over; the page stays on it, says why, links
to a sign-in that returns here, and sends it once the person is back."""

import pytest

from annotate.models import Decision, Grid, GridItem, User
from tests.browser.conftest import sign_in
from tests.browser.test_review_page import disputed_project
from tests.browser.test_verify_page import verify_project, wait_for_grid
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.postgresql]

SHOWN_IMAGE = "() => document.getElementById('image').dataset.image || ''"


def sign_in_again(page, user, expect_url_end: str):
    """Follow the page's link to sign in; the kept answer goes out as the page opens again."""
    link = page.locator("#message").get_by_role("link", name="sign in again")
    link.click()
    page.fill("#id_username", user.username)
    page.fill("#id_password", "correct-horse-battery")
    with page.expect_response(lambda r: r.url.endswith(expect_url_end)) as answer:
        page.get_by_role("button", name="Sign in").click()
    assert answer.value.status == 201


def test_a_review_decision_refused_as_signed_out_is_kept(transactional_db, page, live_server):
    project, labels, images = disputed_project()
    reviewer = UserFactory(username="rita", role=User.Role.REVIEWER)
    sign_in(page, reviewer)
    review_path = f"/projects/{project.pk}/review/"
    page.goto(review_path)
    page.wait_for_function(f"() => ({SHOWN_IMAGE})() !== ''")
    first = int(page.evaluate(SHOWN_IMAGE))

    page.context.clear_cookies()  # as signing out in another tab does
    with page.expect_response(lambda r: r.url.endswith(f"/api/images/{first}/decision/")) as r:
        page.keyboard.press("1")
    assert r.value.status == 401
    page.wait_for_function(
        "() => document.getElementById('message').textContent.includes('Signed out')"
    )
    page.wait_for_function(f"() => ({SHOWN_IMAGE})() === '{first}'")
    message = page.locator("#message")
    assert "not saved" in message.inner_text()
    link = message.get_by_role("link", name="sign in again")
    assert link.get_attribute("href") == f"/accounts/login/?next={review_path}"
    page.keyboard.press("2")  # no key moves past it while signed out
    assert page.evaluate(SHOWN_IMAGE) == str(first)
    assert not Decision.objects.filter(image_id=first, rule=Decision.Rule.REVIEW).exists()

    sign_in_again(page, reviewer, f"/api/images/{first}/decision/")
    page.wait_for_url(f"{live_server.url}{review_path}")
    page.wait_for_function(
        "() => document.getElementById('message').textContent.includes('is saved')"
    )
    decision = Decision.objects.get(image_id=first, is_current=True)
    assert (decision.rule, decision.label_id) == (Decision.Rule.REVIEW, labels[0].pk)
    assert page.js_errors == []


def test_a_grid_answer_refused_as_signed_out_is_kept(transactional_db, page, live_server):
    project = verify_project(candidates=8, grid_size=4)
    volunteer = UserFactory(username="vic")
    sign_in(page, volunteer)
    verify_path = f"/projects/{project.pk}/verify/"
    page.goto(verify_path)
    items = wait_for_grid(page, 4)
    grid_id = int(page.get_attribute("#grid", "data-grid"))
    page.wait_for_load_state("networkidle")  # the next grid is leased while signed in
    page.locator(f"#grid .grid-item[data-item='{items[1]}']").click()

    page.context.clear_cookies()
    with page.expect_response(lambda r: r.url.endswith(f"/api/grids/{grid_id}/answers/")) as r:
        page.keyboard.press("Enter")
    assert r.value.status == 401
    page.wait_for_function(
        "() => document.getElementById('message').textContent.includes('Signed out')"
    )
    # The same grid, its mark kept, and a link back here.
    assert int(page.get_attribute("#grid", "data-grid")) == grid_id
    marked = page.locator(f"#grid .grid-item[data-item='{items[1]}']")
    assert marked.get_attribute("aria-pressed") == "true"
    link = page.locator("#message").get_by_role("link", name="sign in again")
    assert link.get_attribute("href") == f"/accounts/login/?next={verify_path}"
    assert "retrying" not in page.inner_text("#message")
    assert Grid.objects.get(pk=grid_id).answered_at is None

    sign_in_again(page, volunteer, f"/api/grids/{grid_id}/answers/")
    page.wait_for_url(f"{live_server.url}{verify_path}")
    page.wait_for_function(
        "() => document.getElementById('message').textContent.includes('is saved')"
    )
    assert Grid.objects.get(pk=grid_id).answered_at is not None
    assert page.inner_text("#grids-done") == "1"
    assert GridItem.objects.filter(grid_id=grid_id).count() == 4
    assert page.js_errors == []


def test_the_verify_guide_opens_on_top_with_a_key_or_a_tap(transactional_db, browser, live_server):
    project = verify_project(candidates=6, grid_size=4, examples=2)
    volunteer = UserFactory(username="una")
    context = browser.new_context(
        base_url=live_server.url,
        viewport={"width": 390, "height": 844},
        has_touch=True,
        is_mobile=True,
    )
    page = context.new_page()
    try:
        sign_in(page, volunteer)
        page.goto(f"/projects/{project.pk}/verify/")
        wait_for_grid(page, 4)
        guide = page.locator("#guide")
        page.locator("#guide-open").tap()
        guide.wait_for(state="visible")
        assert "a cat with a striped coat" in guide.inner_text()
        assert guide.locator("#guide-examples img").count() == 2
        box = guide.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390
        opener = page.locator("#guide-open").bounding_box()
        assert opener["width"] >= 44 and opener["height"] >= 44
        page.locator("#guide-close").tap()
        guide.wait_for(state="hidden")
        page.keyboard.press("?")
        guide.wait_for(state="visible")
        page.keyboard.press("Escape")
        guide.wait_for(state="hidden")
    finally:
        context.close()
