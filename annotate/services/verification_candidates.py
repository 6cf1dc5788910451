"""Candidate labels for verification (issue 15): where they come from.

A candidate is a label an image may show, as a search engine's results for a synset's words
were for ImageNet: from the import (the first folder of a file is its candidate wnid), from an
upload (one `candidate_label` for every file), or from the active model's top-k. Gold images
give gold candidates with a known answer, which measure the volunteers.

An image with a candidate waits for verification out of the classify queue: its `free_slots`
is held at zero, unless volunteers already started classifying it.
"""

import json
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from django.db import transaction
from django.db.models import Exists, OuterRef

from annotate import rows
from annotate.models import Candidate, CandidateVote, Image, Label, Project, Suggestion
from annotate.rows import verification as statements

# Gold candidates made per label: known-yes from gold images of the label, known-no from gold
# images of other labels.
GOLD_PER_LABEL = 6


@dataclass
class CandidatesAdded:
    created: int = 0
    # Folder names that are no label of the project, with how many images were in each.
    unknown_folders: dict[str, int] = field(default_factory=dict)


def candidates_add(
    *,
    project: Project,
    pairs: Iterable[tuple[int, int]],
    source: str,
    probabilities: dict[tuple[int, int], float] | None = None,
) -> int:
    """Make (image id, label id) candidates; existing pairs are left alone. Holds their images
    out of the classify queue and makes the gold candidates of their labels. Returns how many
    were new."""
    wanted = list(dict.fromkeys(pairs))
    if not wanted:
        return 0
    image_ids = sorted({image_id for image_id, _ in wanted})
    existing = set(
        Candidate.objects.filter(image_id__in=image_ids).values_list("image_id", "label_id")
    )
    fresh = [pair for pair in wanted if pair not in existing]
    Candidate.objects.bulk_create(
        [
            Candidate(
                project=project,
                image_id=image_id,
                label_id=label_id,
                source=source,
                probability=(probabilities or {}).get((image_id, label_id)),
            )
            for image_id, label_id in fresh
        ],
        ignore_conflicts=True,  # a concurrent import of the same pair
    )
    images_hold_for_verification(image_ids=image_ids)
    gold_candidates_ensure(project=project, label_ids={label_id for _, label_id in fresh})
    return len(fresh)


def images_hold_for_verification(*, image_ids: list[int]) -> int:
    """Take images out of the classify queue while their candidates are verified, unless
    someone already leased or voted on them."""
    if not image_ids:
        return 0
    return rows.execute(statements.images_hold(len(image_ids)), image_ids)


def _first_folder(name: str) -> str | None:
    folders = [part for part in PurePosixPath(name.replace("\\", "/")).parts[:-1] if part]
    if folders and folders[0] in ("train", "val"):
        folders = folders[1:]
    return folders[0] if folders else None


def candidates_from_folders(*, project: Project, image_ids: list[int]) -> CandidatesAdded:
    """Candidates for freshly imported images from their paths: `<wnid>/...` (or
    `train/<wnid>/...`) makes `wnid` the candidate, as a search for its words would have.
    Gold images are skipped (their answer is known); unknown folders are reported."""
    by_wnid = dict(Label.objects.filter(project=project).values_list("wnid", "id"))
    result = CandidatesAdded()
    unknown: Counter[str] = Counter()
    pairs = []
    names = Image.objects.filter(pk__in=image_ids, is_gold=False).values_list("id", "original_name")
    for image_id, name in names:
        folder = _first_folder(name)
        if folder is None:
            continue
        if folder in by_wnid:
            pairs.append((image_id, by_wnid[folder]))
        else:
            unknown[folder] += 1
    result.created = candidates_add(project=project, pairs=pairs, source=Candidate.Source.IMPORT)
    result.unknown_folders = dict(unknown)
    return result


def candidates_from_upload(*, project: Project, image_ids: list[int], label: Label) -> int:
    """`label` as the candidate of every uploaded (non-gold) image."""
    plain = Image.objects.filter(pk__in=image_ids, is_gold=False).values_list("id", flat=True)
    return candidates_add(
        project=project,
        pairs=[(image_id, label.pk) for image_id in plain],
        source=Candidate.Source.UPLOAD,
    )


def candidates_from_suggestions(*, project_id: int, suggestions: Iterable[Suggestion]) -> int:
    """The model's top-k labels at or above the project's `candidate_min_probability`, for
    the open images of a verify project (Open Images verified a classifier's labels this
    way). Called where suggestions are written."""
    project = Project.objects.filter(pk=project_id, task=Project.Task.VERIFY).first()
    if project is None:
        return 0
    suggestions = list(suggestions)
    open_ids = set(
        Image.objects.filter(
            pk__in=[s.image_id for s in suggestions], state=Image.State.OPEN, is_gold=False
        ).values_list("id", flat=True)
    )
    probabilities: dict[tuple[int, int], float] = {}
    for suggestion in suggestions:
        if suggestion.image_id not in open_ids:
            continue
        for entry in suggestion.top:
            if entry["probability"] >= project.candidate_min_probability:
                probabilities[(suggestion.image_id, int(entry["label"]))] = entry["probability"]
    return candidates_add(
        project=project,
        pairs=list(probabilities),
        source=Candidate.Source.MODEL,
        probabilities=probabilities,
    )


def candidate_next_from_model(*, project: Project, image_id: int) -> Candidate | None:
    """The active model's most probable label for the image that was no candidate yet, made
    a candidate (after every earlier one was rejected); None when the model has none."""
    row = rows.fetch_one(statements.model_top(), [image_id])
    if row is None:
        return None
    top = json.loads(row[0]) if isinstance(row[0], str) else row[0]
    tried = set(Candidate.objects.filter(image_id=image_id).values_list("label_id", flat=True))
    for entry in top:
        label_id = int(entry["label"])
        if label_id not in tried:
            candidate = Candidate(
                project=project,
                image_id=image_id,
                label_id=label_id,
                source=Candidate.Source.MODEL,
                probability=entry["probability"],
            )
            candidate.save()
            gold_candidates_ensure(project=project, label_ids={label_id})
            return candidate
    return None


def gold_candidates_ensure(
    *, project: Project, label_ids: Iterable[int], per_label: int = GOLD_PER_LABEL
) -> int:
    """Up to `per_label` known-yes and as many known-no gold candidates for each label, from
    the project's gold images: a gold image of the label says yes, one of another label no."""
    made = 0
    rng = random.Random(project.pk)
    for label_id in sorted(set(label_ids)):
        has = Candidate.objects.filter(image=OuterRef("pk"), label_id=label_id)
        gold = Image.objects.filter(project=project, is_gold=True).exclude(Exists(has))
        present = Counter(
            Candidate.objects.filter(label_id=label_id, is_gold=True).values_list(
                "gold_answer", flat=True
            )
        )
        yes_ids = list(
            gold.filter(gold_label_id=label_id).values_list("id", flat=True)[: per_label * 4]
        )
        no_ids = list(
            gold.exclude(gold_label_id=label_id).values_list("id", flat=True)[: per_label * 4]
        )
        rng.shuffle(yes_ids)
        rng.shuffle(no_ids)
        new = [
            Candidate(
                project=project,
                image_id=image_id,
                label_id=label_id,
                source=Candidate.Source.GOLD,
                is_gold=True,
                gold_answer=answer,
            )
            for answer, ids in ((True, yes_ids), (False, no_ids))
            for image_id in ids[: max(0, per_label - present[answer])]
        ]
        Candidate.objects.bulk_create(new, ignore_conflicts=True)
        made += len(new)
    return made


def candidates_settle_by_review(*, image_id: int, label_id: int | None) -> int:
    """A reviewer's decision settles the image's open and disputed candidates: the decided
    label's is accepted, the others rejected. The reviewer's truth did not depend on any voter,
    so every vote on them measures its voter. Run after the review's own transaction (outside
    its image lock: a grid answer locks candidates before images)."""
    pending = Candidate.objects.filter(
        image_id=image_id,
        is_gold=False,
        state__in=[Candidate.State.OPEN, Candidate.State.DISPUTED],
    )
    with transaction.atomic():
        ids = list(pending.select_for_update().order_by("id").values_list("id", flat=True))
        settled = Candidate.objects.filter(pk__in=ids)
        if label_id is not None:  # None: the image was excluded, every candidate is wrong
            settled.filter(label_id=label_id).update(state=Candidate.State.ACCEPTED)
            settled = settled.exclude(label_id=label_id)
        settled.update(state=Candidate.State.REJECTED)
        # A reviewer's decision is independent of any one vote: every vote is rated by it.
        votes = CandidateVote.objects.filter(candidate_id__in=ids)
        if label_id is not None:
            votes.filter(candidate__label_id=label_id).update(reference=True)
            votes = votes.exclude(candidate__label_id=label_id)
        votes.update(reference=False)
    return len(ids)
