"""The form of a username that two names share when people would read them as one.

`ADMIN` and `admin`, Cyrillic `аdmin` and Latin `admin`, fullwidth `ａdmin`: one person could pass
for another. The key is the name in NFKC (compatibility forms folded), case-folded, then each
character replaced by the one it is confusable with in Unicode's confusables data (as shipped by
the confusable_homoglyphs package), preferring an ASCII character, until nothing changes; then
NFKC and case folding once more. Two names with one key are one name (annotate.models.User keeps
the key unique). Only one-character look-alikes are folded (`rn` and `m` stay apart).
"""

import unicodedata
from functools import lru_cache

from confusable_homoglyphs.confusables import confusables_data  # type: ignore[import-untyped]


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


@lru_cache(maxsize=4096)
def _look_alike(char: str) -> str:
    """The character `char` is read as: ASCII first, then the lowest code point, followed
    through the data until it settles (`|` is confusable with `l`, and `l` with `1`)."""
    seen = {char}
    while True:
        options = [char] + [
            glyph["c"] for glyph in confusables_data.get(char, ()) if len(glyph["c"]) == 1
        ]
        best = min(options, key=lambda c: (not c.isascii(), ord(c)))
        if best in seen and best == char:
            return char
        if best in seen:  # a cycle in the data: settle on its smallest member
            return min(seen, key=lambda c: (not c.isascii(), ord(c)))
        seen.add(best)
        char = best


def username_key(username: str) -> str:
    return _fold("".join(_look_alike(char) for char in _fold(username.strip())))
