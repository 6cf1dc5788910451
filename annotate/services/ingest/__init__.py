"""Bringing images and label sets into a project: validate, dedupe, store, preprocess.

A module per job (see each one's docstring); the names callers use are re-exported here.
"""

from annotate.services.ingest.archives import images_count_files
from annotate.services.ingest.candidates import Candidate, Progress, UploadResult
from annotate.services.ingest.display import (
    BackfillResult,
    display_copies_backfill,
    image_display_ensure,
)
from annotate.services.ingest.files import storage_target
from annotate.services.ingest.images import (
    KNOWN_SHA256_MAX,
    UploadTooLarge,
    images_import,
    images_upload,
    upload_size_check,
)
from annotate.services.ingest.labels import LabelImportResult, labels_import
from annotate.services.ingest.maintenance import storage_orphans
from annotate.services.ingest.near_duplicates import HASH_BANDS, image_near_duplicate
from annotate.services.ingest.store import STORE_BATCH, project_id_of

__all__ = [
    "HASH_BANDS",
    "BackfillResult",
    "KNOWN_SHA256_MAX",
    "STORE_BATCH",
    "Candidate",
    "LabelImportResult",
    "Progress",
    "UploadResult",
    "UploadTooLarge",
    "display_copies_backfill",
    "image_display_ensure",
    "image_near_duplicate",
    "images_count_files",
    "images_import",
    "images_upload",
    "labels_import",
    "project_id_of",
    "storage_orphans",
    "storage_target",
    "upload_size_check",
]
