"""Table and column names for the hot path's SQL text, taken from the models' metadata.

Statements are written as templates: `{Image}` stands for the image table's quoted name and
`{Image.votes_count}` for the quoted column of that field (`{Image.project}`: the foreign
key's column, project_id). sql() fills them in; each statement module calls it once per
statement and keeps the text, so no name is typed by hand and none is looked up per request.
"""

from functools import cache
from typing import Any

from django.apps import apps
from django.db.models import Model

from annotate.rows.django_private import column_of, model_fields

# The models the hot path's statements read and write, by the name templates use.
_MODELS = {
    "ActiveModel": "annotate.ActiveModel",
    "AnnotatorStats": "annotate.AnnotatorStats",
    "CrowdConfusion": "annotate.CrowdConfusion",
    "VolunteerConfusion": "annotate.VolunteerConfusion",
    "Assignment": "annotate.Assignment",
    "Decision": "annotate.Decision",
    "Image": "annotate.Image",
    "ImageHashBand": "annotate.ImageHashBand",
    "Label": "annotate.Label",
    "ModelVersion": "annotate.ModelVersion",
    "Project": "annotate.Project",
    "Suggestion": "annotate.Suggestion",
    "Token": "authtoken.Token",
    "User": "annotate.User",
    "Vote": "annotate.Vote",
}


def quoted(name: str) -> str:
    """An SQL identifier, quoted as both PostgreSQL and SQLite take it."""
    return '"' + name.replace('"', '""') + '"'


class Table:
    """Formats as a model's quoted table name; its attributes are its fields' quoted columns."""

    # Attributes start with an underscore, which no field name does here: `{Label.name}` is
    # the label's name column, never something of this class.
    def __init__(self, model: type[Model]):
        self._model = model
        self._name = quoted(model._meta.db_table)
        self._columns: dict[str, str] = {}
        for field in model_fields(model):
            self._columns[field.name] = self._columns[field.attname] = quoted(column_of(field))

    def __format__(self, spec: str) -> str:
        return self._name

    def __getattr__(self, field: str) -> str:
        try:
            return self.__dict__["_columns"][field]
        except KeyError:
            model = self.__dict__["_model"].__name__
            raise AttributeError(f"{model} has no column for {field!r}") from None


@cache
def table(model_name: str) -> Table:
    return Table(apps.get_model(_MODELS[model_name]))


def column(model_name: str, field: str) -> str:
    """One field's quoted column, e.g. column("Image", "votes_count")."""
    return getattr(table(model_name), field)


def sql(template: str, **values: Any) -> str:
    """The statement text of `template` with its `{Model}` and `{Model.field}` names filled in,
    and any other `{name}` from `values`."""
    return template.format(**{name: table(name) for name in _MODELS}, **values)
