"""Consensus's statements (annotate.services.consensus): the answers a vote can give, an
image's votes, its current decision, and retiring that decision.

Each function gives a statement's text, built on first use and kept; the caller passes the
parameters, in the order its docstring gives.
"""

from functools import cache

from annotate.models import Decision
from annotate.rows import columns
from annotate.rows.names import sql


@cache
def label_ids() -> str:
    """The project's label ids, in id order. Parameter: project id."""
    return sql("SELECT {Label.id} FROM {Label} WHERE {Label.project} = %s ORDER BY {Label.id}")


@cache
def image_votes() -> str:
    """(user id, label id) of each vote on an image. Parameter: image id."""
    return sql("SELECT {Vote.user}, {Vote.label} FROM {Vote} WHERE {Vote.image} = %s")


@cache
def current_decision() -> str:
    """The image's current decision (columns(Decision, "d")). Parameter: image id."""
    return sql(
        "SELECT {columns} FROM {Decision} d"
        " WHERE d.{Decision.image} = %s AND d.{Decision.is_current}",
        columns=columns(Decision, "d").sql,
    )


@cache
def retire_decision() -> str:
    """Parameters: is_current (False), updated_at, decision id."""
    return sql(
        "UPDATE {Decision} SET {Decision.is_current} = %s, {Decision.updated_at} = %s"
        " WHERE {Decision.id} = %s"
    )
