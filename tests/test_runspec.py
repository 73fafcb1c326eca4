"""One run spec and one build_model: every front end builds the same object, run-level fields are
decided once, and a model is probed on the meta device before it is allocated."""

from __future__ import annotations

import pytest

from disviz.app.jobs import JobSpec
from disviz.core.errors import CheckpointError, TrainingError
from disviz.core.limits import LimitError
from disviz.data.base import DatasetInfo
from disviz.engine.build import build_model, model_config
from disviz.engine.runspec import RUN_FIELDS, RunSpec, check_model_request
from disviz.engine.train import TrainConfig
from disviz.sweeps.spec import Trial

INFO = DatasetInfo("dsprites", 1, ("shape", "scale"), (3, 6), True)


def test_run_level_options_leave_the_model_options_once():
    spec = RunSpec("betavae", "dsprites", overrides={"lr": "0.001", "beta": 2.0, "steps": 50})
    assert spec.overrides == {"beta": 2.0} and spec.lr == "0.001" and spec.steps == 50
    assert RunSpec("betavae", "dsprites", steps=7, overrides={"steps": 50}).steps == 7  # --steps wins over --set
    config = spec.model_config(INFO)
    assert (config.lr, config.beta, config.steps) == (0.001, 2.0, 50)
    assert set(RUN_FIELDS) == {"steps", "batch_size", "lr"}


def test_every_front_end_builds_a_run_spec():
    train = TrainConfig("betavae", "dsprites", "out", steps=3, overrides={"lr": 0.01})
    job = JobSpec("betavae", "dsprites", "run", steps=3, overrides={"lr": 0.01})
    trial = Trial("t", "betavae", "dsprites", 0, 3, None, {}, {"lr": 0.01}).run_spec()
    for spec in (train, job, trial):
        assert isinstance(spec, RunSpec)
        assert spec.config_overrides() == {"steps": 3, "lr": 0.01}
    assert TrainConfig(**job.run_fields(), out="out").run_fields() == job.run_fields()


def test_a_huge_config_is_refused_on_the_meta_device_before_anything_is_allocated():
    config = model_config("betavae", INFO, {"hidden": 2_000_000_000})
    with pytest.raises(LimitError, match="parameters"):
        build_model("betavae", config, INFO)
    with pytest.raises(CheckpointError, match="^ck: .*parameters"):  # the loader's error, with its path
        build_model("betavae", config, INFO, error=CheckpointError, where="ck: ")
    probe = build_model("betavae", model_config("betavae", INFO), INFO, meta=True)
    assert next(probe.parameters()).is_meta
    with pytest.raises(TrainingError, match="beta"):
        check_model_request(RunSpec("betavae", "dsprites", overrides={"beta": "big"}), INFO)
    with pytest.raises(TrainingError, match="unknown model 'torchscript'"):  # imported models are view-only
        model_config("torchscript", INFO)
