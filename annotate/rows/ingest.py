"""Ingest's statements (annotate.services.ingest.store): the hash bands of freshly stored
images, four rows an image. Written by one executemany of plain tuples: as model instances
through bulk_create, building and compiling them was most of the importing process's work.

Each function gives a statement's text, built on first use and kept; the caller passes the
parameters, in the order its docstring gives.
"""

from functools import cache

from annotate.rows.names import sql


@cache
def hash_band_insert() -> str:
    """One hash band. Parameters: image id, project id, key."""
    return sql(
        "INSERT INTO {ImageHashBand} ({ImageHashBand.image}, {ImageHashBand.project}, "
        "{ImageHashBand.key}) VALUES (%s, %s, %s)"
    )
