"""Reading stored metric reports (the evaluate report in a card) for the Metrics / Compare pages.

Reports are written by ``disviz.engine.evaluate``; scores and matrices are found through the
metric registry (``disviz.metrics.registry``), so a page never depends on the exact nesting.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from disviz.engine.card import Card, Report
from disviz.metrics.registry import report_matrix as registry_matrix
from disviz.metrics.registry import score_rows

__all__ = ["report_matrix", "report_settings", "score_table", "stage_starts"]


def score_table(report: Report | None) -> list[tuple[str, float | None]]:
    """(title, value) for every registered score; None where the report lacks it."""
    return [(s.title, value) for s, value in score_rows(report.scores if report else None)]


def report_matrix(report: Report | None, name: str, n_factors: int) -> np.ndarray | None:
    """Matrix ``name`` (``nmi``, ``importance``, ``nmi_diffusion``) of a stored report as factors x latents."""
    return registry_matrix(report.details if report else None, name, n_factors)


def report_settings(report: Report | None) -> dict[str, Any]:
    """Scalar settings a report records (preset, n, seed, estimators) for display."""
    out: dict[str, Any] = {}
    raw = report.to_dict() if report else {}
    for key in ("preset", "n", "seed", "settings", "estimators", "config"):
        value = raw.get(key)
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items() if not isinstance(v, (list, dict))})
        elif value is not None and not isinstance(value, list):
            out[key] = value
    return out


def stage_starts(card: Card) -> list[int]:
    """Steps where a multi-stage model (DEFT) entered a new stage, from the card's loss history."""
    hist = card.history or {}
    steps, stages = hist.get("step") or [], hist.get("stage") or []
    out = []
    for i in range(1, min(len(steps), len(stages))):
        if stages[i] is not None and stages[i - 1] is not None and stages[i] != stages[i - 1]:
            out.append(int(steps[i]))
    return out
