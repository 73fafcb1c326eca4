"""The Annealing page's view of IFP annealing results: tables, curves, recipe twins, shipped files.

Result files are written and validated by ``disviz.diagnostics.annealing``; this module only
reshapes a loaded result for display.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from disviz.diagnostics.annealing import ordering_text

__all__ = ["annealing_files", "annealing_summary", "annealing_view", "recipe_comparison", "recipe_twins"]


def annealing_summary(result: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """(one row per factor, ordering text) for the Annealing page's table, from a factor-mode result.

    Rows show what the result file computed (median, runs frozen, median linear-response bound);
    only the IQR is derived here. The ordering text uses the file's tie groups (Mann–Whitney) when
    present, else the median order.
    """
    rows: list[dict[str, Any]] = []
    for name, group in (result.get("factors") or {}).items():
        if not isinstance(group, dict):
            continue
        vals = np.array([v for v in group.get("ifps", []) if v is not None], dtype=np.float64)
        q1, q3 = np.percentile(vals, [25, 75]) if len(vals) else (np.nan, np.nan)
        rows.append(
            {
                "factor": name,
                "median IFP": group.get("median"),
                "IQR": f"{q1:.1f}–{q3:.1f}" if len(vals) else "—",
                "froze": f"{group.get('n_frozen', len(vals))}/{group.get('n', len(group.get('ifps', [])))}",
                "linear-response bound": group.get("linear_median"),
            }
        )
    return rows, ordering_text(result)


def annealing_view(result: dict[str, Any]) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[float]], float]:
    """(curves per factor, IFPs per factor, threshold) from an annealing result JSON.

    Accepts the runs as a flat list (``result['runs']``: {'factor', 'beta', 'kl', 'ifp'}) or grouped
    per factor (``result['factors']``: {name: {'runs': [...], 'ifps': [...]}} or a list of
    {'name', 'runs'}); IFPs come from ``ifps`` when given, else from the runs.
    """
    curves: dict[str, list[dict[str, Any]]] = {}
    ifps: dict[str, list[float]] = {}

    def add_run(factor: str, run: dict[str, Any]) -> None:
        beta = run.get("beta", run.get("betas", []))
        kl = run.get("kl", run.get("kls", []))
        curves.setdefault(factor, []).append({"beta": list(beta), "kl": list(kl), "ifp": run.get("ifp")})
        if run.get("ifp") is not None:
            ifps.setdefault(factor, []).append(float(run["ifp"]))

    runs = result.get("runs")
    if isinstance(runs, list):
        for run in runs:
            add_run(str(run.get("factor", "?")), run)
    factors = result.get("factors")
    groups: list[tuple[str, Any]] = []
    if isinstance(factors, dict):
        groups = [(str(k), v) for k, v in factors.items()]
    elif isinstance(factors, list):
        groups = [(str(g.get("name", g.get("factor", i))), g) for i, g in enumerate(factors) if isinstance(g, dict)]
    for name, group in groups:
        if not isinstance(group, dict):
            continue
        for run in group.get("runs", []) or []:
            add_run(name, run)
        if isinstance(group.get("ifps"), list):
            ifps[name] = [float(x) for x in group["ifps"] if x is not None]
    if isinstance(result.get("ifps"), dict):
        for name, vals in result["ifps"].items():
            ifps[str(name)] = [float(x) for x in vals if x is not None]
    threshold = float(result.get("threshold", (result.get("config") or {}).get("threshold", 0.1)))
    return curves, ifps, threshold


def recipe_twins(path: Path, files: Sequence[Path]) -> dict[str, Path]:
    """{recipe: file} for ``path`` and its recipe twins among ``files`` (``x.json`` / ``x_reference.json``)."""
    stem = path.stem.removesuffix("_reference")
    twins = {
        "equilibrium": path.with_name(f"{stem}{path.suffix}"),
        "reference": path.with_name(f"{stem}_reference{path.suffix}"),
    }
    known = {Path(f) for f in files}
    return {r: f for r, f in twins.items() if f in known}


def recipe_comparison(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per factor: the median IFP under each recipe (as stored in each file) and their ratio."""
    names: list[str] = []
    for res in results.values():
        names += [n for n in (res.get("factors") or {}) if n not in names]
    rows = []
    for name in names:
        row: dict[str, Any] = {"factor": name}
        for recipe, res in results.items():
            group = (res.get("factors") or {}).get(name) or {}
            row[f"median IFP ({recipe})"] = group.get("median")
            row[f"froze ({recipe})"] = f"{group.get('n_frozen', 0)}/{group.get('n', 0)}"
        eq, ref = row.get("median IFP (equilibrium)"), row.get("median IFP (reference)")
        row["reference / equilibrium"] = round(ref / eq, 2) if eq and ref else None
        rows.append(row)
    return rows


def annealing_files(roots: Sequence[str | os.PathLike[str]] = ("checkpoints/annealing",)) -> list[Path]:
    """Shipped annealing results (``*.json``) in ``roots``, sorted."""
    out: list[Path] = []
    for root in roots:
        if Path(root).is_dir():
            out += sorted(Path(root).glob("*.json"))
    return out
