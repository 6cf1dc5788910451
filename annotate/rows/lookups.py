"""The reads every volunteer request makes besides the lease and the vote: the caller's token
and user, the project, the labels with the active model's suggestion, and the model's prior
(annotate.selectors, annotate.services.ml), and the load benchmark's floor (annotate.benchmark).

Each function gives a statement's text, built on first use and kept; the caller passes the
parameters, in the order its docstring gives.
"""

from functools import cache

from annotate.models import Project, User
from annotate.rows import columns
from annotate.rows.names import sql

# The label fields a volunteer sees, in the order of the rows (and JSON arrays) below; each
# row ends with the suggestion's confidence (null but for the suggested label).
LABEL_FIELDS = ("id", "wnid", "name", "gloss", "position")
# The project's labels, the suggested one (when the project shows suggestions) joined to the
# active model's suggestion for the image: the suggested label is one of the project's labels.
# `{image}` is the image id's SQL expression; the parameter is the project's id.
_LABELS_WITH_SUGGESTION = (
    " FROM {Label} l LEFT JOIN ({Suggestion} s"
    " JOIN {ActiveModel} m ON m.{ActiveModel.version} = s.{Suggestion.model_version}"
    " JOIN {Project} p ON p.{Project.id} = m.{ActiveModel.project}"
    " AND p.{Project.show_suggestions})"
    " ON s.{Suggestion.image} = {image} AND s.{Suggestion.label} = l.{Label.id}"
    " WHERE l.{Label.project} = %s"
)
_ORDER_LABELS = "l.{Label.position}, l.{Label.id}"


def _label_columns() -> str:
    labels = ", ".join("l.{Label.%s}" % field for field in LABEL_FIELDS)  # noqa: UP031
    return labels + ", s.{Suggestion.confidence}"


@cache
def project() -> str:
    """The project's row (annotate.rows.columns(Project, "p")). Parameter: project id."""
    return sql(
        "SELECT {columns} FROM {Project} p WHERE p.{Project.id} = %s",
        columns=columns(Project, "p").sql,
    )


@cache
def token_owner() -> str:
    """The row of the user (columns(User, "u")) who holds an API token. Parameter: the key."""
    return sql(
        "SELECT {columns} FROM {Token} t JOIN {User} u ON u.{User.id} = t.{Token.user}"
        " WHERE t.{Token.key} = %s",
        columns=columns(User, "u").sql,
    )


@cache
def labels_and_suggestion() -> str:
    """The project's labels in their order (LABEL_FIELDS and the suggestion's confidence).
    Parameters: image id, project id."""
    return sql(
        "SELECT " + _label_columns() + _LABELS_WITH_SUGGESTION + " ORDER BY " + _ORDER_LABELS,
        image="%s",
    )


@cache
def labels_and_suggestion_json(image: str) -> str:
    """labels_and_suggestion() as a subquery giving one JSON array of its rows (PostgreSQL),
    for a statement that has the image's id as the SQL expression `image`. Parameter: project
    id."""
    return sql(
        "(SELECT json_agg(json_build_array("
        + _label_columns()
        + ") ORDER BY "
        + _ORDER_LABELS
        + ")"
        + _LABELS_WITH_SUGGESTION
        + ")",
        image=image,
    )


@cache
def suggestion() -> str:
    """(label id, confidence) of the active model's suggestion for an image of a project that
    shows suggestions. Parameter: image id."""
    return sql(
        "SELECT s.{Suggestion.label}, s.{Suggestion.confidence} FROM {Suggestion} s"
        " JOIN {ActiveModel} m ON m.{ActiveModel.version} = s.{Suggestion.model_version}"
        " JOIN {Project} p ON p.{Project.id} = m.{ActiveModel.project}"
        " WHERE s.{Suggestion.image} = %s AND p.{Project.show_suggestions} LIMIT 1"
    )


@cache
def model_probabilities() -> str:
    """The active model's probabilities (JSON) for an image. Parameter: image id."""
    return sql(
        "SELECT s.{Suggestion.probabilities} FROM {Suggestion} s"
        " JOIN {ActiveModel} m ON m.{ActiveModel.version} = s.{Suggestion.model_version}"
        " WHERE s.{Suggestion.image} = %s LIMIT 1"
    )


@cache
def floor_image() -> str:
    """The benchmark floor's indexed read: an image's id and state. Parameter: image id."""
    return sql("SELECT {Image.id}, {Image.state} FROM {Image} WHERE {Image.id} = %s")
