"""The training engine: losses fall, events, resume = uninterrupted run, NaN guard, stop, hooks, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_checkpoints import REGISTRY, TinyConfig, TinySquares, TinyVAE

from disviz import cli
from disviz.core.errors import TrainingError, UserError
from disviz.engine import build
from disviz.engine import train as engine
from disviz.engine.card import read_card, update_card
from disviz.engine.checkpoints import load_checkpoint
from disviz.engine.folders import checkpoint_lock
from disviz.engine.train import TrainConfig, TrainEvent, parse_key_values, speed_up_optimizers, train


@pytest.fixture(autouse=True)
def tiny_world(monkeypatch):
    """The engine builds the tiny model / dataset through its indirections."""
    monkeypatch.setattr(build, "_model_registry", lambda: REGISTRY)
    monkeypatch.setattr(engine, "_load_dataset", lambda name, path, options: TinySquares(**options))


def cfg(out: Path, **kw) -> TrainConfig:
    base = dict(model="tinyvae", dataset="tinysquares", out=out, steps=12, batch_size=8, device="cpu", log_every=2)
    base.update(kw)
    return TrainConfig(**base)


def run(c: TrainConfig, **kw) -> tuple[Path, list[TrainEvent]]:
    events: list[TrainEvent] = []
    path = train(c, callback=events.append, **kw)
    return path, events


def weights(path: Path) -> dict[str, torch.Tensor]:
    model, _ = load_checkpoint(path)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_training_lowers_the_loss_and_writes_a_full_card(tmp_path):
    out, events = run(cfg(tmp_path / "ck", steps=60, log_every=5, save_every=30))
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert kinds.count("step") == 12 and kinds.count("checkpoint") == 2
    steps = [e for e in events if e.kind == "step"]
    assert [e.step for e in steps] == list(range(5, 61, 5))
    assert all(set(e.losses) == {"loss", "recon", "kl"} and e.images_per_s > 0 for e in steps)
    assert len(steps[-1].data["kl_per_latent"]) == 3
    first, last = steps[0].losses["loss"], np.mean([e.losses["loss"] for e in steps[-3:]])
    assert last < 0.7 * first, (first, last)
    card = read_card(out)
    for key in (
        "format",
        "format_version",
        "model",
        "config",
        "dataset",
        "seed",
        "steps",
        "history",
        "tracks",
        "versions",
        "created",
        "train",
    ):
        assert key in card, key
    assert card["steps"] == 60 and card["config"]["steps"] == 60 and card["config"]["batch_size"] == 8
    assert card["dataset"]["name"] == "tinysquares"
    assert card["history"]["step"] == list(range(5, 61, 5))
    assert len(card["history"]["loss"]) == len(card["history"]["images_per_s"]) == 12
    assert card["train"]["device"] == "cpu" and card["train"]["batch_size"] == 8 and card["train"]["wall_time_s"] > 0
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # lock released, no temp


def test_seeded_runs_are_reproducible_on_cpu(tmp_path):
    a, _ = run(cfg(tmp_path / "a", steps=6))
    b, _ = run(cfg(tmp_path / "b", steps=6))
    c, _ = run(cfg(tmp_path / "c", steps=6, seed=1))
    wa, wb, wc = weights(a), weights(b), weights(c)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    straight, _ = run(cfg(tmp_path / "straight", steps=12, save_every=6))
    part, _ = run(cfg(tmp_path / "part", steps=6))
    assert read_card(part)["steps"] == 6
    with pytest.raises(TrainingError, match="already holds a checkpoint.*--resume"):
        run(cfg(part, steps=12))
    with pytest.raises(
        TrainingError, match=r"cannot change \['lr'\].*lr may change with a fresh optimiser \(--reset-optimizer\)"
    ):
        run(cfg(part, steps=12, resume=True, overrides={"lr": 0.1}))
    with pytest.raises(TrainingError, match="dataset options"):
        run(cfg(part, steps=12, resume=True, dataset_options={"noise": "0.1"}))
    resumed, events = run(cfg(part, steps=12, resume=True))
    assert events[0].kind == "start" and events[0].step == 6 and events[0].data["resumed"]
    assert [e.step for e in events if e.kind == "step"] == [8, 10, 12]
    ca, cb = read_card(straight), read_card(resumed)
    assert cb["steps"] == 12 and cb["history"]["step"] == ca["history"]["step"]
    assert cb["history"]["loss"] == ca["history"]["loss"]  # same data, same RNG, same optimiser state
    wa, wb = weights(straight), weights(resumed)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # nothing left to do
    _, events = run(cfg(part, steps=12, resume=True))
    assert events[-1].kind == "done" and "already trained" in events[-1].message


def test_weights_only_checkpoint_continues_with_a_fresh_optimiser_and_the_card_says_so(tmp_path):
    """A shipped (weights-only) folder in a fresh clone: --resume refuses and names --reset-optimizer,
    which continues from the weights; segments, resets and images seen are on the card."""
    out, _ = run(cfg(tmp_path / "ck", steps=6))
    for name in ("optimizer.safetensors", "optimizer.json"):
        (out / name).unlink()
    with pytest.raises(UserError, match="--reset-optimizer"):
        run(cfg(out, steps=10, resume=True))
    with pytest.raises(TrainingError, match="needs resume"):
        run(cfg(out, steps=10, reset_optimizer=True))
    before = weights(out)
    resumed, events = run(cfg(out, steps=10, resume=True, reset_optimizer=True, batch_size=4))
    assert events[0].step == 6 and [e.step for e in events if e.kind == "step"] == [8, 10]
    card = read_card(resumed)
    train_info = card["train"]
    assert train_info["images_seen"] == 6 * 8 + 4 * 4  # the first segment at batch 8, the second at 4
    segs = train_info["segments"]
    assert [(s["from_step"], s["to_step"], s["optimizer"], s["batch_size"]) for s in segs] == [
        (0, 6, "fresh", 8),
        (6, 10, "fresh", 4),
    ]
    assert train_info["resumes"] == 1 and train_info["optimizer_resets"] == [6]
    assert segs[0]["amp"] == segs[1]["amp"] == "off"
    after = weights(resumed)
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained on from those weights
    assert segs[0]["lr"] == segs[1]["lr"] == TinyConfig().lr


def test_a_fresh_optimiser_may_change_the_learning_rate_and_the_segment_records_it(tmp_path):
    """lr is the new optimiser's setting: allowed with --reset-optimizer, used, and on the card."""
    out, _ = run(cfg(tmp_path / "ck", steps=6))
    card = read_card(out)
    del card["train"]["segments"][0]["lr"]  # a card written before segments recorded their rate
    update_card(out, train=card["train"])
    with pytest.raises(TrainingError, match=r"cannot change \['hidden'\]"):  # the model's shape may not
        run(cfg(out, steps=10, resume=True, reset_optimizer=True, overrides={"lr": 1e-9, "hidden": 3}))
    before = weights(out)
    slow, _ = run(cfg(out, steps=10, resume=True, reset_optimizer=True, overrides={"lr": 1e-9}))
    after = weights(slow)
    # Adam moves each weight by about lr per step: 4 steps at 1e-9 leave the weights where they were
    assert max((after[k] - before[k]).abs().max().item() for k in before) < 1e-6
    card = read_card(slow)
    assert card["config"]["lr"] == 1e-9
    assert [s["lr"] for s in card["train"]["segments"]] == [TinyConfig().lr, 1e-9]


def test_time_limit_stops_saves_and_resumes(tmp_path):
    out, events = run(cfg(tmp_path / "ck", steps=10_000, log_every=1, time_limit_s=0.3))
    assert events[-1].kind == "stopped"
    step = read_card(out)["steps"]
    assert 0 < step < 10_000
    with pytest.raises(TrainingError, match="time limit"):
        run(cfg(tmp_path / "x", time_limit_s=-1))
    resumed, events = run(cfg(out, steps=step + 4, resume=True))
    assert events[-1].kind == "done" and read_card(resumed)["steps"] == step + 4
    assert read_card(resumed)["train"]["segments"][-1]["optimizer"] == "restored"


def test_stop_at_ends_early_without_changing_the_config_total(tmp_path):
    out, events = run(cfg(tmp_path / "ck", steps=12, stop_at=6))
    card = read_card(out)
    assert card["steps"] == 6 and card["config"]["steps"] == 12 and events[-1].kind == "done"
    resumed, _ = run(cfg(out, steps=12, resume=True))  # the rest of the planned run
    assert read_card(resumed)["steps"] == 12
    straight, _ = run(cfg(tmp_path / "straight", steps=12))
    wa, wb = weights(straight), weights(resumed)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # stopping part-way changes nothing
    with pytest.raises(TrainingError, match="stop-at"):
        run(cfg(tmp_path / "x", stop_at=0))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "ck"
    events: list[TrainEvent] = []
    with pytest.raises(TrainingError, match=r"diverged.*'loss'.*last good checkpoint \(step 4\)"):
        train(cfg(out, steps=20, save_every=4, log_every=1, overrides={"nan_at": 6}), callback=events.append)
    assert events[-1].kind == "error" and "diverged" in events[-1].message
    assert [e.step for e in events if e.kind == "checkpoint"] == [4]
    card = read_card(out)
    assert card["steps"] == 4 and len(card["history"]["step"]) == 4
    model, _ = load_checkpoint(out)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not (tmp_path / ".ck.lock").exists()


def test_nan_inside_a_log_window_is_never_saved(tmp_path):
    # NaN at step 5 (0-based), logged only every 4 steps, save at 8: the window sum catches it
    with pytest.raises(TrainingError, match="between steps 5 and 8.*no checkpoint was written"):
        run(cfg(tmp_path / "ck", steps=20, save_every=8, log_every=4, overrides={"nan_at": 5}))
    assert not (tmp_path / "ck" / "card.json").exists()


def test_stop_event_and_ctrl_c_save_a_checkpoint(tmp_path):
    stop = threading.Event()
    events: list[TrainEvent] = []

    def cb(ev: TrainEvent) -> None:
        events.append(ev)
        if ev.kind == "step" and ev.step == 4:
            stop.set()

    out = train(cfg(tmp_path / "a", steps=50, log_every=2), callback=cb, stop_event=stop)
    assert events[-1].kind == "stopped" and "--resume" in events[-1].message
    assert read_card(out)["steps"] == 4 and events[-2].kind == "checkpoint"

    out, events = run(cfg(tmp_path / "b", steps=50, log_every=2, overrides={"interrupt_at": 3}))
    assert events[-1].kind == "stopped" and read_card(out)["steps"] == 3
    assert read_card(out)["history"]["step"] == [2, 3]


def test_hooks_run_every_n_steps_and_at_the_end(tmp_path):
    seen_modes: list[bool] = []

    class Probe:
        name = "probe"
        every = 3

        def __call__(self, model, step):
            seen_modes.append(model.training)
            with torch.no_grad():
                z = model.encode(torch.zeros(1, 1, 64, 64))
            return {"mean_abs_z": float(z.abs().mean()), "n": step}

    out, events = run(cfg(tmp_path / "ck", steps=7), hooks=[Probe()])
    tracks = read_card(out)["tracks"]["probe"]
    assert [r["step"] for r in tracks] == [3, 6, 7] and [r["n"] for r in tracks] == [3, 6, 7]
    assert seen_modes == [False, False, False]
    evals = [e for e in events if e.kind == "eval"]
    assert [e.step for e in evals] == [3, 6, 7] and evals[0].data["hook"] == "probe"


def test_track_diffusion_uses_the_diagnostics_hook(tmp_path, monkeypatch):
    import types

    calls: list[int] = []

    class FakeTracker:
        name = "diffusion"

        def __init__(self, dataset, every, n=1000):
            self.every = every
            assert isinstance(dataset, TinySquares)

        def __call__(self, model, step):
            calls.append(step)
            return {"nmi1": [0.1, 0.2]}

    monkeypatch.setitem(
        sys.modules, "disviz.diagnostics.diffusion", types.SimpleNamespace(DiffusionTracker=FakeTracker)
    )
    out, _ = run(cfg(tmp_path / "ck", steps=4, track_diffusion=2))
    assert calls == [2, 4] and read_card(out)["tracks"]["diffusion"][1] == {"nmi1": [0.1, 0.2], "step": 4}
    monkeypatch.setitem(sys.modules, "disviz.diagnostics.diffusion", None)  # import fails
    with pytest.raises(TrainingError, match="track-diffusion"):
        run(cfg(tmp_path / "ck2", steps=4, track_diffusion=2))


def test_busy_folder_and_bad_config_are_clear_errors(tmp_path):
    out = tmp_path / "ck"
    errors: list[Exception] = []
    holding, release = threading.Event(), threading.Event()

    def holder():
        with checkpoint_lock(out):
            holding.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    holding.wait(10)
    try:
        events: list[TrainEvent] = []
        with pytest.raises(TrainingError, match="being written by another session"):
            train(cfg(out), callback=events.append)
        assert events[-1].kind == "error"
    finally:
        release.set()
        t.join()
    for bad, match in (
        (dict(steps=0), "steps must be a positive"),
        (dict(log_every=-1), "log_every"),
        (dict(amp="fp8"), "amp"),
        (dict(optimizer_impl="magic"), "optimizer_impl"),
        (dict(overrides={"no_such": 1}), "no_such"),
        (dict(model="nope"), "unknown model 'nope'"),
    ):
        with pytest.raises(TrainingError, match=match):
            run(cfg(tmp_path / "bad", **bad))
    assert errors == []


def test_fused_optimizer_matches_the_default_one():
    torch.manual_seed(0)
    a = TinyVAE(TinyConfig(), TinySquares().info())
    b = TinyVAE(TinyConfig(), TinySquares().info())
    b.load_state_dict(a.state_dict())
    oa, ob = a.configure_optimizers(), b.configure_optimizers()
    assert speed_up_optimizers(ob, "auto", torch.device("cpu")) == "fused"
    assert ob[0].param_groups[0]["fused"] is True
    x = torch.rand(4, 1, 64, 64)
    for step in range(3):
        torch.manual_seed(step)
        a.train_step(x, step, oa)
        torch.manual_seed(step)
        b.train_step(x, step, ob)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, atol=1e-5, rtol=1e-4)
    assert speed_up_optimizers(a.configure_optimizers(), "default", torch.device("cpu")) == "default"


def test_parse_key_values():
    assert parse_key_values(["lr=0.001", "beta = 4"], "--set") == {"lr": "0.001", "beta": "4"}
    with pytest.raises(TrainingError, match="KEY=VALUE"):
        parse_key_values(["lr"], "--set")


def test_cli_train_with_progress_and_resume(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["train", "--model", "tinyvae", "--dataset", "tinysquares", "--steps", "6", "--batch-size", "4"]
    argv += ["--out", str(out), "--device", "cpu", "--save-every", "3", "--set", "lr=0.002"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    assert "6/6" in captured.err and "img/s" in captured.err and "checkpoint at step 3" in captured.err
    card = read_card(out)
    assert card["config"]["lr"] == 0.002 and card["steps"] == 6
    assert cli.main(argv) == 2  # exists, no --resume: one clear line
    assert "error:" in capsys.readouterr().err
    assert cli.main([*argv[:6], "9", *argv[7:], "--resume", "--no-progress"]) == 0
    assert read_card(out)["steps"] == 9
    assert cli.main([*argv, "--set", "oops"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def _real_stack_ready() -> bool:
    try:
        from disviz.data import load_dataset  # noqa: F401
        from disviz.models import create_model  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _real_stack_ready(), reason="real models / datasets not written yet")
def test_cli_end_to_end_with_real_model_and_dataset(tmp_path):
    out = tmp_path / "real"
    cmd = [sys.executable, "-m", "disviz", "train", "--model", "betavae", "--dataset", "dsprites", "--steps", "4"]
    cmd += ["--batch-size", "4", "--out", str(out), "--device", "cpu", "--set", "base_channels=4", "--set", "hidden=16"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    card = json.loads((out / "card.json").read_text())
    assert card["model"] == "betavae" and card["steps"] == 4 and card["dataset"]["name"] == "dsprites"
    assert np.isfinite(card["history"]["loss"]).all()


@pytest.mark.skipif(not _real_stack_ready(), reason="real models / datasets not written yet")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_cli_train_started_with_nohup_saves_and_exits_130_on_a_signal(tmp_path, sig):
    """A campaign run (``nohup ... &`` in a script inherits SIGINT ignored) stopped with ``kill`` keeps its steps."""
    out = tmp_path / "bg"
    cmd = [sys.executable, "-m", "disviz", "train", "--model", "betavae", "--dataset", "dsprites"]
    cmd += ["--steps", "100000", "--batch-size", "4", "--out", str(out), "--device", "cpu", "--save-every", "20"]
    cmd += ["--no-progress", "--set", "base_channels=4", "--set", "hidden=16"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ignore_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731  (what a background job inherits)
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True, preexec_fn=ignore_sigint)
    try:
        deadline = time.monotonic() + 120
        while not (out / "card.json").is_file() and time.monotonic() < deadline:  # step 20 saved: under way
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "stopped at step" in err and "--resume" in err
    card = read_card(out)
    assert card["steps"] >= 20 and card["train"]["images_seen"] == 4 * card["steps"], card["train"]
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name], list(out.iterdir())


def test_bench_prints_engine_and_plain_figures(capsys):
    argv = ["bench", "train", "--model", "tinyvae", "--dataset", "tinysquares", "--steps", "10", "--batch-size", "4"]
    assert cli.main([*argv, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "plain PyTorch loop" in out and "disviz engine" in out and "x plain" in out
    figures = [float(line.split()[-4].replace(",", "")) for line in out.splitlines() if "x plain" in line]
    assert len(figures) == 2 and all(f > 0 for f in figures)
    assert "channels_last=True" in out and "optimizer_impl=fused" in out


def _real_model_names() -> list[str]:
    if not _real_stack_ready():
        return []
    from disviz.models import model_names

    return list(model_names())


@pytest.mark.skipif(not _real_stack_ready(), reason="real models / datasets not written yet")
@pytest.mark.parametrize("name", _real_model_names())
def test_every_real_model_trains_saves_loads_and_resumes_exactly(tmp_path, monkeypatch, name):
    from disviz.data import load_dataset
    from disviz.models import MODELS

    monkeypatch.setattr(build, "_model_registry", lambda: MODELS)
    monkeypatch.setattr(engine, "_load_dataset", lambda n, path, options: load_dataset(n, path=path, **options))
    tiny = {"base_channels": "4", "hidden": "16"}
    if name == "deft":  # the β(t) schedule's T is fixed when the model is built: the same for both runs
        tiny.update(ref_steps="4", encoder_channels="4", encoder_hidden="16")
    batch = 10 if name == "did" else 4  # DiD splits a batch over its 5 critic steps
    kw = dict(model=name, dataset="dsprites", batch_size=batch, device="cpu", log_every=1, overrides=tiny, save_every=2)
    straight = train(TrainConfig(out=tmp_path / "a", steps=4, **kw))
    train(TrainConfig(out=tmp_path / "b", steps=2, **kw))
    resumed = train(TrainConfig(out=tmp_path / "b", steps=4, resume=True, **kw))
    ca, cb = read_card(straight), read_card(resumed)
    assert ca["steps"] == cb["steps"] == 4 and ca["history"]["loss"] == cb["history"]["loss"]
    assert all(np.isfinite(ca["history"]["loss"]))
    wa, wb = weights(straight), weights(resumed)
    assert all(torch.equal(wa[k], wb[k]) for k in wa), name
    model, _ = load_checkpoint(straight)
    x = torch.from_numpy(load_dataset("dsprites").sample(3, 0)[0]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        z = model.encode(x)
        again, _ = load_checkpoint(straight)
        assert torch.equal(again.encode(x), z) and z.shape == (3, model.latent_dim)


def test_pick_device_prefers_accelerators_and_checks_requests(monkeypatch):
    from disviz.core.device import pick_device
    from disviz.core.errors import UserError

    assert pick_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto").type in ("cpu", "mps")
    with pytest.raises(UserError, match="no CUDA GPU"):
        pick_device("cuda")
    with pytest.raises(UserError, match="unknown device 'banana'"):
        pick_device("banana")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device(None) == torch.device("cuda")
    assert pick_device("CUDA:0") == torch.device("cuda:0")
