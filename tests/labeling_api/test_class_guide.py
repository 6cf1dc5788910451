"""The class guide's examples (issue 18): a volunteer may see a decided image of a label, never
a gold one (it would give the answer of a check away) nor someone else's open image."""

import random

import pytest

from annotate.models import Image
from annotate.selectors import label_examples
from tests.export_helpers import add_image, decide, decided_images, unique_image

pytestmark = pytest.mark.django_db


def test_decided_images_are_examples_and_gold_or_open_ones_are_not(
    client_for, volunteer, project, labels
):
    rng = random.Random(18)
    decided = decided_images(project, labels[0], 4, rng)
    gold = decided_images(project, labels[0], 1, rng)[0]
    Image.objects.filter(pk=gold.pk).update(is_gold=True)
    excluded = decide(add_image(project, unique_image(rng)), None, state=Image.State.EXCLUDED)
    still_open = add_image(project, unique_image(rng))

    examples = label_examples(project=project)
    assert examples == {labels[0].pk: [image.pk for image in decided[:3]]}

    client = client_for(volunteer)
    assert client.get(f"/api/images/{decided[0].pk}/file/").status_code == 200
    for hidden in (gold, excluded, still_open):
        assert client.get(f"/api/images/{hidden.pk}/file/").status_code == 403
