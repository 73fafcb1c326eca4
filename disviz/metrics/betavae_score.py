"""BetaVAE score (Higgins et al. 2017; disentanglement_lib form, docs/metrics.md#betavae-score).

``sampling="fresh"`` is the disentanglement_lib reference (renders and encodes 2 x 64 new images
per point). ``sampling="pool"`` (evaluate's default) draws each of a point's 64 pairs from an
already-encoded pool of uniformly sampled data: x1 uniform in the pool, x2 another pool point with
the same value of factor k (see ``FactorPool``); train points from ``pool``, eval points from a
disjoint ``eval_pool``. An approximation (points reuse samples) whose per-pair distribution equals
fresh sampling for uniform factors.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from disviz.core.errors import MetricError
from disviz.metrics._sampling import EncodeFn, FactorPool, FactorSource, encode_classes, varying_factors

SAMPLING = ("fresh", "pool")


def _points(
    dataset: FactorSource, encode: EncodeFn, n_points: int, batch: int, rng: np.random.Generator, chunk: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Fresh (features [n, D] = mean_pairs |z(x1) − z(x2)|, labels [n]) for pairs sharing one factor."""
    factors_idx = varying_factors(dataset)
    feats, labels = [], []
    for s in range(0, n_points, chunk):
        v = min(chunk, n_points - s)
        ks = rng.choice(factors_idx, size=v)  # [V]
        c1 = dataset.sample_factors(v * batch, rng).reshape(v, batch, -1)  # [V, B, K]
        c2 = dataset.sample_factors(v * batch, rng).reshape(v, batch, -1)
        c2[np.arange(v), :, ks] = c1[np.arange(v), :, ks]
        both = np.concatenate([c1.reshape(v * batch, -1), c2.reshape(v * batch, -1)])
        z = encode_classes(dataset, encode, both)
        z1, z2 = z[: v * batch].reshape(v, batch, -1), z[v * batch :].reshape(v, batch, -1)
        feats.append(np.abs(z1 - z2).mean(axis=1))
        labels.append(ks)
    return np.concatenate(feats), np.concatenate(labels)


def _pool_points(
    pool: FactorPool, factors_idx: np.ndarray, n_points: int, batch: int, rng: np.random.Generator, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Pool (features [n, D], labels [n]): pairs (x1 uniform, x2 sharing factor k's value) from the pool."""
    feats, labels = [], []
    for s in range(0, n_points, chunk):  # chunks bound memory ([V, B, D] floats), not a loop over points
        v = min(chunk, n_points - s)
        ks = rng.choice(factors_idx, size=v)  # [V]
        i1 = rng.integers(0, pool.n, size=(v, batch))  # [V, B]
        i2 = pool.partner(i1, ks, rng)  # [V, B]
        feats.append(np.abs(pool.z[i1] - pool.z[i2]).mean(axis=1))  # [V, D]
        labels.append(ks)
    return np.concatenate(feats), np.concatenate(labels)


def betavae_score(
    dataset: FactorSource | None,
    encode: EncodeFn | None,
    n_train: int = 10_000,
    n_eval: int = 5_000,
    batch_size: int = 64,
    seed: int = 0,
    sampling: str = "fresh",
    pool: tuple[np.ndarray, np.ndarray] | None = None,
    eval_pool: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Eval accuracy of a default sklearn LogisticRegression predicting the shared factor.

    ``sampling="pool"`` needs ``pool=(latents [N, D], classes [N, K])`` (+ optional disjoint
    ``eval_pool``, default: the same pool); ``dataset``/``encode`` are then not used.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if sampling not in SAMPLING:
        raise MetricError(f"BetaVAE score: unknown sampling {sampling!r}; choose one of {SAMPLING}")
    if n_train < 2 or n_eval < 1 or batch_size < 1:
        raise MetricError("BetaVAE score: n_train >= 2, n_eval >= 1 and batch_size >= 1 are required")
    rng = np.random.default_rng(seed)
    settings: dict[str, Any] = {
        "sampling": sampling,
        "n_train": n_train,
        "n_eval": n_eval,
        "batch_size": batch_size,
        "seed": seed,
        "classifier": "LogisticRegression() defaults",
    }
    if sampling == "pool":
        if pool is None:
            raise MetricError("BetaVAE score: sampling='pool' needs pool=(latents, classes)")
        train_pool = FactorPool(*pool)
        test_pool = FactorPool(*eval_pool) if eval_pool is not None else train_pool
        if test_pool.z.shape[1] != train_pool.z.shape[1] or test_pool.codes.shape[1] != train_pool.codes.shape[1]:
            raise MetricError("BetaVAE score: pool and eval_pool must have the same latents and factors")
        factors_idx = train_pool.varying()
        x_tr, y_tr = _pool_points(train_pool, factors_idx, n_train, batch_size, rng)
        x_te, y_te = _pool_points(test_pool, factors_idx, n_eval, batch_size, rng)
        settings["pool"] = (
            f"pairs drawn from {train_pool.n} (train) / {test_pool.n} (eval) already-encoded samples; "
            "approximation: points reuse samples, per-pair distribution = fresh for uniform factors"
        )
    else:
        if dataset is None or encode is None:
            raise MetricError("BetaVAE score: sampling='fresh' needs a dataset and an encode function")
        x_tr, y_tr = _points(dataset, encode, n_train, batch_size, rng)
        x_te, y_te = _points(dataset, encode, n_eval, batch_size, rng)
    if len(np.unique(y_tr)) < 2:
        acc_tr = 1.0
        acc_te = float(np.mean(y_te == y_tr[0]))
    else:
        clf = LogisticRegression()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(x_tr, y_tr)
        acc_tr = float(np.mean(clf.predict(x_tr) == y_tr))
        acc_te = float(np.mean(clf.predict(x_te) == y_te))
    return {"betavae": acc_te, "train_accuracy": acc_tr, "eval_accuracy": acc_te, "settings": settings}
