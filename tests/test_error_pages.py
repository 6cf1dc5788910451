"""Error pages (issue 18): styled 400, 403, 404, 500 and CSRF pages with the site's navigation,
JSON under /api/, and Django's debug pages only for a browser on this machine."""

import re

import pytest
from django.test import Client

from annotate import views
from tests.factories import ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

ELSEWHERE = "203.0.113.9"  # a documentation address: a browser on another machine
NAVIGATION = 'class="topbar"'


def styled(response, status: int) -> str:
    page = response.content.decode()
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/html")
    assert NAVIGATION in page and "<h1>" in page and f"({status})" in page, page[:500]
    assert "Traceback" not in page and "SECRET_KEY" not in page and "urlpatterns" not in page
    return page


@pytest.fixture
def crash(monkeypatch):
    def fail(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(views.selectors, "user_stats", fail)


def test_403_404_and_500_pages_are_styled_with_navigation(client, crash):
    client.force_login(UserFactory(role="volunteer"))
    project = ProjectFactory()
    page = styled(client.get(f"/projects/{project.pk}/review/"), 403)
    assert "Sign out" in page and "Projects" in page  # the signed-in header
    styled(client.get("/no/such/page/"), 404)
    styled(client.get("/projects/999999/label/"), 404)
    crashing = Client(raise_request_exception=False)
    crashing.force_login(UserFactory())
    styled(crashing.get("/me/"), 500)


def test_a_refused_csrf_token_gets_a_styled_page(client):
    checking = Client(enforce_csrf_checks=True)
    checking.force_login(UserFactory())
    page = styled(checking.post("/me/", {"show_on_leaderboard": "on"}), 403)
    assert "The form has expired" in page


def test_the_api_keeps_its_json_errors(client):
    client.force_login(UserFactory(role="volunteer"))
    missing = client.get("/api/no-such-endpoint/")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    checking = Client(enforce_csrf_checks=True)
    checking.force_login(UserFactory())
    refused = checking.post("/api/projects/", {"name": "x"})
    assert refused.status_code == 403 and set(refused.json()) == {"detail", "code"}


def test_error_pages_speak_the_browsers_language(client):
    page = styled(client.get("/no/such/page/", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9"), 404)
    assert "找不到页面" in page and 'lang="zh-hans"' in page


@pytest.mark.parametrize("path", ["/no/such/page/", "/projects/999999/label/"])
def test_with_debug_on_only_this_machine_sees_the_debug_404(client, settings, path):
    settings.DEBUG = True
    client.force_login(UserFactory())
    local = client.get(path)
    assert local.status_code == 404 and "Django tried these URL patterns" in local.content.decode()
    styled(client.get(path, REMOTE_ADDR=ELSEWHERE), 404)


def test_with_debug_on_behind_the_proxy_the_forwarded_address_counts(client, settings):
    # Behind bin/proxy every request arrives from loopback; the address the trusted proxy
    # passed is the browser's, and a browser elsewhere never sees the debug page.
    settings.DEBUG = True
    settings.TRUSTED_PROXY_COUNT = 1
    styled(client.get("/nowhere/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=ELSEWHERE), 404)
    local = client.get("/nowhere/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert "URLconf" in local.content.decode()


def test_with_debug_on_a_crash_shows_the_traceback_only_on_this_machine(settings, crash):
    settings.DEBUG = True
    crashing = Client(raise_request_exception=False)
    crashing.force_login(UserFactory())
    assert "Traceback" in crashing.get("/me/").content.decode()
    styled(crashing.get("/me/", REMOTE_ADDR=ELSEWHERE), 500)
    api = crashing.get("/api/me/", REMOTE_ADDR=ELSEWHERE)
    assert api.status_code in (200, 500)  # /api/me/ itself does not crash here


def test_with_debug_on_a_bad_host_never_gets_the_settings_page(client, settings):
    settings.DEBUG = True
    remote = client.get("/", HTTP_HOST="evil.example", REMOTE_ADDR=ELSEWHERE)
    page = styled(remote, 400)
    assert len(page) < 10_000
    # Not even from this machine: a browser here may be sending it for another site (DNS
    # rebinding), and the debug page lists the settings.
    styled(client.get("/", HTTP_HOST="evil.example"), 400)
    api = client.get("/api/projects/", HTTP_HOST="evil.example", REMOTE_ADDR=ELSEWHERE)
    assert api.status_code == 400 and api.json()["code"] == "invalid"


def test_with_debug_off_a_bad_host_gets_the_styled_400(client):
    response = client.get("/", HTTP_HOST="evil.example")
    page = styled(response, 400)
    assert response.status_code == 400 and "DisallowedHost" not in page


def test_debug_is_off_in_every_production_path():
    """The image and docker compose run with DEBUG off; only `make run` (a developer's machine)
    keeps the default, DEBUG on."""
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parent.parent
    assert re.search(r"^ENV [^#]*\bDEBUG=False\b", (repo / "Dockerfile").read_text(), re.M)
    compose = yaml.safe_load((repo / "docker-compose.yml").read_text())
    apps = {
        name: service["environment"]["DEBUG"]
        for name, service in compose["services"].items()
        if service.get("image", "").startswith("crowd-labeling")
        and service.get("command") != ["bin/proxy"]  # nginx: no Django in that process
    }
    assert len(apps) >= 3 and set(apps.values()) == {"False"}, apps
