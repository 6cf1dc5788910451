"""import_labels with ImageNet's WordNet files: synonyms, parents and glosses (issue 15)."""

import io

import pytest
from django.core.management import CommandError, call_command

from annotate.models import Label
from annotate.services import wordnet
from annotate.services.errors import InvalidInput

pytestmark = pytest.mark.django_db

MAPPING = "n01440764 tench\nn02123045 tabby, tabby cat\nn07920052 café au lait\n"
# As in ImageNet's files: words.txt and gloss.txt tab-separated, is_a space-separated, and
# covering far more synsets than the project has.
WORDS = (
    "n00001740\tentity\n"
    "n01440764\ttench, Tinca tinca\n"
    "n01439121\tcyprinid, cyprinid fish\n"
    "n02123045\ttabby, tabby cat\n"
    "n02121808\tdomestic cat, house cat, Felis domesticus, Felis catus\n"
    "n07920052\tcafé au lait, 咖啡牛奶\n"
    "n07929519\tcoffee, java\n"
)
IS_A = (
    "n00001740 n00001930\n"
    "n01439121 n01440764\n"
    "n02121808 n02123045\n"
    "n02120997 n02123045\n"  # a second parent: the first listed wins
    "n07929519 n07920052\n"
)
GLOSS = "n01440764\tfreshwater dace-like game fish of Europe and western Asia\n"


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def files(tmp_path, **texts: str) -> list[str]:
    paths = []
    for name, text in texts.items():
        path = tmp_path / f"{name}.txt"
        path.write_text(text, encoding="utf-8")
        paths.append(str(path))
    return paths


def context(project) -> dict[str, tuple]:
    return {
        label.wnid: (label.synonyms, label.parent_wnid, label.parent_name, label.gloss)
        for label in Label.objects.filter(project=project)
    }


def test_mapping_with_words_is_a_and_gloss(project, tmp_path):
    mapping, words, is_a, gloss = files(
        tmp_path, mapping=MAPPING, words=WORDS, is_a=IS_A, gloss=GLOSS
    )
    out, err = run(
        "import_labels",
        str(project.pk),
        mapping,
        "--words",
        words,
        "--is-a",
        is_a,
        "--gloss",
        gloss,
    )
    assert "3 labels created" in out
    assert "WordNet context: 3 labels updated, 0 not in the given files, 0 lines" in out
    assert err == ""
    assert context(project) == {
        "n01440764": (
            ["Tinca tinca"],
            "n01439121",
            "cyprinid",
            "freshwater dace-like game fish of Europe and western Asia",
        ),
        # Names already in the label's own name are not repeated as synonyms.
        "n02123045": ([], "n02121808", "domestic cat", ""),
        "n07920052": (["咖啡牛奶"], "n07929519", "coffee", ""),
    }
    # Again: nothing changes.
    out, _ = run("import_labels", str(project.pk), "--words", words, "--is-a", is_a)
    assert "WordNet context: 0 labels updated" in out


def test_context_for_existing_labels_only_and_parents_without_names(project, tmp_path):
    mapping, is_a = files(tmp_path, mapping=MAPPING, is_a=IS_A)
    run("import_labels", str(project.pk), mapping)
    out, _ = run("import_labels", str(project.pk), "--is-a", is_a)
    assert "3 labels updated" in out
    # Without words.txt the parents have their wnid and no name; the page shows the wnid.
    assert context(project)["n02123045"] == ([], "n02121808", "", "")
    (words,) = files(tmp_path, words=WORDS)
    run("import_labels", str(project.pk), "--words", words, "--is-a", is_a)
    assert context(project)["n02123045"] == ([], "n02121808", "domestic cat", "")


def test_bad_lines_are_reported_and_good_ones_applied(project, tmp_path):
    mapping, words, is_a = files(
        tmp_path,
        mapping=MAPPING + "n99999999 not in the files\n",
        words="n01440764\ttench, Tinca tinca\nonly-a-wnid\n\n",
        is_a="n01439121 n01440764\nn01439121\nn1 n2 n3\n",
    )
    out, err = run("import_labels", str(project.pk), mapping, "--words", words, "--is-a", is_a)
    assert "WordNet context: 1 labels updated, 3 not in the given files, 3 lines" in out
    assert err.splitlines() == [
        "words line 2: expected two fields",
        "is_a line 2: expected two fields",
        "is_a line 3: expected '<parent wnid> <child wnid>'",
    ]
    assert context(project)["n01440764"] == (["Tinca tinca"], "n01439121", "", "")


def test_missing_or_unreadable_files_and_no_input_are_errors(project, tmp_path):
    with pytest.raises(CommandError, match="Give a mapping file, or --words"):
        run("import_labels", str(project.pk))
    with pytest.raises(CommandError, match="Cannot read"):
        run("import_labels", str(project.pk), "--words", str(tmp_path / "missing.txt"))
    binary = tmp_path / "words.bin"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CommandError, match="Cannot read"):
        run("import_labels", str(project.pk), "--words", str(binary))
    with pytest.raises(InvalidInput):
        wordnet.labels_wordnet_apply(project=project)


def test_lines_with_control_characters_are_reported_and_not_imported(project, tmp_path):
    mapping, gloss = files(
        tmp_path,
        mapping="n01440764 tench\nn02123045 tabby\x0bcat\nn07920052 caf\u00e9\x1b[31m\n",
        gloss="n01440764\tfreshwater\tfish\n",
    )
    out, err = run("import_labels", str(project.pk), mapping, "--gloss", gloss)
    assert "line 2: name contains the character" in err and "(U+000B)" in err
    assert "line 3: name contains the character" in err and "(U+001B)" in err
    assert "gloss line 1: gloss contains a tab (U+0009)" in err
    assert "1 labels created" in out
    assert [(label.wnid, label.gloss) for label in Label.objects.filter(project=project)] == [
        ("n01440764", "")
    ]


def test_a_mapping_with_only_bad_lines_is_a_command_error_naming_the_character(project, tmp_path):
    mapping = tmp_path / "mapping.txt"
    mapping.write_text("n01440764 tench\x00fish\n", encoding="utf-8")
    with pytest.raises(CommandError, match=r"line 1: name contains .*\(U\+0000\)"):
        run("import_labels", str(project.pk), str(mapping))
    assert not Label.objects.exists()
