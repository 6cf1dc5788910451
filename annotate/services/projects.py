"""Projects, their consensus policy and their labels."""

import unicodedata
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max, Model

from annotate.models import Label, Project
from annotate.services import policies, verification_consensus
from annotate.services.errors import Conflict, InvalidInput
from annotate.services.serving import project_refresh_free_slots

POLICY_FIELDS = (
    "min_votes",
    "max_votes",
    "agreement",
    "mode",
    "target_confidence",
    "plurality_at_max_votes",
)
# Quality settings (issue 16): the gold schedule, who counts as reliable, the model's weight,
# when re-aggregation flags a decision, and whether training takes the model's own labels.
QUALITY_FIELDS = (
    "gold_rate",
    "gold_rate_min",
    "gold_half_life",
    "reliability_threshold",
    "model_max_accuracy",
    "flag_confidence",
    "train_on_model_decided",
)
PROJECT_FIELDS = (
    "name",
    "description",
    *POLICY_FIELDS,
    "show_suggestions",
    "suggestion_threshold",
    "semi_supervised",
    "serving_order",
    *QUALITY_FIELDS,
    "lease_seconds",
    # Verification (issue 15).
    "task",
    "grid_size",
    "candidate_min_probability",
    "when_all_rejected",
    # Teams (issue 19).
    "private",
    "review_any_state",
)


def validation_message(error: ValidationError) -> str:
    if hasattr(error, "message_dict"):
        return "; ".join(
            f"{field}: {' '.join(messages)}" if field != "__all__" else " ".join(messages)
            for field, messages in error.message_dict.items()
        )
    return " ".join(error.messages)


def _full_clean(instance: Model, **kwargs: Any) -> None:
    try:
        instance.full_clean(**kwargs)
    except ValidationError as error:
        field = next(iter(getattr(error, "message_dict", {}) or {}), None)
        raise InvalidInput(validation_message(error), field=field) from None


def _check_policy(project: Project) -> None:
    problem = policies.policy_problem(project)
    if problem is not None:
        raise InvalidInput(problem, field="max_votes")


def project_create(*, name: str, **fields: Any) -> Project:
    unknown = set(fields) - set(PROJECT_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown project fields: {', '.join(sorted(unknown))}.")
    if fields.get("task") == Project.Task.VERIFY:
        # Verification decides each candidate on its own posterior, as ImageNet did: the
        # defaults are those its bench meets 99.7% precision with (bench/verify_cost.py).
        fields.setdefault("target_confidence", verification_consensus.DEFAULT_TARGET_CONFIDENCE)
        fields.setdefault("max_votes", verification_consensus.DEFAULT_MAX_VOTES)
        # A grid's gold items take candidates' places, with or without gold to show: off
        # unless asked for (classify projects default to a small share, issue 16).
        fields.setdefault("gold_rate", 0.0)
    project = Project(name=name, **fields)
    _full_clean(project)
    _check_policy(project)
    project.save()
    return project


def project_update(*, project: Project, **changes: Any) -> Project:
    """Change settings; a policy change re-computes which open images may still be leased."""
    unknown = set(changes) - set(PROJECT_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown project fields: {', '.join(sorted(unknown))}.")
    policy_changed = any(
        field in changes and changes[field] != getattr(project, field) for field in POLICY_FIELDS
    )
    for field, value in changes.items():
        setattr(project, field, value)
    _full_clean(project)
    if policy_changed:
        _check_policy(project)
    with transaction.atomic():
        project.save()
        if policy_changed:
            project_refresh_free_slots(project=project)
    return project


# Characters that would break a line-per-label file (LOC_synset_mapping.txt: line number =
# class index) or hide what a name says: every control character (Cc), the line and paragraph
# separators, and format characters (Cf) other than the joiners some scripts and emoji need.
_JOINERS = {"\u200c", "\u200d"}
_CHARACTER_NAMES = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", "\x00": "a NUL"}


def control_character(text: str) -> str | None:
    """The first character of `text` that no label text may hold, described for a person
    (e.g. "a newline (U+000A)"), or None when there is none."""
    for character in text:
        category = unicodedata.category(character)
        if category in ("Cc", "Zl", "Zp") or (category == "Cf" and character not in _JOINERS):
            name = _CHARACTER_NAMES.get(character) or (
                f"the character {unicodedata.name(character, 'a control character')}"
            )
            return f"{name} (U+{ord(character):04X})"
    return None


def one_line(text: str) -> str:
    """`text` with each run of characters that no label text may hold turned into one space:
    how a name written before names were checked goes into a line-per-label file."""
    pieces: list[str] = []
    for character in text:
        if control_character(character) is None:
            pieces.append(character)
        elif pieces and pieces[-1] != " ":
            pieces.append(" ")
    return "".join(pieces).strip()


def text_lines(text: str) -> list[str]:
    """The lines of a text file as an editor numbers them: split at LF, CRLF or CR only, so
    that other separators (U+2028, form feed, ...) stay inside their line to be refused there
    rather than shifting every line number after them."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def refuse_control_characters(**texts: str) -> None:
    """InvalidInput naming the field and the character when a label text holds one."""
    for field, text in texts.items():
        found = control_character(text)
        if found is not None:
            raise InvalidInput(f"{field} contains {found}.", field=field)


def label_create(*, project: Project, wnid: str, name: str, gloss: str = "") -> Label:
    """Add a label at the end of the project's label list."""
    refuse_control_characters(wnid=wnid, name=name, gloss=gloss)
    wnid, name = wnid.strip(), name.strip()
    if Label.objects.filter(project=project, wnid=wnid).exists():
        raise Conflict(f"Label {wnid!r} already exists in this project.", field="wnid")
    position = (Label.objects.filter(project=project).aggregate(m=Max("position"))["m"] or 0) + 1
    label = Label(project=project, wnid=wnid, name=name, gloss=gloss.strip(), position=position)
    _full_clean(label, exclude=["project"])
    label.save()
    return label
