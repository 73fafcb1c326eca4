"""NMI1 / NMI2 per factor (information diffusion, DEFT; docs/metrics.md#nmi1-and-nmi2).

Uses the MIG discretisation (disentanglement_lib): each latent is cut into 20 equal-width bins
between its min and max, and ``I(z_j; c_k)`` is the plug-in mutual information of the two
discrete variables. ``NMI = I / ln #values_k`` (the factor's entropy under a uniform prior), so a
perfect one-latent code of a uniformly sampled factor scores ≈ 1.
"""

from __future__ import annotations

import numpy as np

from disviz.core.errors import MetricError
from disviz.metrics._util import histogram_discretize, mutual_info_matrix


def nmi_diffusion(
    latents: np.ndarray,
    factors: np.ndarray,
    factor_sizes: list[int] | tuple[int, ...] | None = None,
    bins: int = 20,
) -> dict[str, np.ndarray]:
    """latents [N, D] x factor classes [N, K] -> {'nmi': [K, D], 'nmi1': [K], 'nmi2': [K]}.

    ``factor_sizes`` gives #values_k (default: the number of distinct values seen). With one latent
    NMI2 is 0. Values are clipped to [0, 1] (the plug-in estimate can exceed ln #values slightly
    only through rounding).
    """
    z = np.asarray(latents)
    c = np.asarray(factors)
    if z.ndim != 2 or c.ndim != 2 or z.shape[0] != c.shape[0]:
        raise MetricError(f"nmi_diffusion needs latents [N, D] and factors [N, K]; got {z.shape} and {c.shape}")
    if z.shape[0] < 2 or not np.all(np.isfinite(z)):
        raise MetricError("nmi_diffusion needs at least 2 samples and finite latents (check the model for NaNs)")
    k_count, d = c.shape[1], z.shape[1]
    sizes = list(factor_sizes) if factor_sizes is not None else [len(np.unique(c[:, k])) for k in range(k_count)]
    if len(sizes) != k_count:
        raise MetricError(f"factor_sizes has {len(sizes)} entries for {k_count} factors")
    mi = mutual_info_matrix(c, histogram_discretize(z, bins))  # [K, D] nats
    h = np.log(np.maximum(np.asarray(sizes, dtype=np.float64), 1.0))[:, None]  # ln #values_k
    nmi = np.divide(mi, h, out=np.zeros_like(mi), where=h > 0)
    nmi = np.clip(nmi, 0.0, 1.0)
    ranked = -np.sort(-nmi, axis=1)
    nmi1 = ranked[:, 0]
    nmi2 = ranked[:, 1] if d > 1 else np.zeros(k_count)
    return {"nmi": nmi, "nmi1": nmi1, "nmi2": nmi2}


def mig_from_nmi(nmi: np.ndarray) -> float:
    """MIG with H = ln #values: mean over factors of NMI1 − NMI2 (docs/metrics.md#nmi1-and-nmi2)."""
    ranked = -np.sort(-np.asarray(nmi), axis=1)
    second = ranked[:, 1] if ranked.shape[1] > 1 else 0.0
    return float(np.mean(ranked[:, 0] - second))
