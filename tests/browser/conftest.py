"""One headless Debian chromium per session (Playwright drives the system browser; nothing is downloaded)."""
from __future__ import annotations

import re

import pytest

from tests.served import ARTIFACTS

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def logged_in(browser, served):
    """A browser context logged in to the served dashboard (the login form, as a person would)."""
    context = log_in(browser, served, screenshot="login")
    yield context
    context.close()
    assert context.console_errors == [], "the pages logged errors (a Content-Security-Policy refusal?)"


def log_in(browser, served, screenshot: str | None = None):
    """A new browser context, logged in with the login form (no animations: screenshots show end states)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True,
                                  reduced_motion="reduce")
    context.console_errors = []  # CSP refusals and script errors, from every page of the context
    context.on("console", lambda m: m.type == "error" and not _expected(m) and context.console_errors.append(m.text))
    context.on("weberror", lambda e: context.console_errors.append(str(e.error)))
    page = context.new_page()
    page.goto(served.url + "/login")
    if screenshot:
        shot(page, screenshot)
    page.fill('input[name="token"]', served.token)
    page.click('button[type="submit"]')
    page.wait_for_url(served.url + "/")
    page.close()
    return context


def shot(page, name: str, full_page: bool = True) -> None:
    """A screenshot for people to look at (test-artifacts/screenshots/, not committed)."""
    folder = ARTIFACTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=full_page)


# Answers the tests ask for on purpose: a refused upload (4xx from the upload form), a batch that is not there.
EXPECTED_4XX = re.compile(r"/batches/(new|99999)$")


def _expected(message) -> bool:
    """A 4xx the tests cause on purpose; any other failed load (a missing script, say) is an error."""
    return ("the server responded with a status of 4" in message.text
            and bool(EXPECTED_4XX.search(message.location.get("url", ""))))
