"""IFP annealing test: extraction on synthetic curves, the batched run on a toy dataset, files."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from disviz.app.annealing_view import annealing_summary, recipe_comparison, recipe_twins
from disviz.core.errors import TrainingError, UserError
from disviz.data.base import GroundTruthDataset
from disviz.diagnostics.annealing import (
    AnnealConfig,
    AnnealingResultError,
    BatchedMLPVAE,
    _factor_model,
    _train,
    auto_beta_max,
    beta_schedule,
    check_result_path,
    deft_stage_comparison,
    find_ifp,
    ifp_density,
    linear_ifp,
    load_annealing_result,
    ordering_groups,
    recipe_out_path,
    run_annealing,
)


class Toy(GroundTruthDataset):
    """Factor 'big' moves a 24x24 block (many pixels); factor 'small' toggles a 2x2 dot."""

    name = "toy"
    factor_names = ["big", "small"]
    factor_sizes = (4, 2)
    channels = 1
    binary = True

    def __init__(self) -> None:
        self.factor_values = [np.arange(4), np.arange(2)]
        self.options = {}

    def _render(self, classes: np.ndarray) -> np.ndarray:
        out = np.zeros((len(classes), 64, 64, 1), np.uint8)
        for i, (b, s) in enumerate(classes):
            out[i, 4 + 10 * b : 28 + 10 * b, 4:28] = 255
            if s:
                out[i, 50:52, 50:52] = 255
        return out


def test_find_ifp_known_crossing_linear_interpolation():
    beta = np.linspace(70, 1, 691)  # step 0.1
    kl = np.where(beta < 20.0, (20.0 - beta) * 0.5, 0.0)  # crosses 0.1 at β = 19.8
    assert find_ifp(beta, kl, 0.1, window=1) == pytest.approx(19.8, abs=0.11)


def test_find_ifp_ignores_initial_kl_and_noise_spikes_after_smoothing():
    rng = np.random.default_rng(0)
    beta = beta_schedule(np.arange(4000), 4000)
    kl = np.where(beta < 10.0, 2.0, 0.0) + 0.02 * rng.random(4000)
    kl[:30] = 1.5  # random-init information, squeezed out at high β
    kl[rng.choice(np.nonzero(beta > 12)[0], 10, replace=False)] = 5.0  # isolated spikes
    ifp = find_ifp(beta, kl, 0.1, window=50)
    assert ifp == pytest.approx(10.0, rel=0.05)
    assert find_ifp(beta, kl, 0.1, window=1) > 12  # unsmoothed, a spike triggers early


def test_find_ifp_never_crossing_is_none():
    beta = np.linspace(70, 1, 500)
    assert find_ifp(beta, np.zeros(500), 0.1, 50) is None  # never rises
    assert find_ifp(beta, np.full(500, 3.0), 0.1, 50) is None  # never collapses


def test_find_ifp_frozen_at_start_after_warmup():
    beta = np.linspace(71, 1, 500)
    kl = np.full(500, 2.0)  # information present from the first annealing step
    assert find_ifp(beta, kl, 0.1, 50) is None  # without warm-up: could be the random initial encoder
    assert find_ifp(beta, kl, 0.1, 50, frozen_at_start=True) == 71.0  # after warm-up: froze at >= β(0)
    kl2 = np.where(beta < 30, 1.0, 0.0)
    assert find_ifp(beta, kl2, 0.1, 1, frozen_at_start=True) == pytest.approx(30.0, abs=0.2)
    kl3 = np.where(beta > 65, 0.5, kl2)  # warm-up not yet converged: initial KL decays, rises at 30
    assert find_ifp(beta, kl3, 0.1, 1, frozen_at_start=True) == pytest.approx(30.0, abs=0.2)
    assert find_ifp(beta, np.where(beta > 65, 0.5, 0.0), 0.1, 1, frozen_at_start=True) is None


def test_linear_ifp_oracles():
    """Two images differing in k pixels: the whitened covariance has the single eigenvalue k
    (Bernoulli: p = 1/2, variance 1/4 per differing pixel) and k/2 for L2 (× 2 curvature, ±1/2)."""
    a = np.zeros((2, 64, 64, 1), np.uint8)
    a[1, :3, :5] = 255  # k = 15
    assert linear_ifp(a, binary=True) == pytest.approx(15.0)
    assert linear_ifp(a, binary=False) == pytest.approx(7.5)
    assert linear_ifp(a[:1], binary=True) == 0.0  # one image: nothing to encode
    # 2x2 pooling of a pixel-aligned 4x4 block keeps one pooled pixel per 4: k = 4 -> 1
    b = np.zeros((2, 64, 64, 1), np.uint8)
    b[1, :4, :4] = 255
    assert linear_ifp(b, True, pool=2) == pytest.approx(4.0)
    assert linear_ifp(np.repeat(a, 3, axis=3), binary=True) == pytest.approx(45.0)  # channels count as pixels


def test_ordering_groups_ties_indistinguishable_factors():
    rng = np.random.default_rng(0)
    groups = ordering_groups(
        {
            "posX": [30.0, 48.0, 36.0, 41.0, 44.0, 33.0, 39.0, 52.0],
            "posY": [47.0, 31.0, 40.0, 35.0, 50.0, 43.0, 38.0, 45.0],  # interleaved with posX
            "scale": list(15 + 2 * rng.standard_normal(8)),
            "shape": [1.0, 1.1, None, 1.2, 1.0, 1.05, 1.1, 1.0],
        }
    )
    assert [sorted(g) for g in groups] == [["posX", "posY"], ["scale"], ["shape"]]
    assert ordering_groups({"a": [3.0], "b": [1.0]}) == [["a", "b"]]  # one sample each: no evidence


def test_schedules():
    assert beta_schedule(0, 100) == pytest.approx(71.0)
    assert beta_schedule(100, 100, "exp", 70, 15) == pytest.approx(1 + 70 * np.exp(-15))
    assert beta_schedule(np.array([0, 50, 100]), 100, "linear").tolist() == [70.0, 35.0, 1.0]


def test_ifp_density_is_a_density_peaking_at_the_data():
    grid = np.linspace(0, 100, 2001)
    dens = ifp_density([30.0, 32.0, 31.0, None, float("nan")], grid)
    assert np.trapezoid(dens, grid) == pytest.approx(1.0, abs=1e-3)
    assert 29 < grid[dens.argmax()] < 33
    assert not ifp_density([], grid).any()


def test_big_factor_freezes_at_higher_beta_and_file_round_trip(tmp_path):
    out = tmp_path / "res.json"
    res = run_annealing(
        Toy(),
        bases=2,
        steps=1200,  # 400 is too short: the decoder is still learning the mean image, the KL is transient
        seed=0,
        out=out,
        gamma=8.0,
        window=20,
    )  # default arch and sizes (batched MLP, hidden 64, lr 2e-3, warm-up T/8, full batch, 64×64, auto β start)
    big, small = res["factors"]["big"], res["factors"]["small"]
    # at 64×64 the 24×24 block's bound (≈ 790) is far above the reference start 1 + 70: the start is raised
    assert res["settings"]["beta_max"] == 1000.0 and "raised" in res["settings"]["beta_max_note"]
    assert res["settings"]["scale"].startswith("64×64, Bernoulli summed over 4,096")
    assert big["median"] is not None and big["median"] > 70
    assert small["median"] is None or big["median"] > small["median"]
    assert res["ordering"][0] == "big"
    bound = {f: res["factors"][f]["linear_median"] for f in ("big", "small")}
    assert bound["big"] > 10 * bound["small"]  # 24x24 block vs 2x2 dot
    assert big["median"] <= 1.1 * max(r["linear_ifp"] for r in res["runs"] if r["factor"] == "big")
    loaded = load_annealing_result(out)
    assert loaded["factors"]["big"]["ifps"] == pytest.approx(big["ifps"])
    assert len(loaded["runs"]) == 4 and len(loaded["runs"][0]["beta"]) == len(loaded["runs"][0]["kl"])


def test_stopped_run_writes_nothing(tmp_path):
    stop = threading.Event()
    out = tmp_path / "res.json"

    def progress(frac: float, msg: str) -> None:
        if frac > 0.3:
            stop.set()

    res = run_annealing(Toy(), bases=1, steps=50, out=out, progress=progress, stop_event=stop, hidden=4)
    assert res is None and list(tmp_path.iterdir()) == []


def test_malformed_files_give_clear_errors(tmp_path):
    p = tmp_path / "x.json"
    with pytest.raises(AnnealingResultError, match="no such"):
        load_annealing_result(p)
    p.write_text("{not json")
    with pytest.raises(AnnealingResultError, match="not valid JSON"):
        load_annealing_result(p)
    p.write_text(json.dumps({"format": "other"}))
    with pytest.raises(AnnealingResultError, match="not a disviz annealing"):
        load_annealing_result(p)
    good = {
        "format": "disviz-annealing",
        "format_version": 1,
        "settings": {},
        "threshold": 0.1,
        "factors": {},
        "runs": [{"factor": "a", "beta": [1.0, 2.0], "kl": [0.0], "ifp": None}],
    }
    p.write_text(json.dumps(good))
    with pytest.raises(AnnealingResultError, match="run 0"):
        load_annealing_result(p)


def test_unknown_factor_is_a_dataset_error():
    from disviz.core.errors import DatasetError

    with pytest.raises(DatasetError, match="unknown factor"):
        run_annealing(Toy(), factors=["nope"], steps=10)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_batched_runs_are_independent(arch):
    """Changing one run's images leaves every other run's KL/recon curve unchanged (both archs, full
    batch with runs of different lengths: grouped bmm for mlp, padding + mask for conv)."""
    rng = np.random.default_rng(0)
    sweeps = [(rng.random((n, 64, 64, 1)) > 0.7).astype(np.uint8) * 255 for n in (4, 4, 2, 3)]
    changed = [s.copy() for s in sweeps]
    changed[2] = 255 - changed[2]
    cfg = AnnealConfig(steps=25, arch=arch, hidden=8, base_channels=2)
    cfg.validate()
    curves = []
    for data in (sweeps, changed):
        torch.manual_seed(0)
        model, step = _factor_model(data, cfg, 1, True, torch.device("cpu"))
        curves.append(_train(model, step, cfg, torch.device("cpu"), 0, None, None, "t"))
    a, b = curves
    for key in ("kl", "recon"):
        assert not np.allclose(a[key][:, 2], b[key][:, 2])
        keep = [0, 1, 3]
        np.testing.assert_allclose(a[key][:, keep], b[key][:, keep], rtol=1e-5, atol=1e-5)


def test_bad_arch_and_pool_are_training_errors():

    with pytest.raises(TrainingError, match="arch"):
        run_annealing(Toy(), steps=10, arch="rnn")
    with pytest.raises(TrainingError, match="pool"):
        run_annealing(Toy(), steps=10, arch="conv", pool=2)


def test_cli_set_overrides_are_typed_and_checked():
    cast = AnnealConfig.cast_overrides({"warmup": "0", "lr": "5e-4", "antithetic": "false", "stop_recon": "1"})
    assert cast == {"warmup": 0, "lr": 5e-4, "antithetic": False, "stop_recon": 1.0}
    with pytest.raises(TrainingError, match="no option 'foo'"):
        AnnealConfig.cast_overrides({"foo": "1"})
    with pytest.raises(TrainingError, match="expected float"):
        AnnealConfig.cast_overrides({"lr": "fast"})


def test_label_free_builds_its_vae_from_the_config(monkeypatch):
    """The label-free variant gets the same optimisation settings as the factor runs (it once
    silently used the class defaults), and reports per-latent IFPs and ΔKL/Δβ peaks."""
    seen = []
    real = BatchedMLPVAE.from_config.__func__

    def spy(cls, runs, pixels, cfg):
        seen.append((runs, cfg.latent_dim, cfg.activation, cfg.antithetic))
        return real(cls, runs, pixels, cfg)

    monkeypatch.setattr(BatchedMLPVAE, "from_config", classmethod(spy))
    res = run_annealing(Toy(), label_free=True, steps=60, latent_dim=2, hidden=8, activation="tanh", antithetic=False)
    assert seen == [(1, 2, "tanh", False)]
    assert res["mode"] == "label_free" and len(res["runs"]) == 2
    lf = res["label_free"]
    assert len(lf["beta"]) == len(lf["kl_total"]) == len(lf["dkl_dbeta"]) and len(lf["latent_ifps"]) == 2


def test_summary_rows_and_tie_text_come_from_the_result_file():
    result = {
        "factors": {
            "posX": {"ifps": [50.0, 60.0, None], "median": 55.0, "n": 3, "n_frozen": 2, "linear_median": 70.0},
            "posY": {"ifps": [52.0, 58.0], "median": 55.0, "n": 2, "n_frozen": 2, "linear_median": 71.0},
            "shape": {"ifps": [3.0], "median": 3.0, "n": 1, "n_frozen": 1},
        },
        "ordering": ["posX", "posY", "shape"],
        "ordering_groups": [["posX", "posY"], ["shape"]],
    }
    rows, text = annealing_summary(result)
    assert text == "{posX, posY} > shape"
    assert rows[0] == {
        "factor": "posX",
        "median IFP": 55.0,
        "IQR": "52.5–57.5",
        "froze": "2/3",
        "linear-response bound": 70.0,
    }
    assert rows[2]["linear-response bound"] is None
    del result["ordering_groups"]  # files from before tie groups: the median order
    assert annealing_summary(result)[1] == "posX > posY > shape"


def test_auto_beta_start_and_recipes():
    assert auto_beta_max([10.0, 40.0])[0] == 70.0  # within the reference start: unchanged
    start, note = auto_beta_max([30.0, 180.0, 354.0])
    assert start == 450.0 and "2 of 3 runs" in note and "354" in note
    ref = AnnealConfig.for_recipe("reference")
    assert (ref.lr, ref.batch_size, ref.warmup, ref.antithetic, ref.activation) == (5e-4, 64, 0, False, "relu")
    assert AnnealConfig.for_recipe("reference", lr=1e-3).lr == 1e-3  # explicit values win
    assert AnnealConfig.for_recipe().lr == 2e-3 and AnnealConfig().pool == 1
    with pytest.raises(TrainingError, match="recipe"):
        AnnealConfig.for_recipe("fast")
    res = run_annealing(Toy(), bases=1, steps=40, recipe="reference", hidden=4)
    assert res["settings"]["recipe"] == "reference" and res["settings"]["batch_size"] == 64
    assert res["settings"]["warmup"] == 0 and res["settings"]["beta_max"] == 1000.0


def _result(medians: dict[str, float], groups: list[list[str]], pool: int = 1) -> dict:
    return {
        "settings": {"pool": pool, "scale": "64×64, Bernoulli summed over 4,096 values"},
        "factors": {n: {"median": m, "ifps": [m]} for n, m in medians.items()},
        "ordering_groups": groups,
    }


def test_deft_stage_comparison_says_where_the_ifps_fall():
    th = (70.0, 30.0, 12.0, 1.0)
    good = deft_stage_comparison(
        _result({"posX": 90.0, "posY": 85.0, "scale": 50.0, "orientation": 20.0, "shape": 5.0},
                [["posX", "posY"], ["scale"], ["orientation"], ["shape"]]),
        th,
    )  # fmt: skip
    assert good["agree"] is True and good["stages"][0] == ["posX", "posY"] and good["stages"][3] == ["shape"]
    assert "separate" in good["text"] and "NOT" not in good["text"]
    bad = deft_stage_comparison(
        _result(
            {"posX": 300.0, "posY": 280.0, "scale": 150.0, "shape": 90.0}, [["posX", "posY"], ["scale"], ["shape"]]
        ),
        th,
    )
    assert bad["agree"] is False and bad["stages"][0] == ["posX", "posY", "scale", "shape"]
    assert "do NOT separate" in bad["text"] and "stage 1 (70 ≥ β > 30): no factor" in bad["text"]
    split = deft_stage_comparison(_result({"posX": 80.0, "posY": 60.0}, [["posX", "posY"]]), th)
    assert split["agree"] is False  # one tie group across two stages
    one_group = deft_stage_comparison(
        _result({"posX": 505.0, "shape": 518.0}, [["shape", "posX"]]), th
    )  # e.g. a recipe that measures the start-up transient: every factor tied near β(0)
    assert one_group["agree"] is None and "does not separate the factors at all" in one_group["text"]
    pooled = deft_stage_comparison(_result({"posX": 40.0}, [["posX"]], pool=2), th)
    assert pooled["comparable"] is False and pooled["agree"] is None and "not comparable" in pooled["text"]


def test_result_paths_are_checked_before_the_run(tmp_path):
    assert check_result_path(tmp_path / "new" / "r.json") == tmp_path / "new" / "r.json"
    with pytest.raises(UserError, match="is a folder"):
        check_result_path(tmp_path)
    with pytest.raises(UserError, match=r"ending in \.json"):
        check_result_path(tmp_path / "r.txt")
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        check_result_path(tmp_path / "f" / "r.json")
    assert recipe_out_path(tmp_path / "d.json", "reference") == tmp_path / "d_reference.json"
    assert recipe_out_path(tmp_path / "d.json", "equilibrium") == tmp_path / "d.json"


def test_recipe_twins_and_comparison_rows(tmp_path):
    files = [tmp_path / "d.json", tmp_path / "d_reference.json", tmp_path / "s.json"]
    assert recipe_twins(files[1], files) == {"equilibrium": files[0], "reference": files[1]}
    assert recipe_twins(files[2], files) == {"equilibrium": files[2]}
    eq = {"factors": {"posX": {"median": 100.0, "n": 8, "n_frozen": 8}}}
    ref = {"factors": {"posX": {"median": 50.0, "n": 8, "n_frozen": 6}}}
    rows = recipe_comparison({"equilibrium": eq, "reference": ref})
    assert rows == [
        {
            "factor": "posX",
            "median IFP (equilibrium)": 100.0,
            "froze (equilibrium)": "8/8",
            "median IFP (reference)": 50.0,
            "froze (reference)": "6/8",
            "reference / equilibrium": 0.5,
        }
    ]
