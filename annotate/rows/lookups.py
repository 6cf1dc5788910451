"""The reads every volunteer request makes besides the lease and the vote: the caller's token
and user, the project, the active model's suggestion for an image, and the model's prior
(annotate.selectors, annotate.services.ml_suggestions), and the load benchmark's floor
(annotate.benchmark).

Each function gives a statement's text, built on first use and kept; the caller passes the
parameters, in the order its docstring gives.
"""

from functools import cache

from annotate.models import Project, User
from annotate.rows import columns
from annotate.rows.names import sql

# The active model's suggestion for an image of a project that shows suggestions, when its
# calibrated confidence reaches the project's threshold (a weaker one misleads): its label,
# confidence and most probable labels (Suggestion.top). The labels themselves are read once per
# page load, never with a lease (at 1,000 labels they were 100 KB on every image).
# `{image}` is the image id's SQL expression; the parameter is the project's id.
_SUGGESTION = (
    " FROM {Suggestion} s"
    " JOIN {ActiveModel} m ON m.{ActiveModel.version} = s.{Suggestion.model_version}"
    " JOIN {Project} p ON p.{Project.id} = m.{ActiveModel.project}"
    " AND p.{Project.show_suggestions}"
    " WHERE s.{Suggestion.image} = {image} AND p.{Project.id} = %s"
    " AND s.{Suggestion.confidence} >= p.{Project.suggestion_threshold} LIMIT 1"
)
_SUGGESTION_COLUMNS = "s.{Suggestion.label}, s.{Suggestion.confidence}, s.{Suggestion.top}"


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
def image_suggestion() -> str:
    """(label id, confidence, top) of the active model's suggestion for the image, where the
    project shows suggestions. Parameters: image id, project id."""
    return sql("SELECT " + _SUGGESTION_COLUMNS + _SUGGESTION, image="%s")


@cache
def image_suggestion_json(image: str) -> str:
    """image_suggestion() as a subquery giving one JSON array (PostgreSQL), for a statement
    that has the image's id as the SQL expression `image`. Parameter: project id."""
    return sql(
        "(SELECT json_build_array(" + _SUGGESTION_COLUMNS + ")" + _SUGGESTION + ")", image=image
    )


@cache
def suggestion() -> str:
    """(label id, confidence) of the active model's suggestion for an image of a project that
    shows suggestions, when it reaches the project's threshold. Parameter: image id."""
    return sql(
        "SELECT s.{Suggestion.label}, s.{Suggestion.confidence} FROM {Suggestion} s"
        " JOIN {ActiveModel} m ON m.{ActiveModel.version} = s.{Suggestion.model_version}"
        " JOIN {Project} p ON p.{Project.id} = m.{ActiveModel.project}"
        " WHERE s.{Suggestion.image} = %s AND p.{Project.show_suggestions}"
        " AND s.{Suggestion.confidence} >= p.{Project.suggestion_threshold} LIMIT 1"
    )


@cache
def model_probabilities() -> str:
    """The active model's probabilities (JSON) for an image, and the model's held-out top-1.
    Parameter: image id."""
    return sql(
        "SELECT s.{Suggestion.probabilities}, v.{ModelVersion.top1} FROM {Suggestion} s"
        " JOIN {ActiveModel} m ON m.{ActiveModel.version} = s.{Suggestion.model_version}"
        " JOIN {ModelVersion} v ON v.{ModelVersion.id} = s.{Suggestion.model_version}"
        " WHERE s.{Suggestion.image} = %s LIMIT 1"
    )


@cache
def floor_image() -> str:
    """The benchmark floor's indexed read: an image's id and state. Parameter: image id."""
    return sql("SELECT {Image.id}, {Image.state} FROM {Image} WHERE {Image.id} = %s")
