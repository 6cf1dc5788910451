"""Projects with many labels shaped like ImageNet's (wnid, names, synonyms, a gloss, a parent),
and a model suggestion for an image: for the lease-size, page-size, search and browser tests."""

from django.utils import timezone

from annotate.models import ActiveModel, Image, Label, ModelVersion, Project, Suggestion

# Lengths like ILSVRC-2012's synsets: names up to ~40 characters, glosses of ~60-150.
GLOSS = (
    "a domesticated animal of the sort kept for companionship or work, described at the length "
    "of a typical WordNet gloss"
)


def many_labels(project: Project, count: int) -> list[Label]:
    """`count` labels in page order, the first few with names a search must find (accents, CJK)."""
    special = [
        ("n02123045", "tabby cat", ["tabby", "queen"], "a cat with a grey or tawny striped coat"),
        ("n07920052", "café au lait", ["coffee with milk"], "coffee served with hot milk"),
        ("n01443537", "金鱼", ["goldfish", "Carassius auratus"], "small golden or orange fish"),
        (
            "n02085620",
            "Chihuahua",
            [],
            "an old breed of tiny short-haired dog with protruding eyes",
        ),
    ]
    rows = [
        Label(
            project=project,
            wnid=wnid,
            name=name,
            synonyms=synonyms,
            gloss=gloss,
            parent_wnid="n02121808",
            parent_name="domestic cat",
            position=index,
        )
        for index, (wnid, name, synonyms, gloss) in enumerate(special[:count])
    ]
    rows += [
        Label(
            project=project,
            wnid=f"n{10_000_000 + index:08d}",
            name=f"synset number {index} of the catalog",
            synonyms=[f"other name {index}", f"yet another name {index}"],
            gloss=f"{GLOSS} ({index})",
            parent_wnid=f"n{20_000_000 + index // 10:08d}",
            parent_name=f"parent synset {index // 10}",
            position=index,
        )
        for index in range(len(rows), count)
    ]
    Label.objects.bulk_create(rows)
    return list(Label.objects.filter(project=project).order_by("position", "id"))


def suggest(image: Image, ranked: list[Label], *, confidence: float = 0.72) -> Suggestion:
    """The project's active model suggests `ranked` (most probable first) for `image`; the
    model version is made (and made active) on the first call for a project."""
    project = image.project
    version = ModelVersion.objects.filter(project=project).first()
    if version is None:
        version = ModelVersion.objects.create(
            project=project,
            arch="resnet18",
            classes=[label.pk for label in ranked],
            file="test.pt",
            weights_source="scratch",
            device="cpu",
            train_size=10,
            holdout_size=2,
            training_seconds=1.0,
            top1=0.9,
        )
        ActiveModel.objects.create(project=project, version=version, promoted_at=timezone.now())
    probabilities = [confidence] + [
        round((1 - confidence) / (len(ranked) - 1) * 0.999, 6) for _ in ranked[1:]
    ]
    return Suggestion.objects.create(
        image=image,
        model_version=version,
        label=ranked[0],
        confidence=confidence,
        top=[
            {"label": label.pk, "probability": p}
            for label, p in zip(ranked, probabilities, strict=True)
        ],
        probabilities={str(label.pk): p for label, p in zip(ranked, probabilities, strict=True)},
    )
