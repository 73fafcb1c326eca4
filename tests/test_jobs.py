"""Background training jobs: progress snapshots, stop, duplicate outputs, bad names, errors.

Most tests run the real engine (disviz.engine.train.train) in the manager's worker thread with the tiny
4-channel VAE and 36-image dataset of test_checkpoints.py, so they do not depend on the speed of
the real models; one test runs a real registry model with tiny network overrides.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_checkpoints import REGISTRY, TinyConfig, TinySquares, TinyVAE

from disviz.app import jobs
from disviz.app.jobs import JobSpec, TrainingManager, get_manager, suggest_run_name, validate_run_name
from disviz.core import paths
from disviz.core.errors import TrainingError
from disviz.engine import build
from disviz.engine import train as engine
from disviz.engine.card import read_card
from disviz.engine.checkpoints import is_checkpoint
from disviz.engine.folders import checkpoint_lock


@pytest.fixture
def tiny_world(monkeypatch):
    """The engine builds the tiny model / dataset through its indirections."""
    monkeypatch.setattr(build, "_model_registry", lambda: REGISTRY)
    monkeypatch.setattr(engine, "_load_dataset", lambda name, path, options: TinySquares())


@pytest.fixture
def manager(tmp_path, tiny_world):
    m = TrainingManager(root=tmp_path / "runs", num_threads=1)
    yield m
    m.stop_all(timeout=30)  # no worker may outlive the monkeypatches


def spec(name: str = "run1", **kw) -> JobSpec:
    base = dict(model="tinyvae", dataset="tinysquares", run_name=name, steps=6, batch_size=8, device="cpu", log_every=2)
    base.update(kw)
    return JobSpec(**base)


def wait_until(predicate, timeout: float = 30.0) -> None:
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def test_job_runs_to_completion_and_snapshot_mirrors_the_card(manager, tmp_path):
    v0 = jobs.checkpoints_version()
    job_id = manager.start(spec(steps=6))
    first = manager.snapshot(job_id)
    assert first.status in ("queued", "running", "done")
    snap = manager.wait(job_id, timeout=60)
    assert snap.status == "done", snap.error
    assert snap.step == snap.total == 6 and snap.fraction == 1.0
    assert snap.history["step"] == [2, 4, 6]
    assert set(snap.losses) == {"loss", "recon", "kl"} and snap.images_per_s > 0
    assert len(snap.kl_per_latent) == 3 and [row[0] for row in snap.kl_history] == [2, 4, 6]
    assert snap.started is not None and snap.finished is not None and snap.finished >= snap.started
    out = tmp_path / "runs" / "run1"
    assert Path(snap.checkpoint) == out.absolute() and is_checkpoint(out)
    card = read_card(out)
    assert card["steps"] == 6
    # what the page plots is exactly what the engine logged into the card
    for key in ("step", "loss", "recon", "kl"):
        assert snap.history[key] == pytest.approx(card["history"][key])
    assert jobs.checkpoints_version() > v0
    assert snap.eta_s is None and "tinyvae" in snap.summary and "trained 6 steps" in snap.message


def test_snapshot_progresses_while_running_and_is_a_copy(manager):
    job_id = manager.start(spec(steps=100_000, log_every=1))
    wait_until(lambda: manager.snapshot(job_id).step >= 3)
    a = manager.snapshot(job_id)
    assert a.status == "running" and a.active and 0 < a.fraction < 1
    assert a.eta_s is not None and a.eta_s > 0
    a.history["step"].clear()  # a reader cannot corrupt the job's state
    wait_until(lambda: manager.snapshot(job_id).step > a.step + 2)
    b = manager.snapshot(job_id)
    assert b.history["step"][: len(b.history["step"])] == sorted(b.history["step"]) and len(b.history["step"]) > 3
    assert [s.id for s in manager.active_jobs()] == [job_id]
    manager.stop(job_id)
    assert manager.wait(job_id, timeout=60).status == "stopped"


def test_cpu_jobs_train_with_one_torch_thread(tmp_path, monkeypatch, tiny_world):
    """The worker keeps the UI responsive on small machines: its training steps use 1 torch thread."""
    import torch

    seen: list[int] = []

    class Recording(TinyVAE):
        def train_step(self, x, step, optimizers):
            seen.append(torch.get_num_threads())
            return super().train_step(x, step, optimizers)

    monkeypatch.setattr(build, "_model_registry", lambda: {"tinyvae": Recording})
    original = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        m = TrainingManager(root=tmp_path, num_threads=1)
        assert m.wait(m.start(spec("a", steps=4)), timeout=60).status == "done"
        assert seen == [1, 1, 1, 1]
        assert torch.get_num_threads() == 2  # the app's own threads are left alone
        seen.clear()
        m2 = TrainingManager(root=tmp_path, num_threads=None)
        assert m2._cpu_threads(spec()) is None
        assert m2.wait(m2.start(spec("b", steps=2)), timeout=60).status == "done"
        assert len(seen) == 2  # torch left alone: no thread limit applied
    finally:
        torch.set_num_threads(original)


def test_thread_limit_is_restored_after_the_last_overlapping_job():
    import torch

    from disviz.app.jobs import _limit_threads

    original = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with _limit_threads(1):
            with _limit_threads(1):
                assert torch.get_num_threads() == 1
            assert torch.get_num_threads() == 1  # the other job still runs
        assert torch.get_num_threads() == 3
        with _limit_threads(None):
            assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(original)


def test_stop_leaves_a_resumable_checkpoint(manager, tmp_path):
    job_id = manager.start(spec(steps=100_000, log_every=1))
    wait_until(lambda: manager.snapshot(job_id).step >= 2)
    manager.stop(job_id)
    snap = manager.wait(job_id, timeout=60)
    assert snap.status == "stopped" and "stopped at step" in snap.message
    assert 2 <= snap.step < 100_000
    out = tmp_path / "runs" / "run1"
    assert is_checkpoint(out) and read_card(out)["steps"] == snap.step
    assert manager.active_jobs() == []
    # the same name is refused without resume, and continues with it
    with pytest.raises(TrainingError, match="already exists.*resume"):
        manager.start(spec(steps=snap.step + 4))
    again = manager.wait(manager.start(spec(steps=snap.step + 4, resume=True)), timeout=60)
    assert again.status == "done", again.error
    assert read_card(out)["steps"] == snap.step + 4
    # a fresh optimiser may lower the learning rate; the card's last segment records it
    spec_lr = spec(steps=snap.step + 6, resume=True, reset_optimizer=True, overrides={"lr": 1e-4})
    third = manager.wait(manager.start(spec_lr), timeout=60)
    assert third.status == "done", third.error
    segs = read_card(out)["train"]["segments"]
    assert segs[-1]["optimizer"] == "fresh" and segs[-1]["lr"] == 1e-4 and segs[0]["lr"] != 1e-4


def test_second_job_on_the_same_output_is_refused(manager):
    job_id = manager.start(spec(steps=100_000))
    with pytest.raises(TrainingError, match="being trained right now"):
        manager.start(spec(steps=5))
    with pytest.raises(TrainingError, match="being trained right now"):
        manager.start(spec(steps=5, resume=True))  # resume is no way around it either
    other = manager.start(spec("run2", steps=4))  # another folder is fine
    assert manager.wait(other, timeout=60).status == "done"
    manager.stop(job_id)
    manager.wait(job_id, timeout=60)


def test_engine_lock_is_the_backstop_against_other_writers(manager, tmp_path):
    out = (tmp_path / "runs" / "locked").absolute()
    with checkpoint_lock(out, purpose="train"):  # e.g. a CLI run writing the same folder
        job_id = manager.start(spec("locked"))
        snap = manager.wait(job_id, timeout=60)
    assert snap.status == "error" and "locked" in snap.error
    assert not is_checkpoint(out)


def test_too_many_jobs_are_refused(tmp_path, tiny_world):
    m = TrainingManager(root=tmp_path / "runs", max_active=1)
    try:
        first = m.start(spec("a", steps=100_000))
        with pytest.raises(TrainingError, match="already running"):
            m.start(spec("b"))
        m.stop(first)
        m.wait(first, timeout=60)
        assert m.wait(m.start(spec("b", steps=2)), timeout=60).status == "done"
    finally:
        m.stop_all(timeout=30)


@pytest.mark.parametrize("bad", ["", "  ", "../escape", "a/b", ".hidden", "-dash", "x" * 65, "sp ace", "a..b", "é"])
def test_bad_run_names_are_refused(manager, bad):
    with pytest.raises(TrainingError, match="run name"):
        manager.start(spec(bad))
    assert manager.jobs() == []


@pytest.mark.parametrize("good", ["run1", "betavae-dsprites-2", "A_b.c", "9"])
def test_good_run_names_pass(good):
    assert validate_run_name(f" {good} ") == good


def test_resume_without_a_checkpoint_is_refused(manager):
    with pytest.raises(TrainingError, match="holds no checkpoint"):
        manager.start(spec("fresh", resume=True))


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"overrides": {"no_such_option": 1}}, "no_such_option"),
        ({"model": "nope"}, "unknown model 'nope'"),
        ({"overrides": {"lr": "fast"}}, "lr"),
        ({"device": "cuda:7" if not __import__("torch").cuda.is_available() else "warp"}, "device"),
    ],
)
def test_training_errors_show_as_status_error(manager, kw, needle, tmp_path):
    job_id = manager.start(spec("bad", **kw))
    snap = manager.wait(job_id, timeout=60)
    assert snap.status == "error" and not snap.active
    assert needle in snap.error
    assert snap.finished is not None and snap.checkpoint is None
    assert not is_checkpoint(tmp_path / "runs" / "bad")


def test_stop_before_start_and_unknown_jobs(manager):
    job_id = manager.start(spec(steps=100_000))
    manager.stop(job_id)
    snap = manager.wait(job_id, timeout=60)
    assert snap.status == "stopped" and snap.step < 100_000
    with pytest.raises(TrainingError, match="no training job"):
        manager.snapshot("job99-x")
    manager.forget(job_id)
    assert manager.jobs() == []


def test_runs_root_from_environment_and_name_suggestions(monkeypatch, tmp_path):
    monkeypatch.setenv("DISVIZ_RUNS", str(tmp_path / "elsewhere"))
    assert paths.runs_root() == tmp_path / "elsewhere"
    m = TrainingManager()
    assert m.out_path("x") == (tmp_path / "elsewhere" / "x").absolute()
    monkeypatch.delenv("DISVIZ_RUNS")
    assert paths.runs_root() == Path("runs")
    (tmp_path / "betavae-dsprites-1").mkdir()
    assert suggest_run_name("betavae", "dsprites", tmp_path) == "betavae-dsprites-2"
    assert suggest_run_name("betavae", "dsprites", tmp_path, taken=["betavae-dsprites-2"]) == "betavae-dsprites-3"
    assert get_manager() is get_manager()


def test_a_real_model_trains_in_the_background(tmp_path):
    """End to end with the real registries (tiny network overrides)."""
    models = pytest.importorskip("disviz.models")
    data = pytest.importorskip("disviz.data")
    if "betavae" not in getattr(models, "MODELS", {}) or "dsprites" not in data.dataset_names():
        pytest.skip("the betavae model / dsprites dataset are not registered yet")
    m = TrainingManager(root=tmp_path)
    try:
        job_id = m.start(
            JobSpec(
                model="betavae",
                dataset="dsprites",
                run_name="real",
                steps=5,
                batch_size=8,
                device="cpu",
                log_every=1,
                overrides={"base_channels": 4, "hidden": 16},
            )
        )
        snap = m.wait(job_id, timeout=120)
    finally:
        m.stop_all(timeout=30)
    assert snap.status == "done", snap.error
    assert snap.history["step"] == [1, 2, 3, 4, 5] and "loss" in snap.losses
    card = read_card(tmp_path / "real")
    assert card["model"] == "betavae" and card["config"]["base_channels"] == 4 and card["steps"] == 5


# --- the Train page (AppTest drives the real page script against the tiny world) -----------------
@pytest.fixture
def train_page(monkeypatch, tmp_path, tiny_world):
    """pages/train.py with a one-model registry, runs written under tmp_path, a fresh manager."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    import disviz.models as models_pkg

    monkeypatch.setattr(models_pkg, "model_names", lambda: ["tinyvae"], raising=False)
    monkeypatch.setenv("DISVIZ_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(jobs, "_manager", None)
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(str(Path(__file__).parent.parent / "pages" / "train.py"), default_timeout=30)
    yield at
    jobs.get_manager().stop_all(timeout=30)
    st.cache_resource.clear()


def test_train_page_builds_the_form_from_the_config_and_trains(train_page, tmp_path):
    at = train_page.run()
    assert not at.exception
    assert at.selectbox(key="train_model").options == ["tinyvae"]
    prefix = "train_tinyvae_dsprites"
    # every field of the model's config shows, with its default (the method's own knobs too)
    assert at.number_input(key=f"{prefix}_steps").value == TinyConfig.steps
    assert at.number_input(key=f"{prefix}_nan_at").value == -1
    assert at.text_input(key=f"{prefix}_lr").value == repr(TinyConfig.lr)
    assert at.text_input(key=f"{prefix}_run_name_0").value == "tinyvae-dsprites-1"
    assert any("No training job yet" in i.value for i in at.info)

    at.number_input(key=f"{prefix}_steps").set_value(6)
    at.number_input(key=f"{prefix}_batch").set_value(8)
    at.text_input(key=f"{prefix}_lr").set_value("0.002")
    at.button(key="train_start").click().run()
    assert not at.exception and not at.error
    job_id = at.session_state["train_job"]
    snap = jobs.get_manager().wait(job_id, timeout=60)
    assert snap.status == "done", snap.error
    # only what the user changed is sent; the learning rate is the run's own field (RUN_FIELDS)
    assert snap.spec["overrides"] == {} and snap.spec["lr"] == "0.002"
    card = read_card(tmp_path / "runs" / "tinyvae-dsprites-1")
    assert card["config"]["lr"] == 0.002 and card["steps"] == 6
    at.run()
    assert not at.exception
    assert any("Done" in s.value for s in at.success)
    assert at.session_state["train_job"] == job_id
    # the next suggested name is free again
    assert at.text_input(key=f"{prefix}_run_name_1").value == "tinyvae-dsprites-2"


def test_train_page_reports_bad_input_in_the_page(train_page, tmp_path):
    at = train_page.run()
    prefix = "train_tinyvae_dsprites"
    at.text_input(key=f"{prefix}_lr").set_value("fast")
    at.button(key="train_start").click().run()
    assert not at.exception
    assert any("Invalid option" in e.value and "lr" in e.value for e in at.error)
    assert jobs.get_manager().jobs() == []
    at.text_input(key=f"{prefix}_lr").set_value(repr(TinyConfig.lr))
    at.text_input(key=f"{prefix}_run_name_0").set_value("../etc")
    at.button(key="train_start").click().run()
    assert any("not allowed" in e.value for e in at.error)
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    at.text_input(key=f"{prefix}_run_name_0").set_value("taken")
    at.button(key="train_start").click().run()
    assert any("already exists" in e.value for e in at.error)
    assert jobs.get_manager().jobs() == []


def test_train_page_finds_a_running_job_after_a_reload_and_stops_it(train_page):
    mgr = jobs.get_manager()
    job_id = mgr.start(spec("from-another-tab", steps=100_000, log_every=1))
    wait_until(lambda: mgr.snapshot(job_id).step >= 2)
    at = train_page.run()  # a fresh session: nothing in session_state
    assert not at.exception
    assert at.session_state["train_job"] == job_id
    at.button(key=f"stop_{job_id}").click().run()
    snap = mgr.wait(job_id, timeout=60)
    assert snap.status == "stopped"
    at.run()
    assert any("Stopped" in w.value for w in at.warning)
