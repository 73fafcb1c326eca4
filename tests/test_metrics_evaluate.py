"""evaluate() on a real (tiny) registry model and dSprites, and the evaluate CLI round trip."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from disviz.cli.evaluate import cmd_evaluate
from disviz.core.errors import MetricError
from disviz.data import load_dataset
from disviz.engine.card import read_card
from disviz.engine.checkpoints import save_checkpoint
from disviz.engine.evaluate import evaluate as evaluate_fn
from disviz.metrics import registry
from disviz.models import create_model

# small n: sklearn warns that many classes look like regression targets
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

SMALL = {
    "factorvae_train": 20,
    "factorvae_eval": 10,
    "factorvae_variance": 100,
    "betavae_train": 20,
    "betavae_eval": 10,
}


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    ds = load_dataset("dsprites")
    model = create_model("betavae", ds.info(), base_channels=4, hidden=16, latent_dim=4)
    return model, ds


def test_evaluate_report(setup) -> None:
    model, ds = setup
    seen: list[float] = []
    report = evaluate_fn(model, ds, n=120, seed=0, preset="fast", counts=SMALL, progress=lambda f, m: seen.append(f))
    json.dumps(report)  # JSON-able, no numpy leftovers
    assert report["settings"]["intervention_sampling"] == "pool"  # the default: votes from the encodings
    assert report["details"]["factorvae"]["settings"]["n_variance"] == 120  # global variance from the n pool
    scores = report["scores"]
    for key in (
        "infom",
        "infoe",
        "dci_disentanglement",
        "mig",
        "sap",
        "factorvae",
        "betavae",
        "reconstruction",
        "psnr",
    ):
        assert key in scores
    assert scores["reconstruction"] > 0 and scores["psnr"] > 0
    k_varying = sum(s > 1 for s in ds.info().factor_sizes)
    assert np.asarray(report["details"]["infomec"]["nmi"]).shape == (k_varying, 4)
    assert np.asarray(report["details"]["dci"]["importance"]).shape == (4, k_varying)
    assert report["settings"]["dci_estimator"] == "random_forest"
    assert report["versions"]["scikit-learn"]
    assert seen and seen[-1] == 1.0 and all(0 <= f <= 1 for f in seen)
    assert set(report["timings"]) >= {"encode", "infomec", "dci", "mig", "sap", "factorvae", "betavae"}


def test_evaluate_is_deterministic_and_validates(setup) -> None:
    model, ds = setup
    a = evaluate_fn(model, ds, n=40, seed=3, preset="fast", counts=SMALL)
    b = evaluate_fn(model, ds, n=40, seed=3, preset="fast", counts=SMALL)
    assert a["scores"] == b["scores"]
    with pytest.raises(MetricError, match="preset"):
        evaluate_fn(model, ds, n=40, preset="quick")
    with pytest.raises(MetricError, match="n >= 20"):
        evaluate_fn(model, ds, n=5)


def test_cmd_evaluate_stores_report(setup, tmp_path, monkeypatch, capsys) -> None:
    model, ds = setup
    card = {
        "model": model.name,
        "config": model.config.to_dict(),
        "dataset": ds.info().to_dict(),
        "seed": 0,
        "steps": 0,
        "history": {"step": [], "images_per_s": [], "stage": []},
        "tracks": {},
    }
    path = save_checkpoint(tmp_path / "ck", model, card)
    monkeypatch.setitem(registry.PRESETS, "fast", {**registry.PRESETS["fast"], **SMALL})
    args = argparse.Namespace(
        checkpoint=str(path),
        n=40,
        seed=0,
        preset="fast",
        json=True,
        no_store=False,
        device="cpu",
        data_path=None,
        data_option=[],
    )
    assert cmd_evaluate(args) == 0
    printed = json.loads(capsys.readouterr().out)
    stored = read_card(path)["metrics"]
    assert stored["scores"] == printed["scores"]
    assert stored["preset"] == "fast"
