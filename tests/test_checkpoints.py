"""Checkpoint folders: round trips, half precision, optimiser state, atomicity, validation, locks.

The tiny model and dataset defined here (a 2-factor "squares" grid and a 4-channel VAE) are
also used by tests/test_train.py, so the engine tests do not depend on the real models' speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from disviz.core import paths
from disviz.core.errors import CheckpointError, TrainingError
from disviz.data.base import BatchSampler, GroundTruthDataset
from disviz.engine import build
from disviz.engine import card as card_module
from disviz.engine.card import CARD_FILE, Card, load_card, read_card, update_card
from disviz.engine.checkpoints import (
    MODEL_FILE,
    checkpoint_summary,
    list_checkpoints,
    load_checkpoint,
    load_optimizer_state,
    save_checkpoint,
)
from disviz.engine.folders import checkpoint_lock
from disviz.models.base import DisentangledModel, ModelConfig, reconstruction_loss


# --- tiny stand-ins ------------------------------------------------------------------------------
class TinySquares(GroundTruthDataset):
    """6x6 positions of a 16-px white square on black: 36 images, 2 factors."""

    name = "tinysquares"
    factor_names = ["x", "y"]
    factor_sizes = (6, 6)
    factor_values = [np.arange(6), np.arange(6)]
    channels = 1
    binary = True

    def __init__(self, **options) -> None:
        self.options = dict(options)  # recorded only (resume must refuse changed options)

    def _render(self, classes: np.ndarray) -> np.ndarray:
        out = np.zeros((len(classes), 64, 64, 1), dtype=np.uint8)
        for i, (a, b) in enumerate(classes):
            out[i, 8 * b + 4 : 8 * b + 20, 8 * a + 4 : 8 * a + 20] = 255
        return out

    def batch_sampler(self, batch_size: int, device="cpu", seed: int = 0) -> BatchSampler:
        return BatchSampler(self, batch_size, device, seed)


@dataclass
class TinyConfig(ModelConfig):
    latent_dim: int = 3
    lr: float = 3e-3
    batch_size: int = 16
    steps: int = 40
    base_channels: int = 4
    hidden: int = 16
    nan_at: int = -1  # loss becomes NaN from this step on (NaN-guard tests)
    interrupt_at: int = -1  # train_step raises KeyboardInterrupt at this step (Ctrl-C tests)


class TinyVAE(DisentangledModel):
    name = "tinyvae"
    config_class = TinyConfig

    def __init__(self, config: TinyConfig, dataset_info) -> None:
        super().__init__(config, dataset_info)
        c, d, ch = config.base_channels, config.latent_dim, dataset_info.channels
        self.enc = nn.Sequential(
            nn.Conv2d(ch, c, 4, 4), nn.ReLU(), nn.Conv2d(c, c, 4, 4), nn.ReLU(), nn.Flatten(), nn.Linear(c * 16, 2 * d)
        )
        self.dec = nn.Sequential(
            nn.Linear(d, c * 16),
            nn.ReLU(),
            nn.Unflatten(1, (c, 4, 4)),
            nn.ConvTranspose2d(c, c, 4, 4),
            nn.ReLU(),
            nn.ConvTranspose2d(c, ch, 4, 4),
        )

    def _posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.enc(x).chunk(2, dim=1)  # [B, D] each
        return mu, logvar

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._posterior(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z)

    def kl_per_latent(self, x: torch.Tensor) -> torch.Tensor:
        mu, logvar = self._posterior(x)
        return (0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)).mean(0)

    def loss(self, x: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        mu, logvar = self._posterior(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        recon = reconstruction_loss(self.decode(z), x, "bernoulli").mean()
        kl = (0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)).sum(1).mean()
        loss = recon + kl
        if 0 <= self.config.nan_at <= step:
            loss = loss * float("nan")
        return {"loss": loss, "recon": recon, "kl": kl}

    def train_step(self, x, step, optimizers):
        if step == self.config.interrupt_at:
            raise KeyboardInterrupt
        return super().train_step(x, step, optimizers)


REGISTRY = {"tinyvae": TinyVAE}


def tiny_model(seed: int = 0, **overrides) -> TinyVAE:
    torch.manual_seed(seed)
    return TinyVAE(TinyConfig().replace(**overrides), TinySquares().info())


def tiny_card(model: TinyVAE, steps: int = 0) -> dict:
    return {
        "model": model.name,
        "config": model.config.to_dict(),
        "dataset": model.dataset_info.to_dict(),
        "seed": 0,
        "steps": steps,
        "history": {"step": [], "images_per_s": [], "stage": []},
        "tracks": {},
    }


@pytest.fixture(autouse=True)
def tiny_registry(monkeypatch):
    monkeypatch.setattr(build, "_model_registry", lambda: REGISTRY)


def batch(n: int = 8) -> torch.Tensor:
    images, _ = TinySquares().sample(n, np.random.default_rng(1))
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0  # [N, 1, 64, 64]


# --- round trips -----------------------------------------------------------------------------------
def test_save_load_is_bitwise_identical(tmp_path):
    model = tiny_model()
    x = batch()
    model.eval()
    with torch.no_grad():
        z, rec = model.encode(x), model.reconstruct(x)
    path = save_checkpoint(tmp_path / "ck", model, tiny_card(model, steps=7))
    assert sorted(p.name for p in path.iterdir()) == [CARD_FILE, MODEL_FILE]
    loaded, card = load_checkpoint(path)
    assert not loaded.training
    assert card.format == "disviz-checkpoint" and card.format_version == 1
    assert card.steps == 7 and "torch" in card.versions and card.created
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), z)
        assert torch.equal(loaded.reconstruct(x), rec)
    # never pickled: the weights are plain safetensors
    assert (path / MODEL_FILE).read_bytes()[:8] != b"\x80\x04\x95"


def test_half_precision_storage_loads_as_float32(tmp_path):
    model = tiny_model()
    full = save_checkpoint(tmp_path / "full", model, tiny_card(model))
    half = save_checkpoint(tmp_path / "half", model, tiny_card(model), dtype="float16")
    assert (half / MODEL_FILE).stat().st_size < 0.6 * (full / MODEL_FILE).stat().st_size
    loaded, card = load_checkpoint(half)
    assert card.storage_dtype == "float16"
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = batch()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), model.encode(x), atol=2e-2, rtol=1e-2)
    with pytest.raises(CheckpointError, match="storage dtype"):
        save_checkpoint(tmp_path / "bad", model, tiny_card(model), dtype="int8")


def test_optimizer_state_round_trip_continues_identically(tmp_path):
    x = batch(16)
    a = tiny_model()
    opt_a = a.configure_optimizers()
    for step in range(3):
        a.train_step(x, step, opt_a)
    rng = {"torch_cpu_rng": torch.get_rng_state()}
    save_checkpoint(tmp_path / "ck", a, tiny_card(a, 3), opt_a, extra_tensors=rng)
    b, _ = load_checkpoint(tmp_path / "ck")
    b.train()
    opt_b = b.configure_optimizers()
    extra = load_optimizer_state(tmp_path / "ck", opt_b)
    assert torch.equal(extra["torch_cpu_rng"], rng["torch_cpu_rng"])
    assert opt_b[0].state_dict()["param_groups"][0]["betas"] == (0.9, 0.999)
    torch.manual_seed(5)
    a.train_step(x, 3, opt_a)
    torch.manual_seed(5)
    b.train_step(x, 3, opt_b)
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), n
    # a different optimiser layout is refused
    with pytest.raises(CheckpointError, match="optimis"):
        load_optimizer_state(tmp_path / "ck", opt_b + opt_b)
    save_checkpoint(tmp_path / "noopt", a, tiny_card(a))
    with pytest.raises(CheckpointError, match="no optimiser state.*--reset-optimizer"):
        load_optimizer_state(tmp_path / "noopt", opt_b)


# --- atomicity ---------------------------------------------------------------------------------------
def test_failed_save_keeps_previous_checkpoint_and_leaves_no_temp(tmp_path, monkeypatch):
    model = tiny_model()
    path = save_checkpoint(tmp_path / "ck", model, tiny_card(model, steps=1))
    (path / "notes.txt").write_text("keep me")
    before = (path / MODEL_FILE).read_bytes()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)

    def boom(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(card_module, "write_json", boom)  # the card, written after the weights
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, model, tiny_card(model, steps=2))
    monkeypatch.undo()
    monkeypatch.setattr(build, "_model_registry", lambda: REGISTRY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temp, no backup, no lock
    assert (path / MODEL_FILE).read_bytes() == before
    assert read_card(path)["steps"] == 1
    # a successful save replaces it and keeps foreign files
    save_checkpoint(path, model, tiny_card(model, steps=2))
    assert read_card(path)["steps"] == 2 and (path / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_crash_between_renames_is_recovered(tmp_path):
    model = tiny_model()
    path = save_checkpoint(tmp_path / "ck", model, tiny_card(model, steps=3))
    os.replace(path, tmp_path / ".ck.old-deadbeef")  # what a crash mid-swap leaves
    # while a writer holds the lock (a live save mid-swap) readers must not touch the backup
    holding, release = threading.Event(), threading.Event()

    def writer():
        with checkpoint_lock(path):
            holding.set()
            release.wait(10)

    t = threading.Thread(target=writer)
    t.start()
    holding.wait(10)
    try:
        with pytest.raises(CheckpointError, match="does not exist"):
            load_checkpoint(path)
        assert (tmp_path / ".ck.old-deadbeef").is_dir()
    finally:
        release.set()
        t.join()
    loaded, card = load_checkpoint(path)  # nobody writing: the crashed save is rolled back
    assert card.steps == 3 and path.is_dir()


# --- validation --------------------------------------------------------------------------------------
@pytest.fixture
def good(tmp_path) -> Path:
    model = tiny_model()
    return save_checkpoint(tmp_path / "good", model, tiny_card(model, steps=5))


def _edit_card(path: Path, **changes) -> None:
    card = json.loads((path / CARD_FILE).read_text())
    card.update(changes)
    (path / CARD_FILE).write_text(json.dumps(card))


def test_malformed_folders_are_refused_clearly(good, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        load_checkpoint(tmp_path / "afile")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no card.json"):
        load_checkpoint(tmp_path / "empty")

    (good / MODEL_FILE).rename(tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_checkpoint(good)
    (tmp_path / "w.safetensors").rename(good / MODEL_FILE)

    text = (good / CARD_FILE).read_text()
    (good / CARD_FILE).write_text(text[:-10])
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(good)
    (good / CARD_FILE).write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="JSON object"):
        load_checkpoint(good)
    (good / CARD_FILE).write_text(text)
    load_checkpoint(good)  # restored: loads again

    _edit_card(good, format="something-else")
    with pytest.raises(CheckpointError, match="not a disviz checkpoint"):
        load_checkpoint(good)
    _edit_card(good, format="disviz-checkpoint", format_version=2)
    with pytest.raises(CheckpointError, match="newer.*upgrade disviz"):
        load_checkpoint(good)
    _edit_card(good, format_version="1")
    with pytest.raises(CheckpointError, match="format_version"):
        load_checkpoint(good)
    _edit_card(good, format_version=1, model="mystery")
    with pytest.raises(CheckpointError, match="unknown model 'mystery'.*tinyvae"):
        load_checkpoint(good)
    config = json.loads(text)["config"]
    _edit_card(good, model="tinyvae", config={**config, "warp": 9})
    with pytest.raises(CheckpointError, match="warp"):
        load_checkpoint(good)
    _edit_card(good, config={**config, "latent_dim": 4})
    with pytest.raises(CheckpointError, match=r"'dec.0.weight' has shape \(64, 3\).*expects \(64, 4\)"):
        load_checkpoint(good)
    _edit_card(good, config=config, dataset={"name": "x"})
    with pytest.raises(CheckpointError, match="dataset"):
        load_checkpoint(good)


def test_wrong_tensor_names_and_corrupt_weights(good):
    from safetensors.torch import load_file, save_file

    state = load_file(str(good / MODEL_FILE))
    state["enc.9.weight"] = state.pop("enc.5.weight")
    save_file(state, str(good / MODEL_FILE))
    with pytest.raises(CheckpointError, match=r"missing \['enc.5.weight'\].*unexpected \['enc.9.weight'\]"):
        load_checkpoint(good)
    (good / MODEL_FILE).write_bytes(b"\x80\x04\x95 definitely a pickle")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(good)


# --- cards, listing, summary --------------------------------------------------------------------------
def test_update_card_list_and_summary(good, tmp_path):
    report = {"scores": {"infom": 0.4123, "infoe": 0.9, "mig": 0.2, "dci_disentanglement": 0.5}}
    card = update_card(good, metrics=report)
    assert read_card(good)["metrics"] == report == card.metrics.to_dict()
    assert not any(p.name.startswith(".") for p in good.iterdir())
    with pytest.raises(CheckpointError):
        update_card(good, format_version=3)
    line = checkpoint_summary(load_card(good))
    assert line == "tinyvae · tinysquares · 5 steps · InfoM 0.41 · InfoE 0.90 · MIG 0.20 · DCI-D 0.50"
    assert checkpoint_summary(Card()) == "? · ? · 0 steps"

    model = tiny_model()
    save_checkpoint(tmp_path / "runs" / "b", model, tiny_card(model))
    save_checkpoint(tmp_path / "runs" / "a" / "nested", model, tiny_card(model))
    (tmp_path / "runs" / ".a.tmp-1").mkdir()
    (tmp_path / "runs" / ".a.tmp-1" / CARD_FILE).write_text("{}")
    found = list_checkpoints([tmp_path / "runs", tmp_path / "missing"])
    assert found == [(tmp_path / "runs" / "a" / "nested").resolve(), (tmp_path / "runs" / "b").resolve()]
    assert list_checkpoints(str(good)) == [good.resolve()]


def test_default_roots_come_from_the_environment(good, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISVIZ_RUNS", raising=False)
    monkeypatch.setenv("DISVIZ_CHECKPOINTS", os.pathsep.join([str(good), "", str(tmp_path / "none")]))
    assert paths.checkpoint_roots() == [Path("checkpoints"), Path("runs"), good, tmp_path / "none"]
    assert list_checkpoints() == [good.resolve()]
    model = tiny_model()
    save_checkpoint(tmp_path / "runs" / "trained", model, tiny_card(model))  # the app's runs are found too
    assert list_checkpoints() == sorted([good.resolve(), (tmp_path / "runs" / "trained").resolve()])


# --- locking -------------------------------------------------------------------------------------------
def test_lock_refuses_second_writer_and_is_reentrant(tmp_path):
    path = tmp_path / "ck"
    model = tiny_model()
    errors: list[Exception] = []
    with checkpoint_lock(path) as lock:
        assert lock.exists() and json.loads(lock.read_text())["pid"] == os.getpid()
        with checkpoint_lock(path):  # same thread: re-entrant (the trainer saves inside its lock)
            save_checkpoint(path, model, tiny_card(model))

        def other():
            try:
                save_checkpoint(path, model, tiny_card(model))
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert lock.exists()
    assert len(errors) == 1 and isinstance(errors[0], TrainingError) and "another session" in str(errors[0])
    assert not lock.exists()
    update_card(path, note="free again")


def test_lock_held_by_other_process_and_stale_lock(tmp_path):
    path = tmp_path / "ck"
    lock = tmp_path / ".ck.lock"
    # a live process (a sleeping child) holds it
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        import socket

        lock.write_text(json.dumps({"pid": child.pid, "host": socket.gethostname(), "purpose": "train"}))
        with pytest.raises(TrainingError, match=f"locked by pid {child.pid}"):
            with checkpoint_lock(path):
                pass
    finally:
        child.kill()
        child.wait()
    # now the holder is dead: the stale lock is taken over
    with checkpoint_lock(path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_model_uses_real_registry_when_available(tmp_path, monkeypatch):
    """With the real model registry, a real model round-trips too (skipped until models land)."""
    models = pytest.importorskip("disviz.models")
    if not hasattr(models, "create_model"):
        pytest.skip("disviz.models.create_model not written yet")
    monkeypatch.setattr(build, "_model_registry", lambda: models.MODELS)
    info = TinySquares().info()
    torch.manual_seed(0)
    model = models.create_model("betavae", info, base_channels=4, hidden=16).eval()
    path = save_checkpoint(tmp_path / "real", model, {**tiny_card(model), "model": "betavae"})
    loaded, _ = load_checkpoint(path)
    x = batch(4)
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), model.encode(x))


def test_every_shipped_card_round_trips_exactly_through_the_typed_card():
    """Card.from_dict(...).to_dict() gives the file's JSON back, keys in the same order: the typed
    card changes how code reads a card, never what is on disk."""
    root = Path(__file__).resolve().parents[1] / "checkpoints"
    cards = sorted(root.rglob(CARD_FILE))
    assert cards
    for f in cards:
        raw = json.loads(f.read_text())
        assert json.dumps(Card.from_dict(raw).to_dict()) == json.dumps(raw), f


def test_the_typed_card_keeps_unknown_keys_and_values_of_the_wrong_type():
    raw = {"model": "x", "steps": 3, "metrics": "not a report", "train": {"segments": [{"from_step": 0}], "new": 1}}
    card = Card.from_dict(raw)
    assert card.metrics is None and card.extra["metrics"] == "not a report" and card.train.extra == {"new": 1}
    assert card.to_dict() == raw and dict(card) == raw
    card.drop("metrics")
    card.train.segments[0].to_step = 5
    assert card.to_dict() == {
        "model": "x",
        "steps": 3,
        "train": {"segments": [{"from_step": 0, "to_step": 5}], "new": 1},
    }
