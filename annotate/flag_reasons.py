"""Why an image is flagged for review (Image.flag_reason): written in English where the flag
is raised, and shown in the page's language.

Each kind of reason is a template. The stored text is the English template with its values
filled in (so existing rows, the admin and the API keep reading the same text); a page reads
it back against the same templates to show the translated one. A reason that matches none (an
older wording, or cut at the column's length) is shown as it is stored.
"""

import re
from functools import cache

from django.utils.translation import gettext, gettext_noop

# The reason column's length (Image.flag_reason).
REASON_MAX = 200

VERIFICATION_DISPUTED = gettext_noop("verification of %(wnid)s disputed (%(yes)s yes, %(no)s no)")
# Re-aggregation's flag (annotate.services.aggregation): the answer Dawid-Skene prefers, how
# sure it is, and the decided one; each answer a quoted label name or "none of these".
DAWID_SKENE_PREFERS = gettext_noop("Dawid-Skene prefers %(choice)s (%(confidence)s) to %(decided)s")
NONE_OF_THESE = gettext_noop("none of these")
# Earlier wordings, still read back translated on older rows.
DAWID_SKENE_PREFERS_LABEL = gettext_noop("Dawid-Skene prefers label %(label)s (%(confidence)s)")
DAWID_SKENE_PREFERS_NONE = gettext_noop("Dawid-Skene prefers none of these (%(confidence)s)")
TEMPLATES = (
    VERIFICATION_DISPUTED,
    DAWID_SKENE_PREFERS,
    DAWID_SKENE_PREFERS_LABEL,
    DAWID_SKENE_PREFERS_NONE,
)


def flag_reason(template: str, **values: object) -> str:
    """The stored (English) reason: `template`, one of TEMPLATES, with `values` filled in."""
    assert template in TEMPLATES, template
    return (template % values)[:REASON_MAX]


@cache
def _pattern(template: str) -> re.Pattern[str]:
    """`template` as a regular expression with a named group per value."""
    return re.compile(re.sub(r"%\\\((\w+)\\\)s", r"(?P<\1>.+?)", re.escape(template)))


def flag_reason_display(reason: str) -> str:
    """The stored `reason` in the active language."""
    for template in TEMPLATES:
        found = _pattern(template).fullmatch(reason)
        if found:
            values = {
                key: gettext(value) if value == NONE_OF_THESE else value
                for key, value in found.groupdict().items()
            }
            return gettext(template) % values
    return reason
