"""The one registry of metrics: name, function, label, preset settings and the scores each reports.

Why one table: evaluate, the stored reports, the lessons, the sweeps' tables and the Metrics /
Compare pages all name scores; they read them here, so a score is added or relabelled in one place.
Presets (docs/metrics.md#evaluate-and-its-presets): 'paper' uses the published sample counts, 'fast'
(the app) disent's fast mode. Pure: numpy in, numbers out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from disviz.core.errors import MetricError
from disviz.metrics.betavae_score import betavae_score
from disviz.metrics.dci import dci
from disviz.metrics.factorvae import factorvae_score
from disviz.metrics.infomec import infomec
from disviz.metrics.mig import mig
from disviz.metrics.nmi import nmi_diffusion
from disviz.metrics.sap import sap

__all__ = [
    "HEADLINE",
    "MATRICES",
    "METRICS",
    "PRESETS",
    "SCORES",
    "Metric",
    "Score",
    "finite_scores",
    "format_report",
    "label_of",
    "report_matrix",
    "score",
    "score_keys",
    "score_latents",
    "score_rows",
]


@dataclass(frozen=True)
class Score:
    """One number of a report: ``report['scores'][key]`` = ``report['details'][metric][detail]``."""

    key: str
    label: str  # short: tables, figure axes, the picker's summary
    title: str  # long: the Metrics page's score table
    metric: str
    detail: str


@dataclass(frozen=True)
class Metric:
    """A metric function ``latents x factors -> dict`` and what it contributes to a report."""

    name: str  # its key in report['details'] and report['timings']
    label: str
    function: Callable[..., dict[str, Any]]
    scores: tuple[Score, ...]
    needs: str = "latents"  # 'latents': codes of sampled images; 'interventions': an encoder and the dataset
    presets: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # preset -> settings (count keys)


def _s(key: str, label: str, title: str, metric: str, detail: str | None = None) -> Score:
    return Score(key, label, title, metric, detail or key)


METRICS: tuple[Metric, ...] = (
    Metric(
        "infomec",
        "InfoMEC",
        infomec,
        (
            _s("infom", "InfoM", "InfoM (modularity)", "infomec"),
            _s("infoe", "InfoE", "InfoE (explicitness)", "infomec"),
            _s("infoc", "InfoC", "InfoC (compactness)", "infomec"),
        ),
    ),
    Metric(
        "dci",
        "DCI",
        dci,
        (
            _s("dci_disentanglement", "DCI-D", "DCI disentanglement", "dci", "disentanglement"),
            _s("dci_completeness", "DCI-C", "DCI completeness", "dci", "completeness"),
            _s("dci_informativeness", "DCI-I", "DCI informativeness", "dci", "informativeness"),
        ),
        presets={"paper": {"dci_trees": 100}, "fast": {"dci_trees": 30}},
    ),
    Metric("mig", "MIG", mig, (_s("mig", "MIG", "MIG", "mig"),)),
    Metric("sap", "SAP", sap, (_s("sap", "SAP", "SAP", "sap"),)),
    Metric("nmi_diffusion", "NMI1 / NMI2", nmi_diffusion, ()),
    Metric(
        "factorvae",
        "FactorVAE score",
        factorvae_score,
        (_s("factorvae", "FactorVAE", "FactorVAE score", "factorvae"),),
        needs="interventions",
        presets={
            "paper": {"factorvae_train": 10_000, "factorvae_eval": 5_000, "factorvae_variance": 10_000},
            "fast": {"factorvae_train": 700, "factorvae_eval": 350, "factorvae_variance": 1_000},
        },
    ),
    Metric(
        "betavae",
        "BetaVAE score",
        betavae_score,
        (_s("betavae", "BetaVAE", "BetaVAE score", "betavae"),),
        needs="interventions",
        presets={
            "paper": {"betavae_train": 10_000, "betavae_eval": 5_000},
            "fast": {"betavae_train": 350, "betavae_eval": 175},
        },
    ),
)

#: the model's own reconstruction, measured by evaluate beside the metrics
RECONSTRUCTION = (
    Score("reconstruction", "recon error", "reconstruction", "reconstruction", "reconstruction"),
    Score("psnr", "PSNR dB", "PSNR dB", "reconstruction", "psnr"),
)
#: every score of a report, in the order tables show them
SCORES: tuple[Score, ...] = tuple(s for m in METRICS for s in m.scores) + RECONSTRUCTION
_BY_KEY = {s.key: s for s in SCORES}
#: the scores of the checkpoint picker's one-line summary, in its order
HEADLINE: tuple[Score, ...] = tuple(_BY_KEY[k] for k in ("infom", "infoe", "infoc", "mig", "dci_disentanglement"))

#: settings per preset: the sample counts of the intervention metrics and DCI's trees
PRESETS: dict[str, dict[str, int]] = {
    preset: {k: v for m in METRICS for k, v in m.presets.get(preset, {}).items()} for preset in ("paper", "fast")
}

#: matrices a report holds: name -> (metric, key in its details, rows are 'factors' or 'latents')
MATRICES: dict[str, tuple[str, str, str]] = {
    "nmi": ("infomec", "nmi", "factors"),
    "importance": ("dci", "importance", "latents"),
    "nmi_diffusion": ("nmi_diffusion", "nmi", "factors"),
}

Progress = Callable[[float, str], None]


def score(key: str) -> Score:
    """The registered score ``key``; a MetricError names the known ones."""
    if key not in _BY_KEY:
        raise MetricError(f"unknown score {key!r}; known: {', '.join(_BY_KEY)}")
    return _BY_KEY[key]


def label_of(key: str) -> str:
    """The short label of score ``key`` (the key itself when it is not registered)."""
    return _BY_KEY[key].label if key in _BY_KEY else key


def score_keys() -> list[str]:
    """Every score key a report holds, in table order (a sweep's default columns)."""
    return [s.key for s in SCORES]


def _numbers(raw: Mapping[str, Any] | None) -> dict[str, float]:
    if not isinstance(raw, Mapping):
        return {}
    return {
        s.key: float(raw[s.key])
        for s in SCORES
        if isinstance(raw.get(s.key), (int, float)) and not isinstance(raw.get(s.key), bool)
    }


def finite_scores(scores: Mapping[str, Any] | None) -> dict[str, float]:
    """The registered scores among a report's ``scores`` that are finite numbers ({} for None)."""
    return {k: v for k, v in _numbers(scores).items() if math.isfinite(v)}


def score_rows(scores: Mapping[str, Any] | None) -> list[tuple[Score, float | None]]:
    """(score, value) for every registered score (NaN kept), None where ``scores`` lacks it."""
    values = _numbers(scores)
    return [(s, values.get(s.key)) for s in SCORES]


def report_matrix(details: Mapping[str, Any] | None, name: str, n_factors: int) -> np.ndarray | None:
    """Matrix ``name`` of ``MATRICES`` from a report's ``details`` as factors x latents [K, D]; None if absent."""
    metric, key, rows = MATRICES[name]
    entry = details.get(metric) if isinstance(details, Mapping) else None
    value = entry.get(key) if isinstance(entry, Mapping) else None
    if not isinstance(value, list) or not value:
        return None
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if m.ndim != 2:
        return None
    m = m.T if rows == "latents" else m  # [K, D]
    return m if m.shape[0] == n_factors else None


def score_latents(
    z: np.ndarray,
    classes: np.ndarray,
    z_test: np.ndarray,
    classes_test: np.ndarray,
    factor_sizes: list[int],
    discrete: bool,
    seed: int = 0,
    dci_estimator: str = "random_forest",
    progress: Progress | None = None,
    dci_trees: int = 100,
    span: tuple[float, float] = (0.0, 1.0),
) -> tuple[dict[str, Any], dict[str, Any], dict[str, float]]:
    """(scores, details, timings) of the latent-only metrics on z [N, D] x classes [N, K] (+ a test set)."""
    both_z, both_c = np.concatenate([z, z_test]), np.concatenate([classes, classes_test])  # [N + T, D], [N + T, K]
    calls: dict[str, Callable[[Callable[..., dict[str, Any]]], dict[str, Any]]] = {
        "infomec": lambda f: f(z, classes, discrete=discrete, seed=seed),
        "dci": lambda f: f(
            z,
            classes,
            dci_estimator,
            test_latents=z_test,
            test_factors=classes_test,
            seed=seed,
            n_estimators=dci_trees,
        ),
        "mig": lambda f: f(z, classes),
        "sap": lambda f: f(both_z, both_c, test_fraction=z_test.shape[0] / both_z.shape[0], seed=seed),
        "nmi_diffusion": lambda f: f(z, classes, factor_sizes),
    }
    metrics = [m for m in METRICS if m.needs == "latents"]
    details: dict[str, Any] = {}
    timings: dict[str, float] = {}
    for i, m in enumerate(metrics):
        if progress:
            progress(span[0] + (span[1] - span[0]) * i / len(metrics), f"computing {m.name}")
        t0 = time.perf_counter()
        details[m.name] = calls[m.name](m.function)
        timings[m.name] = time.perf_counter() - t0
    scores = {s.key: details[s.metric][s.detail] for m in metrics for s in m.scores}
    return scores, details, timings


def format_report(report: Mapping[str, Any]) -> str:
    """A readable table of the scores and timings."""
    lines = [
        f"{report['model']} on {report['dataset']}  preset={report['preset']} n={report['n']} seed={report['seed']}"
    ]
    for s in SCORES:
        v = report["scores"].get(s.key)
        lines.append(f"  {s.label:<14} {'n/a' if v is None else f'{v:.4f}'}")
    lines.append("  timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in report["timings"].items()))
    return "\n".join(lines)
