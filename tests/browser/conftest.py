"""Browser tests: Playwright driving Debian's chromium against real daphne and Celery.

Skipped with a reason when /usr/bin/chromium is missing (CI installs it: .ci/run). Never
`playwright install`: the browser is the system's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.processes import LoggedProcess, free_port, start_daphne
from tests.helpers import PASSWORD
from tests.processes import LOG_DIR, ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Where the tests save their screenshots. The README's come from a run with
# SCREENSHOT_DIR=docs/screenshots; by default they go under VAR_DIR so that running the
# tests leaves the checkout clean.
SCREENSHOT_DIR = Path(
    os.environ.get("SCREENSHOT_DIR")
    or Path(os.environ.get("VAR_DIR", ROOT / "var")) / "screenshots"
)
# Generous: two cores shared by several test runs.
TIMEOUT_MS = 15_000
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1180, "height": 860}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    reason = None
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (Debian: apt-get install chromium); .ci/run installs it"
    else:
        try:
            import playwright  # noqa: F401
        except ImportError:
            reason = "playwright is not installed (pip install -e '.[dev]')"
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def browser(process_env) -> Iterator:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    # Playwright's sync API keeps an event loop running in this thread, and Django refuses
    # ORM calls while one runs; the test's own queries are plain blocking calls. Set after
    # process_env (a copy) was taken, so daphne and the worker keep Django's check.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser):
    """new_page(viewport=...) -> a page in a fresh context (its own cookies: one person)."""
    contexts = []

    def make(viewport: dict[str, int] | None = None):
        context = browser.new_context(viewport=viewport or DESKTOP)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def screenshot(page, name: str) -> Path:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page, base_url: str, username: str, *, next_path: str = "/") -> None:
    """Sign in through the login form, by its labels, as a person would."""
    page.goto(f"{base_url}/accounts/login/?next={next_path}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(re.escape(base_url + next_path) + r"$"))


class Daphne:
    """A daphne process of the test's own, on a port it keeps across restarts."""

    def __init__(self, env: dict[str, str], name: str) -> None:
        self.env = env
        self.name = name
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: LoggedProcess | None = None
        self.starts = 0

    def start(self) -> Daphne:
        self.starts += 1
        self.process, _ = start_daphne(
            self.env,
            f"{self.name}-{self.starts}",
            log_dir=LOG_DIR,
            cwd=ROOT,
            port=self.port,
            timeout=60,
        )
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


@pytest.fixture(scope="module")
def quiet_env(process_env) -> dict[str, str]:
    """The test processes' environment, with no dispatch on commit: the test itself claims,
    reports progress and completes, so it decides when each step happens."""
    return {**process_env, "QUEUE_DISPATCH_ON_COMMIT": "0"}


@pytest.fixture
def no_dispatch(settings) -> None:
    # Services called from the test process must not ask a Celery worker for work either.
    settings.QUEUE_DISPATCH_ON_COMMIT = False
