"""InfoMEC: InfoM (modularity), InfoC (compactness), InfoE (explicitness) (Hsu et al. 2023, docs/metrics.md#infomec).

Default variant: the standalone InfoMEC module the latent_quantization README recommends
(kNN with 10 neighbours; active if range > 0 for discrete, > max/20 for continuous; one-hot
InfoE inputs for discrete latents). InfoM and InfoC use the active latents only; InfoE's probe
reads all latents, as the reference module fits it. 'logging' and 'tripod' reproduce the other two codes.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from disviz.core.errors import MetricError
from disviz.metrics._util import check_inputs, entropies, label_encode, mutual_info_matrix

#: variant -> (n_neighbors, active rule, InfoE input mode)
VARIANTS: dict[str, dict[str, Any]] = {
    "module": {"n_neighbors": 10, "active": "module", "infoe_inputs": "by_discrete"},
    "logging": {"n_neighbors": 3, "active": "frac8", "infoe_inputs": "standardised"},
    "tripod": {"n_neighbors": 10, "active": "frac10", "infoe_inputs": "standardised"},
}


def auto_discrete(z: np.ndarray, max_values: int = 64) -> bool:
    """A representation is treated as discrete when every latent takes at most ``max_values`` values."""
    return all(len(np.unique(z[:, j])) <= max_values for j in range(z.shape[1]))


def nmi_matrix(z: np.ndarray, c: np.ndarray, discrete: bool, n_neighbors: int = 10, seed: int = 0) -> np.ndarray:
    """NMI[i, j] = I(s_i; z_j) / H(s_i), factors x latents [K, D]; c label-encoded [N, K]."""
    h = entropies(c)  # [K]
    if discrete:
        mi = mutual_info_matrix(label_encode(z), c).T  # [K, D]
    else:
        from sklearn.feature_selection import mutual_info_classif

        std = z.std(0)
        zs = (z - z.mean(0)) / np.where(std > 0, std, 1.0)
        mi = np.stack(
            [
                mutual_info_classif(zs, c[:, i], discrete_features=False, n_neighbors=n_neighbors, random_state=seed)
                for i in range(c.shape[1])
            ]
        )
    nmi = mi / h[:, None]
    return np.nan_to_num(nmi, nan=0.0)


def active_mask(z: np.ndarray, discrete: bool, rule: str = "module") -> np.ndarray:
    """Active latents from their range over the evaluation samples (docs/metrics.md#active-latents and #infomec-variants)."""
    rng = z.max(0) - z.min(0)
    top = rng.max() if rng.size else 0.0
    if rule == "module":
        return rng > 0 if discrete else rng > top / 20
    if rule == "frac8":
        return rng > top / 8
    if rule == "frac10":
        return rng > 0.1 * top
    raise MetricError(f"InfoMEC: unknown active rule {rule!r}")


def _infoe(z: np.ndarray, c: np.ndarray, one_hot: bool) -> tuple[float, np.ndarray]:
    """mean_i (H_null − H_pred) / H_null with an unregularised multinomial logistic probe, fit = score set.

    ``C=inf`` is sklearn >= 1.8's spelling of the reference ``penalty=None`` (deprecated there).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    if one_hot:
        codes = label_encode(z)
        x = np.concatenate([np.eye(int(codes[:, j].max()) + 1)[codes[:, j]] for j in range(codes.shape[1])], axis=1)
    else:
        std = z.std(0)
        x = (z - z.mean(0)) / np.where(std > 0, std, 1.0)
    per = []
    for i in range(c.shape[1]):
        y = c[:, i]
        labels = np.arange(int(y.max()) + 1)
        losses = []
        for inputs in (x, np.zeros((x.shape[0], 1))):
            clf = LogisticRegression(C=np.inf, solver="lbfgs", max_iter=100, tol=1e-4, class_weight="balanced")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf.fit(inputs, y)
            losses.append(log_loss(y, clf.predict_proba(inputs), labels=labels))
        h_pred, h_null = losses
        per.append((h_null - h_pred) / h_null if h_null > 0 else 0.0)
    per_arr = np.asarray(per)
    return float(per_arr.mean()), per_arr


def infomec(
    latents: np.ndarray,
    factors: np.ndarray,
    discrete: bool | None = None,
    variant: str = "module",
    seed: int = 0,
    n_neighbors: int | None = None,
) -> dict[str, Any]:
    """InfoM, InfoC, InfoE + the NMI matrix [K, D] and active mask [D].

    ``discrete=None`` decides from the data (every latent with <= 64 values -> discrete); pass
    True for QLAE. No active latent -> scores 0 and ``no_active_latent=True``; one active latent
    -> InfoC NaN (0/0).
    """
    if variant not in VARIANTS:
        raise MetricError(f"InfoMEC: unknown variant {variant!r}; choose one of {sorted(VARIANTS)}")
    z, c, keep = check_inputs(latents, factors, "InfoMEC", min_n=10)
    cfg = dict(VARIANTS[variant])
    if n_neighbors is not None:
        cfg["n_neighbors"] = int(n_neighbors)
    is_discrete = auto_discrete(z) if discrete is None else bool(discrete)
    active = active_mask(z, is_discrete, cfg["active"])
    settings = {
        "variant": variant,
        "discrete": is_discrete,
        "n_neighbors": cfg["n_neighbors"],
        "active_rule": cfg["active"],
        "infoe_inputs": "one-hot" if (is_discrete and cfg["infoe_inputs"] == "by_discrete") else "standardised",
        "infoe_probe": "LogisticRegression(C=inf i.e. penalty=None, lbfgs, max_iter=100, tol=1e-4, balanced), fit = score set",
        "infoe_latents": "all (reference module); InfoM/InfoC: active only",
        "n": int(z.shape[0]),
        "seed": seed,
    }
    nmi = np.zeros((c.shape[1], z.shape[1]))
    if not active.any():
        return {
            "infom": 0.0,
            "infoc": 0.0,
            "infoe": 0.0,
            "no_active_latent": True,
            "nmi": nmi,
            "active": active,
            "factors_used": keep,
            "settings": settings,
        }
    nmi[:, active] = nmi_matrix(z[:, active], c, is_discrete, cfg["n_neighbors"], seed)
    na = nmi[:, active]  # [K, A]
    n_s, n_a = na.shape
    with np.errstate(invalid="ignore", divide="ignore"):
        col = np.nan_to_num(na.max(0) / na.sum(0), nan=1.0 / n_s)  # a latent with no info counts as uniform
        row = np.nan_to_num(na.max(1) / na.sum(1), nan=1.0 / n_a)
    infom = (col.mean() - 1.0 / n_s) / (1.0 - 1.0 / n_s) if n_s > 1 else 1.0
    infoc = (row.mean() - 1.0 / n_a) / (1.0 - 1.0 / n_a) if n_a > 1 else float("nan")
    # InfoE's probe reads all latents, as in the reference module (docs/metrics.md#infomec): a latent below the
    # activity threshold can still carry information a linear probe uses
    infoe, per_factor_e = _infoe(z, c, settings["infoe_inputs"] == "one-hot")
    return {
        "infom": float(infom),
        "infoc": float(infoc),
        "infoe": infoe,
        "no_active_latent": False,
        "nmi": nmi,
        "active": active,
        "infoe_per_factor": per_factor_e,
        "factors_used": keep,
        "settings": settings,
    }
