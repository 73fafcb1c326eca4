"""``python -m disviz anneal`` and ``python -m disviz bench anneal``: the IFP test from a terminal.

The test itself (``disviz.diagnostics.annealing``) reports progress through a callback and
returns a result dict; this module draws the progress on stderr and prints the summary table.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch

from disviz.core.device import pick_device
from disviz.data.base import GroundTruthDataset
from disviz.diagnostics.annealing import (
    AnnealConfig,
    check_result_path,
    deft_stage_comparison,
    deft_thresholds,
    ordering_text,
    recipe_out_path,
    resolve_factors,
    run_annealing,
)
from disviz.engine.train import parse_key_values

__all__ = ["cmd_anneal", "cmd_bench", "print_summary"]


def _stderr_progress(frac: float, msg: str) -> None:
    print(f"\r[{frac * 100:5.1f}%] {msg}    ", end="", file=sys.stderr, flush=True)


def _load(args: Any) -> GroundTruthDataset:
    from disviz.data import load_dataset, parse_options

    return load_dataset(
        args.dataset, path=getattr(args, "data_path", None), **parse_options(getattr(args, "data_option", []))
    )


def print_summary(res: dict[str, Any]) -> None:
    """The CLI's per-factor table, the ordering and where DEFT's thresholds fall on this scale."""
    st = res["settings"]
    print(f"recipe {st.get('recipe', 'equilibrium')}, scale {st.get('scale', '?')}, β(0) = 1 + {st.get('beta_max')}")
    if st.get("beta_max_note"):
        print(f"  ({st['beta_max_note']})")
    for name in res["ordering"]:
        s = res["factors"][name]
        med = "—" if s["median"] is None else f"{s['median']:.2f}"
        vals = ", ".join("None" if v is None else f"{v:.1f}" for v in s["ifps"])
        lin = f"; linear-response bound {s['linear_median']:.1f}" if s.get("linear_median") is not None else ""
        print(f"{name:>12}: median IFP {med}  ({s['n_frozen']}/{s['n']} frozen{lin})  [{vals}]")
    print("ordering (high → low median IFP): " + " > ".join(res["ordering"]))
    print("ordering, ties where Mann-Whitney p >= 0.05: " + ordering_text(res))
    thresholds, _ = deft_thresholds(st.get("dataset") or "")  # null in older or edited results
    if thresholds:
        print(
            f"DEFT thresholds {'/'.join(f'{b:g}' for b in thresholds)}: "
            + deft_stage_comparison(res, thresholds)["text"]
        )


def cmd_anneal(args: Any) -> int:
    """`python -m disviz anneal`: run the test (one or both recipes), write --out, print the summary."""
    recipes = ["equilibrium", "reference"] if args.recipe == "both" else [args.recipe]
    outs = {r: check_result_path(recipe_out_path(args.out, r) if args.recipe == "both" else args.out) for r in recipes}
    overrides = AnnealConfig.cast_overrides(parse_key_values(getattr(args, "set", []), "--set"))
    ds = _load(args)
    for recipe in recipes:
        res = run_annealing(
            ds,
            factors=args.factors,
            bases=args.bases,
            steps=args.steps,
            seed=args.seed,
            schedule=args.schedule,
            label_free=args.label_free,
            device=args.device,
            out=outs[recipe],
            progress=_stderr_progress,
            recipe=recipe,
            arch=args.arch,
            pool=args.pool,
            batch_size=args.batch_size,
            **overrides,
        )
        print(file=sys.stderr)
        assert res is not None
        print(f"wrote {outs[recipe]} ({res['elapsed_s']:.1f} s on {res['settings']['device']})")
        if res["mode"] == "label_free":
            peaks = ", ".join(f"{b:.1f}" for b in res["label_free"]["peaks"]) or "none"
            print(f"ΔKL/Δβ peaks at β = {peaks}")
        else:
            print_summary(res)
    return 0


def cmd_bench(args: Any) -> int:
    """`python -m disviz bench anneal`: wall time of 5 factors × --bases bases on --dataset.

    On CUDA the full T = 8 000 steps (+ the T/8 warm-up) run. On CPU a 160-step fraction is timed
    (setup included) and extrapolated linearly to the full 9 000; the output says which.
    """
    ds = _load(args)
    dev = pick_device(args.device)
    full = AnnealConfig().steps
    steps = full if dev.type == "cuda" else 160
    factors = resolve_factors(ds, None)[:5]
    t0, c0 = time.perf_counter(), time.process_time()
    arch = getattr(args, "arch", "mlp")
    res = run_annealing(ds, factors=factors, bases=args.bases, steps=steps, seed=0, device=args.device, arch=arch)
    wall = time.perf_counter() - t0
    assert res is not None
    runs = len(res["runs"])
    print(
        f"anneal bench: {ds.name}, {len(factors)} factors x {args.bases} bases = {runs} runs batched, "
        f"arch {arch}, full batch, device {dev}"
    )
    if steps == full:
        print(f"  full run ({steps} steps): {wall:.1f} s wall")
    else:
        full_cfg = AnnealConfig()
        full_cfg.validate()
        total, total_full = steps + res["settings"]["warmup"], full + full_cfg.warmup  # warm-up included
        per = res["elapsed_s"] / total
        cpu = time.process_time() - c0
        print(
            f"  measured {total} steps: {wall:.1f} s wall, {cpu:.1f} s CPU ({per * 1000:.0f} ms/step incl. setup; "
            f"torch threads {torch.get_num_threads()})"
        )
        print(
            f"  extrapolated to the reference T = {full} (+ {full_cfg.warmup} warm-up) steps: {per * total_full / 60:.1f} min "
            f"(linear in steps)"
        )
    return 0
