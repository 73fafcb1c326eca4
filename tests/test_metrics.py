"""Oracle tests for every metric (docs/metrics.md#oracle-tests, disentanglement_lib *_test pattern)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from disviz.core.errors import MetricError
from disviz.metrics import betavae_score, completeness, dci, disentanglement, factorvae_score, infomec, mig, sap
from disviz.metrics._sampling import OracleSource

K = 10
SIZES = [10] * K
LN2_LN10 = math.log(2) / math.log(10)


def oracle(n: int, seed: int = 0) -> np.ndarray:
    """10 factors uniform on 10 values; the observation is the factor vector itself."""
    return np.random.default_rng(seed).integers(0, 10, size=(n, K))


@pytest.fixture(scope="module")
def c3k() -> np.ndarray:
    return oracle(3000)


# --- DCI: exact hand-made importance matrices ---------------------------------------------
def test_dci_exact_importance_matrices() -> None:
    diag = np.diag(5.0 * np.ones(5))
    assert disentanglement(diag) == pytest.approx(1.0, abs=1e-6)
    assert completeness(diag) == pytest.approx(1.0, abs=1e-6)
    zero = np.zeros((5, 5))
    assert disentanglement(zero) == pytest.approx(0.0, abs=1e-6)
    assert completeness(zero) == pytest.approx(0.0, abs=1e-6)
    codes2 = np.vstack([diag, diag])  # 10 codes x 5 factors
    assert disentanglement(codes2) == pytest.approx(1.0, abs=1e-6)
    assert completeness(codes2) == pytest.approx(1 - math.log(2) / math.log(10), abs=1e-6)
    factors2 = np.hstack([diag, diag])  # 5 codes x 10 factors
    assert disentanglement(factors2) == pytest.approx(1 - math.log(2) / math.log(10), abs=1e-6)
    assert completeness(factors2) == pytest.approx(1.0, abs=1e-6)
    two_rows = np.zeros((5, 5))
    two_rows[0, 0] = two_rows[1, 1] = 1.0
    assert disentanglement(two_rows) == pytest.approx(1.0, abs=1e-6)
    assert completeness(two_rows) == pytest.approx(1.0, abs=1e-6)


# --- MIG ------------------------------------------------------------------------------------
def test_mig_oracles(c3k: np.ndarray) -> None:
    z = c3k.astype(float)
    ident = mig(z, c3k, discretizer="identity")
    assert 0.9 <= ident["mig"] <= 1.0
    assert 0.9 <= mig(z, c3k)["mig"] <= 1.0  # histogram: 10 values in 20 bins are still exact
    assert mig(np.zeros_like(z), c3k)["mig"] <= 0.2
    assert mig(np.hstack([z, z]), c3k)["mig"] <= 0.1
    noise = np.random.default_rng(1).standard_normal((3000, K))
    assert mig(noise, c3k)["mig"] < 0.05
    perm = np.random.default_rng(2).permutation(K)
    assert mig(z[:, perm], c3k)["mig"] == pytest.approx(mig(z, c3k)["mig"], abs=1e-12)
    assert mig(0.01 * z, c3k)["mig"] == pytest.approx(mig(z, c3k)["mig"], abs=1e-12)
    assert np.asarray(ident["mutual_info"]).shape == (K, K)


# --- SAP ------------------------------------------------------------------------------------
def test_sap_oracles(c3k: np.ndarray) -> None:
    z = c3k.astype(float)
    assert 0.9 <= sap(z, c3k, continuous_factors=True)["sap"] <= 1.0
    assert sap(np.zeros_like(z), c3k)["sap"] <= 0.2
    assert sap(np.hstack([z, z]), c3k, continuous_factors=True)["sap"] <= 0.2
    discrete = sap(z[:1000, :4], c3k[:1000, :4])
    assert discrete["sap"] > 0.1  # one linear SVC per latent: the matching latent is best
    assert np.argmax(discrete["score_matrix"], axis=0).tolist() == list(range(4))
    perm = np.random.default_rng(3).permutation(K)
    assert sap(z[:, perm], c3k, continuous_factors=True)["sap"] == pytest.approx(
        sap(z, c3k, continuous_factors=True)["sap"], abs=1e-9
    )


# --- DCI with the real estimator -------------------------------------------------------------
def test_dci_oracles() -> None:
    c = oracle(1000)
    z = c.astype(float)
    ident = dci(z, c, n_estimators=10)
    assert 0.9 <= ident["disentanglement"] <= 1.0
    assert 0.9 <= ident["completeness"] <= 1.0
    assert ident["informativeness"] > 0.95
    dup = dci(np.hstack([z, z]), c, n_estimators=10)
    assert 0.9 <= dup["disentanglement"] <= 1.0
    assert abs(dup["completeness"] - (1 - LN2_LN10)) <= 0.1 or dup["completeness"] >= 1 - LN2_LN10
    c1k = oracle(1000, seed=5)
    rng = np.random.default_rng(6)
    shuffled = np.take_along_axis(c1k, rng.permuted(np.tile(np.arange(K), (1000, 1)), axis=1), axis=1)
    rnd = dci(shuffled.astype(float), c1k, n_estimators=10)
    assert rnd["disentanglement"] <= 0.2 and rnd["completeness"] <= 0.2
    perm = rng.permutation(K)
    permuted = dci(z[:, perm], c, n_estimators=10)
    assert permuted["disentanglement"] == pytest.approx(ident["disentanglement"], abs=0.03)
    assert np.asarray(permuted["importance"]).shape == (K, K)


def test_dci_gbt_reference_runs() -> None:
    c = oracle(300)[:, :3] % 3
    out = dci(c.astype(float), c, estimator="gbt")
    assert out["settings"]["estimator"] == "gbt"
    assert out["disentanglement"] > 0.9


# --- InfoMEC --------------------------------------------------------------------------------
def balanced_oracle() -> np.ndarray:
    """121 samples of 10 factors on 11 values where every factor pair is exactly uniform.

    Orthogonal array over Z_11: rows (a, b), column m = a + m*b mod 11. The plug-in MI between
    two distinct factors is then exactly 0, so the values in docs/metrics.md#oracle-tests hold exactly
    (on random samples the plug-in bias (V-1)^2/2N leaks a little NMI to every pair).
    """
    a, b = np.meshgrid(np.arange(11), np.arange(11), indexing="ij")
    return np.stack([(a.ravel() + m * b.ravel()) % 11 for m in range(K)], axis=1)


def test_infomec_discrete_identity_and_duplicate_exact(c3k: np.ndarray) -> None:
    assert infomec(c3k.astype(float), c3k, discrete=True)["infom"] >= 0.9  # random sample: bias only
    c = balanced_oracle()
    z = c.astype(float)
    ident = infomec(z, c, discrete=True)
    assert ident["infom"] == pytest.approx(1.0, abs=1e-9)
    assert ident["infoc"] == pytest.approx(1.0, abs=1e-9)
    assert ident["infoe"] >= 0.95
    dup = infomec(np.hstack([z, z]), c, discrete=True)
    assert dup["infom"] == pytest.approx(1.0, abs=1e-9)
    assert dup["infoc"] == pytest.approx((K - 1) / (2 * K - 1), abs=1e-9)


def test_infomec_continuous_oracles() -> None:
    c = oracle(1000)
    z = c + 0.05 * np.random.default_rng(0).standard_normal(c.shape)
    ident = infomec(z, c, discrete=False)
    assert ident["infom"] > 0.9 and ident["infoc"] > 0.9 and ident["infoe"] > 0.9
    scaled = infomec(0.01 * z, c, discrete=False)
    assert scaled["infom"] == pytest.approx(ident["infom"], abs=1e-6)  # standardised before kNN
    q, _ = np.linalg.qr(np.random.default_rng(2).standard_normal((K, K)))
    rotated = infomec((c - 4.5) @ q, c, discrete=False)
    assert rotated["infom"] < 0.5  # a rotated perfect code is no longer modular


def test_infomec_latent_permutation_unchanged() -> None:
    c = balanced_oracle()
    z = np.hstack([c, c[:, :3]]).astype(float)
    perm = np.random.default_rng(1).permutation(z.shape[1])
    a, b = infomec(z, c, discrete=True), infomec(z[:, perm], c, discrete=True)
    for key in ("infom", "infoc", "infoe"):
        assert a[key] == pytest.approx(b[key], abs=1e-6)


def test_infomec_constant_and_no_active() -> None:
    c = oracle(500)
    out = infomec(np.zeros((500, 4)), c)
    assert out["no_active_latent"] is True and out["infom"] == 0.0 and out["infoe"] == 0.0
    one = infomec(np.c_[c[:, 0].astype(float), np.zeros(500)], c, discrete=True)
    assert math.isnan(one["infoc"])  # n_a = 1: 0/0


def test_infoe_reads_all_latents_like_the_reference_module() -> None:
    """A latent below the activity threshold (range < max/20) is left out of InfoM/InfoC, but the
    reference module fits InfoE's probe on every latent, so the factor it encodes stays explicit."""
    c = np.random.default_rng(0).integers(0, 4, size=(800, 2))
    z = np.c_[10.0 * c[:, 0], 0.1 * c[:, 1]]  # latent 1 holds factor 1 at 1/100 of latent 0's range
    out = infomec(z, c, discrete=False)
    assert out["active"].tolist() == [True, False]
    assert out["infoe_per_factor"][1] > 0.9  # a probe on the active latents alone would give ≈ 0
    assert out["settings"]["infoe_latents"].startswith("all")


# --- FactorVAE / BetaVAE --------------------------------------------------------------------
def _src(mix: np.ndarray, noise: float = 0.0) -> OracleSource:
    return OracleSource(SIZES, mix, noise=noise, seed=0)


def test_factorvae_oracles() -> None:
    eye = np.eye(K)
    kw = {"n_train": 300, "n_eval": 200, "n_variance": 2000, "seed": 0}
    assert 0.9 <= factorvae_score(_src(eye), lambda o: o, **kw)["factorvae"] <= 1.0
    const = factorvae_score(_src(np.zeros((K, K))), lambda o: o, **kw)
    assert const["factorvae"] <= 0.2 and const["num_active_dims"] == 0
    assert factorvae_score(_src(0.01 * eye), lambda o: o, prune_threshold=0.05, **kw)["factorvae"] == 0.0
    dup = factorvae_score(_src(np.hstack([eye, eye])), lambda o: o, **kw)
    assert dup["factorvae"] >= 0.9  # the score does not penalise duplicated latents
    perm = np.random.default_rng(0).permutation(K)
    assert factorvae_score(_src(eye[:, perm]), lambda o: o, **kw)["factorvae"] >= 0.9


def test_betavae_oracles() -> None:
    eye = np.eye(K)
    kw = {"n_train": 400, "n_eval": 200, "seed": 0}
    assert 0.9 <= betavae_score(_src(eye), lambda o: o, **kw)["betavae"] <= 1.0
    const = betavae_score(_src(np.zeros((K, K))), lambda o: o, **kw)
    assert const["betavae"] <= 0.2
    q, _ = np.linalg.qr(np.random.default_rng(2).standard_normal((K, K)))
    assert betavae_score(_src(eye[:, ::-1]), lambda o: o, **kw)["betavae"] >= 0.9
    assert betavae_score(_src(q), lambda o: o, **kw)["betavae"] <= 1.0


# --- degenerate input -> MetricError, never a crash inside scikit-learn ------------------------
@pytest.mark.parametrize("fn", [mig, sap, dci, infomec])
def test_degenerate_inputs(fn) -> None:
    c = oracle(200)
    z = c.astype(float)
    bad = z.copy()
    bad[3, 2] = np.nan
    with pytest.raises(MetricError, match="NaN"):
        fn(bad, c)
    with pytest.raises(MetricError, match="shape|rows|\\[N, D\\]"):
        fn(z[:, 0], c)
    with pytest.raises(MetricError, match="rows"):
        fn(z[:100], c)
    with pytest.raises(MetricError, match="at least"):
        fn(z[:1], c[:1])
    with pytest.raises(MetricError, match="constant"):
        fn(z, np.zeros_like(c))


def test_constant_factor_is_dropped() -> None:
    c = oracle(1000)
    c_with_const = np.c_[c, np.zeros(1000, dtype=int)]  # like dSprites' colour
    z = c.astype(float)
    out = mig(z, c_with_const)
    assert out["factors_used"] == list(range(K))
    assert out["mig"] == pytest.approx(mig(z, c)["mig"])


def _pools(mix: np.ndarray, noise: float = 0.0, n: int = 4000) -> dict:
    src = _src(mix, noise)
    rng = np.random.default_rng(5)
    c, ct = src.sample_factors(n, rng), src.sample_factors(n // 2, rng)
    return {"sampling": "pool", "pool": (src.images_from_factors(c), c), "eval_pool": (src.images_from_factors(ct), ct)}


def test_pool_draws_share_the_fixed_value_without_replacement() -> None:
    from disviz.metrics._sampling import FactorPool

    rng = np.random.default_rng(0)
    c = np.stack([rng.integers(0, 3, 500), rng.integers(0, 40, 500)], axis=1)  # factor 1: ~12 per value < 64
    pool = FactorPool(rng.standard_normal((500, 2)), c)
    ks = rng.integers(0, 2, 300)
    anchors = rng.integers(0, 500, 300)
    idx = pool.same_value(anchors, ks, 64, rng)  # [300, 64]
    assert np.all(c[idx, ks[:, None]] == c[anchors, ks][:, None])
    big = ks == 0  # ~167 members per value: no repeats
    assert all(len(set(row)) == 64 for row in idx[big])
    i1 = rng.integers(0, 500, (300, 64))
    i2 = pool.partner(i1, ks, rng)
    assert np.all(c[i1, ks[:, None]] == c[i2, ks[:, None]]) and np.all(i1 != i2)


def test_pool_sampling_agrees_with_fresh() -> None:
    """Pool votes approximate fresh ones: identity ≈ 1, constant ≈ 0, a noisy mix within a tolerance."""
    eye = np.eye(K)
    kw = {"n_train": 1000, "n_eval": 500}
    assert factorvae_score(None, None, **kw, **_pools(eye))["factorvae"] >= 0.9
    assert betavae_score(None, None, **kw, **_pools(eye))["betavae"] >= 0.9
    assert factorvae_score(None, None, **kw, **_pools(np.zeros((K, K))))["factorvae"] <= 0.2
    assert betavae_score(None, None, **kw, **_pools(np.zeros((K, K))))["betavae"] <= 0.2
    mix = eye + 0.6 * np.random.default_rng(1).standard_normal((K, K))
    for fn, key in ((factorvae_score, "factorvae"), (betavae_score, "betavae")):
        pool = fn(None, None, **kw, **_pools(mix, noise=2.0))
        fresh = fn(_src(mix, noise=2.0), lambda o: o, **kw, sampling="fresh")
        assert pool["settings"]["sampling"] == "pool" and fresh["settings"]["sampling"] == "fresh"
        assert 0.2 < fresh[key] < 0.95  # not saturated, so the comparison means something
        assert abs(pool[key] - fresh[key]) <= 0.1, (key, pool[key], fresh[key])
    with pytest.raises(MetricError, match="needs pool"):
        factorvae_score(None, None, sampling="pool")
    with pytest.raises(MetricError, match="unknown sampling"):
        betavae_score(None, None, sampling="bogus")
