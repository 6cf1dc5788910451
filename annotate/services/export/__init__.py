"""ImageNet-style exports: stable split, layout, manifest, tar stream (PRODUCT.md section 6).

An export is a row (`Export`) created first, then filled by a job (or by the `export_dataset`
command) that writes the dataset into a temporary folder and renames it into place when it is
complete, so a killed export never leaves a folder that looks finished. Memory stays flat in
the number of images: rows are read with `.iterator()`, lists of files go to scratch files on
disk, images travel in bounded batches, and the download is a tar written on the fly. The
files themselves are read, converted, hashed and written by worker processes
(export_worker) while this module lays them out in order.

The split is stratified per class and stable. The first time an image is exported with a given
(seed, val fraction) it takes a side, and that side is stored (`SplitAssignment`), so a later
export with more images never moves it. New images of a class go to val, in the order of
SHA-256(seed, image SHA-256), until the class's val count reaches round(fraction * size); the
rest go to train. A pure hash threshold (val iff hash < fraction) would be stable too, but its
per-class val counts scatter binomially (±3 images for a class of 100 at 10 %); remembering
the sides keeps every class within one image of its target as it grows.

The package has one module per job: `lifecycle` (create, claim, run, heartbeat), `cleanup`
(expiry, lost jobs, leftovers),
`download` (the finished tar and manifest: a local file streamed, or a signed URL into the
object store), `split` (which images qualify and their stable sides), `clusters` (near
duplicates kept on one side), `layout` (the dataset's paths, lists and LOC_* files, laid out in
order), `loaders` (the names every loader needs), `manifest` (the small files and
manifest.json), `sinks` (a folder or a tar written in place), `stored` (finished exports in an
object store) and `copiers` (the worker-process pool). Callers use the names re-exported here.
"""

from annotate.services.export.cleanup import CleanupResult, exports_cleanup
from annotate.services.export.copiers import CopyFailed, _Copiers
from annotate.services.export.download import (
    Download,
    Gone,
    export_download,
    export_downloadable,
    export_manifest_open,
    export_manifest_path,
    file_chunks,
    gzip_stream,
)
from annotate.services.export.layout import COPY_BATCH, BuildResult, ExportEmpty, export_build
from annotate.services.export.lifecycle import (
    EXPORT_TASK,
    TMP_FOLDER,
    ExportAborted,
    ProgressCallback,
    export_create,
    export_dir,
    export_run,
)
from annotate.services.export.sinks import DirectorySink, TarSink
from annotate.services.export.split import (
    DECIDED_STATES,
    ClassPlan,
    SplitPlan,
    split_assign,
    split_key,
    val_target,
)

__all__ = [
    "COPY_BATCH",
    "DECIDED_STATES",
    "EXPORT_TASK",
    "TMP_FOLDER",
    "BuildResult",
    "ClassPlan",
    "CleanupResult",
    "CopyFailed",
    "DirectorySink",
    "Download",
    "ExportAborted",
    "ExportEmpty",
    "Gone",
    "ProgressCallback",
    "SplitPlan",
    "TarSink",
    "_Copiers",
    "export_build",
    "export_create",
    "export_dir",
    "export_download",
    "export_downloadable",
    "export_manifest_open",
    "export_manifest_path",
    "export_run",
    "exports_cleanup",
    "file_chunks",
    "gzip_stream",
    "split_assign",
    "split_key",
    "val_target",
]
