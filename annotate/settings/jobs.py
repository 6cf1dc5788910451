"""The background side of the settings (annotate.settings): Celery and its beat schedule,
exports, and the ML worker, configured by environment variables (django-environ)."""

import os
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from annotate.settings.base import DATA_DIR, env

# Celery: Redis when REDIS_URL is set, else a file-system broker that needs no server.
# https://docs.celeryq.dev/en/stable/userguide/configuration.html
REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Redis redelivers an unacknowledged task after this many seconds; it must exceed the
        # longest task (a retraining run), or a running task would be started a second time.
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=4 * 3600),
        # How often a worker looks for tasks of lost workers past that timeout to send again
        # (every time: the scan is one small Redis query).
        "unacked_restore_interval": env.int("CELERY_RESTORE_SECONDS", default=10),
        "unacked_restore_throttle": 1,
        # A Redis that does not answer fails a publish within seconds (the job waits in the
        # outbox, annotate.services.jobs) instead of holding a web request.
        "socket_connect_timeout": env.float("BROKER_CONNECT_TIMEOUT", default=2.0),
    }
    CELERY_BROKER_CONNECTION_TIMEOUT = env.float("BROKER_CONNECT_TIMEOUT", default=2.0)
    CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = env.float("BROKER_CONNECT_TIMEOUT", default=2.0)
else:
    BROKER_DIR = DATA_DIR / "broker"
    CELERY_BROKER_URL = "atomicfs://localhost/"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "staging_folder": str(BROKER_DIR / "staging"),
        "claimed_folder": str(BROKER_DIR / "claimed"),
        "control_folder": str(BROKER_DIR / "control"),
        "polling_interval": 0.05,
    }
    CELERY_RESULT_BACKEND = f"file://{DATA_DIR / 'results'}"
    (DATA_DIR / "results").mkdir(exist_ok=True)
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_QUEUE", default="celery")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One task at a time per process on Redis (long trainings must not hold others back). A
# polling broker only fetches when it polls, so there a worker takes a few tasks at once.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1 if REDIS_URL else 8
CELERY_TASK_SOFT_TIME_LIMIT = 3600
CELERY_TASK_TIME_LIMIT = 3900
CELERY_RESULT_EXPIRES = timedelta(days=1)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "release-expired-leases": {
        "task": "annotate.assignments_expire",
        "schedule": env.float("LEASE_SWEEP_SECONDS", default=30.0),
    },
    "release-expired-grids": {
        "task": "annotate.grids_expire",
        "schedule": env.float("LEASE_SWEEP_SECONDS", default=30.0),
    },
    "flush-job-outbox": {
        "task": "annotate.jobs_flush",
        "schedule": env.float("JOBS_FLUSH_SECONDS", default=15.0),
    },
    "re-aggregate-votes": {
        "task": "annotate.projects_reaggregate",
        "schedule": env.float("REAGGREGATE_SECONDS", default=3600.0),
    },
    "re-aggregate-young-projects": {
        "task": "annotate.young_projects_reaggregate",
        "schedule": env.float("YOUNG_REAGGREGATE_SECONDS", default=60.0),
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

# Exports (PRODUCT.md section 6): datasets are written under EXPORT_DIR (a temporary folder
# renamed when complete), downloaded as a tar stream, and removed EXPORT_TTL_HOURS after they
# finish by a periodic clean-up, which also fails exports whose job stopped beating.
EXPORT_DIR = Path(env("EXPORT_DIR", default=str(DATA_DIR / "exports")))
EXPORT_TTL_HOURS = env.float("EXPORT_TTL_HOURS", default=7 * 24)
EXPORT_JPEG_QUALITY = env.int("EXPORT_JPEG_QUALITY", default=95)
# Metadata kinds exported files keep (annotate.services.jpeg_metadata.KINDS: exif, xmp, iptc,
# icc, comment, other, trailing); by default none: every export strips them.
EXPORT_KEEP_METADATA = env.list("EXPORT_KEEP_METADATA", default=[])
_METADATA_KINDS = {"exif", "xmp", "iptc", "icc", "comment", "other", "trailing"}
if not set(EXPORT_KEEP_METADATA) <= _METADATA_KINDS:
    raise ImproperlyConfigured(
        f"EXPORT_KEEP_METADATA: unknown kinds {sorted(set(EXPORT_KEEP_METADATA) - _METADATA_KINDS)}"
        f"; known: {', '.join(sorted(_METADATA_KINDS))}"
    )
EXPORT_STALE_SECONDS = env.int("EXPORT_STALE_SECONDS", default=600)
EXPORT_MAX_ATTEMPTS = env.int("EXPORT_MAX_ATTEMPTS", default=3)
# Below Redis's visibility timeout, so a running export is never delivered a second time.
EXPORT_TIME_LIMIT = env.int("EXPORT_TIME_LIMIT", default=3 * 3600)
CELERY_BEAT_SCHEDULE["exports-cleanup"] = {
    "task": "annotate.exports_cleanup",
    "schedule": env.float("EXPORT_CLEANUP_SECONDS", default=900.0),
}
# Worker processes that read, convert, hash and write an export's images while the export's
# own process lays them out (annotate.services.export_worker); 0: all in the export's process.
# One per core, up to 4: past that the laying out in the export's process is the limit.
EXPORT_PROCESSES = env.int("EXPORT_PROCESSES", default=min(4, os.cpu_count() or 1))
# With S3 storage an export is uploaded there when built (annotate.services.export.stored) and
# downloaded by a signed URL valid this many seconds; EXPORT_DOWNLOAD_REDIRECT=False streams it
# through the web server instead (when clients cannot reach the object store themselves).
EXPORT_URL_SECONDS = env.int("EXPORT_URL_SECONDS", default=300)
EXPORT_DOWNLOAD_REDIRECT = env.bool("EXPORT_DOWNLOAD_REDIRECT", default=True)
# How often a running export writes its progress (which also shows that its job is alive).
EXPORT_PROGRESS_SECONDS = env.float("EXPORT_PROGRESS_SECONDS", default=0.5)

# --- the ML worker (PRODUCT.md section 5) -----------------------------------------------------
# Training and inference go to their own queue, so that a GPU machine can run a worker that
# takes only those (`WORKER_QUEUES=ml bin/worker`); a plain `bin/worker` consumes both queues.
# A test run names its own CELERY_QUEUE and the ML queue follows it, so runs never share one.
# https://docs.celeryq.dev/en/stable/userguide/routing.html
CELERY_ML_QUEUE = env(
    "CELERY_ML_QUEUE",
    default="ml" if CELERY_TASK_DEFAULT_QUEUE == "celery" else f"{CELERY_TASK_DEFAULT_QUEUE}-ml",
)
CELERY_TASK_QUEUES = [
    Queue(CELERY_TASK_DEFAULT_QUEUE, routing_key=CELERY_TASK_DEFAULT_QUEUE),
    Queue(CELERY_ML_QUEUE, routing_key=CELERY_ML_QUEUE),
]
# Only the heavy tasks: the periodic checks are light and must not wait behind a training.
CELERY_TASK_ROUTES = {
    name: {"queue": CELERY_ML_QUEUE, "routing_key": CELERY_ML_QUEUE}
    for name in ("annotate.ml_train", "annotate.ml_suggest", "annotate.ml_suggest_missing")
}

ML_MODELS_DIR = Path(env("ML_MODELS_DIR", default=str(DATA_DIR / "models")))
# The ML worker's local copies of the CNN copies it reads through the storage API (a local
# folder or S3 alike), least recently used out first (annotate.services.image_cache). Size it
# to hold at least one training set: a training reads its files for every epoch.
IMAGE_CACHE_DIR = Path(env("IMAGE_CACHE_DIR", default=str(DATA_DIR / "image-cache")))
IMAGE_CACHE_BYTES = env.int("IMAGE_CACHE_BYTES", default=20 * 1024**3)
# Defaults of worker.ml.TrainConfig; a training request may override epochs, arch, lr.
ML_TRAIN_CONFIG = {
    # auto: small_cnn on CPU, resnet18 on CUDA; or small_cnn, resnet18, mobilenet_v3_small,
    # resnet50
    "arch": env("ML_ARCH", default="auto"),
    "image_size": env.int("ML_IMAGE_SIZE", default=0),  # 0: 64 px on CPU, 128 on CUDA
    "batch_size": env.int("ML_BATCH_SIZE", default=32),
    "epochs": env.int("ML_EPOCHS", default=10),
    # At least this many steps: a first model on ~150 images would otherwise get 40.
    "min_steps": env.int("ML_MIN_STEPS", default=150),
    "learning_rate": env.float("ML_LEARNING_RATE", default=1e-3),
    "num_threads": env.int("ML_THREADS", default=0),  # 0: all cores
    "num_workers": env.int("ML_LOADER_WORKERS", default=0),
    "device": env("ML_DEVICE", default="auto"),  # auto: CUDA when present
    "precision": env("ML_PRECISION", default="auto"),  # auto: bf16 on a GPU with it, else fp32
    "pretrained": env.bool("ML_PRETRAINED", default=True),
    "init_checkpoint": env("ML_INIT_CHECKPOINT", default=""),
    "seed": env.int("ML_SEED", default=0),
    # Semi-supervised training (issue 22; a project turns it off with semi_supervised):
    # "self_training" (pseudo-labels of the pool once ML_SELF_TRAINING_SPLIT of the steps are
    # done, at calibrated confidence >= ML_PSEUDO_THRESHOLD, judged again in each of
    # ML_SELF_TRAINING_ROUNDS rounds) or "fixmatch".
    "semi_method": env("ML_SEMI_METHOD", default="self_training"),
    "self_training_split": env.float("ML_SELF_TRAINING_SPLIT", default=0.4),
    "self_training_rounds": env.int("ML_SELF_TRAINING_ROUNDS", default=3),
    "pseudo_batch_share": env.float("ML_PSEUDO_BATCH_SHARE", default=0.75),
    "pseudo_min_share": env.float("ML_PSEUDO_MIN_SHARE", default=1.0),
    "pseudo_threshold": env.float("ML_PSEUDO_THRESHOLD", default=0.95),
    "unlabeled_ratio": env.int("ML_UNLABELED_RATIO", default=1),
    "max_unlabeled": env.int("ML_MAX_UNLABELED", default=20000),
    # Fewer held-out images than this: the temperature is also fitted out-of-fold.
    "calibration_min_holdout": env.int("ML_CALIBRATION_MIN_HOLDOUT", default=300),
    "calibration_folds": env.int("ML_CALIBRATION_FOLDS", default=3),
    "warm_epochs_share": env.float("ML_WARM_EPOCHS_SHARE", default=0.35),
}
# Retraining starts when verified labels grew by ML_RETRAIN_NEW_LABELS, or by the share
# ML_RETRAIN_GROWTH of those at the last training, whichever comes first; the first training
# once a project has ML_MIN_TRAIN_LABELS.
ML_MIN_TRAIN_LABELS = env.int("ML_MIN_TRAIN_LABELS", default=20)
ML_RETRAIN_NEW_LABELS = env.int("ML_RETRAIN_NEW_LABELS", default=200)
ML_RETRAIN_GROWTH = env.float("ML_RETRAIN_GROWTH", default=0.25)
# Share of verified images held out for evaluation and calibration; an image's side depends
# only on its SHA-256, so a model is never compared on images another one trained on.
ML_HOLDOUT_FRACTION = env.float("ML_HOLDOUT_FRACTION", default=0.2)
ML_SUGGESTION_TOP_K = 5
ML_SUGGESTION_BATCH = env.int("ML_SUGGESTION_BATCH", default=512)
# A RUNNING training that has not recorded progress for this long lost its worker, and a
# PENDING one that no worker took for this long lost its queue message: beat's recovery sends
# either again (a training beats every HEARTBEAT_SECONDS, 10 s, while it runs).
ML_RUN_STALE_SECONDS = env.int("ML_RUN_STALE_SECONDS", default=120)
# Attempts a training gets in all (a lost worker's run is queued again until then).
ML_RUN_MAX_ATTEMPTS = env.int("ML_RUN_MAX_ATTEMPTS", default=3)
# Time limits; the training limit stays below the Redis visibility timeout (see above), or a
# running training would be delivered a second time.
ML_TRAIN_SOFT_TIME_LIMIT = env.int("ML_TRAIN_SOFT_TIME_LIMIT", default=3 * 3600)
ML_SUGGEST_SOFT_TIME_LIMIT = env.int("ML_SUGGEST_SOFT_TIME_LIMIT", default=1800)
CELERY_BEAT_SCHEDULE |= {
    "ml-retrain-check": {
        "task": "annotate.ml_retrain_check",
        "schedule": env.float("ML_RETRAIN_CHECK_SECONDS", default=60.0),
    },
    # Suggestions for images that arrived after the last promotion.
    "ml-suggest-missing": {
        "task": "annotate.ml_suggest_missing",
        "schedule": env.float("ML_SUGGEST_SWEEP_SECONDS", default=60.0),
    },
    "ml-recover-runs": {
        "task": "annotate.ml_recover_runs",
        "schedule": env.float("ML_RECOVER_SECONDS", default=120.0),
    },
}
