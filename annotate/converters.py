"""URL converters, and the one reading of a database id from text."""

import re

from django.urls import register_converter
from django.urls.converters import get_converters

ID_PATTERN = "[0-9]{1,18}"
_ID = re.compile(ID_PATTERN)


def parse_id(text: str) -> int | None:
    """The database id `text` spells in ASCII digits, or None. Not str.isdigit(): "²" passes
    it and int() then fails, and int() reads other scripts' digits ("٣" is 3) as ids."""
    return int(text) if _ID.fullmatch(text) else None


class IdConverter:
    """A database id: digits that fit a 64-bit integer. A longer number is no id at all, so
    its URL is a 404 rather than an out-of-range error from the database."""

    regex = ID_PATTERN

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


# Registered once, on first import, for both URL modules that use it.
if "id" not in get_converters():
    register_converter(IdConverter, "id")
