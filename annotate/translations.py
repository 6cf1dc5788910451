"""Whether the shipped translations are complete and compiled (`manage.py check_translations`,
run by `make check`).

The messages are extracted afresh from the templates, the Python code and the pages' scripts
into a copy of the catalogues (makemessages merges what is already translated), so a message
added or changed in the code and not yet translated is found as well as an empty or fuzzy one.
Each committed .mo must be exactly what msgfmt makes of its .po: the server reads the .mo.
"""

import shutil
import subprocess
import tempfile
from contextlib import chdir
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

import polib
from django.conf import settings
from django.core.management import call_command
from django.test.utils import override_settings

DOMAINS = ("django", "djangojs")
# Not the project's own messages: the tools, tests, benches and installed packages.
IGNORED = ["locale", "node_modules", "test-output", "var", "tests", "bench", "docs", ".*", "*~"]


@dataclass
class TranslationReport:
    problems: list[str] = field(default_factory=list)
    checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def shipped_languages() -> list[str]:
    """The locale folder names of the languages other than the source's English (zh_Hans)."""
    return [_locale_name(code) for code, _ in settings.LANGUAGES if code != settings.LANGUAGE_CODE]


def _locale_name(code: str) -> str:
    """Django's folder name for a language code: zh-hans -> zh_Hans, pt-br -> pt_BR."""
    language, _, region = code.partition("-")
    if not region:
        return language
    return f"{language}_{region.title() if len(region) > 2 else region.upper()}"


def check_translations(locale_dir: Path, source_dir: Path) -> TranslationReport:
    report = TranslationReport()
    languages = shipped_languages()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "locale"
        shutil.copytree(locale_dir, fresh)
        _extract(fresh, source_dir, languages)
        for language in languages:
            for domain in DOMAINS:
                name = f"{language}/LC_MESSAGES/{domain}"
                _check_catalogue(fresh / f"{name}.po", name, report)
                _check_compiled(locale_dir / f"{name}.po", locale_dir / f"{name}.mo", report)
    return report


def _extract(locale_dir: Path, source_dir: Path, languages: list[str]) -> None:
    """makemessages from `source_dir`'s folders into `locale_dir` (and nowhere else): it runs in
    a folder of links to them, as makemessages writes beside any `locale` folder it finds."""
    sources = locale_dir.parent / "sources"
    sources.mkdir()
    for entry in source_dir.iterdir():
        if entry.is_dir() and not any(fnmatch(entry.name, pattern) for pattern in IGNORED):
            (sources / entry.name).symlink_to(entry.resolve(), target_is_directory=True)
    with override_settings(LOCALE_PATHS=[str(locale_dir)]), chdir(sources):
        for domain in DOMAINS:
            call_command(
                "makemessages",
                locale=languages,
                domain=domain,
                ignore_patterns=IGNORED,
                symlinks=True,
                no_location=True,
                verbosity=0,
            )


def _check_catalogue(po_path: Path, name: str, report: TranslationReport) -> None:
    if not po_path.is_file():
        report.problems.append(f"{name}.po is missing")
        return
    catalogue = polib.pofile(str(po_path))
    entries = [entry for entry in catalogue if not entry.obsolete]
    report.checked += len(entries)
    for entry in catalogue.untranslated_entries():
        report.problems.append(f"{name}: untranslated: {entry.msgid!r}")
    for entry in catalogue.fuzzy_entries():
        report.problems.append(f"{name}: fuzzy (check it, then remove the flag): {entry.msgid!r}")


def _check_compiled(po_path: Path, mo_path: Path, report: TranslationReport) -> None:
    if not po_path.is_file():
        return
    with tempfile.TemporaryDirectory() as tmp:
        compiled = Path(tmp) / "compiled.mo"
        result = subprocess.run(
            ["msgfmt", "--check-format", "-o", str(compiled), str(po_path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            report.problems.append(f"{po_path}: msgfmt refuses it: {result.stderr.strip()}")
            return
        if not mo_path.is_file() or mo_path.read_bytes() != compiled.read_bytes():
            report.problems.append(f"{mo_path} is not compiled from its .po: run `make messages`")
