"""The verification page in a real browser (issue 15): a keyboard-only run, a touch run on a
phone, the grid fitting a 390x844 phone screen, and grids handed back when the page is hidden or
left (issue 18)."""

import io
import time

import pytest

from annotate.models import Candidate, CandidateVote, Grid, GridItem, Project
from annotate.services import verification, verification_candidates
from annotate.services.ingest import images_upload
from tests.browser.conftest import TIMEOUT_MS, sign_in
from tests.factories import LabelFactory, ProjectFactory, UserFactory, image_bytes

pytestmark = [pytest.mark.browser, pytest.mark.postgresql]

PHONE = {"width": 390, "height": 844}


def verify_project(*, candidates: int, grid_size: int = 12, examples: int = 0) -> Project:
    project = ProjectFactory(
        name="Verify cats", task=Project.Task.VERIFY, grid_size=grid_size, min_votes=2, max_votes=3
    )
    label = LabelFactory(
        project=project, wnid="n02123045", name="tabby cat", gloss="a cat with a striped coat"
    )
    result = images_upload(
        project=project,
        files=[
            (f"c{i}.png", io.BytesIO(image_bytes((10 * i, 255 - 9 * i, 90), fmt="PNG")))
            for i in range(candidates + examples)
        ],
    )
    verification_candidates.candidates_add(
        project=project,
        pairs=[(image_id, label.pk) for image_id in result.created],
        source=Candidate.Source.IMPORT,
    )
    # The first `examples` images were accepted already: the label's examples at the top.
    Candidate.objects.filter(image_id__in=result.created[:examples]).update(
        state=Candidate.State.ACCEPTED
    )
    return project


def wait_for_grid(page, count: int) -> list[int]:
    """Wait until a grid of `count` items is on screen with its images loaded; their ids."""
    page.wait_for_function(
        "(count) => { const items = document.querySelectorAll('#grid .grid-item');"
        " return items.length === count && Array.from(items).every("
        " (b) => { const img = b.querySelector('img');"
        " return img.complete && img.naturalWidth > 0; }); }",
        arg=count,
    )
    return [
        int(i)
        for i in page.eval_on_selector_all(
            "#grid .grid-item", "els => els.map(e => e.dataset.item)"
        )
    ]


def answer(page, act) -> None:
    with page.expect_response(lambda r: "/answers/" in r.url and r.request.method == "POST") as got:
        act()
    assert got.value.status == 201, got.value.text()


def votes_of(user) -> dict[int, bool]:
    return dict(CandidateVote.objects.filter(user=user).values_list("grid_item_id", "answer"))


def test_keyboard_only(page, live_server):
    verify_project(candidates=14)
    user = UserFactory()
    sign_in(page, user)
    posts = []
    page.on(
        "request",
        lambda r: (
            posts.append(r.url.split("/api/")[1].split("/")[0]) if r.method == "POST" else None
        ),
    )
    page.get_by_role("link", name="Start verifying").click()

    items = wait_for_grid(page, 12)
    assert page.locator("#label-name").inner_text() == "tabby cat"
    assert page.locator("#label-gloss").inner_text() == "a cat with a striped coat"
    columns = int(page.eval_on_selector("#grid", "g => g.style.getPropertyValue('--columns')"))
    page.keyboard.press("Space")  # the first item has the focus
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Space")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Space")
    page.keyboard.press("Space")  # and unmarked again
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("Space")
    answer(page, lambda: page.keyboard.press("Enter"))

    # The next grid was asked for while this one was on screen, before its answer went.
    assert posts[:3] == ["projects", "projects", "grids"], posts
    marked = {items[0], items[1], items[columns]}
    assert votes_of(user) == {item: item in marked for item in items}
    second = wait_for_grid(page, 2)  # the two candidates left, prefetched
    assert set(second).isdisjoint(items)
    assert page.locator("#grids-done").inner_text() == "1"
    answer(page, lambda: page.keyboard.press("Enter"))

    page.locator("#empty").wait_for(state="visible", timeout=TIMEOUT_MS)
    assert page.locator("#grids-done").inner_text() == "2"
    assert votes_of(user) == {item: item in marked for item in items} | dict.fromkeys(second, False)
    assert page.js_errors == []


@pytest.fixture
def phone(browser, live_server):
    context = browser.new_context(
        base_url=live_server.url, viewport=PHONE, has_touch=True, is_mobile=True
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.js_errors = []
    page.on("pageerror", lambda error: page.js_errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()


@pytest.mark.parametrize("grid_size", [16, 24])
def test_touch_on_a_phone_and_the_grid_fits_its_screen(phone, grid_size, screenshot_path):
    project = verify_project(candidates=grid_size, grid_size=grid_size, examples=3)
    user = UserFactory()
    sign_in(phone, user)
    phone.goto(f"/projects/{project.pk}/verify/")

    items = wait_for_grid(phone, grid_size)
    phone.wait_for_function(
        "() => Array.from(document.querySelectorAll('#examples img'))"
        ".filter((img) => img.complete && img.naturalWidth > 0).length === 3"
    )
    phone.screenshot(path=screenshot_path(f"verify-phone-{grid_size}.png"))
    fits = phone.evaluate(
        "() => { const grid = document.getElementById('grid').getBoundingClientRect();"
        " const submit = document.getElementById('submit').getBoundingClientRect();"
        " return {scrollWidth: document.documentElement.scrollWidth, gridBottom: grid.bottom,"
        " submitBottom: submit.bottom,"
        " cell: document.querySelector('.grid-item').getBoundingClientRect().width}; }"
    )
    assert fits["scrollWidth"] <= PHONE["width"]
    assert fits["gridBottom"] <= PHONE["height"] and fits["submitBottom"] <= PHONE["height"], fits
    assert fits["cell"] >= 44, "tap targets of at least 44 px"

    tapped = [items[2], items[5]]
    for item in tapped:
        phone.locator(f'.grid-item[data-item="{item}"]').tap()
    phone.locator(f'.grid-item[data-item="{items[7]}"]').tap()
    phone.locator(f'.grid-item[data-item="{items[7]}"]').tap()  # a second tap takes it back
    assert phone.locator('.grid-item[aria-pressed="true"]').count() == 2
    answer(phone, lambda: phone.locator("#submit").tap())

    phone.locator("#empty").wait_for(state="visible", timeout=TIMEOUT_MS)
    assert votes_of(user) == {item: item in tapped for item in items}
    assert GridItem.objects.filter(volunteer=user).count() == grid_size
    assert phone.js_errors == []


def wait_until(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def leases_held() -> int:
    return sum(Candidate.objects.values_list("leases_count", flat=True))


def test_a_left_page_hands_its_grids_back(page):
    project = verify_project(candidates=14)
    user = UserFactory()
    sign_in(page, user)
    page.goto(f"/projects/{project.pk}/verify/")
    wait_for_grid(page, 12)
    # The grid on screen and the next one (the two candidates left) are leased to this page.
    wait_until(lambda: Grid.objects.filter(volunteer=user).count() == 2 and leases_held() == 14)
    # ...and the page has both answers: a lease still on its way when the page goes cannot be
    # handed back by it (its grid expires with the lease, as any lost answer).
    page.wait_for_load_state("networkidle")

    # The volunteer leaves (another address, or the tab closes): pagehide, a beacon per grid.
    page.goto("about:blank")
    wait_until(lambda: leases_held() == 0)
    assert not Grid.objects.exists() and not GridItem.objects.exists()
    # The candidates are leasable again at once, by anyone.
    other = verification.grid_lease(project=project, user=UserFactory())
    assert other is not None and other.items.count() == 12
    assert page.js_errors == []


def test_a_hidden_page_hands_its_grids_back_and_leases_anew_when_shown(page):
    project = verify_project(candidates=14)
    user = UserFactory()
    sign_in(page, user)
    page.goto(f"/projects/{project.pk}/verify/")
    wait_for_grid(page, 12)
    wait_until(lambda: leases_held() == 14)
    page.evaluate(
        "() => { Object.defineProperty(document, 'visibilityState',"
        " {value: 'hidden', configurable: true});"
        " document.dispatchEvent(new Event('visibilitychange')); }"
    )
    wait_until(lambda: leases_held() == 0)
    assert not Grid.objects.filter(volunteer=user).exists()
    # Back: the page leases again and shows a grid, never "nothing left".
    page.evaluate(
        "() => { Object.defineProperty(document, 'visibilityState',"
        " {value: 'visible', configurable: true});"
        " document.dispatchEvent(new Event('visibilitychange')); }"
    )
    items = wait_for_grid(page, 12)
    assert page.locator("#empty").is_hidden()
    assert set(items) <= set(
        GridItem.objects.filter(grid__volunteer=user).values_list("id", flat=True)
    )
    answer(page, lambda: page.keyboard.press("Enter"))
    assert len(votes_of(user)) == 12
    assert page.js_errors == []
