"""``bench serve``: N real Chromium sessions on one app server, each moving a latent slider.

What a class does to one server: every student opens Explore, then moves sliders. Latency is
measured in the browser (key press → the decoded image replaced and loaded); cost is measured on
the server (CPU seconds and RSS of the server process from /proc), which is the portable figure
because the browsers share this machine's cores. Errors are everything a student would notice:
exception boxes, broken images (a 4xx on /media/ or an <img> that failed to load), lost
connections and moves that never produced an image.

Playwright's async API drives all sessions from one browser process (one context per session, so
each is its own Streamlit session).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from disviz.serving.server import CHROMIUM, CHROMIUM_ARGS, browser_cpu_seconds, cpu_seconds, rss_mb

DECODED_ALT = "decoded from the sliders"  # the Explore page's decoded image (alt text or st.image caption)

# The decoded image's src ('' while absent): the alt text of the data-URI <img>, or (older
# pages) the st.image whose caption says so.
_DECODED_SRC_JS = """() => {
  let img = document.querySelector('img[alt="DECODED_ALT"]');
  if (!img) {
    for (const el of document.querySelectorAll('[data-testid="stImage"], [data-testid="stFullScreenFrame"]')) {
      if (el.innerText && el.innerText.includes('DECODED_ALT')) { img = el.querySelector('img'); if (img) break; }
    }
  }
  if (!img || !img.complete || img.naturalWidth === 0) return '';
  return img.getAttribute('src') || '';
}""".replace("DECODED_ALT", DECODED_ALT)

_BROKEN_IMAGES_JS = """() => Array.from(document.querySelectorAll('[data-testid="stMain"] img'))
  .filter(i => i.complete && i.naturalWidth === 0 && (i.getAttribute('src') || '') !== '').length"""

# the first latent slider whose label does not say "collapsed" (moving a collapsed latent changes nothing)
_ACTIVE_SLIDER_JS = """() => {
  for (const el of document.querySelectorAll('[class*="st-key-z"]')) {
    const key = Array.from(el.classList).find(c => /^st-key-z[0-9]+$/.test(c));
    const label = el.querySelector('[data-testid="stWidgetLabel"]');
    if (key && label && !label.innerText.includes('collapsed')) return key.slice(7);
  }
  return 'z0';
}"""

_IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
_CONNECTED = "[data-testid='stApp'][data-test-connection-state='CONNECTED']"


@dataclass
class SessionResult:
    """One browser session's measurements and the errors it saw."""

    load_s: float | None = None
    moves_ms: list[float] = field(default_factory=list)
    exceptions: int = 0
    broken_images: int = 0
    media_errors: int = 0
    disconnects: int = 0
    timeouts: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class BenchResult:
    """What ``bench serve`` prints (and writes as JSON with --json)."""

    url: str
    sessions: int
    moves: int
    load_s: dict[str, float]
    move_ms: dict[str, float]
    errors: dict[str, int]
    server_cpu_s: dict[str, float]
    browser_cpu_s: dict[str, float]
    server_rss_mb: dict[str, float]
    soak: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summary(values: list[float]) -> dict[str, float]:
    """Median / p95 / max (nan when empty)."""
    if not values:
        return {"median": float("nan"), "p95": float("nan"), "max": float("nan"), "n": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, int(round(0.95 * len(ordered))) - 1))]
    return {"median": statistics.median(ordered), "p95": p95, "max": ordered[-1], "n": len(ordered)}


async def _wait_idle(page: Any, timeout_ms: float) -> None:
    await page.wait_for_selector(_CONNECTED, state="attached", timeout=timeout_ms)
    await page.wait_for_selector(_IDLE, state="attached", timeout=timeout_ms)


async def _decoded_src(page: Any) -> str:
    return str(await page.evaluate(_DECODED_SRC_JS))


class _Session:
    """One student: opens the page, then moves a slider ``moves`` times, waiting for each image."""

    def __init__(self, browser: Any, url: str, slider_key: str, timeout_s: float) -> None:
        self.browser, self.url, self.slider_key, self.timeout_ms = browser, url, slider_key, 1000 * timeout_s
        self.result = SessionResult()
        self.page: Any = None
        self.ctx: Any = None
        self._closing = False
        self._direction = 1

    def _on_response(self, response: Any) -> None:
        if response.status >= 400 and "/media/" in response.url:
            self.result.media_errors += 1

    def _on_websocket(self, ws: Any) -> None:
        ws.on("close", lambda *_: None if self._closing else self._disconnected())

    def _disconnected(self) -> None:
        self.result.disconnects += 1

    async def open(self) -> None:
        self.ctx = await self.browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = await self.ctx.new_page()
        self.page.on("response", self._on_response)
        self.page.on("websocket", self._on_websocket)
        t0 = time.perf_counter()
        try:
            await self.page.goto(self.url, timeout=self.timeout_ms)
            await self.page.wait_for_function(_DECODED_SRC_JS, timeout=self.timeout_ms)
            await _wait_idle(self.page, self.timeout_ms)
            self.result.load_s = time.perf_counter() - t0
        except Exception as exc:  # a page that never loads is a timeout, not a crash of the bench
            self.result.timeouts += 1
            self.result.notes.append(f"load: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")

    async def move(self) -> None:
        """One slider step: focus the thumb, PageUp / PageDown, release; wait until the new image has loaded."""
        if self.result.load_s is None:
            return
        page = self.page
        before = await _decoded_src(page)
        if self.slider_key == "auto":
            self.slider_key = str(await page.evaluate(_ACTIVE_SLIDER_JS))
        thumb = page.locator(f".st-key-{self.slider_key} input[type='range']").first
        key = "PageUp" if self._direction > 0 else "PageDown"  # one key press = one committed value
        self._direction = -self._direction  # back and forth: the value stays inside the range
        try:
            await thumb.focus(timeout=self.timeout_ms)
            t0 = time.perf_counter()
            await page.keyboard.press(key)  # a tenth of the range: a visible change
            await thumb.blur()  # sliders send their value on release
            await page.wait_for_function(
                f"(before) => {{ const s = ({_DECODED_SRC_JS})(); return s !== '' && s !== before; }}",
                arg=before,
                timeout=self.timeout_ms,
            )
            self.result.moves_ms.append(1000 * (time.perf_counter() - t0))
        except Exception as exc:
            self.result.timeouts += 1
            self.result.notes.append(f"move: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")

    async def check(self) -> None:
        """Count what a student would see as broken after the moves."""
        if self.page is None:
            return
        with contextlib.suppress(Exception):
            await _wait_idle(self.page, self.timeout_ms)
            self.result.exceptions = await self.page.get_by_test_id("stException").count()
            self.result.broken_images = int(await self.page.evaluate(_BROKEN_IMAGES_JS))

    async def close(self) -> None:
        self._closing = True
        if self.ctx is not None:
            with contextlib.suppress(Exception):
                await self.ctx.close()


async def _run(
    url: str,
    pid: int | None,
    sessions: int,
    moves: int,
    think_s: float,
    slider_key: str,
    timeout_s: float,
    soak_min: float,
    log: Callable[[str], None],
) -> BenchResult:
    from playwright.async_api import async_playwright

    cpu = (lambda: cpu_seconds(pid)) if pid else (lambda: float("nan"))
    rss = (lambda: rss_mb(pid)) if pid else (lambda: float("nan"))
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            # warm the server once (model load, caches): the figures are for a warm server
            warm = _Session(browser, url, slider_key, timeout_s)
            await warm.open()
            await warm.move()
            await warm.close()
            if warm.result.load_s is None:
                raise RuntimeError(f"the page at {url} did not load: {warm.result.notes}")
            log(f"warm-up: page load {warm.result.load_s:.2f} s")
            runs = [_Session(browser, url, slider_key, timeout_s) for _ in range(sessions)]
            rss0, cpu0, bcpu0 = rss(), cpu(), browser_cpu_seconds()
            await asyncio.gather(*(s.open() for s in runs))
            cpu1, bcpu1 = cpu(), browser_cpu_seconds()
            log(f"{sessions} page loads: server CPU {cpu1 - cpu0:.2f} s")

            async def student(s: _Session) -> None:
                for _ in range(moves):
                    await s.move()
                    await asyncio.sleep(think_s)

            await asyncio.gather(*(student(s) for s in runs))
            cpu2, bcpu2 = cpu(), browser_cpu_seconds()
            rss_peak = rss()
            timed_ms = [m for s in runs for m in s.result.moves_ms]  # the timed moves (a soak's come after)
            n_moves = len(timed_ms)
            soak = None
            if soak_min > 0:
                soak = await _soak(runs, soak_min, think_s, rss, log)
            await asyncio.gather(*(s.check() for s in runs))
            await asyncio.gather(*(s.close() for s in runs))
        finally:
            await browser.close()
    loaded = [s.result.load_s for s in runs if s.result.load_s is not None]
    errors = {
        "exceptions": sum(s.result.exceptions for s in runs),
        "broken_images": sum(s.result.broken_images + s.result.media_errors for s in runs),
        "disconnects": sum(s.result.disconnects for s in runs),
        "timeouts": sum(s.result.timeouts for s in runs),
    }
    return BenchResult(
        url=url,
        sessions=sessions,
        moves=moves,
        load_s=summary(loaded),
        move_ms=summary(timed_ms),
        errors=errors,
        server_cpu_s={
            "per_page_load": (cpu1 - cpu0) / max(1, len(loaded)),
            "per_slider_move": (cpu2 - cpu1) / max(1, n_moves),
            "per_student": (cpu2 - cpu0) / max(1, sessions),
            "total": cpu2 - cpu0,
        },
        browser_cpu_s={
            "per_page_load": (bcpu1 - bcpu0) / max(1, len(loaded)),
            "per_slider_move": (bcpu2 - bcpu1) / max(1, n_moves),
        },
        server_rss_mb={"before": rss0, "after_moves": rss_peak},
        soak=soak,
        notes=[n for s in runs for n in s.result.notes][:20],
    )


async def _soak(
    runs: list[_Session], minutes: float, think_s: float, rss: Callable[[], float], log: Callable[[str], None]
) -> dict[str, Any]:
    """Keep every session moving for ``minutes``; RSS after the first minute vs at the end."""
    t_end = time.monotonic() + 60 * minutes
    samples: list[tuple[float, float]] = []
    t_start = time.monotonic()

    async def sampler() -> None:
        while time.monotonic() < t_end:
            samples.append((time.monotonic() - t_start, rss()))
            await asyncio.sleep(10)

    async def student(s: _Session) -> None:
        while time.monotonic() < t_end:
            await s.move()
            await asyncio.sleep(think_s)

    await asyncio.gather(sampler(), *(student(s) for s in runs))
    samples.append((time.monotonic() - t_start, rss()))
    after_first = next((r for t, r in samples if t >= 60), samples[0][1])
    end = samples[-1][1]
    log(f"soak {minutes:g} min: RSS {after_first:.0f} MB after 1 min, {end:.0f} MB at the end")
    return {
        "minutes": minutes,
        "rss_after_first_minute_mb": after_first,
        "rss_end_mb": end,
        "growth": end / after_first - 1 if after_first else float("nan"),
        "moves": sum(len(s.result.moves_ms) for s in runs),
        "samples": samples,
    }


def run_bench(
    url: str,
    pid: int | None,
    sessions: int,
    moves: int,
    think_s: float = 0.2,
    slider_key: str = "auto",
    timeout_s: float = 60.0,
    soak_min: float = 0.0,
    log: Callable[[str], None] = print,
) -> BenchResult:
    """Drive ``sessions`` Chromium sessions against ``url`` (server process ``pid`` for CPU / RSS)."""
    return asyncio.run(_run(url, pid, sessions, moves, think_s, slider_key, timeout_s, soak_min, log))
