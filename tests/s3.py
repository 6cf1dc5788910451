"""A real S3 server for the tests: moto's standalone server (requirements-dev.txt), started once
per test session on a free loopback port, a fresh bucket per test. The code under test talks to
it through django-storages and boto3 over HTTP, as it would to AWS or MinIO: nothing is mocked.
"""

import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import requests

from tests.processes import free_port, wait_until

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key"
REGION = "us-east-1"


class S3Server:
    def __init__(self, log_path: Path):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        binary = Path(sys.executable).with_name("moto_server")
        command = (
            [str(binary)] if binary.exists() else [shutil.which("moto_server") or "moto_server"]
        )
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [*command, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._up, 60, "the S3 server (moto) to start", log=log_path.read_text)

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"moto_server exited with {self.process.returncode}")
        try:
            return requests.get(f"{self.endpoint}/moto-api/", timeout=1).ok
        except requests.RequestException:
            return False

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def new_bucket(self) -> str:
        name = f"test-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=name)
        return name

    def storage_options(self, bucket: str) -> dict[str, Any]:
        """The OPTIONS settings.py gives S3Storage, for this server and `bucket`."""
        return {
            "bucket_name": bucket,
            "endpoint_url": self.endpoint,
            "region_name": REGION,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "location": "",
            "default_acl": "private",
            "querystring_auth": True,
            "file_overwrite": False,
        }

    def environment(self, bucket: str) -> dict[str, str]:
        """The variables that point a process's settings at this server and `bucket`."""
        return {
            "S3_BUCKET": bucket,
            "S3_ENDPOINT_URL": self.endpoint,
            "S3_REGION": REGION,
            "S3_ACCESS_KEY_ID": ACCESS_KEY,
            "S3_SECRET_ACCESS_KEY": SECRET_KEY,
        }

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
