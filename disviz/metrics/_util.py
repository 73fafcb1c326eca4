"""Shared input validation, label encoding and plug-in information for every metric."""

from __future__ import annotations

import platform
from typing import Any

import numpy as np

from disviz.core.errors import MetricError


def check_inputs(latents: Any, factors: Any, metric: str, min_n: int = 2) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(z float64 [N, D], label-encoded factors int64 [N, K'], kept factor indices).

    Constant factors carry no information (H = 0) and are dropped (docs/metrics.md#constant-factors);
    every bad input raises MetricError before scikit-learn sees it.
    """
    z = np.asarray(latents)
    c = np.asarray(factors)
    if z.ndim != 2 or c.ndim != 2:
        raise MetricError(f"{metric}: latents must be [N, D] and factors [N, K]; got shapes {z.shape} and {c.shape}")
    if z.shape[0] != c.shape[0]:
        raise MetricError(f"{metric}: {z.shape[0]} latent rows but {c.shape[0]} factor rows; pass matching samples")
    if z.shape[1] == 0 or c.shape[1] == 0:
        raise MetricError(f"{metric}: need at least one latent and one factor; got {z.shape} and {c.shape}")
    if z.shape[0] < min_n:
        raise MetricError(f"{metric}: needs at least {min_n} samples, got {z.shape[0]}; raise n")
    if not np.issubdtype(z.dtype, np.number):
        raise MetricError(f"{metric}: latents must be numeric, got dtype {z.dtype}")
    z = z.astype(np.float64)
    if not np.all(np.isfinite(z)):
        raise MetricError(f"{metric}: latents contain NaN or inf; the model diverged or the input is broken")
    if not np.issubdtype(c.dtype, np.integer):
        if not np.issubdtype(c.dtype, np.number) or not np.all(np.isfinite(c)) or np.any(c != np.round(c)):
            raise MetricError(f"{metric}: factors must be integer classes [N, K]")
    enc = np.stack([np.unique(c[:, k], return_inverse=True)[1].reshape(-1) for k in range(c.shape[1])], axis=1)
    keep = [k for k in range(enc.shape[1]) if enc[:, k].max() > 0]
    if not keep:
        raise MetricError(f"{metric}: every factor is constant in these samples; nothing to score")
    return z, enc[:, keep].astype(np.int64), keep


def label_encode(x: np.ndarray) -> np.ndarray:
    """Column-wise label encoding [N, D] -> int64 [N, D] (values 0..#distinct-1)."""
    return np.stack([np.unique(x[:, j], return_inverse=True)[1].reshape(-1) for j in range(x.shape[1])], axis=1)


def histogram_discretize(latents: np.ndarray, bins: int = 20) -> np.ndarray:
    """[N, D] -> int64 bin ids [N, D]: 20 equal-width bins per latent (disentanglement_lib).

    Vectorised ``np.digitize(z, np.histogram(z, bins)[1][:-1])``: values land in 1..bins.
    """
    z = np.asarray(latents, dtype=np.float64)
    lo, hi = z.min(0), z.max(0)
    width = np.where(hi > lo, (hi - lo) / bins, 1.0)
    # edges[:-1] = lo + i*width; digitize counts how many edges are <= z
    out = np.floor((z - lo) / width).astype(np.int64) + 1
    return np.clip(out, 1, bins)


def mutual_info_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Plug-in MI (nats) between every column of a [N, P] and b [N, Q] (label-encoded ints) -> [P, Q].

    Equals sklearn.metrics.mutual_info_score per pair, one bincount per pair.
    """
    n = a.shape[0]
    a = label_encode(a)
    b = label_encode(b)
    out = np.zeros((a.shape[1], b.shape[1]))
    for p in range(a.shape[1]):
        na = int(a[:, p].max()) + 1
        pa = np.bincount(a[:, p], minlength=na) / n
        for q in range(b.shape[1]):
            nb = int(b[:, q].max()) + 1
            joint = np.bincount(a[:, p] * nb + b[:, q], minlength=na * nb).reshape(na, nb) / n
            pb = joint.sum(0)
            nz = joint > 0
            out[p, q] = max(float((joint[nz] * np.log(joint[nz] / np.outer(pa, pb)[nz])).sum()), 0.0)
    return out


def entropies(c: np.ndarray) -> np.ndarray:
    """Plug-in entropy (nats) of every column of c [N, K] (= mutual_info_score(c, c))."""
    out = []
    for k in range(c.shape[1]):
        p = np.bincount(c[:, k]) / c.shape[0]
        p = p[p > 0]
        out.append(float(-(p * np.log(p)).sum()))
    return np.asarray(out)


def versions() -> dict[str, str]:
    """Library versions to store with every score (docs/metrics.md#what-is-recorded-with-every-score)."""
    import sklearn

    out = {"numpy": np.__version__, "scikit-learn": sklearn.__version__, "python": platform.python_version()}
    try:
        import torch

        out["torch"] = torch.__version__
    except ImportError:  # pragma: no cover - torch is a hard dependency of disviz
        pass
    return out


def split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled train/test index split; both parts non-empty."""
    if not 0.0 < test_fraction < 1.0:
        raise MetricError(f"test_fraction must be in (0, 1), got {test_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = min(max(int(round(n * test_fraction)), 1), n - 1)
    return perm[n_test:], perm[:n_test]


def to_jsonable(obj: Any) -> Any:
    """numpy arrays/scalars -> lists/floats (NaN -> None) so reports go through json.dumps."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return None if not np.isfinite(f) else f
    return obj
