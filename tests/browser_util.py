"""Helpers for the Playwright suite: the real app server (disviz.serving.server), waits like Streamlit's e2e tests.

Kept out of conftest.py on purpose (the suite is the only user); tests/test_browser.py imports it.
"""

from __future__ import annotations

import time

from disviz.serving.server import CHROMIUM, CHROMIUM_ARGS, REPO, streamlit_server

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "REPO", "page_errors", "streamlit_server", "wait_for_app"]


def wait_for_app(page, timeout: float = 60_000, settle: float = 0.3) -> None:
    """The wait sequence of Streamlit's e2e suite (app-conventions §7.2), after every interaction."""
    page.wait_for_selector("[data-testid='stAppViewContainer']", state="attached", timeout=timeout)
    page.wait_for_selector(
        "[data-testid='stApp'][data-test-connection-state='CONNECTED']", state="attached", timeout=timeout
    )
    time.sleep(0.1)  # let a just-triggered rerun flip the script state to running
    page.wait_for_selector(
        "[data-testid='stApp'][data-test-script-state='notRunning']", state="attached", timeout=timeout
    )
    t0 = time.monotonic()
    while page.get_by_test_id("stSkeleton").count() > 0:
        if (time.monotonic() - t0) * 1000 > timeout:
            raise AssertionError("skeletons still shown")
        time.sleep(0.1)
    time.sleep(settle)


def page_errors(page) -> list[str]:
    """Streamlit exception boxes and tracebacks visible on the page."""
    out = [e.inner_text()[:500] for e in page.get_by_test_id("stException").all()]
    body = page.locator("[data-testid='stMain']")
    text = body.inner_text() if body.count() else page.inner_text("body")
    if "Traceback (most recent call last)" in text:
        out.append(text[text.index("Traceback") :][:500])
    return out
