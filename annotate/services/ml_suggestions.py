"""The active model's suggestions (PRODUCT.md section 5): reading one image's suggestion and
prior, and computing them for the images that lack one.
"""

import json
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Exists, FloatField, OuterRef, Value, When

from annotate import rows
from annotate.models import ActiveModel, Image, Suggestion
from annotate.rows import lookups as lookup_sql
from annotate.services import verification_candidates
from annotate.services.image_cache import image_cache
from annotate.services.ml import MLBackend
from annotate.services.model_store import checkpoint_local

# Images that get suggestions: those volunteers still label, and those reviewers will decide.
SUGGESTED_STATES = (Image.State.OPEN, Image.State.DISPUTED)


# The active model's suggestion and prior of one image: read on every lease and vote, hence SQL
# text. The ML loop's other reads are in annotate.selectors.ml.


def suggestion_for_image(*, image_id: int) -> dict[str, Any] | None:
    """{label, confidence} of the active model for an image of a project that shows
    suggestions; None otherwise. One indexed query (on every lease, so written as SQL text)."""
    row = rows.fetch_one(lookup_sql.suggestion(), [image_id])
    return {"label": row[0], "confidence": row[1]} if row else None


def image_model_prior(*, image_id: int) -> dict[int, float] | None:
    """The active model's calibrated probability of every label for an image (the dynamic
    consensus prior), whether or not the project shows suggestions; None without one."""
    found = image_model_vote(image_id=image_id)
    return None if found is None else found[0]


def image_model_vote(*, image_id: int) -> tuple[dict[int, float], float] | None:
    """image_model_prior() and the model's held-out top-1 (measured on verified labels it did
    not train on), in one statement; None without a model."""
    row = rows.fetch_one(lookup_sql.model_probabilities(), [image_id])
    if row is None:
        return None
    # JSON columns come back as text from both databases (Django decodes them itself).
    probabilities = json.loads(row[0]) if isinstance(row[0], str) else row[0]
    return {int(label_id): p for label_id, p in probabilities.items()}, float(row[1])


def _uncertainty(probabilities: list[float]) -> float:
    """1 - margin between the two most probable labels: 0 sure, 1 torn between two."""
    top = sorted(probabilities, reverse=True)
    return 1.0 - (top[0] - (top[1] if len(top) > 1 else 0.0))


def suggestions_compute(
    *, project_id: int, backend: MLBackend, batch_size: int | None = None
) -> int:
    """Suggestions of the active model for the project's open and disputed images that lack
    one, in batches. Idempotent: a (image, version) pair is computed once (unique constraint);
    stops early if another version is promoted meanwhile. Returns how many were written."""
    active = ActiveModel.objects.filter(project_id=project_id).select_related("version").first()
    if active is None:
        return 0
    version = active.version
    batch_size = batch_size or settings.ML_SUGGESTION_BATCH
    top_k = min(settings.ML_SUGGESTION_TOP_K, len(version.classes))
    checkpoint = str(checkpoint_local(version.file))
    has_suggestion = Suggestion.objects.filter(image=OuterRef("pk"), model_version=version)
    written, after_id = 0, 0
    while True:
        batch = list(
            Image.objects.filter(project_id=project_id, state__in=SUGGESTED_STATES, id__gt=after_id)
            .exclude(preprocessed="")
            .exclude(Exists(has_suggestion))
            .order_by("id")
            .values_list("id", "preprocessed")[:batch_size]
        )
        if not batch:
            return written
        after_id = batch[-1][0]
        # Local copies through the storage API (annotate.services.image_cache); a cached copy
        # deleted behind our back is skipped, not allowed to fail the batch.
        paths = image_cache().get_many(name for _, name in batch)
        present = [
            (image_id, path)
            for (image_id, _), path in zip(batch, paths, strict=True)
            if path is not None
        ]
        rows = (
            backend.predict(checkpoint, [path for _, path in present], config=version.config)
            if present
            else []
        )
        suggestions, uncertainty = [], {}
        for (image_id, _), probabilities in zip(present, rows, strict=False):
            ranked = sorted(range(len(probabilities)), key=probabilities.__getitem__, reverse=True)
            suggestions.append(
                Suggestion(
                    image_id=image_id,
                    model_version=version,
                    label_id=version.classes[ranked[0]],
                    confidence=probabilities[ranked[0]],
                    top=[
                        {"label": version.classes[i], "probability": probabilities[i]}
                        for i in ranked[:top_k]
                    ],
                    probabilities={
                        str(label_id): p
                        for label_id, p in zip(version.classes, probabilities, strict=False)
                    },
                )
            )
            uncertainty[image_id] = _uncertainty(probabilities)
        with transaction.atomic():
            if not ActiveModel.objects.filter(project_id=project_id, version=version).exists():
                return written  # a newer version took over; its own task does the rest
            Suggestion.objects.bulk_create(suggestions, ignore_conflicts=True)
            # Verify projects: the model's top-k become candidates to verify (issue 15).
            verification_candidates.candidates_from_suggestions(
                project_id=project_id, suggestions=suggestions
            )
            if uncertainty:
                Image.objects.filter(pk__in=uncertainty).update(
                    uncertainty=Case(
                        *[When(pk=image_id, then=Value(u)) for image_id, u in uncertainty.items()],
                        output_field=FloatField(),
                    )
                )
        written += len(suggestions)
        if len(batch) < batch_size:
            return written


def suggestions_missing_sweep(*, backend: MLBackend) -> int:
    """Beat's catch-up: suggestions for images that arrived (or got their cached copy) after
    the last promotion, in every project with an active model."""
    return sum(
        suggestions_compute(project_id=project_id, backend=backend)
        for project_id in ActiveModel.objects.order_by("project_id").values_list(
            "project_id", flat=True
        )
    )
