"""FactorVAE score (Kim & Mnih 2018; disentanglement_lib form, docs/metrics.md#factorvae-score).

``sampling="fresh"`` is the disentanglement_lib reference: every vote renders and encodes 64 new
images. ``sampling="pool"`` (evaluate's default) draws each vote's 64 points from an
already-encoded pool of uniformly sampled data (see ``FactorPool``): train votes from ``pool``,
eval votes from a disjoint ``eval_pool``, global variances from ``pool``. An approximation
(votes reuse points) whose per-vote distribution equals fresh sampling for uniform factors; it
costs no rendering or encoding, so the paper counts (10k/5k votes x 64) take well under a second.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from disviz.core.errors import MetricError
from disviz.metrics._sampling import EncodeFn, FactorPool, FactorSource, encode_classes, varying_factors

SAMPLING = ("fresh", "pool")


def _tally(z: np.ndarray, ks: np.ndarray, global_var: np.ndarray, active: np.ndarray, votes: np.ndarray) -> None:
    """Add the votes of z [V, B, D] with fixed factors ks [V] into votes [D, K]."""
    local = z[:, :, active].var(axis=1, ddof=1) / global_var[active]  # [V, A]
    dims = np.flatnonzero(active)[local.argmin(axis=1)]
    np.add.at(votes, (dims, ks), 1)


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
    """Fresh votes [D, K]: each vote fixes one factor across ``batch`` new samples, argmin var_local/var_global."""
    factors_idx = varying_factors(dataset)
    k_total = len(list(dataset.factor_sizes))
    votes = np.zeros((global_var.shape[0], k_total), dtype=np.int64)
    for s in range(0, n_votes, chunk_votes):
        v = min(chunk_votes, n_votes - s)
        ks = rng.choice(factors_idx, size=v)  # [V]
        classes = dataset.sample_factors(v * batch, rng).reshape(v, batch, -1)  # [V, B, K]
        classes[np.arange(v), :, ks] = classes[np.arange(v), 0, ks][:, None]
        z = encode_classes(dataset, encode, classes.reshape(v * batch, -1)).reshape(v, batch, -1)  # [V, B, D]
        _tally(z, ks, global_var, active, votes)
    return votes


def _pool_votes(
    pool: FactorPool,
    factors_idx: np.ndarray,
    n_votes: int,
    batch: int,
    global_var: np.ndarray,
    active: np.ndarray,
    rng: np.random.Generator,
    chunk_votes: int = 4096,
) -> np.ndarray:
    """Pool votes [D, K]: a random anchor fixes factor k's value, 64 pool points with that value vote."""
    votes = np.zeros((global_var.shape[0], pool.codes.shape[1]), dtype=np.int64)
    for s in range(0, n_votes, chunk_votes):  # chunks bound memory ([V, B, D] floats), not a loop over votes
        v = min(chunk_votes, n_votes - s)
        ks = rng.choice(factors_idx, size=v)  # [V]
        anchors = rng.integers(0, pool.n, size=v)  # value of factor k ~ the data distribution, as fresh
        idx = pool.same_value(anchors, ks, batch, rng)  # [V, B]
        _tally(pool.z[idx], ks, global_var, active, votes)  # z: [V, B, D]
    return votes


def factorvae_score(
    dataset: FactorSource | None,
    encode: EncodeFn | None,
    n_train: int = 10_000,
    n_eval: int = 5_000,
    n_variance: int = 10_000,
    batch_size: int = 64,
    prune_threshold: float = 0.05,
    seed: int = 0,
    sampling: str = "fresh",
    pool: tuple[np.ndarray, np.ndarray] | None = None,
    eval_pool: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Majority-vote accuracy of 'which factor was fixed' from the least-varying normalised latent.

    ``prune_threshold`` is on the latent **std** (0.05: disentanglement_lib study configs;
    disent uses 0). No active latent -> scores 0.
    ``sampling="pool"`` needs ``pool=(latents [N, D], classes [N, K])`` (and optionally a disjoint
    ``eval_pool`` for the eval votes; default: the same pool); ``n_variance`` is then the pool size
    and ``dataset``/``encode`` are not used.
    """
    if sampling not in SAMPLING:
        raise MetricError(f"FactorVAE score: unknown sampling {sampling!r}; choose one of {SAMPLING}")
    if min(n_train, n_eval) < 1 or batch_size < 2:
        raise MetricError("FactorVAE score: n_train, n_eval >= 1 and batch_size >= 2 are required")
    rng = np.random.default_rng(seed)
    if sampling == "pool":
        if pool is None:
            raise MetricError("FactorVAE score: sampling='pool' needs pool=(latents, classes)")
        train_pool = FactorPool(*pool)
        test_pool = FactorPool(*eval_pool) if eval_pool is not None else train_pool
        if test_pool.z.shape[1] != train_pool.z.shape[1] or test_pool.codes.shape[1] != train_pool.codes.shape[1]:
            raise MetricError("FactorVAE score: pool and eval_pool must have the same latents and factors")
        z = train_pool.z
        n_variance = train_pool.n
    else:
        if dataset is None or encode is None:
            raise MetricError("FactorVAE score: sampling='fresh' needs a dataset and an encode function")
        if n_variance < 2:
            raise MetricError("FactorVAE score: n_variance >= 2 is required")
        z = encode_classes(dataset, encode, dataset.sample_factors(n_variance, rng))
    global_var = z.var(axis=0, ddof=1)  # [D]
    active = np.sqrt(global_var) >= prune_threshold
    active &= global_var > 0
    settings = {
        "sampling": sampling,
        "n_train": n_train,
        "n_eval": n_eval,
        "n_variance": n_variance,
        "batch_size": batch_size,
        "prune_threshold_std": prune_threshold,
        "seed": seed,
    }
    if sampling == "pool":
        settings["pool"] = (
            f"votes drawn from {train_pool.n} (train) / {test_pool.n} (eval) already-encoded samples; "
            "approximation: votes reuse points, per-vote distribution = fresh for uniform factors"
        )
    if not active.any():
        return {
            "factorvae": 0.0,
            "train_accuracy": 0.0,
            "eval_accuracy": 0.0,
            "num_active_dims": 0,
            "active": active,
            "settings": settings,
        }
    if sampling == "pool":
        factors_idx = train_pool.varying()
        train_votes = _pool_votes(train_pool, factors_idx, n_train, batch_size, global_var, active, rng)
        eval_votes = _pool_votes(test_pool, factors_idx, n_eval, batch_size, global_var, active, rng)
    else:
        train_votes = _votes(dataset, encode, n_train, batch_size, global_var, active, rng)
        eval_votes = _votes(dataset, encode, n_eval, batch_size, global_var, active, rng)
    classifier = train_votes.argmax(axis=1)  # majority factor per dimension [D]
    train_acc = train_votes[np.arange(len(classifier)), classifier].sum() / train_votes.sum()
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
