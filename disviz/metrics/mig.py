"""Mutual Information Gap (Chen et al. 2018; disentanglement_lib discretisation, docs/metrics.md#mig)."""

from __future__ import annotations

from typing import Any

import numpy as np

from disviz.core.errors import MetricError
from disviz.metrics._util import check_inputs, entropies, histogram_discretize, label_encode, mutual_info_matrix


def mig(
    latents: np.ndarray,
    factors: np.ndarray,
    bins: int = 20,
    discretizer: str = "histogram",
    entropy: str = "plugin",
    factor_sizes: list[int] | None = None,
) -> dict[str, Any]:
    """MIG = mean_k (I(z_(1); c_k) − I(z_(2); c_k)) / H(c_k).

    discretizer: 'histogram' (20 equal-width bins, the reference) or 'identity' (label-encode
    the latents, for quantised codes). entropy: 'plugin' (disentanglement_lib) or 'log_values'
    (DEFT's ln #values, needs ``factor_sizes`` or uses the number of observed values).
    """
    z, c, keep = check_inputs(latents, factors, "MIG")
    if discretizer == "histogram":
        if bins < 2:
            raise MetricError(f"MIG: bins must be >= 2, got {bins}")
        zd = histogram_discretize(z, bins)
    elif discretizer == "identity":
        zd = label_encode(z)
    else:
        raise MetricError(f"MIG: unknown discretizer {discretizer!r}; use 'histogram' or 'identity'")
    mi = mutual_info_matrix(zd, c)  # [D, K]
    if entropy == "plugin":
        h = entropies(c)
    elif entropy == "log_values":
        sizes = (
            [factor_sizes[k] for k in keep]
            if factor_sizes is not None
            else [c[:, k].max() + 1 for k in range(c.shape[1])]
        )
        h = np.log(np.asarray(sizes, dtype=np.float64))
    else:
        raise MetricError(f"MIG: unknown entropy {entropy!r}; use 'plugin' or 'log_values'")
    ranked = -np.sort(-mi, axis=0)  # [D, K], descending per factor
    second = ranked[1] if mi.shape[0] > 1 else np.zeros(mi.shape[1])
    gaps = (ranked[0] - second) / h
    return {
        "mig": float(gaps.mean()),
        "per_factor": gaps,
        "mutual_info": mi,  # [D, K] nats
        "factor_entropy": h,
        "factors_used": keep,
        "settings": {"bins": bins, "discretizer": discretizer, "entropy": entropy, "n": int(z.shape[0])},
    }
