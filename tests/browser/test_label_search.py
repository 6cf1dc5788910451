"""Labeling among 1,000 labels in a real browser (issue 15): the search box, arrows and Enter,
the model's top 5 on keys 1-5, and the labels used last offered next."""

import io

import pytest

from annotate.models import Assignment, Vote
from annotate.services.ingest import images_upload
from tests.browser.conftest import sign_in
from tests.browser.test_labeling_page import COLORS, press_and_wait, shown_assignment
from tests.factories import ProjectFactory, UserFactory, image_bytes
from tests.label_catalog import many_labels, suggest

pytestmark = [pytest.mark.browser, pytest.mark.postgresql]

OPTIONS = "#label-options [role=option]"


def catalog_project(n_images: int):
    """1,000 labels; every image has a model suggestion of its own five labels."""
    project = ProjectFactory(name="Thousand", min_votes=1, max_votes=1, agreement=1.0)
    labels = many_labels(project, 1000)
    created = images_upload(
        project=project,
        files=[
            (f"image-{i}.jpg", io.BytesIO(image_bytes(color)))
            for i, color in enumerate(COLORS[:n_images])
        ],
    ).created
    assert len(created) == n_images
    top = {}
    for index, image_id in enumerate(created):
        ranked = labels[500 + 10 * index : 505 + 10 * index]
        suggest(project.images.get(pk=image_id), ranked)
        top[image_id] = [label.pk for label in ranked]
    return project, labels, top


def listed(page) -> list[tuple[int, str]]:
    """(label id, text) of each listed option."""
    return page.eval_on_selector_all(
        OPTIONS, "items => items.map(i => [Number(i.dataset.label), i.innerText])"
    )


def vote_with(page, key: str, assignment_id: int) -> None:
    """Press `key` in the search box and wait for the vote's answer and the next image."""
    url = f"/api/assignments/{assignment_id}/vote/"
    with page.expect_response(lambda r: r.url.endswith(url)) as answer:
        page.keyboard.press(key)
    assert answer.value.status == 201, answer.value.text()
    page.wait_for_function(
        "(before) => document.getElementById('image').dataset.assignment !== before",
        arg=str(assignment_id),
    )


def test_search_arrows_enter_and_the_models_top_five(transactional_db, page, screenshot_path):
    project, labels, top = catalog_project(n_images=4)
    user = UserFactory(username="tia")
    sign_in(page, user)
    page.goto(f"/projects/{project.pk}/label/")
    box = page.get_by_role("combobox", name="Find the label")
    first = shown_assignment(page)
    page.wait_for_function("() => !document.getElementById('label-search').disabled")
    page.wait_for_function("() => document.activeElement.id === 'label-search'")

    def image_of(assignment_id: int) -> int:
        return Assignment.objects.get(pk=assignment_id).image_id

    # Empty box: the model's top 5 for this image, keys 1-5, the first one chosen.
    shown = listed(page)
    assert [label_id for label_id, _ in shown] == top[image_of(first)]
    assert [text.split()[0] for _, text in shown] == ["1", "2", "3", "4", "5"]
    assert "model 72%" in shown[0][1]
    assert page.get_attribute(f"{OPTIONS} >> nth=0", "aria-selected") == "true"

    # Type; the arrows move the choice (and aria-activedescendant with it); Enter votes.
    box.press_sequentially("synset number 12")
    page.wait_for_function(
        "() => document.querySelector('#label-options [role=option]')"
        ".innerText.includes('synset number 12 of')"
    )
    matched = [label_id for label_id, _ in listed(page)]
    by_position = {label.pk: label.position for label in labels}
    positions = [by_position[label_id] for label_id in matched]
    # A word at the start of a word of the name first (12, 120-129), then inside one (112...).
    assert positions[:12] == [12, *range(120, 130), 112]
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowDown")
    chosen = matched[2]
    assert box.get_attribute("aria-activedescendant") == f"label-option-{chosen}"
    assert page.get_attribute(f"#label-option-{chosen}", "aria-selected") == "true"
    page.screenshot(path=screenshot_path("label-search.png"), full_page=True)
    vote_with(page, "Enter", first)
    assert Vote.objects.get(assignment_id=first).label_id == chosen

    # The next image: an empty box again, focused; "2" votes for the model's second label.
    second = shown_assignment(page)
    page.wait_for_function("() => document.activeElement.id === 'label-search'")
    assert box.input_value() == ""
    second_choice = top[image_of(second)][1]
    vote_with(page, "2", second)
    assert Vote.objects.get(assignment_id=second).label_id == second_choice

    # Then the labels used last come after the model's five, the latest first.
    third = shown_assignment(page)
    page.wait_for_function(
        "(n) => document.querySelectorAll('#label-options [role=option]').length === n", arg=7
    )
    shown = listed(page)
    assert [label_id for label_id, _ in shown] == [*top[image_of(third)], second_choice, chosen]
    assert "recently used" in shown[5][1]

    # Accents and case don't matter; the parent synset is shown with the label.
    box.press_sequentially("CAFE AU")
    page.wait_for_function(
        "() => document.querySelector('#label-options [role=option]')"
        ".innerText.includes('café au lait')"
    )
    cafe = next(label for label in labels if label.name == "café au lait")
    assert "a kind of domestic cat" in listed(page)[0][1]
    vote_with(page, "Enter", third)
    assert Vote.objects.get(assignment_id=third).label_id == cafe.pk

    # CJK, and a click on an option votes as well.
    fourth = shown_assignment(page)
    box.press_sequentially("金")
    goldfish = next(label for label in labels if label.name == "金鱼")
    option = page.locator(f"#label-option-{goldfish.pk}")
    option.wait_for()
    with page.expect_response(lambda r: r.url.endswith(f"/api/assignments/{fourth}/vote/")):
        option.click()
    assert Vote.objects.get(assignment_id=fourth).label_id == goldfish.pk
    page.locator("#empty").wait_for(state="visible")
    assert page.js_errors == []


def test_escape_leaves_the_box_for_the_action_keys(transactional_db, page):
    project, labels, top = catalog_project(n_images=2)
    user = UserFactory(username="ugo")
    sign_in(page, user)
    page.goto(f"/projects/{project.pk}/label/")
    first = shown_assignment(page)
    page.wait_for_function("() => document.activeElement.id === 'label-search'")
    box = page.get_by_role("combobox", name="Find the label")
    box.press_sequentially("s")  # a letter in the box is typed, not a skip
    assert box.input_value() == "s"
    page.keyboard.press("Escape")  # clears the box
    assert box.input_value() == ""
    page.keyboard.press("Escape")  # leaves it
    page.wait_for_function("() => document.activeElement.id !== 'label-search'")
    press_and_wait(page, "s", first, "skip")  # waits for the next image to be shown
    assert shown_assignment(page) != first
    page.keyboard.press("/")
    page.wait_for_function("() => document.activeElement.id === 'label-search'")
    assert page.js_errors == []
