"""Pure image work: checks, hashes, and the one conversion behind every copy of an image (the
CNN's, the volunteers' display copy, the export's). No Django here, so that the worker
processes of a bulk import or an export can import this package alone (they start with
`spawn`).

  convert   upright, RGB, resized, encoded without metadata (ingest, display, export);
  jpeg      a JPEG's metadata dropped without re-encoding its picture data;
  checks    one file checked (byte, pixel and aspect-ratio caps on the header, full decode)
            and its hashes and copies made;
  sources   where a file's bytes come from; inspecting one (worker processes' entry point).
"""

from annotate.services.imaging.checks import (
    ALLOWED_FORMATS,
    CHUNK,
    ImageRejected,
    Inspected,
    Known,
    Limits,
    display_bytes,
    file_digest,
    hamming,
    inspect,
    perceptual_hash,
    shape_check,
)
from annotate.services.imaging.convert import (
    display_copy,
    encode_jpeg,
    export_copy,
    jpeg_upright_rgb,
    orientation,
    preprocessed_copy,
    to_rgb,
    upright,
    upright_rgb,
    upright_size,
)
from annotate.services.imaging.jpeg import jpeg_without_metadata
from annotate.services.imaging.sources import (
    PathSource,
    Source,
    StreamSource,
    ZipMemberSource,
    archives_close,
    inspect_source,
    known_set,
)

__all__ = [
    "ALLOWED_FORMATS",
    "CHUNK",
    "ImageRejected",
    "Inspected",
    "Known",
    "Limits",
    "PathSource",
    "Source",
    "StreamSource",
    "ZipMemberSource",
    "archives_close",
    "display_bytes",
    "display_copy",
    "encode_jpeg",
    "export_copy",
    "file_digest",
    "hamming",
    "inspect",
    "inspect_source",
    "jpeg_upright_rgb",
    "jpeg_without_metadata",
    "known_set",
    "orientation",
    "perceptual_hash",
    "preprocessed_copy",
    "shape_check",
    "to_rgb",
    "upright",
    "upright_rgb",
    "upright_size",
]
