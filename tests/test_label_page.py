"""The labeling page at any label count (issue 15): a button per label up to a few dozen, a
search box past that, and a page that stays small at 1,000 labels."""

import pytest

from annotate.views import BUTTONS_UP_TO
from tests.factories import ProjectFactory, UserFactory
from tests.label_catalog import many_labels

pytestmark = pytest.mark.django_db

PAGE_LIMIT_BYTES = 80_000


def label_page(client, project) -> str:
    client.force_login(UserFactory())
    response = client.get(f"/projects/{project.pk}/label/")
    assert response.status_code == 200
    return response.content.decode()


def test_the_page_with_1000_labels_stays_under_80_kb(client):
    project = ProjectFactory()
    labels = many_labels(project, 1000)
    page = label_page(client, project)
    size = len(page.encode())
    print(f"labeling page with 1000 labels: {size} bytes")
    assert size < PAGE_LIMIT_BYTES
    assert 'id="label-search"' in page and 'role="listbox"' in page
    assert "label_search.js" in page
    # The labels are not in the page: it reads them from the API.
    assert labels[500].name not in page and labels[999].wnid not in page
    assert 'class="label-button" data-label=' not in page


def test_a_few_dozen_labels_stay_buttons_with_keys_and_parents(client):
    project = ProjectFactory()
    labels = many_labels(project, BUTTONS_UP_TO)
    page = label_page(client, project)
    assert 'id="label-search"' not in page and "label_search.js" not in page
    assert page.count('class="label-button" data-label="') == BUTTONS_UP_TO
    assert f'data-label="{labels[0].pk}" data-key="1"' in page
    # The parent synset is shown with the definition.
    assert "a cat with a grey or tawny striped coat (a kind of domestic cat)" in page


def test_one_label_more_brings_the_search_box(client):
    project = ProjectFactory()
    many_labels(project, BUTTONS_UP_TO + 1)
    page = label_page(client, project)
    assert 'id="label-search"' in page and 'class="label-button" data-label="' not in page
