"""Encode data generated from chosen factor classes, for the intervention metrics (FactorVAE, BetaVAE)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from disviz.core.errors import MetricError

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


class FactorPool:
    """Already-encoded samples z [N, D] with their classes [N, K], grouped by (factor, value) once.

    Pool sampling (``sampling="pool"`` in the FactorVAE/BetaVAE scores) draws each vote's points
    from here instead of rendering and encoding fresh images: one argsort per factor gives every
    (k, value) group as a contiguous run of ``order[:, k]``, and a whole batch of votes is then
    drawn with numpy at once. It is an approximation of the reference: different votes reuse
    points, but with uniformly sampled factors each vote's points have the same distribution as
    freshly generated ones (pool points are i.i.d. draws of the data distribution).
    """

    def __init__(self, latents: np.ndarray, classes: np.ndarray):
        z = np.asarray(latents, dtype=np.float64)
        c = np.asarray(classes)
        if z.ndim != 2 or c.ndim != 2 or z.shape[0] != c.shape[0] or z.shape[0] < 2:
            raise MetricError(
                f"pool sampling needs latents [N, D] and classes [N, K] with the same N >= 2; "
                f"got {z.shape} and {c.shape}"
            )
        if not np.all(np.isfinite(z)):
            raise MetricError("the encoder produced NaN or inf latents; the model diverged")
        n, k = c.shape
        codes = np.stack([np.unique(c[:, j], return_inverse=True)[1].reshape(-1) for j in range(k)], axis=1)
        self.z, self.codes = z, codes.astype(np.int64)  # [N, D], [N, K]
        self.order = np.argsort(self.codes, axis=0, kind="stable")  # [N, K]: group (k, v) is a contiguous run
        self.rank = np.empty_like(self.order)  # rank[i, k] = position of sample i in order[:, k]
        self.rank[self.order, np.arange(k)] = np.arange(n)[:, None]
        vmax = int(self.codes.max()) + 1
        self.counts = np.stack([np.bincount(self.codes[:, j], minlength=vmax) for j in range(k)])  # [K, V]
        self.starts = np.cumsum(self.counts, axis=1) - self.counts  # [K, V]

    @property
    def n(self) -> int:
        return int(self.z.shape[0])

    def varying(self) -> np.ndarray:
        """Factors with more than one value in the pool."""
        idx = np.flatnonzero(self.codes.max(0) > 0)
        if idx.size == 0:
            raise MetricError("pool sampling: every factor is constant in the pool; nothing to intervene on")
        return idx

    def same_value(self, anchors: np.ndarray, ks: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
        """Pool indices [V, m]: for each vote, m points sharing factor ks[v]'s value with point anchors[v].

        Without replacement (vectorised Floyd sampling: a loop over the m positions, not over
        votes) when the group has >= m members, with replacement otherwise.
        """
        vals = self.codes[anchors, ks]  # [V]
        cnt, st = self.counts[ks, vals], self.starts[ks, vals]  # [V]
        off = (rng.random((ks.size, m)) * cnt[:, None]).astype(np.int64)  # with replacement [V, m]
        big = cnt >= m
        if big.any():
            c = cnt[big]  # [B]
            sel = np.empty((c.size, m), dtype=np.int64)
            for i in range(m):  # Floyd: uniform m-subset of range(c), per vote
                j = c - m + i
                t = (rng.random(c.size) * (j + 1)).astype(np.int64)
                dup = (sel[:, :i] == t[:, None]).any(1)
                sel[:, i] = np.where(dup, j, t)
            off[big] = sel
        return self.order[st[:, None] + off, ks[:, None]]

    def partner(self, idx: np.ndarray, ks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """For pool indices idx [V, B], another point sharing factor ks[v]'s value (itself only if alone)."""
        kk = np.broadcast_to(ks[:, None], idx.shape)
        vals = self.codes[idx, kk]  # [V, B]
        cnt, st = self.counts[kk, vals], self.starts[kk, vals]
        pos = self.rank[idx, kk] - st  # own position inside the group
        off = (rng.random(idx.shape) * np.maximum(cnt - 1, 1)).astype(np.int64)
        off = np.where(cnt > 1, off + (off >= pos), pos)  # skip itself
        return self.order[st + off, kk]


class OracleSource:
    """Synthetic factor source for benchmarks/tests: observations are a fixed map of the factors.

    ``mix`` [K, D] maps factor classes to latents (plus Gaussian noise), so the intervention
    metrics run with no model and no rendering.
    """

    def __init__(self, factor_sizes: list[int], mix: np.ndarray, noise: float = 0.0, seed: int = 0):
        self.factor_sizes = list(factor_sizes)
        self.mix = np.asarray(mix, dtype=np.float64)
        self.noise = noise
        self._rng = np.random.default_rng(seed)

    def sample_factors(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        rng = np.random.default_rng(rng)
        return np.stack([rng.integers(0, s, size=n) for s in self.factor_sizes], axis=1).astype(np.int64)

    def images_from_factors(self, classes: np.ndarray) -> np.ndarray:
        z = classes.astype(np.float64) @ self.mix
        return z + self.noise * self._rng.standard_normal(z.shape) if self.noise else z
