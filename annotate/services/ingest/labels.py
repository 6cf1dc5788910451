"""Importing a label set: a synset mapping (`<wnid> <name>, <other names>` per line), each line
optionally followed by the label's name in other languages, a tab-separated column each
(`n02123045 tabby, tabby cat<TAB>zh-hans=虎斑猫`)."""

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from annotate.models import Label, Project, label_key_validator
from annotate.services.errors import InvalidInput
from annotate.services.projects import control_character, text_lines


@dataclass
class LabelImportResult:
    created: int = 0
    existing: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


def _parse_translations(columns: list[str]) -> dict[str, str]:
    """The columns after the names, each `<language code>=<name>`, as {code: name}."""
    languages = [code for code, _ in settings.LANGUAGES]
    translations: dict[str, str] = {}
    for column in columns:
        code, _, name = column.strip().partition("=")
        code, name = code.strip().lower(), name.strip()
        if code not in languages:
            raise ValueError(
                f"unknown language {code[:20]!r} in a name column; use one of "
                f"{', '.join(languages)} as <language>=<name>"
            )
        if not name or len(name) > 200:
            raise ValueError(f"the {code} name must have 1 to 200 characters")
        found = control_character(name)
        if found is not None:
            raise ValueError(f"the {code} name contains {found}")
        translations[code] = name
    return translations


def _parse_synset_line(line: str) -> tuple[str, str, dict[str, str]]:
    main, *columns = line.strip().split("\t")
    if columns and not all("=" in column for column in columns):
        # Not name columns: a tab inside the names, refused below as before.
        main, columns = line.strip(), []
    translations = _parse_translations(columns)
    wnid, _, names = main.strip().partition(" ")
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
    return wnid, names, translations


def labels_import(*, project: Project, text: str) -> LabelImportResult:
    """Import a synset mapping (`n02123045 tabby, tabby cat`, one per line).

    Labels already in the project are counted as `existing`, so re-importing adds nothing but
    the names in other languages its lines give. Bad lines are reported with their line
    numbers; the good ones are imported.
    """
    result = LabelImportResult()
    parsed: list[tuple[int, str, str, dict[str, str]]] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text_lines(text), start=1):
        if not line.strip():
            result.errors.append({"line": number, "reason": "blank line"})
            continue
        try:
            wnid, names, translations = _parse_synset_line(line)
        except ValueError as error:
            result.errors.append({"line": number, "reason": str(error)})
            continue
        if wnid in seen:
            result.errors.append(
                {"line": number, "reason": f"duplicate id {wnid} (first on line {seen[wnid]})"}
            )
            continue
        seen[wnid] = number
        parsed.append((number, wnid, names, translations))
    if not parsed:
        first = result.errors[0] if result.errors else None
        raise InvalidInput(
            "No valid synset lines found: expected '<wnid> <name>' per line"
            + (f" (line {first['line']}: {first['reason']})." if first else ".")
        )
    with transaction.atomic():
        existing = {
            label.wnid: label
            for label in Label.objects.select_for_update().filter(project=project, wnid__in=seen)
        }
        start = Label.objects.filter(project=project).count()
        new_labels = [
            Label(
                project=project,
                wnid=wnid,
                name=names,
                names=translations,
                position=start + index,
            )
            for index, (_, wnid, names, translations) in enumerate(
                item for item in parsed if item[1] not in existing
            )
        ]
        Label.objects.bulk_create(new_labels)
        renamed = []
        for _, wnid, _, translations in parsed:
            label = existing.get(wnid)
            if label is not None and translations and label.names | translations != label.names:
                label.names = label.names | translations
                renamed.append(label)
        Label.objects.bulk_update(renamed, ["names"])
    result.created = len(new_labels)
    result.existing = len(existing)
    return result
