"""Importing a label set: a synset mapping (`<wnid> <name>, <other names>` per line)."""

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from annotate.models import Label, Project, label_key_validator
from annotate.services.errors import InvalidInput
from annotate.services.projects import control_character, text_lines


@dataclass
class LabelImportResult:
    created: int = 0
    existing: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


def _parse_synset_line(line: str) -> tuple[str, str]:
    wnid, _, names = line.strip().partition(" ")
    names = names.strip()
    if not names:
        raise ValueError("expected '<wnid> <name>[, <other names>]'")
    try:
        label_key_validator(wnid)
    except Exception:
        raise ValueError(f"{wnid[:70]!r} is not a valid label id (WordNet id or slug)") from None
    if len(names) > 200:
        raise ValueError("names longer than 200 characters")
    found = control_character(names)
    if found is not None:
        raise ValueError(f"name contains {found}")
    return wnid, names


def labels_import(*, project: Project, text: str) -> LabelImportResult:
    """Import a synset mapping (`n02123045 tabby, tabby cat`, one per line).

    Labels already in the project are counted as `existing`, so re-importing adds nothing.
    Bad lines are reported with their line numbers; the good ones are imported.
    """
    result = LabelImportResult()
    parsed: list[tuple[int, str, str]] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text_lines(text), start=1):
        if not line.strip():
            result.errors.append({"line": number, "reason": "blank line"})
            continue
        try:
            wnid, names = _parse_synset_line(line)
        except ValueError as error:
            result.errors.append({"line": number, "reason": str(error)})
            continue
        if wnid in seen:
            result.errors.append(
                {"line": number, "reason": f"duplicate id {wnid} (first on line {seen[wnid]})"}
            )
            continue
        seen[wnid] = number
        parsed.append((number, wnid, names))
    if not parsed:
        first = result.errors[0] if result.errors else None
        raise InvalidInput(
            "No valid synset lines found: expected '<wnid> <name>' per line"
            + (f" (line {first['line']}: {first['reason']})." if first else ".")
        )
    with transaction.atomic():
        existing = set(
            Label.objects.filter(project=project, wnid__in=seen).values_list("wnid", flat=True)
        )
        start = Label.objects.filter(project=project).count()
        new_labels = [
            Label(project=project, wnid=wnid, name=names, position=start + index)
            for index, (_, wnid, names) in enumerate(
                item for item in parsed if item[1] not in existing
            )
        ]
        Label.objects.bulk_create(new_labels)
    result.created = len(new_labels)
    result.existing = len(existing)
    return result
