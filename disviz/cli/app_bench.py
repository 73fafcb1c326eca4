"""``python -m disviz bench app``: the server-side time of the app's two interactions.

Times what the pages do without a browser, per checkpoint: Explore opening a checkpoint up to the
first traversal grid, one slider move (a batched decode plus one grid image), and the Latent space
page's redraw after a latent or factor change (the two figures from the cached encodings; no
re-encoding).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from disviz.app.catalogue import dataset_for_card, display_path
from disviz.app.latents import decode, encode, latent_stats, sort_latents
from disviz.app.traversal import traversal_tiles, traversal_values
from disviz.cli import CLIError
from disviz.core.errors import CheckpointError
from disviz.core.paths import checkpoint_roots, is_sweep_trial
from disviz.engine.checkpoints import list_checkpoints, load_checkpoint


def _bench_checkpoints(given: str | None) -> list[Path]:
    if given:
        return [Path(given)]
    # sweep trials are many copies of one architecture: the shipped models already time it
    found = list_checkpoints(checkpoint_roots())
    return [p for p in found if (p / "model.safetensors").is_file() and not is_sweep_trial(p)]


def cmd_bench(args: argparse.Namespace) -> int:
    """Server time of a slider move and time to the first traversal, per checkpoint."""
    from disviz.app.figures import compose_grid, latent_histograms, latent_scatter
    from disviz.core.device import describe, pick_device

    paths = _bench_checkpoints(getattr(args, "checkpoint", None))
    if not paths:
        raise CheckpointError(
            "no checkpoints found in ./checkpoints, ./runs or $DISVIZ_CHECKPOINTS; "
            "pass --checkpoint PATH or train one with `python -m disviz train`"
        )
    device = pick_device("auto")
    print(f"device: {describe(device)}; steps per row: 9; slider move = one batched decode + one grid image")
    print(
        f"{'checkpoint':<40} {'first traversal (s)':>20} {'slider move (ms, median of 20)':>32} "
        f"{'latent-view redraw (ms, median of 5)':>38}"
    )
    for path in paths:
        t0 = time.perf_counter()
        model, card = load_checkpoint(path, device=device)
        dataset = dataset_for_card(card)
        stats = latent_stats(model, dataset, n=256)  # what the Explore page computes on opening
        image = dataset.images(np.asarray([0]))
        anchor = encode(model, image)[0]
        specs = model.latent_specs()
        order = sort_latents(stats, "kl")
        vals = [traversal_values(specs[j], "std_gaussian", stats.codes, 9) for j in order]
        grid = compose_grid(traversal_tiles(model, anchor, order, vals), gutter=2, scale=2)
        first = time.perf_counter() - t0
        times = []
        rng = np.random.default_rng(0)
        for _ in range(20):
            z = anchor.copy()
            j = int(rng.integers(len(specs)))
            z[j] = float(rng.uniform(specs[j].low, specs[j].high))
            t1 = time.perf_counter()
            one = decode(model, z[None, :])
            compose_grid(one[None], gutter=0, scale=4)
            times.append(time.perf_counter() - t1)
        assert grid.dtype == np.uint8
        view = latent_stats(model, dataset, n=2000)  # the Latent space page's cached encodings
        redraws = []
        for k in range(5):
            t1 = time.perf_counter()
            factor = k % view.factors.shape[1]
            latent_scatter(view.codes, view.factors, k % len(specs), (k + 1) % len(specs), factor, "f")
            latent_histograms(view.codes, view.factors, factor, "f")
            redraws.append(time.perf_counter() - t1)
        print(
            f"{display_path(path):<40} {first:>20.2f} {1000 * float(np.median(times)):>32.1f} "
            f"{1000 * float(np.median(redraws)):>38.1f}"
        )
    print("targets: slider move < 100 ms on CPU; first traversal < 5 s")
    return 0


def cmd_bench_serve(args: argparse.Namespace) -> int:
    """N real Chromium sessions on one server: page load, slider → image latency, errors, server CPU / RSS."""
    import json
    import os
    import tempfile
    import urllib.parse

    from disviz.serving.bench import run_bench
    from disviz.serving.server import CHROMIUM, listening_pid, streamlit_server

    if args.sessions < 1 or args.moves < 0 or args.soak < 0:
        raise CLIError("--sessions must be ≥ 1, --moves ≥ 0 and --soak ≥ 0")
    if not os.path.exists(CHROMIUM):
        raise CLIError(f"{CHROMIUM} is missing: install Debian's chromium (make chromium)")
    try:
        import playwright  # noqa: F401
    except ModuleNotFoundError:
        raise CLIError("playwright is not installed: pip install -r requirements.txt") from None

    def report(url: str, pid: int | None) -> None:
        page_url = url.rstrip("/") + "/" + args.page.lstrip("/") if args.page else url
        res = run_bench(
            page_url, pid, args.sessions, args.moves, args.think_ms / 1000, args.slider, args.timeout, args.soak
        )
        ld, mv, cpu, err = res.load_s, res.move_ms, res.server_cpu_s, res.errors
        print(
            f"server {url} (pid {pid or 'unknown: no CPU / RSS figures'}), {args.sessions} sessions × {args.moves} moves"
        )
        print(f"page load (s):          median {ld['median']:.2f}  p95 {ld['p95']:.2f}  max {ld['max']:.2f}")
        print(
            f"slider → image (ms):    median {mv['median']:.0f}  p95 {mv['p95']:.0f}  max {mv['max']:.0f}  (n={mv['n']})"
        )
        print(
            f"server CPU:             {1000 * cpu['per_page_load']:.0f} ms per page load, "
            f"{1000 * cpu['per_slider_move']:.1f} ms per slider move, {cpu['per_student']:.2f} s per student"
        )
        b = res.browser_cpu_s
        print(
            f"browsers' CPU:          {1000 * b['per_page_load']:.0f} ms per page load, "
            f"{1000 * b['per_slider_move']:.0f} ms per slider move (every Chromium process on this machine)"
        )
        print(
            f"server RSS (MB):        {res.server_rss_mb['before']:.0f} before, {res.server_rss_mb['after_moves']:.0f} after"
        )
        print("errors:                 " + ", ".join(f"{k} {v}" for k, v in err.items()))
        if res.soak:
            s = res.soak
            print(
                f"soak {s['minutes']:g} min ({s['moves']} moves): RSS {s['rss_after_first_minute_mb']:.0f} MB after "
                f"the first minute, {s['rss_end_mb']:.0f} MB at the end ({100 * s['growth']:+.1f} %)"
            )
        for note in res.notes[:5]:
            print(f"  note: {note}")
        if args.json:
            with open(args.json, "w", encoding="utf-8") as fh:
                json.dump(res.to_dict(), fh, indent=1)

    if args.url:
        port = urllib.parse.urlparse(args.url).port or 80
        report(args.url, args.server_pid or listening_pid(port))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "streamlit.log"
        with streamlit_server({"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}, log) as server:
            report(server.url, server.pid)
    return 0
