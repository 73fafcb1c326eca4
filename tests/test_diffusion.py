"""DiffusionTracker / nmi_diffusion: oracle encoders and record shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from disviz.data.base import GroundTruthDataset
from disviz.diagnostics.diffusion import DiffusionTracker, diffusion_curves
from disviz.metrics.nmi import nmi_diffusion


class Grid(GroundTruthDataset):
    """Two factors written as the intensity of two pixels, so an encoder can read them back."""

    name = "grid"
    factor_names = ["a", "b"]
    factor_sizes = (5, 4)
    channels = 1
    binary = True

    def __init__(self) -> None:
        self.factor_values = [np.arange(5), np.arange(4)]
        self.options = {}

    def _render(self, classes: np.ndarray) -> np.ndarray:
        out = np.zeros((len(classes), 64, 64, 1), np.uint8)
        out[:, 0, 0, 0] = classes[:, 0] * 50
        out[:, 0, 1, 0] = classes[:, 1] * 60
        return out


class Reader(nn.Module):
    """z = (pixel a, pixel b, noise) — a perfect, non-diffused code; stage() like DEFT."""

    def __init__(self, noise: bool = True):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.noise = noise
        self.seen_training = []

    def encode(self, x):
        self.seen_training.append(self.training)
        z = torch.stack([x[:, 0, 0, 0], x[:, 0, 0, 1]], 1) * self.w
        return torch.cat([z, torch.rand(len(x), 1)], 1)

    def stage(self, step):
        return step // 10


def test_perfect_encoder_nmi1_one_nmi2_zero_and_restores_train_mode():
    tracker = DiffusionTracker(Grid(), every=5, n=2000, seed=0)
    model = Reader().train()
    rec = tracker(model, 12)
    assert rec["nmi1"] == pytest.approx([1.0, 1.0], abs=0.01)
    assert max(rec["nmi2"]) < 0.05
    assert rec["stage"] == 1 and rec["step"] == 12 and tracker.name == "diffusion"
    assert model.seen_training and not any(model.seen_training) and model.training


def test_nmi1_ge_nmi2_in_unit_interval_for_a_diffused_code():
    rng = np.random.default_rng(0)
    c = rng.integers(0, 8, size=(3000, 2))
    z = np.stack([c[:, 0] + 0.8 * rng.normal(size=3000), c[:, 0] + 2 * rng.normal(size=3000), c[:, 1] + 0.0], 1)
    r = nmi_diffusion(z, c, [8, 8])
    assert np.all(r["nmi1"] >= r["nmi2"]) and np.all((r["nmi2"] >= 0) & (r["nmi1"] <= 1))
    assert 0.1 < r["nmi2"][0] < r["nmi1"][0] < 0.9  # factor 0 split over two latents
    assert r["nmi1"][1] == pytest.approx(1.0, abs=0.01)  # exact code; ln 8 vs empirical H


def test_diffusion_curves_arrays_and_stage_starts():
    recs = [
        {"step": s, "nmi1": [0.1 * i, 0.2], "nmi2": [0.0, 0.1], "mig": 0.1, "stage": s // 10}
        for i, s in enumerate([5, 10, 15, 20])
    ]
    cur = diffusion_curves(list(reversed(recs)))
    assert cur["step"].tolist() == [5, 10, 15, 20]
    assert cur["nmi1"].shape == (4, 2) and cur["stage_starts"].tolist() == [10, 20]


def test_tracker_on_real_betavae_and_devae_space_mig():
    from disviz.models import create_model

    ds = Grid()
    tracker = DiffusionTracker(ds, every=1, n=200)
    for name in ("betavae", "devae"):
        model = create_model(name, ds.info(), base_channels=4, hidden=16)
        rec = tracker(model, 0)
        assert len(rec["nmi1"]) == 2 and all(0 <= b <= a <= 1 for a, b in zip(rec["nmi1"], rec["nmi2"]))
        assert ("space_mig" in rec) == (name == "devae")
