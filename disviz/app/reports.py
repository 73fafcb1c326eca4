"""Reading stored metric reports (the evaluate report in a card) for the Metrics / Compare pages.

Reports are nested JSON written by ``disviz.metrics.evaluate``; these helpers find scores and
matrices in them by key, so a page never depends on the exact nesting.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["SCORES", "find_matrix", "report_settings", "score_table", "stage_starts"]


def _walk(obj: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            yield key, v
            yield from _walk(v, key)


def find_matrix(report: dict[str, Any], names: Sequence[str], n_factors: int) -> np.ndarray | None:
    """The first 2-D matrix in ``report`` whose key path contains one of ``names``, as factors x latents.

    Metric reports store matrices as nested lists; a latents x factors matrix is transposed so
    rows are always the K factors.
    """
    for key, value in _walk(report):
        low = key.lower()
        if not any(n in low for n in names) or not isinstance(value, list) or not value:
            continue
        try:
            m = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            continue
        if m.ndim != 2:
            continue
        if m.shape[0] != n_factors and m.shape[1] == n_factors:
            m = m.T
        if m.shape[0] == n_factors:
            return m
    return None


#: score table rows: (label, key fragments that identify the score in a flat report)
SCORES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("InfoM (modularity)", ("infom",)),
    ("InfoE (explicitness)", ("infoe",)),
    ("InfoC (compactness)", ("infoc",)),
    ("DCI disentanglement", ("dci.disentanglement", "dci_disentanglement")),
    ("DCI completeness", ("dci.completeness", "dci_completeness")),
    ("DCI informativeness", ("dci.informativeness", "dci_informativeness")),
    ("MIG", ("mig",)),
    ("SAP", ("sap",)),
    ("FactorVAE score", ("factorvae", "factor_vae")),
    ("BetaVAE score", ("betavae", "beta_vae")),
    ("reconstruction", ("reconstruction", "recon")),
)


def score_table(report: dict[str, Any] | None) -> list[tuple[str, float | None]]:
    """(label, value) for every headline score; None where the report lacks it."""
    flat = {k.lower(): v for k, v in _walk(report or {}) if isinstance(v, (int, float)) and not isinstance(v, bool)}
    rows: list[tuple[str, float | None]] = []
    for label, frags in SCORES:
        hit = None
        for frag in frags:
            cands = [k for k in flat if k == frag or k.endswith("." + frag) or k.startswith(frag + ".")]
            cands.sort(key=len)
            if cands:
                hit = float(flat[cands[0]])
                break
        rows.append((label, hit))
    return rows


def report_settings(report: dict[str, Any] | None) -> dict[str, Any]:
    """Scalar settings a report records (preset, n, seed, estimators) for display."""
    out: dict[str, Any] = {}
    for key in ("preset", "n", "seed", "settings", "estimators", "config"):
        value = (report or {}).get(key)
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items() if not isinstance(v, (list, dict))})
        elif value is not None and not isinstance(value, list):
            out[key] = value
    return out


def stage_starts(card: dict[str, Any]) -> list[int]:
    """Steps where a multi-stage model (DEFT) entered a new stage, from the card's loss history."""
    hist = card.get("history") or {}
    steps, stages = hist.get("step") or [], hist.get("stage") or []
    out = []
    for i in range(1, min(len(steps), len(stages))):
        if stages[i] is not None and stages[i - 1] is not None and stages[i] != stages[i - 1]:
            out.append(int(steps[i]))
    return out
