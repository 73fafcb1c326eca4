"""``python -m disviz evaluate`` and ``python -m disviz bench metrics``.

``evaluate`` holds the checkpoint folder's lock while it measures, so a report is always of the
weights it names; the metrics themselves live in ``disviz.metrics``.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from disviz.core.limits import EVAL_BYTES_PER_SAMPLE, MAX_EVAL_SAMPLES, check_count
from disviz.engine.evaluate import evaluate_checkpoint
from disviz.metrics._sampling import OracleSource
from disviz.metrics.betavae_score import betavae_score
from disviz.metrics.dci import dci
from disviz.metrics.factorvae import factorvae_score
from disviz.metrics.infomec import infomec
from disviz.metrics.mig import mig
from disviz.metrics.nmi import nmi_diffusion
from disviz.metrics.registry import format_report
from disviz.metrics.sap import sap

__all__ = ["cmd_bench", "cmd_evaluate"]


def cmd_evaluate(args: argparse.Namespace) -> int:
    """python -m disviz evaluate CHECKPOINT: compute the report, print it, store it in card.json."""
    import sys

    from disviz.data import parse_options

    def progress(fraction: float, message: str) -> None:
        if not args.json:
            print(f"\r[{fraction * 100:5.1f}%] {message:<40}", end="", file=sys.stderr, flush=True)

    report = evaluate_checkpoint(
        args.checkpoint,
        n=args.n,
        seed=args.seed,
        preset=args.preset,
        device=args.device,
        sampling=getattr(args, "sampling", "pool"),
        data_path=getattr(args, "data_path", None),
        data_options=parse_options(getattr(args, "data_option", None)),
        progress=progress,
        store=not args.no_store,
    )
    if not args.json:
        print(file=sys.stderr)
    print(json.dumps(report) if args.json else format_report(report))
    if not args.no_store and not args.json:
        print(f"stored in {args.checkpoint}/card.json (step {report['checkpoint']['step']})")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """python -m disviz bench metrics: seconds per metric on n samples x 10 latents (CPU, no model)."""
    n = check_count(args.n, "--n", maximum=MAX_EVAL_SAMPLES, bytes_each=1.5 * EVAL_BYTES_PER_SAMPLE, unit="samples")
    k, d = 5, 10
    sizes = [3, 6, 40, 32, 32]  # dSprites' varying factors
    rng = np.random.default_rng(0)
    mix = np.zeros((k, d))
    mix[np.arange(k), np.arange(k)] = 1.0
    mix += 0.1 * rng.standard_normal((k, d))
    src = OracleSource(sizes, mix, noise=0.3, seed=0)
    classes = src.sample_factors(n + n // 2, rng)
    z = src.images_from_factors(classes)
    print(f"bench metrics: n={n} (+{n // 2} test), {d} latents, {k} factors {sizes}, CPU")
    print("  (wall s / process CPU s; CPU > wall where sklearn uses both cores)")
    w0, c0 = time.perf_counter(), time.process_time()
    cpu: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> None:
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall[name], cpu[name] = time.perf_counter() - w, time.process_time() - c

    wall: dict[str, float] = {}
    zt, ct = z[n:], classes[n:]
    z, classes = z[:n], classes[:n]
    timed("infomec", lambda: infomec(z, classes, discrete=False))
    timed("dci (random forest)", lambda: dci(z, classes, test_latents=zt, test_factors=ct))
    timed("mig", lambda: mig(z, classes))
    timed("sap", lambda: sap(np.concatenate([z, zt]), np.concatenate([classes, ct]), test_fraction=1 / 3))
    timed("nmi_diffusion", lambda: nmi_diffusion(z, classes, sizes))
    timed("factorvae (paper, fresh)", lambda: factorvae_score(src, lambda o: o))
    timed("betavae (paper, fresh)", lambda: betavae_score(src, lambda o: o))
    pools = {"sampling": "pool", "pool": (z, classes), "eval_pool": (zt, ct)}
    timed("factorvae (paper, pool)", lambda: factorvae_score(None, None, **pools))
    timed("betavae (paper, pool)", lambda: betavae_score(None, None, **pools))
    for name in wall:
        print(f"  {name:<26} {wall[name]:8.2f} s  {cpu[name]:8.2f} s CPU")
    total_w, total_c = time.perf_counter() - w0, time.process_time() - c0
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    total_c += kids.ru_utime + kids.ru_stime  # joblib worker processes, if any
    print(f"  {'all of the above':<26} {total_w:8.2f} s  {total_c:8.2f} s CPU (incl. child processes)")
    fresh = sum(wall[k] for k in wall if "fresh" in k)
    fresh_c = sum(cpu[k] for k in cpu if "fresh" in k)
    print(
        f"  {'evaluate pipeline (pool)':<26} {total_w - fresh:8.2f} s  {total_c - fresh_c:8.2f} s CPU"
        "  (what evaluate runs after encoding; the fresh rows render nothing here, with a model they dominate)"
    )
    return 0
