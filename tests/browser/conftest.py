"""Headless Debian Chromium driven by Playwright against the studio on localhost.

Locally the browser tests skip, saying why, when Chromium (or the playwright package) is missing;
with CNSTUDIO_REQUIRE_BROWSER=1 (.ci/run sets it) a missing browser fails them instead.
Every page records its requests and fails its test on any that leaves localhost; every test
leaves a full-page screenshot under test-artifacts/.
"""
import contextlib
import os
import re
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
LOCAL = re.compile(r"^(https?|wss?)://(127\.0\.0\.1|localhost)(:\d+)?(/|$)")


def _browser_missing() -> str | None:
    if not CHROMIUM.exists():
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    return None


def _is_local(url: str) -> bool:
    return bool(LOCAL.match(url)) or url.startswith(("data:", "blob:", "about:"))


@pytest.fixture(scope="session")
def browser():
    missing = _browser_missing()
    if missing:
        if os.environ.get("CNSTUDIO_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests are required here (CNSTUDIO_REQUIRE_BROWSER=1) but {missing}")
        pytest.skip(f"browser tests skipped: {missing}")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="session")
def studio(browser):
    from tests.ui.studio_server import shared
    return shared()


@contextlib.contextmanager
def open_page(browser, url: str, name: str):
    """A fresh browser context on the studio at `url`, refusing every request that leaves
    localhost; its screenshot goes to test-artifacts/<name>.png when the test is done."""
    context = browser.new_context(viewport={"width": 1600, "height": 1100}, accept_downloads=True)
    outside: list[str] = []
    context.on("request", lambda r: None if _is_local(r.url) else outside.append(r.url))
    # Nothing may leave the machine: record it (above) and refuse it, so an offline CI never waits.
    context.route(lambda url: not _is_local(url), lambda route: route.abort())
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url + "/")
    page.wait_for_selector("#sketch canvas", timeout=120_000)
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    finally:
        context.close()
    assert not outside, f"the page made requests that leave localhost: {outside}"


@pytest.fixture()
def page(browser, studio, request):
    with open_page(browser, studio["url"], request.node.name) as page:
        yield page
