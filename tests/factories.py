import hashlib
import io
from typing import TYPE_CHECKING, Any

import factory
from PIL import Image as PILImage

from annotate.models import Image, Label, Project, User
from annotate.services.serving import image_free_slots


def image_bytes(color=(200, 30, 30), size=(64, 48), fmt="JPEG", **save_args) -> bytes:
    buffer = io.BytesIO()
    mode = "RGBA" if fmt == "PNG" and len(color) == 4 else "RGB"
    PILImage.new(mode, size, color).save(buffer, fmt, **save_args)
    return buffer.getvalue()


class _UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    role = User.Role.VOLUNTEER
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-battery")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class _ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda n: f"project {n}")
    min_votes = 2
    max_votes = 4
    agreement = 0.75
    # Gold off unless a test asks for it (the model's default is a small share: issue 16).
    gold_rate = 0.0


class _LabelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Label

    project = factory.SubFactory(_ProjectFactory)
    wnid = factory.Sequence(lambda n: f"n{n:08d}")
    name = factory.Sequence(lambda n: f"label {n}")
    position = factory.Sequence(lambda n: n)


class _ImageFactory(factory.django.DjangoModelFactory):
    """An image row with a placeholder file name: enough for serving and consensus tests."""

    class Meta:
        model = Image

    project = factory.SubFactory(_ProjectFactory)
    sha256 = factory.Sequence(lambda n: hashlib.sha256(str(n).encode()).hexdigest())
    file = factory.LazyAttribute(lambda o: f"images/test/{o.sha256}.jpg")
    original_name = factory.LazyAttribute(lambda o: f"{o.sha256[:8]}.jpg")
    size_bytes = 1000
    format = "JPEG"
    width = 64
    height = 48
    free_slots = factory.LazyAttribute(
        lambda o: image_free_slots(
            image=Image(state=o.state, votes_count=o.votes_count, leases_count=o.leases_count),
            project=o.project,
        )
    )
    state = Image.State.OPEN
    votes_count = 0
    leases_count = 0


# factory_boy's metaclass makes `UserFactory(...)` return a User, which type checkers cannot
# see (its __call__ is untyped): they are told so here, and the tests' calls are checked.
if TYPE_CHECKING:

    def UserFactory(**fields: Any) -> User: ...
    def ProjectFactory(**fields: Any) -> Project: ...
    def LabelFactory(**fields: Any) -> Label: ...
    def ImageFactory(**fields: Any) -> Image: ...

else:
    UserFactory = _UserFactory
    ProjectFactory = _ProjectFactory
    LabelFactory = _LabelFactory
    ImageFactory = _ImageFactory
