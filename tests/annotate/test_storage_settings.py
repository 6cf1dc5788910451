"""Storage is chosen by environment: local media by default, S3-compatible with S3_BUCKET."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import django, json
django.setup()
from django.core.files.storage import storages
s = storages["default"]
print(json.dumps([type(s).__name__] + [getattr(s, key, None) for key in
      ("bucket_name", "endpoint_url", "location", "file_overwrite")]))
"""


def probe(tmp_path, **env) -> list:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("S3_")}
    environment |= {"DJANGO_SETTINGS_MODULE": "annotate.settings", "DATA_DIR": str(tmp_path)} | env
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_local_media_by_default_and_s3_when_a_bucket_is_set(tmp_path):
    assert probe(tmp_path)[0] == "FileSystemStorage"
    s3 = probe(
        tmp_path, S3_BUCKET="images", S3_ENDPOINT_URL="http://127.0.0.1:9000", S3_PREFIX="labeling"
    )
    assert s3 == ["S3Storage", "images", "http://127.0.0.1:9000", "labeling", False]
