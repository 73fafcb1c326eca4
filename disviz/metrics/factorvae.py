"""FactorVAE score (Kim & Mnih 2018; disentanglement_lib form, metrics.md §5)."""

from __future__ import annotations

from typing import Any

import numpy as np

from disviz.errors import MetricError
from disviz.metrics._sampling import EncodeFn, FactorSource, encode_classes, varying_factors


def _votes(
    dataset: FactorSource,
    encode: EncodeFn,
    n_votes: int,
    batch: int,
    global_var: np.ndarray,
    active: np.ndarray,
    rng: np.random.Generator,
    chunk_votes: int = 128,
) -> np.ndarray:
    """Vote counts [D, K]: each vote fixes one factor across ``batch`` samples and picks argmin var_local/var_global."""
    factors_idx = varying_factors(dataset)
    k_total = len(list(dataset.factor_sizes))
    votes = np.zeros((global_var.shape[0], k_total), dtype=np.int64)
    for s in range(0, n_votes, chunk_votes):
        v = min(chunk_votes, n_votes - s)
        ks = rng.choice(factors_idx, size=v)  # [V]
        classes = dataset.sample_factors(v * batch, rng).reshape(v, batch, -1)  # [V, B, K]
        classes[np.arange(v), :, ks] = classes[np.arange(v), 0, ks][:, None]
        z = encode_classes(dataset, encode, classes.reshape(v * batch, -1)).reshape(v, batch, -1)  # [V, B, D]
        local = z[:, :, active].var(axis=1, ddof=1) / global_var[active]  # [V, A]
        dims = np.flatnonzero(active)[local.argmin(axis=1)]
        np.add.at(votes, (dims, ks), 1)
    return votes


def factorvae_score(
    dataset: FactorSource,
    encode: EncodeFn,
    n_train: int = 10_000,
    n_eval: int = 5_000,
    n_variance: int = 10_000,
    batch_size: int = 64,
    prune_threshold: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Majority-vote accuracy of 'which factor was fixed' from the least-varying normalised latent.

    ``prune_threshold`` is on the latent **std** (0.05: disentanglement_lib study configs;
    disent uses 0). No active latent -> scores 0.
    """
    if min(n_train, n_eval, n_variance) < 1 or batch_size < 2 or n_variance < 2:
        raise MetricError("FactorVAE score: n_train, n_eval >= 1, n_variance >= 2 and batch_size >= 2 are required")
    rng = np.random.default_rng(seed)
    z = encode_classes(dataset, encode, dataset.sample_factors(n_variance, rng))
    global_var = z.var(axis=0, ddof=1)  # [D]
    active = np.sqrt(global_var) >= prune_threshold
    active &= global_var > 0
    settings = {
        "n_train": n_train,
        "n_eval": n_eval,
        "n_variance": n_variance,
        "batch_size": batch_size,
        "prune_threshold_std": prune_threshold,
        "seed": seed,
    }
    if not active.any():
        return {
            "factorvae": 0.0,
            "train_accuracy": 0.0,
            "eval_accuracy": 0.0,
            "num_active_dims": 0,
            "active": active,
            "settings": settings,
        }
    train_votes = _votes(dataset, encode, n_train, batch_size, global_var, active, rng)
    classifier = train_votes.argmax(axis=1)  # majority factor per dimension [D]
    train_acc = train_votes[np.arange(len(classifier)), classifier].sum() / train_votes.sum()
    eval_votes = _votes(dataset, encode, n_eval, batch_size, global_var, active, rng)
    eval_acc = eval_votes[np.arange(len(classifier)), classifier].sum() / eval_votes.sum()
    return {
        "factorvae": float(eval_acc),
        "train_accuracy": float(train_acc),
        "eval_accuracy": float(eval_acc),
        "num_active_dims": int(active.sum()),
        "active": active,
        "votes": train_votes,  # [D, K]
        "global_variance": global_var,
        "settings": settings,
    }
