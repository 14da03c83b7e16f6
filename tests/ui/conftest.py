"""The pages' tests: fragments through Flask's test client (the web tests' app, on SQLite or
both databases), and a few in a real browser, Debian's chromium driven by Playwright.

pytest-playwright's session-wide `playwright`, `browser_type`, `browser` and
`browser_context_args` are narrowed to one module here: the sync API keeps an event loop marked
running on the main thread while it lives, and every later test calling `asyncio.run` (the MCP
tests) would fail with "cannot be called from a running event loop".
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserType, Playwright, sync_playwright

from tests.web.conftest import (  # noqa: F401  (fixtures of the web tests, used here too)
    agent_service,
    agent_tasks,
    app,
    client,
    publisher,
    web_sessions,
    web_settings,
)

#: Where Debian's chromium is; `.ci/services.sh tools` installs it (`make test` runs that).
CHROMIUM_HINT = "apt-get install -y chromium (or run `.ci/services.sh tools`)"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Debian's chromium, not a downloaded build (`playwright install` cannot download here).
    A missing browser fails the suite, saying what to install; it never skips."""
    executable = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
    if not executable:
        pytest.fail(f"the browser tests need Debian's chromium: {CHROMIUM_HINT}", pytrace=False)
    return {**browser_type_launch_args, "executable_path": executable, "args": ["--no-sandbox"]}


@pytest.fixture(scope="module")
def browser_context_args() -> dict[str, Any]:
    """A laptop's screen (pytest-playwright's own reads the session-wide `playwright`)."""
    return {"viewport": {"width": 1280, "height": 800}}


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser_type(playwright: Playwright, browser_name: str) -> BrowserType:
    browser_type: BrowserType = getattr(playwright, browser_name)
    return browser_type


@pytest.fixture(scope="module")
def browser(
    browser_type: BrowserType, browser_type_launch_args: dict[str, Any]
) -> Iterator[Browser]:
    browser = browser_type.launch(**browser_type_launch_args)
    yield browser
    browser.close()
