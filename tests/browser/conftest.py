"""Real-browser tests: Playwright driving the Debian `chromium` against pytest-django's live
server (a real HTTP server in a thread of this process, on the test database).

No browser is ever downloaded: the tests use the system Chromium (`apt-get install chromium`)
and fail, rather than skip, when it is missing, so that CI can't pass without running them.
"""

import os
import shutil
from pathlib import Path

import pytest
from django.db import connections

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "test-output" / "screenshots"
# Generous for a slow CI machine; every wait in these tests ends on a condition, never a sleep.
TIMEOUT_MS = 15_000


@pytest.fixture(scope="package", autouse=True)
def allow_sync_orm_beside_playwright():
    """Playwright's sync API keeps an asyncio loop "running" on this thread while the browser
    is open, and Django then refuses sync ORM calls (SynchronousOnlyOperation). This is the
    documented escape hatch, set only while the browser tests of this package run, so the
    rest of the suite keeps Django's check."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


@pytest.fixture
def browser():
    """A headless system Chromium, one per test: the asyncio loop Playwright runs ends with it."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - depends on the machine
        pytest.fail(
            "The Python package `playwright` is missing: pip install -r requirements-dev.txt "
            "(never run `playwright install`; the tests use the system Chromium).",
            pytrace=False,
        )
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        found = shutil.which("chromium")
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM} (found on PATH: {found or 'none'}). "
            "Install it with `apt-get install -y chromium`, or set CHROMIUM_PATH. "
            "The browser tests need it and are not skipped without it.",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()
            # While Playwright's loop "runs", Django keeps this thread's database connections
            # in a context-local slot (asgiref's Local), apart from the usual thread-local
            # ones. Close them now, while that slot is still the one in use: once the loop
            # stops they can no longer be reached, and an orphaned open connection keeps the
            # test database from being dropped at the end of the run ("database ... is being
            # accessed by other users").
            connections.close_all()


@pytest.fixture
def page(browser, live_server):
    """A fresh browser context (no cookies) on the live server. Uncaught page errors are
    collected in `page.js_errors`; tests assert there are none."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1100, "height": 700})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.js_errors = []
    page.on("pageerror", lambda error: page.js_errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def screenshot_path():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return lambda name: SCREENSHOTS / name


def sign_in(page, user, password: str = "correct-horse-battery") -> None:
    """Sign in through the page, as a person would, and wait for the project list."""
    page.goto("/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/")
