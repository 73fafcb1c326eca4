"""The training engine: one loop for every model, an event stream, atomic checkpoints, resume.

``train(cfg, callback, stop_event, hooks)`` is what the CLI (``python -m disviz train``) and the
app's training tab both run. The loop calls ``model.train_step(x, step, optimizers)`` so each
method keeps its own optimisation logic (DiD's critic steps, DEFT's stages, QLAE's clipping)
and the engine owns everything around it: device, seeding, data, speed, logging, hooks,
checkpoints, NaN guard, Ctrl-C / stop and resume.

Speed: no per-step host syncs, fused Adam, channels_last, bf16 autocast on CUDA, the datasets'
fast samplers; each is a ``TrainConfig`` switch, CPU runs stay float32 and bit-reproducible by
default, and ``python -m disviz bench train`` measures the engine against a plain PyTorch loop.
The choices, the measurements behind them and a fused-Adam resume pitfall:
docs/methods.md#training-engine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from disviz.core.device import pick_device
from disviz.core.errors import TrainingError, UserError
from disviz.core.limits import check_batch
from disviz.core.outputs import check_output
from disviz.engine.build import build_model, model_config
from disviz.engine.card import Card, Segment, TrainRecord, load_card
from disviz.engine.checkpoints import (
    check_not_foreign,
    checkpoint_lock,
    is_checkpoint,
    load_checkpoint,
    load_optimizer_state,
    save_checkpoint,
    versions,
)
from disviz.engine.runspec import RUN_FIELDS, RunSpec

__all__ = [
    "TrainConfig",
    "TrainEvent",
    "TrainHook",
    "engine_ips",
    "parse_key_values",
    "plain_loop_ips",
    "read_train_settings",
    "train",
]

EVENT_KINDS = ("start", "step", "eval", "checkpoint", "warning", "done", "stopped", "error")


@dataclass
class TrainConfig(RunSpec):
    """One training run: the run spec (model, data, hyper-parameters, steps, batch, lr, seed, device,
    precision) and where and how the engine writes it. ``steps`` / ``batch_size`` / ``lr`` default
    to the model config's (the paper's)."""

    out: str | os.PathLike[str]
    save_every: int = 1000
    log_every: int = 10
    track_diffusion: int = 0
    resume: bool = False
    # resume from a weights-only (shipped) checkpoint with a fresh optimiser; the card records the step
    reset_optimizer: bool = False
    # stop cleanly (save, exit code 130 like Ctrl-C) after this many seconds of this process; None: no limit
    time_limit_s: float | None = None
    # end this run at this step although the config's total (which fixes schedules such as DEFT's β(t))
    # is larger: reproduces a checkpoint that was shipped part-way through a long run
    stop_at: int | None = None
    # --- engine switches (docs/methods.md#training-engine: why these defaults) ---------------
    channels_last: bool | None = None  # None: auto (CUDA and CPU yes, MPS no)
    optimizer_impl: str = "auto"  # auto | fused | foreach | default
    compile: bool = False  # torch.compile the model's loss
    num_threads: int | None = None  # torch.set_num_threads for this run only
    save_dtype: str = "float32"  # weights storage: float32 | float16 | bfloat16
    save_optimizer: bool = True  # optimiser state for resume
    log_kl: bool = True  # per-latent KL of the last batch in 'step' events (VAEs)


@dataclass
class TrainEvent:
    """One message of the event stream consumed by the CLI progress bar and the app."""

    kind: str  # start | step | eval | warning | checkpoint | done | stopped | error
    step: int
    total: int
    losses: dict[str, float] = field(default_factory=dict)
    images_per_s: float = 0.0
    stage: int | None = None
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class TrainHook(Protocol):
    """Periodic evaluation: called every ``every`` steps and at the end with the model (eval mode)."""

    name: str
    every: int

    def __call__(self, model: torch.nn.Module, step: int) -> dict[str, Any]: ...


# --- indirections (tests swap these for tiny stand-ins) -----------------------------------------
def _load_dataset(name: str, path: str | None, options: dict[str, Any]) -> Any:
    from disviz.data import load_dataset

    return load_dataset(name, path=path, **options)


# --- helpers ------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) so a CPU run is reproducible."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _validate(cfg: TrainConfig) -> None:
    def positive(name: str, value: Any, allow_none: bool = False) -> None:
        if value is None and allow_none:
            return
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise TrainingError(f"{name} must be a positive integer, got {value!r}")

    cfg.validate()  # the run spec's own settings (seed, steps, batch size, lr, precision)
    positive("save_every", cfg.save_every)
    positive("log_every", cfg.log_every)
    if not isinstance(cfg.track_diffusion, int) or cfg.track_diffusion < 0:
        raise TrainingError(f"track_diffusion must be 0 (off) or a positive step interval, got {cfg.track_diffusion!r}")
    if cfg.optimizer_impl not in ("auto", "fused", "foreach", "default"):
        raise TrainingError(f"optimizer_impl must be auto, fused, foreach or default, got {cfg.optimizer_impl!r}")
    if cfg.time_limit_s is not None and not (isinstance(cfg.time_limit_s, (int, float)) and cfg.time_limit_s > 0):
        raise TrainingError(f"time limit must be a positive number of minutes, got {cfg.time_limit_s!r} s")
    if cfg.stop_at is not None and (not isinstance(cfg.stop_at, int) or cfg.stop_at < 1):
        raise TrainingError(f"stop-at must be a positive step, got {cfg.stop_at!r}")
    if cfg.reset_optimizer and not cfg.resume:
        raise TrainingError("reset_optimizer continues an existing checkpoint: it needs resume=True")
    if cfg.save_dtype not in ("float32", "float16", "bfloat16"):
        raise TrainingError(f"save_dtype must be float32, float16 or bfloat16, got {cfg.save_dtype!r}")
    if not str(cfg.out):
        raise TrainingError("out (the checkpoint folder) must be given")
    check_output(cfg.out, "folder")  # before the lock and any work: read-only places, paths under a file
    check_not_foreign(cfg.out)  # weights without a disviz card: never replaced, not even with --resume


def speed_up_optimizers(optimizers: list[torch.optim.Optimizer], impl: str, device: torch.device) -> str:
    """Switch Adam/AdamW (in place, before any step) to the fused or foreach kernels.

    Returns the implementation actually used. Other optimiser types are left alone.
    """
    if impl == "default":
        return "default"
    want = "fused" if impl in ("auto", "fused") else "foreach"
    used = "default"
    for opt in optimizers:
        if type(opt) not in (torch.optim.Adam, torch.optim.AdamW) or opt.state:
            continue
        if any(g.get("differentiable") for g in opt.param_groups):
            continue
        if want == "fused":
            from torch.optim.optimizer import _device_dtype_check_for_fused

            try:
                for g in opt.param_groups:
                    for p in g["params"]:
                        _device_dtype_check_for_fused(p)
            except RuntimeError:
                continue
            for g in opt.param_groups:
                g["fused"], g["foreach"] = True, False
            opt.defaults["fused"], opt.defaults["foreach"] = True, False
            opt._step_supports_amp_scaling = True
        else:
            for g in opt.param_groups:
                g["fused"], g["foreach"] = False, True
            opt.defaults["fused"], opt.defaults["foreach"] = False, True
        used = want
    return used


def _autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager[Any]:
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _rng_tensors(device: torch.device) -> dict[str, torch.Tensor]:
    out = {"torch_cpu_rng": torch.get_rng_state()}
    if device.type == "cuda":
        out["torch_cuda_rng"] = torch.cuda.get_rng_state(device)
    return out


def _restore_rng(extra: dict[str, torch.Tensor], device: torch.device) -> None:
    if "torch_cpu_rng" in extra:
        torch.set_rng_state(extra["torch_cpu_rng"].to(torch.uint8))
    if device.type == "cuda" and "torch_cuda_rng" in extra:
        torch.cuda.set_rng_state(extra["torch_cuda_rng"].to(torch.uint8), device)


def make_sampler(dataset: Any, batch_size: int, device: torch.device, seed: int) -> Iterator[torch.Tensor]:
    """The dataset's own (fast) batch sampler, or the generic one from data/base.py."""
    factory = getattr(dataset, "batch_sampler", None)
    if callable(factory):
        return factory(batch_size, device, seed)
    from disviz.data.base import BatchSampler

    return BatchSampler(dataset, batch_size, device, seed)


def _dataset_path(dataset: Any, given: str | None) -> str | None:
    """The real file a dataset was read from (recorded in the card), if any."""
    for attr in ("path", "source_path", "file"):
        value = getattr(dataset, attr, None)
        if isinstance(value, (str, os.PathLike)) and str(value):
            return str(value)
    return given


class _NonFinite(Exception):
    pass


# --- the run ------------------------------------------------------------------------------------
class _Run:
    def __init__(
        self,
        cfg: TrainConfig,
        emit: Callable[[TrainEvent], None],
        stop_event: threading.Event | None,
        hooks: list[TrainHook],
    ):
        self.cfg = cfg
        self.emit = emit
        self.stop_event = stop_event
        self.hooks = list(hooks)
        self.out = Path(cfg.out)
        self.t_start = time.perf_counter()

    # setup ---------------------------------------------------------------------------------
    def setup(self) -> None:
        """Everything before step one, in an order that fixes the RNG streams (bit-exact resume)."""
        cfg = self.cfg
        self.device = pick_device(cfg.device)
        self.dataset = _load_dataset(cfg.dataset, cfg.dataset_path, dict(cfg.dataset_options))
        info = self.dataset.info()
        exists = is_checkpoint(self.out)
        if exists and not cfg.resume:
            raise TrainingError(
                f"{self.out} already holds a checkpoint; pass --resume to continue it, or choose another --out"
            )
        seed_everything(cfg.seed)
        overrides = cfg.config_overrides()
        self.resumed = bool(cfg.resume and exists)
        model = self._resume_model(info, overrides) if self.resumed else self._build_new_model(info, overrides)
        self._adopt_model(model, info)
        self._place_model()
        self._prepare_optimisation()
        self._open_segment()
        if cfg.compile:
            model.loss = torch.compile(model.loss)  # type: ignore[method-assign]
        self._attach_hooks()

    def _resume_model(self, info: Any, overrides: dict[str, Any]) -> torch.nn.Module:
        """The checkpoint in ``out``, refused unless model, dataset and options match; sets card and start.

        Only ``steps`` and ``batch_size`` may change on a resume: any other option would make the
        continued run a different experiment under the same card. With a fresh optimiser
        (``reset_optimizer``) ``lr`` may change too: it is a setting of the new optimiser, not of the
        model, and each segment records the rate it ran with (e.g. a lower-rate phase after a plateau).
        """
        cfg = self.cfg
        model, card = load_checkpoint(self.out, "cpu")
        if card.model != cfg.model:
            raise TrainingError(f"{self.out} holds a {card.model!r} model, not {cfg.model!r}; use --model {card.model}")
        if card.dataset_name != info.name:
            raise TrainingError(
                f"{self.out} was trained on {card.dataset_name!r}, not {info.name!r}; use --dataset {card.dataset_name}"
            )
        saved_opts = json.loads(json.dumps(card.dataset_options, default=str))
        now_opts = json.loads(json.dumps(info.to_dict().get("options", {}), default=str))
        if saved_opts != now_opts:
            raise TrainingError(
                f"{self.out} was trained with dataset options {saved_opts}, not {now_opts}; "
                "resume with the same --data-option values"
            )
        new_config = model_config(cfg.model, info, overrides, base=model.config)  # checked, as a new run's
        changed = sorted(k for k, v in new_config.to_dict().items() if v != model.config.to_dict()[k])
        may_change = {k for k in RUN_FIELDS if k != "lr" or cfg.reset_optimizer}  # lr: a new optimiser's setting
        if set(changed) - may_change:
            hint = "" if cfg.reset_optimizer else "; lr may change with a fresh optimiser (--reset-optimizer)"
            raise TrainingError(
                f"cannot change {sorted(set(changed) - may_change)} when resuming {self.out}; "
                f"only --steps and --batch-size may change{hint} (start a new run for other options)"
            )
        # segments from before this version carry no lr: they all ran at the saved config's rate
        for seg in (card.train.segments if card.train else None) or []:
            seg.lr = float(model.config.lr) if seg.lr is None else seg.lr
        model.config = new_config
        card.drop("shipped")  # training on: no longer the shipped weights-only state
        self.card = card
        self.start = card.steps
        return model

    def _build_new_model(self, info: Any, overrides: dict[str, Any]) -> torch.nn.Module:
        """A fresh model and card; memory budgets are checked on a shapes-only copy first."""
        cfg = self.cfg
        config = model_config(cfg.model, info, overrides)
        model = build_model(cfg.model, config, info, batch_option="--batch-size")
        self.card = Card(
            model=cfg.model,
            config=model.config.to_dict(),
            dataset=info.to_dict(),
            seed=cfg.seed,
            steps=0,
            history={"step": [], "images_per_s": [], "stage": []},
            tracks={},
        )
        self.start = 0
        return model

    def _adopt_model(self, model: torch.nn.Module, info: Any) -> None:
        """The model's config into the card; the run's length (``stop_at``) and batch size."""
        self.card.config = model.config.to_dict()
        if self.card.history is None:
            self.card.history = {"step": [], "images_per_s": [], "stage": []}
        if self.card.tracks is None:
            self.card.tracks = {}
        if self.card.train is None:
            self.card.train = TrainRecord()
        self.model = model
        self.total = int(model.config.steps)
        if self.cfg.stop_at is not None:
            self.total = min(self.total, int(self.cfg.stop_at))
        self.batch_size = int(model.config.batch_size)
        if self.resumed:  # a resume may change --batch-size
            check_batch(self.batch_size, info.channels, math.prod(info.factor_sizes))
        if self.total <= 0 or self.batch_size <= 0:
            raise TrainingError(f"steps and batch_size must be positive (got {self.total}, {self.batch_size})")

    def _place_model(self) -> None:
        """Model on the device, channels_last where it pays (docs/methods.md#training-engine), train mode."""
        auto_cl = self.device.type in ("cuda", "cpu")
        self.channels_last = self.cfg.channels_last if self.cfg.channels_last is not None else auto_cl
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.model.train()

    def _prepare_optimisation(self) -> None:
        """Optimisers (fast kernels), the batch sampler, and on a resume their saved state and RNGs."""
        cfg = self.cfg
        self.optimizers = self.model.configure_optimizers()
        self.optimizer_impl = speed_up_optimizers(self.optimizers, cfg.optimizer_impl, self.device)
        self.sampler: Iterator[torch.Tensor] = make_sampler(self.dataset, self.batch_size, self.device, cfg.seed)
        if self.resumed and cfg.reset_optimizer:
            # weights only (e.g. a shipped checkpoint in a fresh clone): fresh optimiser state, and a
            # torch RNG stream seeded from (seed, step) so the resumed run does not replay step 0's noise
            seed_everything(cfg.seed + self.start)
        elif self.resumed:
            extra = load_optimizer_state(self.out, self.optimizers, self.device)
            _restore_rng(extra, self.device)
            rng_state = self.card.train.sampler_rng
            rng = getattr(self.sampler, "rng", None)
            if rng_state and isinstance(rng, np.random.Generator):
                with contextlib.suppress(TypeError, ValueError, KeyError):
                    rng.bit_generator.state = rng_state

    def _open_segment(self) -> None:
        """What this run adds to the card's totals, and the record of this training segment."""
        train = self.card.train
        self.prev_wall = float(train.wall_time_s or 0.0)
        self.autocast = _autocast(self.device, self.cfg.amp)
        self.amp_used = "bf16" if not isinstance(self.autocast, contextlib.nullcontext) else "off"
        # older cards have no count: their runs used one batch size throughout
        seen = train.images_seen
        self.prev_images = int(seen if seen is not None else self.start * int(train.batch_size or 0))
        self.segment = Segment(
            from_step=self.start,
            optimizer="fresh" if (not self.resumed or self.cfg.reset_optimizer) else "restored",
            amp=self.amp_used,
            device=str(self.device),
            batch_size=self.batch_size,
            lr=float(self.model.config.lr),
            started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        self.segment_recorded = False

    def _attach_hooks(self) -> None:
        """The diffusion tracker when asked for, then every hook checked for a name and a period."""
        if self.cfg.track_diffusion > 0:
            try:
                from disviz.diagnostics.diffusion import DiffusionTracker
            except ImportError as exc:
                raise TrainingError(
                    f"--track-diffusion needs disviz.diagnostics.diffusion, which cannot be imported ({exc}); "
                    "run without --track-diffusion"
                ) from None
            self.hooks.append(DiffusionTracker(self.dataset, every=self.cfg.track_diffusion))
        for hook in self.hooks:
            if not isinstance(getattr(hook, "every", None), int) or hook.every <= 0 or not getattr(hook, "name", ""):
                raise TrainingError(f"hook {hook!r} needs a name and a positive integer 'every'")

    # logging --------------------------------------------------------------------------------
    def _stage(self, step: int) -> int | None:
        s = self.model.stage(step)
        return None if s is None else int(s)

    def _check_health(self, losses: dict[str, float], step: int) -> None:
        """The model's own collapse guard (``health``): logged once per distinct problem, recorded on the card."""
        message = self.model.health(losses, step)
        if not message:
            return
        if self.card.train.warnings is None:
            self.card.train.warnings = []
        warnings = self.card.train.warnings
        kind = message.split(":", 1)[0]
        if any(w.get("message", "").split(":", 1)[0] == kind for w in warnings):
            return
        warnings.append({"step": step, "message": message})
        self.emit(TrainEvent("warning", step, self.total, dict(losses), 0.0, self._stage(step - 1), message))

    def _flush(self, step: int) -> dict[str, float]:
        """One host sync: window means of the loss terms, NaN check, history row, 'step' event."""
        if not self.window_n:
            return {}
        keys = list(self.sums)
        values = torch.stack([self.sums[k].float() for k in keys]).div(self.window_n).tolist()  # the sync
        losses = dict(zip(keys, values, strict=True))
        bad = [k for k, v in losses.items() if not math.isfinite(v)]
        if bad:
            raise _NonFinite(
                f"loss term(s) {bad} became {[losses[k] for k in bad]} between steps {self.window_start + 1} and {step}"
            )
        self._check_health(losses, step)
        now = time.perf_counter()
        seconds = max(now - self.window_t - self.excluded, 1e-9)
        ips = self.window_n * self.batch_size / seconds
        stage = self._stage(step - 1)
        hist = self.card.history
        n_rows = len(hist["step"])
        for k in losses:
            hist.setdefault(k, [None] * n_rows)
        hist["step"].append(step)
        hist["images_per_s"].append(round(ips, 2))
        hist["stage"].append(stage)
        for k, col in hist.items():
            if k in ("step", "images_per_s", "stage"):
                continue
            col.append(losses.get(k))
        data: dict[str, Any] = {"batch_size": self.batch_size, "elapsed_s": self._wall()}
        if self.cfg.log_kl and self.last_x is not None:
            with torch.no_grad(), self.autocast:
                kl = self.model.kl_per_latent(self.last_x)
            if kl is not None:
                data["kl_per_latent"] = [float(v) for v in kl.float().cpu().tolist()]
        self.sums, self.window_n, self.window_start, self.excluded = {}, 0, step, 0.0
        self.window_t = time.perf_counter()
        self.last_losses, self.last_ips = losses, ips
        self.emit(TrainEvent("step", step, self.total, losses, ips, stage, "", data))
        return losses

    def _wall(self) -> float:
        return round(self.prev_wall + time.perf_counter() - self.t_start, 3)

    # hooks and checkpoints ------------------------------------------------------------------
    def _run_hooks(self, step: int, final: bool) -> None:
        for hook in self.hooks:
            if not (step % hook.every == 0 or (final and step not in self.hook_steps.get(hook.name, set()))):
                continue
            t0 = time.perf_counter()
            self.model.eval()
            try:
                record = dict(hook(self.model, step) or {})
            finally:
                self.model.train()
            record.setdefault("step", step)
            self.card.tracks.setdefault(hook.name, []).append(record)
            self.hook_steps.setdefault(hook.name, set()).add(step)
            self.excluded += time.perf_counter() - t0
            self.emit(
                TrainEvent(
                    "eval",
                    step,
                    self.total,
                    {},
                    0.0,
                    self._stage(max(step - 1, 0)),
                    hook.name,
                    {"hook": hook.name, "record": record},
                )
            )

    def _save(self, step: int) -> None:
        t0 = time.perf_counter()
        card = self.card
        card.steps = step
        card.drop("metrics")  # scores of an older step would be stale
        card.versions = versions()
        train = card.train
        train.batch_size = self.batch_size
        train.device = str(self.device)
        train.wall_time_s = self._wall()
        train.dataset_path = _dataset_path(self.dataset, self.cfg.dataset_path)
        train.dataset_options = dict(self.cfg.dataset_options)
        train.amp = self.amp_used
        train.channels_last = self.channels_last
        train.optimizer_impl = self.optimizer_impl
        train.compile = bool(self.cfg.compile)
        train.log_every = self.cfg.log_every
        train.save_every = self.cfg.save_every
        train.images_seen = self.prev_images + (step - self.start) * self.batch_size
        # one record per training segment (the first run and every resume): what each part ran with
        if train.segments is None:
            train.segments = []
        segments = train.segments
        if not self.segment_recorded:
            segments.append(dataclasses.replace(self.segment))
            self.segment_recorded = True
        segments[-1].to_step = step
        train.resumes = sum(1 for seg in segments if seg.from_step > 0)
        train.optimizer_resets = [seg.from_step for seg in segments if seg.from_step > 0 and seg.optimizer == "fresh"]
        rng = getattr(self.sampler, "rng", None)
        if isinstance(rng, np.random.Generator):
            train.sampler_rng = rng.bit_generator.state
        save_checkpoint(
            self.out,
            self.model,
            self.card,
            self.optimizers if self.cfg.save_optimizer else None,
            dtype=self.cfg.save_dtype,
            extra_tensors=_rng_tensors(self.device),
        )
        self.saved_step = step
        self.excluded += time.perf_counter() - t0
        self.emit(
            TrainEvent(
                "checkpoint",
                step,
                self.total,
                dict(self.last_losses),
                self.last_ips,
                self._stage(max(step - 1, 0)),
                str(self.out),
                {"path": str(self.out)},
            )
        )

    # the loop -------------------------------------------------------------------------------
    def run(self) -> Path:
        """Train from ``start`` to ``total`` (or a stop), save, and return the checkpoint folder."""
        self._reset_counters()
        step = self.start
        self.window_start = step
        self._emit_start(step)
        if step >= self.total:
            self.emit(
                TrainEvent(
                    "done",
                    step,
                    self.total,
                    message=f"already trained for {step} steps; pass a larger --steps to continue",
                )
            )
            return self.out
        step, stopped = self._loop(step)
        self._finish(step, stopped)
        return self.out

    def _reset_counters(self) -> None:
        """Empty loss window, no hook run yet; a resumed run's last good checkpoint is the one it read."""
        self.sums: dict[str, torch.Tensor] = {}
        self.window_n, self.excluded = 0, 0.0
        self.last_losses: dict[str, float] = {}
        self.last_ips = 0.0
        self.last_x: torch.Tensor | None = None
        self.hook_steps: dict[str, set[int]] = {}
        self.saved_step = self.start if self.resumed else None

    def _emit_start(self, step: int) -> None:
        self.emit(
            TrainEvent(
                "start",
                step,
                self.total,
                stage=self._stage(step),
                message=f"{self.cfg.model} on {self.cfg.dataset}, {str(self.device)}, batch {self.batch_size}"
                + (f", resumed at step {step}" if self.resumed else ""),
                data={
                    "device": str(self.device),
                    "batch_size": self.batch_size,
                    "resumed": self.resumed,
                    "out": str(self.out),
                },
            )
        )

    def _loop(self, step: int) -> tuple[int, bool]:
        """The training steps from ``step``: (the step reached, stopped before the total?).

        A non-finite loss emits an 'error' event and raises TrainingError without saving, so the
        last good checkpoint stays on disk.
        """
        cfg = self.cfg
        stopped = False
        self.window_t = time.perf_counter()
        try:
            while step < self.total:
                if self._stop_requested():
                    stopped = True
                    break
                x, terms = self._train_step(step)
                step += 1
                self._accumulate(x, terms)
                if step % cfg.log_every == 0 or step == self.total:
                    self._flush(step)
                if self.hooks:
                    self._run_hooks(step, final=step == self.total)
                if step % cfg.save_every == 0 and step < self.total:
                    self._flush(step)
                    self._save(step)
        except KeyboardInterrupt:
            stopped = True
        except _NonFinite as exc:
            where = (
                f"the last good checkpoint (step {self.saved_step}) is kept in {self.out}"
                if self.saved_step is not None
                else "no checkpoint was written"
            )
            msg = (
                f"training diverged: {exc}; stopped without saving the broken state, {where}. "
                "Lower the learning rate (--set lr=...) or change the seed, then train again"
            )
            self.emit(TrainEvent("error", step, self.total, dict(self.last_losses), 0.0, None, msg))
            raise TrainingError(msg) from None
        return step, stopped

    def _stop_requested(self) -> bool:
        """The caller's stop event, or this segment's time budget spent (a long run in saved parts)."""
        if self.stop_event is not None and self.stop_event.is_set():
            return True
        return self.cfg.time_limit_s is not None and time.perf_counter() - self.t_start >= self.cfg.time_limit_s

    def _train_step(self, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One optimisation step on the next batch: (the batch, the model's loss terms)."""
        x = next(self.sampler)  # x: [B, C, 64, 64] float in [0, 1]
        x = x.contiguous(memory_format=self.memory_format)
        with self.autocast:
            terms = self.model.train_step(x, step, self.optimizers)
        return x, terms

    def _accumulate(self, x: torch.Tensor, terms: dict[str, torch.Tensor]) -> None:
        """Loss terms summed on the device (no host sync until the next flush)."""
        for k, v in terms.items():
            v = v.detach()
            self.sums[k] = self.sums[k] + v if k in self.sums else v.float().clone()
        self.window_n += 1
        self.last_x = x

    def _finish(self, step: int, stopped: bool) -> None:
        """Last flush, save unless this step is on disk already, then the 'stopped' or 'done' event."""
        try:
            self._flush(step)
        except _NonFinite as exc:
            msg = f"training diverged: {exc}; the last good checkpoint (step {self.saved_step}) is kept in {self.out}"
            self.emit(TrainEvent("error", step, self.total, {}, 0.0, None, msg))
            raise TrainingError(msg) from None
        if step > (self.saved_step or 0) or not is_checkpoint(self.out):
            self._save(step)
        if stopped:
            kind = "stopped"
            message = f"stopped at step {step}/{self.total}; checkpoint saved in {self.out} (continue with --resume)"
        else:
            kind = "done"
            message = f"trained {step} steps in {self._wall():.1f} s; checkpoint in {self.out}"
        stage = self._stage(max(step - 1, 0))
        self.emit(TrainEvent(kind, step, self.total, dict(self.last_losses), self.last_ips, stage, message))


def train(
    cfg: TrainConfig,
    callback: Callable[[TrainEvent], None] | None = None,
    stop_event: threading.Event | None = None,
    hooks: list[TrainHook] | None = None,
) -> Path:
    """Train ``cfg.model`` on ``cfg.dataset`` and return the checkpoint folder.

    Emits TrainEvents to ``callback``; ``stop_event`` (or Ctrl-C) stops after the current step
    and saves. A NaN/inf loss raises TrainingError after an 'error' event and keeps the last
    good checkpoint. The output folder is locked for the whole run.
    """

    errored = False

    def emit(event: TrainEvent) -> None:
        nonlocal errored
        errored = errored or event.kind == "error"
        if callback is not None:
            callback(event)

    prev_threads = torch.get_num_threads()
    try:
        _validate(cfg)
        if cfg.num_threads:
            torch.set_num_threads(int(cfg.num_threads))
        with checkpoint_lock(cfg.out, purpose="train"):
            run = _Run(cfg, emit, stop_event, hooks or [])
            run.setup()
            return run.run()
    except Exception as exc:  # every failure reaches the event stream once (the app shows it)
        if not errored:
            msg = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            emit(TrainEvent("error", 0, cfg.steps if isinstance(cfg.steps, int) else 0, message=msg))
        raise
    finally:
        if cfg.num_threads:
            torch.set_num_threads(prev_threads)


# --- KEY=VALUE options (--set, --data-option) -------------------------------------------------
def parse_key_values(items: list[str], what: str) -> dict[str, str]:
    """['a=1', 'b=x'] -> {'a': '1', 'b': 'x'} (values stay strings; configs cast them)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise TrainingError(f"{what} {item!r} is not KEY=VALUE (e.g. {what} lr=0.0005)")
        out[key.strip()] = value.strip()
    return out


# --- benchmark measurements (printed by ``python -m disviz bench train``, disviz/cli/train.py) ---
def plain_loop_ips(
    model_name: str, dataset_name: str, steps: int, batch_size: int, device: torch.device, warmup: int, seed: int
) -> float:
    """The baseline: same network, NCHW, the model's default optimiser, .item() every step,
    and the generic sampler (ds.images + host conversion) instead of the dataset's fast one."""
    from disviz.data.base import BatchSampler

    dataset = _load_dataset(dataset_name, None, {})  # fresh, like the engine's (no warm image caches)
    seed_everything(seed)
    overrides = {"batch_size": batch_size, "steps": warmup + steps}  # same schedule as the engine run (DEFT stages)
    info = dataset.info()
    model = build_model(model_name, model_config(model_name, info, overrides), info).to(device).train()
    opts = model.configure_optimizers()
    sampler = BatchSampler(dataset, batch_size, device, seed)
    t0 = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        x = next(sampler).contiguous()  # NCHW
        terms = model.train_step(x, step, opts)
        _ = {k: v.item() for k, v in terms.items()}  # what most loops do: log every step
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - t0)


def engine_ips(cfg: TrainConfig, warmup: int) -> float:
    """Images/s of ``train`` measured from its own step events, after ``warmup`` steps."""
    marks: list[tuple[int, float]] = []

    def cb(ev: TrainEvent) -> None:
        if ev.kind == "step":
            marks.append((ev.step, time.perf_counter()))

    train(cfg, callback=cb)
    usable = [(s, t) for s, t in marks if s >= warmup]
    if len(usable) < 2:
        raise TrainingError("benchmark too short: raise --steps")
    (s0, t0), (s1, t1) = usable[0], usable[-1]
    return (s1 - s0) * (cfg.batch_size or 0) / (t1 - t0)


def read_train_settings(out: str | os.PathLike[str]) -> dict[str, Any]:
    """The engine's speed settings as recorded in a checkpoint card's 'train' entry."""
    train = load_card(out).train
    if train is None:
        return {}
    keys = ("device", "amp", "channels_last", "optimizer_impl", "compile")
    return {k: getattr(train, k) for k in keys if getattr(train, k) is not None}
