"""Encode data generated from chosen factor classes, for the intervention metrics (FactorVAE, BetaVAE)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from disviz.errors import MetricError

#: observations (whatever ``images_from_factors`` returns) [N, ...] -> latents [N, D]
EncodeFn = Callable[[Any], np.ndarray]


class FactorSource(Protocol):
    """The part of GroundTruthDataset these metrics need."""

    factor_sizes: Any

    def sample_factors(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray: ...

    def images_from_factors(self, classes: np.ndarray) -> Any: ...


def encode_classes(dataset: FactorSource, encode: EncodeFn, classes: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """classes [N, K] -> latents float64 [N, D], rendering and encoding ``chunk`` items at a time."""
    out = []
    for s in range(0, classes.shape[0], chunk):
        z = np.asarray(encode(dataset.images_from_factors(classes[s : s + chunk])), dtype=np.float64)
        if z.ndim != 2 or z.shape[0] != min(chunk, classes.shape[0] - s):
            raise MetricError(f"encode function must return [N, D] latents; got shape {z.shape}")
        out.append(z)
    z = np.concatenate(out)
    if not np.all(np.isfinite(z)):
        raise MetricError("the encoder produced NaN or inf latents; the model diverged")
    return z


def varying_factors(dataset: FactorSource) -> np.ndarray:
    """Indices of factors with more than one value (constant ones cannot be intervened on)."""
    sizes = np.asarray(list(dataset.factor_sizes))
    idx = np.flatnonzero(sizes > 1)
    if idx.size == 0:
        raise MetricError("the dataset has no factor with more than one value")
    return idx
