"""Screenshots of every app page into docs/screenshots/<page>.png (headless /usr/bin/chromium).

    .venv/bin/python docs/make_screenshots.py [--checkpoints DIR] [--train-demo]

Starts `streamlit run app.py` on a free port (tests/browser_util.py), opens each page from the
sidebar navigation, waits until the script is idle, and saves a full-page screenshot. The app
finds checkpoints as usual (./checkpoints, ./runs, $DISVIZ_CHECKPOINTS); --checkpoints adds a
folder, --train-demo first trains small demo checkpoints into a temp folder (a few minutes on CPU).
Not part of the disviz package: it drives a browser.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from browser_util import CHROMIUM, CHROMIUM_ARGS, streamlit_server, wait_for_app  # noqa: E402


def train_demo(root: Path, steps: int) -> None:
    from disviz.engine.train import TrainConfig, train

    for name in ("betavae", "qlae"):
        out = root / f"demo-{name}"
        if (out / "card.json").is_file():
            continue
        train(
            TrainConfig(
                model=name,
                dataset="dsprites",
                out=out,
                steps=steps,
                batch_size=32,
                device="auto",
                seed=0,
                # small networks so the demo trains in a minute or two on CPU (QLAE: the conv backbone)
                overrides={
                    "base_channels": 8,
                    "hidden": 64,
                    "lr": 1e-3,
                    # β = 1 for the β-VAE: a short run at β = 4 collapses every latent
                    **({"arch": "conv"} if name == "qlae" else {"beta": 1.0}),
                },
                num_threads=2,
            )
        )


def pick(page, word: str) -> None:
    """Choose the first sidebar checkpoint whose label contains ``word``."""
    box = page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").first
    box.click()
    options = page.get_by_role("option")
    options.first.wait_for(timeout=10_000)
    hit = options.filter(has_text=word)
    if hit.count():
        hit.first.click()
    else:
        page.keyboard.press("Escape")
    wait_for_app(page)


def slug(label: str) -> str:
    return "".join(c for c in label.lower().split("(")[0].strip().replace(" ", "_") if c.isalnum() or c == "_")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", default=None, help="extra checkpoint folder for the app")
    ap.add_argument("--train-demo", action="store_true", help="train small demo checkpoints first")
    ap.add_argument("--demo-steps", type=int, default=400)
    ap.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    ap.add_argument("--pages", nargs="*", default=None, help="only these pages (words of their titles)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    extra = [args.checkpoints] if args.checkpoints else []
    if args.train_demo:
        demo = Path(tempfile.gettempdir()) / "disviz-demo-checkpoints"
        train_demo(demo, args.demo_steps)
        extra.append(str(demo))
    env = {"OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}
    roots = [p for p in [os.environ.get("DISVIZ_CHECKPOINTS", ""), *extra] if p]
    if roots:
        env["DISVIZ_CHECKPOINTS"] = os.pathsep.join(roots)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Path(tempfile.gettempdir()) / "disviz-screenshots.log"
    with streamlit_server(env, log) as server, sync_playwright() as p:
        url = server.url
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_context(viewport={"width": 1500, "height": 1100}).new_page()
        page.set_default_timeout(120_000)
        page.goto(url)
        wait_for_app(page)
        links = {}
        for a in page.get_by_test_id("stSidebarNavLink").all():
            label, href = a.inner_text().strip().splitlines()[-1], a.get_attribute("href")
            if label and href:
                links[label] = href
        for label, href in links.items():
            if args.pages and not any(w.lower() in label.lower() for w in args.pages):
                continue
            page.set_viewport_size({"width": 1500, "height": 1100})
            page.goto(href)
            wait_for_app(page)
            if "codebook" in label.lower():
                pick(page, "qlae")  # the codebook view needs a QLAE checkpoint
            # the app scrolls inside stMain: grow the viewport to its height for a whole-page shot
            height = page.evaluate("document.querySelector('[data-testid=\\'stMain\\']').scrollHeight")
            page.set_viewport_size({"width": 1500, "height": int(min(max(height, 1100), 8000))})
            wait_for_app(page)
            time.sleep(1.5)  # plotly charts draw after the script is idle
            target = out / f"{slug(label)}.png"
            page.screenshot(path=str(target), full_page=True)
            print(f"{label:<20} -> {target}")
        browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
