"""Classify among 1,000 labels (issue 15): the lease answer does not grow with the label count;
the label list is read once, cacheable with an ETag, and searchable."""

import pytest

from annotate.models import Label
from tests.factories import ImageFactory, ProjectFactory
from tests.label_catalog import many_labels, suggest

pytestmark = pytest.mark.django_db

LEASE_LIMIT_BYTES = 2048


def lease_bytes(client, project, ranked: int) -> tuple[int, dict]:
    """The size of a lease answer for an image the active model has a suggestion for."""
    labels = list(Label.objects.filter(project=project).order_by("position"))
    image = ImageFactory(project=project)
    suggest(image, labels[:ranked])
    response = client.post(f"/api/projects/{project.pk}/assignments/")
    assert response.status_code == 201
    return len(response.content), response.json()


@pytest.mark.parametrize("label_count", [10, 1000])
def test_a_lease_answer_stays_under_2_kb_at_any_label_count(client_for, volunteer, label_count):
    project = ProjectFactory()
    many_labels(project, label_count)
    size, body = lease_bytes(client_for(volunteer), project, ranked=8)
    print(f"lease answer with {label_count} labels: {size} bytes")
    assert size < LEASE_LIMIT_BYTES
    assert set(body) == {"id", "image", "suggestion", "expires_at"}
    # The model's top 5 (of the 8 it ranked) come with it, most probable first.
    first_five = Label.objects.filter(project=project).order_by("position")[:5]
    assert [item["label"] for item in body["suggestion"]["top"]] == [
        label.pk for label in first_five
    ]


def test_lease_size_does_not_grow_with_the_labels(client_for, volunteer):
    small, large = ProjectFactory(), ProjectFactory()
    many_labels(small, 10)
    many_labels(large, 1000)
    client = client_for(volunteer)
    small_size, _ = lease_bytes(client, small, ranked=5)
    large_size, _ = lease_bytes(client, large, ranked=5)
    # Ids have a few more digits in the larger project; nothing else differs.
    assert abs(large_size - small_size) < 64


def test_labels_carry_wordnet_context(client_for, volunteer):
    project = ProjectFactory()
    many_labels(project, 12)
    body = client_for(volunteer).get(f"/api/projects/{project.pk}/labels/").json()
    assert len(body) == 12
    assert body[0] == {
        "id": body[0]["id"],
        "wnid": "n02123045",
        "name": "tabby cat",
        "gloss": "a cat with a grey or tawny striped coat",
        "position": 0,
        "synonyms": ["tabby", "queen"],
        "names": {},
        "display_name": "tabby cat",
        "parent": {"wnid": "n02121808", "name": "domestic cat"},
    }
    Label.objects.filter(pk=body[0]["id"]).update(parent_wnid="", parent_name="")
    again = client_for(volunteer).get(f"/api/projects/{project.pk}/labels/").json()
    assert again[0]["parent"] is None


def test_the_label_list_answers_304_while_unchanged(client_for, volunteer, admin_user):
    project = ProjectFactory()
    many_labels(project, 1000)
    url = f"/api/projects/{project.pk}/labels/"
    client = client_for(volunteer)
    first = client.get(url)
    etag = first["ETag"]
    assert first.status_code == 200 and len(first.json()) == 1000
    assert etag.startswith('"') and "no-cache" in first["Cache-Control"]

    unchanged = client.get(url, HTTP_IF_NONE_MATCH=etag)
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert unchanged["ETag"] == etag
    # Compressed for a client that takes it; its weak ETag validates the same way.
    compressed = client.get(url, HTTP_ACCEPT_ENCODING="gzip")
    assert compressed["Content-Encoding"] == "gzip" and compressed["ETag"] == f"W/{etag}"
    print(f"label list of 1000: {len(first.content)} bytes, {len(compressed.content)} compressed")
    assert len(compressed.content) < len(first.content) / 3
    weak = client.get(url, HTTP_IF_NONE_MATCH=f"W/{etag}", HTTP_ACCEPT_ENCODING="gzip")
    assert weak.status_code == 304
    assert client.get(url, HTTP_IF_NONE_MATCH=f'"other", {etag}').status_code == 304
    assert client.get(url, HTTP_IF_NONE_MATCH='"stale"').status_code == 200

    # A new label, or a changed one, makes a new ETag and a full answer.
    client_for(admin_user).post(url, {"wnid": "n09999999", "name": "new one"}, format="json")
    added = client.get(url, HTTP_IF_NONE_MATCH=etag)
    assert added.status_code == 200 and len(added.json()) == 1001
    Label.objects.filter(project=project, wnid="n09999999").update(gloss="changed")
    changed = client.get(url, HTTP_IF_NONE_MATCH=added["ETag"])
    assert changed.status_code == 200 and changed["ETag"] != added["ETag"]
    # A search is its own representation, with its own ETag.
    searched = client.get(url, {"search": "tabby"}, HTTP_IF_NONE_MATCH=changed["ETag"])
    assert searched.status_code == 200 and searched["ETag"] != changed["ETag"]


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("tabby", ["n02123045"]),  # name
        ("QUEEN", ["n02123045"]),  # a synonym, any case
        ("n01443537", ["n01443537"]),  # wnid
        ("striped coat", ["n02123045"]),  # gloss, every word
        ("coat striped", ["n02123045"]),  # in any order
        ("cafe au lait", ["n07920052"]),  # without the accent
        ("CAFÉ", ["n07920052"]),  # with it, upper case
        ("金", ["n01443537"]),  # CJK
        ("ｇｏｌｄｆｉｓｈ", ["n01443537"]),  # full-width letters
        ("carassius", ["n01443537"]),
        ("chihuahua tiny", ["n02085620"]),
        ("no such thing", []),
    ],
)
def test_search_matches_name_synonyms_wnid_and_gloss(client_for, volunteer, search, expected):
    project = ProjectFactory()
    many_labels(project, 40)
    url = f"/api/projects/{project.pk}/labels/"
    found = client_for(volunteer).get(url, {"search": search})
    assert found.status_code == 200
    assert [label["wnid"] for label in found.json()] == expected


def test_search_keeps_page_order_and_rejects_bad_input(client_for, volunteer):
    project = ProjectFactory()
    many_labels(project, 40)
    url = f"/api/projects/{project.pk}/labels/"
    client = client_for(volunteer)
    matches = client.get(url, {"search": "Catalog"}).json()
    assert [label["position"] for label in matches] == list(range(4, 40))
    assert len(client.get(url, {"search": "  "}).json()) == 40
    too_long = client.get(url, {"search": "x" * 201})
    assert too_long.status_code == 400 and "search" in too_long.json()["detail"]
    assert client.get("/api/projects/999999/labels/", {"search": "x"}).status_code == 404
    assert client_for(None).get(url).status_code == 401
