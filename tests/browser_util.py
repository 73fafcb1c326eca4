"""Helpers for the Playwright suite: start the real app server, wait like Streamlit's own e2e tests.

Kept out of conftest.py on purpose (the suite is the only user); tests/test_browser.py imports it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def streamlit_server(env: Mapping[str, str], log_path: Path, timeout: float = 90.0) -> Iterator[str]:
    """``streamlit run app.py`` on a free port; yields the base URL once /_stcore/health says ok."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
    ]
    full_env = {**os.environ, **env}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            t0 = time.monotonic()
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
                with contextlib.suppress(OSError):
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        if r.read().decode().strip() == "ok":
                            break
                if time.monotonic() - t0 > timeout:
                    raise RuntimeError(
                        f"streamlit did not become healthy in {timeout} s:\n{log_path.read_text()[-3000:]}"
                    )
                time.sleep(0.25)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


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
