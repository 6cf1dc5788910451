"""The admin's forms keep the rules the services keep."""

import pytest

from annotate.admin import LabelForm
from annotate.models import Label

pytestmark = pytest.mark.django_db


def test_the_admin_label_form_refuses_control_characters_naming_them(project):
    form = LabelForm(
        data={"project": project.pk, "wnid": "n02123045", "name": "tabby\ncat", "gloss": "a\tb"}
    )
    assert not form.is_valid()
    assert form.errors["name"] == ["name contains a newline (U+000A)."]
    assert form.errors["gloss"] == ["gloss contains a tab (U+0009)."]
    good = LabelForm(
        data={"project": project.pk, "wnid": "n02123045", "name": "tabby", "position": 1}
    )
    assert good.is_valid(), good.errors
    good.save()
    assert Label.objects.filter(project=project, name="tabby").exists()
