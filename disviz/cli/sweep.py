"""``python -m disviz sweep SPEC`` and ``python -m disviz bench sweep``.

The spec, trials and results table live in ``disviz.sweeps``, execution on Ray in
``disviz.sweeps.runner`` (imported only when a sweep really runs, so ``--dry-run`` and ``--report``
never start Ray).
"""

from __future__ import annotations

import argparse
import os
import sys

from disviz.cli import stop_cleanly_on_signals
from disviz.core.limits import check_count
from disviz.sweeps.results import format_table, load_results
from disviz.sweeps.spec import load_spec

__all__ = ["cmd_bench", "cmd_sweep"]


def cmd_sweep(args: argparse.Namespace) -> int:
    """Validate SPEC, then print its trials (--dry-run), its table (--report) or run it on Ray."""
    spec = load_spec(args.spec, out=args.out)
    if args.report:
        print(f"sweep {spec.name}: {spec.out}")
        print(format_table(load_results(spec.out, live=True)))
        return 0
    trials = spec.trials
    if args.dry_run:
        r = spec.resources
        print(
            f"sweep {spec.name}: {len(trials)} trials -> {spec.out}\n"
            f"  per trial: {r.num_cpus:g} CPU, {r.num_gpus:g} GPU, {r.torch_threads} torch thread(s), "
            f"up to {r.max_retries} retries, checkpoint every {r.save_every} steps\n"
            f"  evaluate: n={spec.eval.n} preset={spec.eval.preset} seed={spec.eval.seed} "
            f"sampling={spec.eval.sampling}; metrics {', '.join(spec.metrics)}"
        )
        for t in trials:
            hp = " ".join(f"{k}={v}" for k, v in sorted(t.overrides.items()))
            print(f"  {t.id:<48} steps={t.steps or 'default'} seed={t.seed} {hp}")
        return 0
    from disviz.sweeps.runner import run_sweep

    # Ctrl-C and SIGTERM end the sweep cleanly: running trials are cancelled, the table written, exit 130.
    stop_cleanly_on_signals()
    results = run_sweep(
        spec,
        resume=args.resume,
        address=args.address,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        log=lambda line: print(line, file=sys.stderr, flush=True),
        note=args.note,
    )
    print(format_table(results.to_dict()))
    counts = results.counts()
    return 1 if counts.get("failed") else 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``python -m disviz bench sweep``: what Ray costs per trial, and N parallel vs N sequential trials."""
    from disviz.sweeps.runner import bench_overhead, bench_throughput, default_num_cpus, ray_session

    # each throughput trial trains a conv β-VAE in its own worker (≈ 0.5 GB)
    n = (
        check_count(args.trials, "--trials", maximum=1024, bytes_each=5e8, unit="trials")
        if args.trials
        else default_num_cpus()
    )
    with ray_session(num_cpus=n) as ray:
        print(f"bench sweep: ray {ray.__version__}, local, {n} CPUs")
        o = bench_overhead(ray, rounds=int(args.rounds))
        print(
            f"  scheduling overhead per trial: {o['ray_ms']:.1f} ms per Ray task round trip (trivial trial, "
            f"warm worker) vs {o['direct_ms'] * 1e3:.2f} µs direct call; first task (worker start-up) {o['cold_ms']:.0f} ms"
        )
        t = bench_throughput(ray, n, steps=int(args.steps))
        print(
            f"  {n} trials of {args.steps} training steps (the conv β-VAE on dSprites, batch 32, 1 thread each): "
            f"sequential in-process {t['sequential_s']:.1f} s, {n} parallel Ray tasks {t['parallel_s']:.1f} s "
            f"-> {t['sequential_s'] / t['parallel_s']:.2f}x throughput"
        )
    print(f"  (load average now {_load():.1f}; other jobs on this machine slow both sides)")
    return 0


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")
