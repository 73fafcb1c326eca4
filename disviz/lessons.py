"""Guided lessons: every statement a lesson makes about a shipped model is computed here, from that
model's card (its stored evaluate report) or from a shipped annealing result, when the page loads.

Functions take cards / results and return the numbers and the sentence built from them; the page
(pages/lessons.py) only lays them out. A statement whose data is missing says so instead of
guessing; a statement the data contradicts is written the other way round.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "LESSONS",
    "beta_tradeoff",
    "contrast_pair",
    "matrix_reading",
    "quantisation_gain",
    "scores_of",
]

LESSONS = (
    "What a disentangled traversal looks like",
    "β trades reconstruction for disentanglement",
    "Information freezes in order (the IFP test and DEFT's stages)",
    "Why quantised latents help (QLAE)",
    "Reading a metric matrix",
)


def scores_of(card: Mapping[str, Any]) -> dict[str, float]:
    """The finite scores of a card's stored evaluate report ({} when it has none)."""
    scores = ((card.get("metrics") or {}).get("scores")) or {}
    return {k: float(v) for k, v in scores.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def _beta_of(card: Mapping[str, Any]) -> float | None:
    """The model's β as configured (DeVAE/DEFT: their largest β), None for models without one."""
    cfg = card.get("config") or {}
    if isinstance(cfg.get("beta"), (int, float)):
        return float(cfg["beta"])
    betas = cfg.get("betas")
    if isinstance(betas, list) and betas:
        return float(max(betas))
    return None


def contrast_pair(cards: Mapping[str, Mapping[str, Any]], metric: str = "mig") -> dict[str, Any] | None:
    """The shipped models with the highest and the lowest ``metric``, and the sentence saying so."""
    scored = {name: scores_of(c).get(metric) for name, c in cards.items()}
    scored = {n: v for n, v in scored.items() if v is not None}
    if len(scored) < 2:
        return None
    best = max(scored, key=scored.__getitem__)
    worst = min(scored, key=scored.__getitem__)
    text = (
        f"Of the {len(scored)} shipped models with a stored report, **{best}** has the highest {metric.upper()} "
        f"({scored[best]:.3f}) and **{worst}** the lowest ({scored[worst]:.3f})."
    )
    return {"best": best, "worst": worst, "scores": scored, "text": text}


def beta_tradeoff(cards: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Rows (model, β, reconstruction, MIG) of the shipped models, and what their rank correlation says.

    Spearman's ρ between reconstruction error and MIG across the models that have both; the
    sentence states the measured sign (the textbook trade-off is ρ > 0: more disentangled models
    reconstruct worse), and says plainly when these models do not show it.
    """
    from scipy.stats import spearmanr

    rows = []
    for name, card in cards.items():
        s = scores_of(card)
        if "reconstruction" in s and "mig" in s:
            rows.append({"model": name, "β": _beta_of(card), "reconstruction": s["reconstruction"], "MIG": s["mig"]})
    rows.sort(key=lambda r: r["MIG"])
    if len(rows) < 3:
        return {"rows": rows, "rho": None, "text": "Fewer than three shipped models have both scores stored."}
    rho = float(spearmanr([r["reconstruction"] for r in rows], [r["MIG"] for r in rows]).statistic)
    if rho > 0.3:
        verdict = "the more disentangled models (higher MIG) do reconstruct worse: the trade-off shows"
    elif rho < -0.3:
        verdict = "the opposite of the textbook trade-off: here the better reconstructions come with higher MIG"
    else:
        verdict = "no clear trade-off: reconstruction and MIG are nearly unrelated across these models"
    return {
        "rows": rows,
        "rho": rho,
        "text": f"Across the {len(rows)} shipped models, Spearman's ρ(reconstruction error, MIG) = {rho:+.2f}: "
        f"{verdict}.",
    }


def quantisation_gain(qlae: Mapping[str, Any] | None, others: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """QLAE's InfoM / InfoE against the other models' (AE, β-VAE …), from the stored reports."""
    if qlae is None or not scores_of(qlae):
        return {"rows": [], "text": "No shipped QLAE with a stored report."}
    q = scores_of(qlae)
    rows = [{"model": "qlae", "InfoM": q.get("infom"), "InfoE": q.get("infoe")}]
    beats = []
    for name, card in others.items():
        s = scores_of(card)
        if "infom" not in s:
            continue
        rows.append({"model": name, "InfoM": s.get("infom"), "InfoE": s.get("infoe")})
        both = q.get("infom", -1) > s["infom"] and q.get("infoe", -1) > s.get("infoe", math.inf)
        beats.append((name, both))
    won = [n for n, b in beats if b]
    lost = [n for n, b in beats if not b]
    text = (
        f"The shipped QLAE has InfoM {q.get('infom', float('nan')):.3f} and InfoE {q.get('infoe', float('nan')):.3f}. "
    )
    if won:
        text += f"It is above {', '.join(won)} on both. "
    if lost:
        text += f"It is not above {', '.join(lost)} on both."
    return {"rows": rows, "text": text.strip()}


def matrix_reading(nmi: np.ndarray, factor_names: Sequence[str], gap: float = 0.1) -> dict[str, Any]:
    """For each factor: its best latent, NMI1, NMI2 and whether it has a latent of its own
    (NMI1 − NMI2 ≥ ``gap``, and that latent is not the best latent of another factor)."""
    m = np.asarray(nmi, dtype=np.float64)  # [K, D]
    rows = []
    best_of = m.argmax(axis=1)
    for k, name in enumerate(factor_names):
        order = np.argsort(-m[k])
        j1 = int(order[0])
        n1 = float(m[k, j1])
        n2 = float(m[k, order[1]]) if m.shape[1] > 1 else 0.0
        shared = sum(1 for other in range(len(factor_names)) if best_of[other] == j1) > 1
        own = n1 - n2 >= gap and not shared and n1 > gap
        rows.append({"factor": name, "best latent": f"z{j1}", "NMI1": n1, "NMI2": n2, "own latent": own})
    n_own = sum(r["own latent"] for r in rows)
    text = (
        f"{n_own} of {len(rows)} factors have a latent of their own (NMI1 − NMI2 ≥ {gap:g} and not another "
        f"factor's best latent)"
        + (": " + ", ".join(f"{r['factor']} → {r['best latent']}" for r in rows if r["own latent"]) if n_own else "")
        + "."
    )
    return {"rows": rows, "n_own": n_own, "text": text}
