"""BetaVAE score (Higgins et al. 2017; disentanglement_lib form, metrics.md §6)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from disviz.errors import MetricError
from disviz.metrics._sampling import EncodeFn, FactorSource, encode_classes, varying_factors


def _points(
    dataset: FactorSource, encode: EncodeFn, n_points: int, batch: int, rng: np.random.Generator, chunk: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """(features [n, D] = mean_pairs |z(x1) − z(x2)|, labels [n]) for pairs sharing one factor."""
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


def betavae_score(
    dataset: FactorSource,
    encode: EncodeFn,
    n_train: int = 10_000,
    n_eval: int = 5_000,
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, Any]:
    """Eval accuracy of a default sklearn LogisticRegression predicting the shared factor."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if n_train < 2 or n_eval < 1 or batch_size < 1:
        raise MetricError("BetaVAE score: n_train >= 2, n_eval >= 1 and batch_size >= 1 are required")
    rng = np.random.default_rng(seed)
    x_tr, y_tr = _points(dataset, encode, n_train, batch_size, rng)
    x_te, y_te = _points(dataset, encode, n_eval, batch_size, rng)
    settings = {
        "n_train": n_train,
        "n_eval": n_eval,
        "batch_size": batch_size,
        "seed": seed,
        "classifier": "LogisticRegression() defaults",
    }
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
