"""URL converters."""

from django.urls import register_converter
from django.urls.converters import get_converters


class IdConverter:
    """A database id: digits that fit a 64-bit integer. A longer number is no id at all, so
    its URL is a 404 rather than an out-of-range error from the database."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


# Registered once, on first import, for both URL modules that use it.
if "id" not in get_converters():
    register_converter(IdConverter, "id")
