"""WordNet context for a project's labels, from ImageNet's own files (issue 15): other names
to search by (`words.txt`), the synset one level up (`wordnet.is_a.txt`) and definitions
(`gloss.txt`). Only the project's labels change; the files cover all of WordNet (82,115
synsets) and are read whole, a few MB."""

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from annotate.models import Label, Project
from annotate.services.errors import InvalidInput
from annotate.services.projects import control_character, text_lines

# Bad lines are counted; the first few are reported with their numbers.
REPORTED_ERRORS = 20


@dataclass
class WordnetResult:
    updated: int = 0  # labels whose synonyms, parent or gloss changed
    unknown: int = 0  # labels the given files say nothing about
    bad_lines: int = 0
    # {"file", "line", "reason"}, the first few
    errors: list[dict[str, Any]] = field(default_factory=list)

    def bad_line(self, file: str, number: int, reason: str) -> None:
        self.bad_lines += 1
        if len(self.errors) < REPORTED_ERRORS:
            self.errors.append({"file": file, "line": number, "reason": reason})


def _pairs(text: str, *, file: str, result: WordnetResult) -> list[tuple[int, str, str]]:
    """(line number, first field, the rest) of each line: split at the first tab, or at the
    first run of blanks where a line has no tab. Blank lines are skipped."""
    found = []
    for number, line in enumerate(text_lines(text), start=1):
        if not line.strip():
            continue
        first, tab, rest = line.partition("\t")
        if not tab:
            first, _, rest = line.strip().partition(" ")
        first, rest = first.strip(), rest.strip()
        if not first or not rest:
            result.bad_line(file, number, "expected two fields")
            continue
        # Names, parents and glosses end up in labels: none may hold a control character.
        refused = control_character(first) or control_character(rest)
        if refused is not None:
            result.bad_line(file, number, f"{file} contains {refused}")
            continue
        found.append((number, first, rest))
    return found


def _names(words: str) -> list[str]:
    return [name.strip() for name in words.split(",") if name.strip()]


def labels_wordnet_apply(
    *,
    project: Project,
    words_text: str | None = None,
    is_a_text: str | None = None,
    gloss_text: str | None = None,
) -> WordnetResult:
    """Set the synonyms (words.txt: `wnid<TAB>name, other name, ...`), the parent (is_a:
    `parent_wnid child_wnid`; named from words.txt when given) and the gloss (gloss.txt:
    `wnid<TAB>definition`) of the project's labels that the files mention.

    A label's synonyms are the synset's names other than those already in its own name. A
    synset with several parents (a few in WordNet) gets the first listed. Applying the same
    files again changes nothing."""
    if words_text is None and is_a_text is None and gloss_text is None:
        raise InvalidInput("Give at least one of words.txt, wordnet.is_a.txt or gloss.txt.")
    result = WordnetResult()
    words = {
        wnid: _names(rest)
        for _, wnid, rest in _pairs(words_text or "", file="words", result=result)
    }
    parents: dict[str, str] = {}
    for number, parent, child in _pairs(is_a_text or "", file="is_a", result=result):
        if " " in child or "\t" in child:
            result.bad_line("is_a", number, "expected '<parent wnid> <child wnid>'")
            continue
        parents.setdefault(child, parent)
    glosses = {
        wnid: rest for _, wnid, rest in _pairs(gloss_text or "", file="gloss", result=result)
    }
    now = timezone.now()
    with transaction.atomic():
        labels = list(Label.objects.select_for_update().filter(project=project).order_by("id"))
        changed = []
        for label in labels:
            before = (label.synonyms, label.parent_wnid, label.parent_name, label.gloss)
            known = False
            if label.wnid in words:
                known = True
                own = {name.casefold() for name in _names(label.name)}
                label.synonyms = [n for n in words[label.wnid] if n.casefold() not in own][:50]
            if label.wnid in parents:
                known = True
                parent = parents[label.wnid]
                if words_text is not None:
                    label.parent_name = (words.get(parent) or [""])[0][:200]
                elif parent != label.parent_wnid:
                    label.parent_name = ""  # the old name was another synset's
                label.parent_wnid = parent[:64]
            if label.wnid in glosses:
                known = True
                label.gloss = glosses[label.wnid]
            result.unknown += not known
            if (label.synonyms, label.parent_wnid, label.parent_name, label.gloss) != before:
                label.updated_at = now  # bulk_update() leaves auto_now fields alone
                changed.append(label)
        Label.objects.bulk_update(
            changed, ["synonyms", "parent_wnid", "parent_name", "gloss", "updated_at"]
        )
    result.updated = len(changed)
    return result
