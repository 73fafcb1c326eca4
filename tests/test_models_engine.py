"""Every model through the real engine on procedural dSprites: trains, writes a checkpoint that
loads back with the same outputs, and (DEFT) resumes with its stages intact."""

from __future__ import annotations

import pytest
import torch

from disviz.data import load_dataset
from disviz.engine.card import read_card
from disviz.engine.checkpoints import load_checkpoint
from disviz.engine.train import TrainConfig, train

SIX = ["ae", "betavae", "betatcvae", "qlae", "deft", "devae"]
TINY = {"base_channels": 4, "hidden": 16}


@pytest.mark.parametrize("name", SIX)
def test_model_trains_in_the_engine_and_loads_back(name, tmp_path):
    out = train(
        TrainConfig(name, "dsprites", tmp_path / name, steps=4, batch_size=8, device="cpu", log_every=2, overrides=TINY)
    )
    model, card = load_checkpoint(out)
    assert card.model == name and card.steps == 4 and card.config["base_channels"] == 4
    assert card.config["reduction"] in ("sum", "mean")
    assert all(v is None or v == v for v in card.history["loss"])  # finite, logged
    x = torch.from_numpy(load_dataset("dsprites").images([0, 1000, 5000])).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        z = model.encode(x)
        again, _ = load_checkpoint(out)
        assert torch.equal(z, again.encode(x))
    assert z.shape == (3, model.latent_dim) and len(model.latent_specs()) == model.latent_dim


def test_deft_resume_keeps_its_stage_schedule(tmp_path):
    cfg = dict(device="cpu", batch_size=8, log_every=2, overrides={**TINY, "schedule": "steps"})
    out = train(TrainConfig("deft", "dsprites", tmp_path / "d", steps=8, **cfg))  # 4 stages of 2 steps
    card = read_card(out)
    assert card["config"]["stage_steps"] == 2
    assert card["history"]["stage"] == [0, 1, 2, 3]
    assert card["history"]["beta"] == [70.0, 30.0, 12.0, 1.0]
    out = train(TrainConfig("deft", "dsprites", out, steps=12, resume=True, **cfg))
    card = read_card(out)
    assert card["steps"] == 12 and card["config"]["stage_steps"] == 2
    assert card["history"]["stage"][-2:] == [3, 3]


def test_deft_reference_schedule_resume_keeps_its_beta_curve(tmp_path):
    """β(t)'s T is fixed at build time (ref_steps = the first --steps): a resume with more steps
    continues the same curve, and the logged β is the continuous β(t), not a stage value."""
    cfg = dict(device="cpu", batch_size=8, log_every=2, overrides=TINY)
    out = train(TrainConfig("deft", "dsprites", tmp_path / "r", steps=40, **cfg))
    card = read_card(out)
    assert card["config"]["schedule"] == "reference" and card["config"]["ref_steps"] == 40
    betas = card["history"]["beta"]
    assert betas[0] < 150 and betas == sorted(betas, reverse=True) and betas[-1] == 1.0
    assert card["history"]["stage"][-1] == 4  # 5 stages: the β = 1 stage trains the fifth group
    out = train(TrainConfig("deft", "dsprites", out, steps=48, resume=True, **cfg))
    card = read_card(out)
    assert card["config"]["ref_steps"] == 40 and card["history"]["beta"][-1] == 1.0
