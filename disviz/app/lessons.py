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

from disviz.engine.card import Card
from disviz.metrics.registry import finite_scores

__all__ = [
    "BETA_SWEEP",
    "LESSONS",
    "RECONSTRUCTS_WITHIN",
    "beta_sweep_rows",
    "beta_sweep_tradeoff",
    "contrast_pair",
    "diffusion_story",
    "matrix_reading",
    "quantisation_gain",
    "reconstructing",
    "scores_of",
]

# Titles are neutral: what a lesson concludes is computed from the data it shows (a title that
# claimed a result the text then denied would teach the wrong thing).
LESSONS = (
    "What a disentangled traversal looks like",
    "β, reconstruction and disentanglement (one β-VAE sweep)",
    "Information freezing points and DEFT's stages",
    "Quantised latents (QLAE) against AE and β-VAE",
    "Reading a metric matrix",
    "Information diffusion during training (DEFT, DeVAE)",
)
BETA_SWEEP = "checkpoints/sweeps/dsprites_betavae_beta"  # the β-VAE sweep lesson 2 reads
#: a shipped model "reconstructs" when its stored reconstruction error is within this factor of the
#: best shipped model's on the same dataset (dSprites: AE 10.5 nats → up to 52; DiD's 1,342 is out)
RECONSTRUCTS_WITHIN = 5.0


def scores_of(card: Card) -> dict[str, float]:
    """The finite scores of a card's stored evaluate report ({} when it has none)."""
    return finite_scores(card.scores)


def reconstructing(cards: Mapping[str, Card]) -> tuple[dict[str, bool], float | None]:
    """Which models reconstruct their data (stored reconstruction ≤ RECONSTRUCTS_WITHIN × the best), and the bar.

    Why: a model whose decoder does not redraw real images shows black or noisy traversals; set
    beside a clean model it illustrates a broken model, not entanglement.
    """
    recon = {n: scores_of(c).get("reconstruction") for n, c in cards.items()}
    known = [v for v in recon.values() if v is not None]
    if not known:
        return {n: False for n in cards}, None
    bar = RECONSTRUCTS_WITHIN * max(min(known), 1e-9)
    return {n: v is not None and v <= bar for n, v in recon.items()}, bar


def contrast_pair(cards: Mapping[str, Card], metric: str = "mig") -> dict[str, Any] | None:
    """A clean model (highest ``metric``) and an entangled one (lowest) among the models that reconstruct."""
    ok, bar = reconstructing(cards)
    scored = {name: scores_of(c).get(metric) for name, c in cards.items() if ok.get(name)}
    scored = {n: v for n, v in scored.items() if v is not None}
    if len(scored) < 2 or bar is None:
        return None
    best = max(scored, key=scored.__getitem__)
    worst = min(scored, key=scored.__getitem__)
    left_out = sorted(n for n in cards if not ok.get(n) and scores_of(cards[n]))
    text = (
        f"Of the {len(scored)} shipped models that reconstruct their images (stored reconstruction error ≤ "
        f"{bar:.0f} nats, {RECONSTRUCTS_WITHIN:g}× the best), **{best}** has the highest {metric.upper()} "
        f"({scored[best]:.3f}) and **{worst}** the lowest ({scored[worst]:.3f})."
    )
    if left_out:
        text += f" Left out because they do not reconstruct: {', '.join(left_out)}."
    return {"best": best, "worst": worst, "scores": scored, "text": text, "left_out": left_out}


def beta_sweep_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """(β, seed, reconstruction, MIG, trial) of a sweep's finished β-VAE trials, from its results table."""
    rows = []
    for t in results.get("trials") or []:
        scores, hp = t.get("scores") or {}, t.get("hparams") or {}
        beta, mig, recon = hp.get("beta"), scores.get("mig"), scores.get("reconstruction")
        if t.get("status") != "done" or t.get("model") != "betavae" or None in (beta, mig, recon):
            continue
        row = {"β": float(beta), "seed": int(t.get("seed", 0)), "reconstruction": float(recon), "MIG": float(mig)}
        rows.append({**row, "model": str(t["model"]), "trial": str(t.get("trial", ""))})
    rows.sort(key=lambda r: (r["β"], r["seed"]))
    return rows


def _rho_text(rho: float, a: str, b: str) -> str:
    if abs(rho) < 0.3:
        return f"{b} hardly moves with {a} (ρ = {rho:+.2f})"
    strength = "strongly" if abs(rho) >= 0.7 else "moderately"
    return f"{b} {strength} {'rises' if rho > 0 else 'falls'} with {a} (ρ = {rho:+.2f})"


def beta_sweep_tradeoff(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Spearman's ρ within one family (every seed a point): β vs MIG, β vs reconstruction, reconstruction vs MIG.

    The textbook trade-off is ρ(β, reconstruction) > 0 and ρ(β, MIG) > 0, hence ρ(reconstruction,
    MIG) > 0; the sentence states what these runs measure, whichever way it goes.
    """
    from scipy.stats import spearmanr

    betas = sorted({r["β"] for r in rows})
    if len(rows) < 3 or len(betas) < 2:
        return {
            "rows": list(rows),
            "rho": None,
            "text": "Fewer than three finished runs at two β values: no trend yet.",
        }
    b = [r["β"] for r in rows]
    m = [r["MIG"] for r in rows]
    e = [r["reconstruction"] for r in rows]
    rho = {
        "beta_mig": float(spearmanr(b, m).statistic),
        "beta_recon": float(spearmanr(b, e).statistic),
        "recon_mig": float(spearmanr(e, m).statistic),
    }
    seeds = sorted({r["seed"] for r in rows})
    text = (
        f"{len(rows)} β-VAE runs (β = {', '.join(f'{x:g}' for x in betas)}; seeds {', '.join(map(str, seeds))}): "
        f"{_rho_text(rho['beta_recon'], 'β', 'reconstruction error')}; {_rho_text(rho['beta_mig'], 'β', 'MIG')}. "
    )
    r = rho["recon_mig"]
    if r >= 0.3:
        text += f"Across the runs, higher MIG comes with worse reconstruction (ρ = {r:+.2f}): the trade-off shows."
    elif r <= -0.3:
        text += f"Across the runs, better reconstruction comes with higher MIG (ρ = {r:+.2f}): no trade-off here."
    else:
        text += f"Reconstruction and MIG are nearly unrelated across the runs (ρ = {r:+.2f})."
    best = max(rows, key=lambda row: row["MIG"])
    text += f" The highest MIG, {best['MIG']:.3f}, is at β = {best['β']:g} (seed {best['seed']})."
    return {"rows": list(rows), "rho": rho, "text": text}


def quantisation_gain(qlae: Card | None, others: Mapping[str, Card], dataset: str = "dSprites") -> dict[str, Any]:
    """QLAE's InfoM / InfoE against the other models' (AE, β-VAE …) on one dataset, from the stored reports."""
    if qlae is None or not scores_of(qlae):
        return {"rows": [], "leads": None, "text": f"No shipped {dataset} QLAE with a stored report."}
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
        f"On {dataset}, the shipped QLAE has InfoM {q.get('infom', float('nan')):.3f} and InfoE "
        f"{q.get('infoe', float('nan')):.3f}. "
    )
    if won:
        text += f"It is above {', '.join(won)} on both. "
    if lost:
        text += f"It is not above {', '.join(lost)} on both."
    return {"rows": rows, "leads": bool(beats) and not lost, "text": text.strip()}


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


def diffusion_story(card: Card, name: str) -> dict[str, Any] | None:
    """MIG over training from a card's diffusion track, and where it peaked and ended (stage, when staged).

    For DEFT the question is whether MIG is highest while β(t) > 1 and falls in the last, β = 1
    stage (information diffusing over more latents once the bottleneck opens); the sentence
    reports what the track holds, whichever way it goes.
    """
    track = card.diffusion()
    records = [r for r in track if isinstance(r.get("mig"), (int, float))]
    if len(records) < 2:
        return None
    steps = [int(r["step"]) for r in records]
    mig = [float(r["mig"]) for r in records]
    stages = [r.get("stage") for r in records]
    betas = card.config.get("betas") if card.model == "deft" else None
    peak = int(np.argmax(mig))

    def where(i: int) -> str:
        stage = stages[i]
        if isinstance(stage, int) and isinstance(betas, list) and 0 <= stage < len(betas):
            return f"step {steps[i]:,} (stage {stage + 1} of {len(betas)}, β = {betas[stage]:g})"
        return f"step {steps[i]:,}"

    text = (
        f"**{name}**: MIG peaked at {mig[peak]:.3f} at {where(peak)} and ends at {mig[-1]:.3f} at {where(len(mig) - 1)}"
    )
    drop = mig[peak] - mig[-1]
    if drop >= 0.02:
        text += f": {drop:.3f} of it was lost after the peak, information spreading over more latents."
    else:
        text += ": it held its peak to the end."
    return {"steps": steps, "mig": mig, "stages": stages, "peak": peak, "text": text}
