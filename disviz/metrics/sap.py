"""SAP score (Kumar et al. 2018; disentanglement_lib form, docs/metrics.md#sap)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from disviz.core.errors import MetricError
from disviz.metrics._util import check_inputs, split


def sap(
    latents: np.ndarray,
    factors: np.ndarray,
    continuous_factors: bool = False,
    test_fraction: float = 1 / 3,
    seed: int = 0,
) -> dict[str, Any]:
    """SAP = mean_k (top1_k − top2_k) of the score matrix [D, K].

    Discrete factors (default): test accuracy of ``LinearSVC(C=0.01, class_weight="balanced")``
    on one latent at a time (train/test split of the samples). Continuous: squared Pearson
    correlation, 0 where the latent variance is < 1e-12.
    """
    z, c, keep = check_inputs(latents, factors, "SAP", min_n=4)
    d, k_count = z.shape[1], c.shape[1]
    if d < 2:
        raise MetricError("SAP needs at least 2 latents (it is a gap between the best two)")
    scores = np.zeros((d, k_count))
    settings: dict[str, Any] = {"continuous_factors": continuous_factors, "seed": seed}
    if continuous_factors:
        for j in range(d):
            for k in range(k_count):
                cov = np.cov(z[:, j], c[:, k], ddof=1)
                if cov[0, 0] > 1e-12 and cov[1, 1] > 0:
                    scores[j, k] = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1])
        settings["n"] = int(z.shape[0])
    else:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.svm import LinearSVC

        tr, te = split(z.shape[0], test_fraction, seed)
        settings.update(classifier="LinearSVC(C=0.01, class_weight='balanced')", n_train=len(tr), n_test=len(te))
        for k in range(k_count):
            y_tr, y_te = c[tr, k], c[te, k]
            for j in range(d):
                x_tr, x_te = z[tr, j : j + 1], z[te, j : j + 1]
                if len(np.unique(y_tr)) < 2:
                    scores[j, k] = float(np.mean(y_te == y_tr[0]))
                    continue
                clf = LinearSVC(C=0.01, class_weight="balanced")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    clf.fit(x_tr, y_tr)
                scores[j, k] = float(np.mean(clf.predict(x_te) == y_te))
    ranked = -np.sort(-scores, axis=0)
    gaps = ranked[0] - ranked[1]
    return {
        "sap": float(gaps.mean()),
        "per_factor": gaps,
        "score_matrix": scores,
        "factors_used": keep,
        "settings": settings,
    }
