"""Fixtures of the browser suite: Playwright for Python driving Debian's Chromium
(`/usr/bin/chromium`, never a downloaded browser) against the console of the real stack.

A missing Chromium or Playwright fails the tests in CI (CI=true) and skips them elsewhere.
Screenshots go to test-output/browser/ under the repository.
"""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "browser"
VIEWPORT = {"width": 1280, "height": 800}  # a laptop's screen


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        require("Playwright for Python (the dev extra installs it)", exc)
    if not CHROMIUM.is_file():
        require(f"Debian's Chromium at {CHROMIUM} (scripts/setup.sh installs the apt package "
                "`chromium`)", FileNotFoundError(str(CHROMIUM)))
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        # Chromium's own sandbox refuses to start as root (a CI container).
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def console_url(stack) -> Iterator[str]:
    with stack.serving() as url:
        yield f"{url}/console"


def sign_in(page: Any, console_url: str, key: str) -> Any:
    page.goto(f"{console_url}/signin")
    page.get_by_label("API key").fill(key)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    return page


@pytest.fixture
def browse(chromium, console_url):
    """Opens a signed-in page as the owner of `key`, in a browser context of its own."""
    contexts = []

    def open_page(key: str) -> Any:
        context = chromium.new_context(viewport=VIEWPORT)
        contexts.append(context)
        return sign_in(context.new_page(), console_url, key)

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def page(browse, stack):
    return browse(stack.key)
