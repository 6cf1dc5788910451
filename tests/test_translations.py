"""`make check`'s translation check: it passes on the shipped catalogues and fails when a message
is left untranslated or fuzzy in zh-Hans, or a .mo is not compiled from its .po."""

import shutil
from pathlib import Path

import polib
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from annotate.translations import check_translations

LOCALE = Path(settings.BASE_DIR) / "locale"
DJANGO_PO = "zh_Hans/LC_MESSAGES/django.po"
JS_PO = "zh_Hans/LC_MESSAGES/djangojs.po"


@pytest.fixture
def locale_copy(tmp_path):
    copy = tmp_path / "locale"
    shutil.copytree(LOCALE, copy)
    return copy


def edit(po_path: Path, msgid: str, change) -> None:
    catalogue = polib.pofile(str(po_path))
    entry = catalogue.find(msgid)
    assert entry is not None, msgid
    change(entry)
    catalogue.save(str(po_path))


def test_the_shipped_catalogues_are_complete_and_compiled():
    report = check_translations(LOCALE, Path(settings.BASE_DIR))
    assert report.problems == []
    assert report.checked > 150
    call_command("check_translations")


def test_an_untranslated_message_fails(locale_copy):
    edit(
        locale_copy / DJANGO_PO, "Which label fits this image?", lambda e: setattr(e, "msgstr", "")
    )
    report = check_translations(locale_copy, Path(settings.BASE_DIR))
    assert any("untranslated: 'Which label fits this image?'" in p for p in report.problems)
    with pytest.raises(CommandError):
        call_command("check_translations", locale_dir=locale_copy)


def test_a_message_of_the_scripts_missing_from_the_catalogue_fails(locale_copy):
    """A message added to a script but never extracted: the check extracts afresh."""
    catalogue = polib.pofile(str(locale_copy / JS_PO))
    voted = catalogue.find("Voted: %s.")
    assert voted is not None
    catalogue.remove(voted)
    catalogue.save(str(locale_copy / JS_PO))
    problems = check_translations(locale_copy, Path(settings.BASE_DIR)).problems
    # Extracted again, it is new (untranslated) or close to another one (fuzzy, a guess).
    assert any(("untranslated" in p or "fuzzy" in p) and "'Voted: %s.'" in p for p in problems), (
        problems
    )


def test_a_fuzzy_message_fails(locale_copy):
    edit(locale_copy / DJANGO_PO, "Skip", lambda e: e.flags.append("fuzzy"))
    problems = check_translations(locale_copy, Path(settings.BASE_DIR)).problems
    assert any("fuzzy" in p and "'Skip'" in p for p in problems)


def test_a_mo_file_not_compiled_from_its_po_fails(locale_copy):
    edit(locale_copy / DJANGO_PO, "Skip", lambda e: setattr(e, "msgstr", "略过"))
    problems = check_translations(locale_copy, Path(settings.BASE_DIR)).problems
    assert problems == [
        f"{locale_copy / DJANGO_PO.replace('.po', '.mo')} is not compiled from "
        "its .po: run `make messages`"
    ]
