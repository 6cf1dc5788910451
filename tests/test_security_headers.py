"""Security headers (issue 19): a Content-Security-Policy on every answer, loosened for the
Swagger page alone, and HSTS whenever the process redirects to HTTPS."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/accounts/login/", "/accounts/signup/", "/healthz", "/api/me/"])
def test_every_answer_carries_the_policy(path: str) -> None:
    policy = Client().get(path)["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy
    assert "unsafe-inline" not in policy


@pytest.mark.django_db
def test_only_the_swagger_page_allows_inline_styles(admin_user) -> None:
    client = Client()
    client.force_login(admin_user)
    policy = client.get("/api/docs/")["Content-Security-Policy"]
    assert "style-src 'self' 'unsafe-inline'" in policy
    assert "script-src" not in policy  # scripts stay at default-src 'self'


PROBE = """
import django, json
django.setup()
from django.conf import settings
print(json.dumps([settings.SECURE_SSL_REDIRECT, settings.SECURE_HSTS_SECONDS]))
"""


def _production(tmp_path: Path, **env: str) -> list:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SECURE_")}
    environment |= {
        "DJANGO_SETTINGS_MODULE": "annotate.settings",
        "DATA_DIR": str(tmp_path),
        "DEBUG": "False",
        "SECRET_KEY": "headers-test",
    } | env
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


def test_hsts_is_on_whenever_the_process_redirects_to_https(tmp_path: Path) -> None:
    assert _production(tmp_path, SECURE_SSL_REDIRECT="True") == [True, 365 * 24 * 3600]
    assert _production(tmp_path) == [False, 0]  # TLS and its headers are the proxy's
    assert _production(tmp_path, SECURE_SSL_REDIRECT="True", SECURE_HSTS_SECONDS="600") == [
        True,
        600,
    ]
