"""One run spec: which model on which data, the model's own hyper-parameters, and the run's settings.

Why one: the Train page, the CLI, sweeps and the app's jobs each decided which fields belong to the
run (steps, batch size, learning rate, seed, device, precision) and which to the model. They all
build a ``RunSpec`` now (``TrainConfig`` and ``JobSpec`` extend it with where and how a run is
written), so that decision is made here once: a run-level key given among the model's options
(``--set lr=...``) moves to its field. The model's config on the card still holds steps, batch size
and lr (the models read them), so the card's format is unchanged.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field, fields
from typing import Any

from disviz.core.errors import TrainingError
from disviz.core.limits import EVAL_BYTES_PER_SAMPLE, MAX_EVAL_SAMPLES, check_count, check_seed
from disviz.data.base import DatasetInfo
from disviz.engine.build import build_model, model_config
from disviz.models.base import ModelConfig

__all__ = ["PRECISIONS", "RUN_FIELDS", "RunSpec", "check_eval_request", "check_model_request"]

#: model config fields that belong to the run: they may change when a run is resumed (lr only with
#: a fresh optimiser) and the Train page gives them their own inputs
RUN_FIELDS = ("steps", "batch_size", "lr")
PRECISIONS = ("auto", "bf16", "off")  # auto: bf16 autocast on CUDA, float32 elsewhere


@dataclass
class RunSpec:
    """What to train: ``model`` on ``dataset`` with the model's own options, and the run's settings.

    ``steps`` / ``batch_size`` / ``lr`` of None keep the model config's (the paper's) values.
    """

    model: str
    dataset: str
    _: KW_ONLY
    overrides: dict[str, Any] = field(default_factory=dict)  # the model's own hyper-parameters (config fields)
    # None: the model config's (paper) value; a string (--set steps=...) is cast by the model config
    steps: int | str | None = None
    batch_size: int | str | None = None
    lr: float | str | None = None
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"  # precision: one of PRECISIONS
    dataset_options: dict[str, Any] = field(default_factory=dict)
    dataset_path: str | None = None

    def __post_init__(self) -> None:
        own = dict(self.overrides)
        for key in RUN_FIELDS:  # --set steps=... is the run's steps; an explicit --steps wins over it
            value = own.pop(key, None)
            if value is not None and getattr(self, key) is None:
                setattr(self, key, value)  # a string (--set lr=...) is cast and checked with the model's config
        self.overrides = own

    def run_fields(self) -> dict[str, Any]:
        """This spec's ``RunSpec`` fields (dicts copied), to build another kind of ``RunSpec`` from it."""
        values = {f.name: getattr(self, f.name) for f in fields(RunSpec)}
        return {k: dict(v) if isinstance(v, dict) else v for k, v in values.items()}

    def config_overrides(self) -> dict[str, Any]:
        """The model config's overrides: the model's own options plus the run's steps, batch, lr."""
        run = {k: getattr(self, k) for k in RUN_FIELDS if getattr(self, k) is not None}
        return {**self.overrides, **run}

    def validate(self) -> None:
        """The run's own settings (the model's are checked by ``model_config``)."""
        check_seed(self.seed, "seed")
        for key in ("steps", "batch_size"):
            value = getattr(self, key)
            bad = not isinstance(value, int) or isinstance(value, bool) or value <= 0
            if value is not None and not isinstance(value, str) and bad:
                raise TrainingError(f"{key} must be a positive integer, got {value!r}")
        if self.amp not in PRECISIONS:
            raise TrainingError(f"amp must be auto, bf16 or off, got {self.amp!r}")

    def model_config(self, info: DatasetInfo) -> ModelConfig:
        """The model's config for this run: paper defaults for ``info`` and this spec's overrides."""
        return model_config(self.model, info, self.config_overrides())


def check_model_request(spec: RunSpec, info: DatasetInfo, batch_option: str = "--batch-size") -> ModelConfig:
    """What training a new model of ``spec`` would allocate, checked on a shapes-only probe (config
    values, parameter count, batch size against the memory budget); returns the checked config.
    Sweeps run it on every trial before anything starts."""
    spec.validate()
    config = spec.model_config(info)
    build_model(spec.model, config, info, meta=True, batch_option=batch_option)
    return config


def check_eval_request(n: object, seed: object, option: str = "--n", seed_option: str = "--seed") -> None:
    """What ``evaluate`` accepts, checked before anything is encoded (and by sweep specs before they
    start): 20 <= n <= MAX_EVAL_SAMPLES within the memory budget, and a seed every generator takes."""
    from disviz.core.errors import MetricError

    if isinstance(n, int) and not isinstance(n, bool) and 0 < n < 20:
        raise MetricError(f"evaluate needs {option} >= 20 samples (got {n}); the metrics are meaningless below that")
    # n encodings + n/2 test encodings
    check_count(n, option, maximum=MAX_EVAL_SAMPLES, bytes_each=1.5 * EVAL_BYTES_PER_SAMPLE, unit="samples")
    check_seed(seed, seed_option)
