"""Background training jobs for the app: a process-wide manager of worker threads.

Why a manager and not a loop in the page: a Streamlit script is aborted by the next full rerun
(any widget change, a page switch, a browser reload), so training must run outside the script.
``TrainingManager`` owns one daemon ``threading.Thread`` per job, each running
``disviz.engine.train.train`` with a callback that writes a lock-protected snapshot (status, step,
loss / KL history, images/s, stage, error, checkpoint path). Pages only *read* snapshots (in a
``run_every`` fragment) and call ``stop``; the worker never touches ``st.*``.

Output folders live under the runs root (``$DISVIZ_RUNS`` or ``./runs``), one folder per run
name. Two jobs (from two browser sessions, or two clicks) can never write the same folder: the
manager refuses a second job on a folder it is already training, and the engine's checkpoint
lock (``folders.checkpoint_lock``) is the backstop against other processes (the CLI).

``checkpoints_version()`` is a counter bumped whenever a job writes a checkpoint; the app's
cached checkpoint list includes it in its cache key so new runs show up in the picker.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import logging
import os
import re
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from disviz.core.errors import TrainingError, UserError
from disviz.core.paths import runs_root
from disviz.engine.checkpoints import is_checkpoint
from disviz.engine.runspec import RunSpec

__all__ = [
    "JobSnapshot",
    "JobSpec",
    "TrainingManager",
    "checkpoints_version",
    "get_manager",
    "suggest_run_name",
    "validate_run_name",
]

log = logging.getLogger(__name__)

STATUSES = ("queued", "running", "done", "stopped", "error")
ACTIVE = ("queued", "running")
RUN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

_version = 0
_version_lock = threading.Lock()


def checkpoints_version() -> int:
    """Increases every time a background job writes a checkpoint (a cache key for pickers)."""
    return _version


def _bump_version() -> None:
    global _version
    with _version_lock:
        _version += 1


def validate_run_name(name: str) -> str:
    """A run name becomes one folder under the runs root: letters, digits, ``_ - .`` only."""
    name = (name or "").strip()
    if not name:
        raise TrainingError("the run name is empty; give a short name such as betavae-dsprites-1")
    if not RUN_NAME_RE.fullmatch(name) or ".." in name:
        raise TrainingError(
            f"run name {name!r} is not allowed: use 1-64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit (it becomes a folder name)"
        )
    return name


def suggest_run_name(
    model: str, dataset: str, root: str | os.PathLike[str] | None = None, taken: Iterable[str] = ()
) -> str:
    """The first ``<model>-<dataset>-<n>`` that has no folder under the runs root and is not ``taken``."""
    root = Path(root) if root is not None else runs_root()
    taken = set(taken)
    for n in itertools.count(1):
        name = f"{model}-{dataset}-{n}"
        if name not in taken and not (root / name).exists():
            return name
    raise AssertionError("unreachable")


@dataclass
class JobSpec(RunSpec):
    """What the Train page asks for: the run spec and a run name; becomes a ``TrainConfig`` with
    ``out = runs_root/run_name``."""

    run_name: str
    resume: bool = False
    reset_optimizer: bool = False  # with resume: the weights with a fresh optimiser (which may take a new lr)
    save_every: int = 1000
    log_every: int = 10


@dataclass
class JobSnapshot:
    """A consistent copy of one job's state, safe to read from any thread."""

    id: str
    spec: dict[str, Any]
    out: str
    status: str = "queued"  # queued | running | done | stopped | error
    step: int = 0
    total: int = 0
    history: dict[str, list[Any]] = field(default_factory=lambda: {"step": [], "images_per_s": [], "stage": []})
    kl_history: list[tuple[float, ...]] = field(default_factory=list)  # (step, KL z0, KL z1, ...) per logged step
    losses: dict[str, float] = field(default_factory=dict)  # latest window means
    kl_per_latent: list[float] = field(default_factory=list)
    images_per_s: float = 0.0
    stage: int | None = None
    device: str = ""
    summary: str = ""  # the engine's start line: model, dataset, device, batch
    message: str = ""  # the latest done / stopped line
    error: str = ""
    checkpoint: str | None = None
    evals: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    created: float = 0.0
    started: float | None = None
    finished: float | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def fraction(self) -> float:
        return min(max(self.step / self.total, 0.0), 1.0) if self.total else 0.0

    @property
    def elapsed_s(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current speed (None before the first logged step)."""
        bs = self.spec.get("batch_size") or 0
        if not self.images_per_s or not bs or not self.active:
            return None
        return (self.total - self.step) * float(bs) / self.images_per_s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _copy(snap: JobSnapshot) -> JobSnapshot:
    """Copy for readers: containers are copied, their items are immutable (numbers, tuples).

    Cheaper than ``deepcopy`` on long runs (the page polls every second and a 300k-step run
    logs 30k rows per term).
    """
    return dataclasses.replace(
        snap,
        spec=copy.deepcopy(snap.spec),
        history={k: list(v) for k, v in snap.history.items()},
        kl_history=list(snap.kl_history),
        losses=dict(snap.losses),
        kl_per_latent=list(snap.kl_per_latent),
        evals=copy.deepcopy(snap.evals),
    )


_threads_lock = threading.Lock()
_thread_users = 0
_threads_before = 0


@contextlib.contextmanager
def _limit_threads(n: int | None) -> Iterator[None]:
    """Hold torch at ``n`` threads while any CPU job runs; restore the original after the last one.

    torch's thread count is process-wide, so per-job save/restore would be wrong with two
    overlapping jobs (the first to finish would restore too early, the last one too late).
    """
    global _thread_users, _threads_before
    if not n:
        yield
        return
    import torch

    with _threads_lock:
        if _thread_users == 0:
            _threads_before = torch.get_num_threads()
        _thread_users += 1
        torch.set_num_threads(n)
    try:
        yield
    finally:
        with _threads_lock:
            _thread_users -= 1
            if _thread_users == 0:
                torch.set_num_threads(_threads_before)


class _Job:
    def __init__(self, job_id: str, spec: JobSpec, out: Path):
        self.snap = JobSnapshot(id=job_id, spec=asdict(spec), out=str(out), created=time.time())
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None


class TrainingManager:
    """Owns background training jobs; thread-safe; one per process (see ``get_manager``).

    ``num_threads``: torch threads used by a CPU job (1 keeps a 2-core machine's UI responsive;
    None leaves torch alone). ``max_active``: how many jobs may train at once.
    """

    def __init__(
        self, root: str | os.PathLike[str] | None = None, num_threads: int | None = 1, max_active: int = 2
    ) -> None:
        self._root = Path(root) if root is not None else None
        self.num_threads = num_threads
        self.max_active = max_active
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    @property
    def root(self) -> Path:
        return self._root if self._root is not None else runs_root()

    # --- starting -------------------------------------------------------------------------
    def out_path(self, run_name: str) -> Path:
        return (self.root / validate_run_name(run_name)).absolute()

    def suggest_run_name(self, model: str, dataset: str) -> str:
        """A free run name: no folder yet and no job of this manager using it."""
        return suggest_run_name(model, dataset, self.root, taken=[s.spec["run_name"] for s in self.jobs()])

    def start(self, spec: JobSpec | None = None, **kwargs: Any) -> str:
        """Start a job in a daemon thread and return its id.

        Raises TrainingError (before anything runs) for a bad run name, an existing folder
        without ``resume``, ``resume`` without a checkpoint, a folder another job is writing,
        or too many active jobs. Errors inside training show up as status 'error'.
        """
        if spec is None:
            spec = JobSpec(**kwargs)
        elif kwargs:
            raise TypeError("pass either a JobSpec or keyword arguments, not both")
        out = self.out_path(spec.run_name)
        with self._lock:  # checks and registration are one step: two clicks cannot both pass
            busy = [j for j in self._jobs.values() if j.snap.active]
            if any(Path(j.snap.out) == out for j in busy):
                raise TrainingError(
                    f"run {spec.run_name!r} is being trained right now (possibly from another browser tab); "
                    "wait for it to finish or choose another run name"
                )
            if spec.resume:
                if not is_checkpoint(out):
                    raise TrainingError(
                        f"cannot resume run {spec.run_name!r}: {out} holds no checkpoint; "
                        "untick resume to start it fresh"
                    )
            elif out.exists():
                raise TrainingError(
                    f"run {spec.run_name!r} already exists ({out}); choose another name, or tick resume to continue it"
                )
            if len(busy) >= self.max_active:
                raise TrainingError(
                    f"{len(busy)} training job(s) are already running (at most {self.max_active}); "
                    "stop one or wait for it to finish"
                )
            job_id = f"job{next(self._ids)}-{spec.run_name}"
            job = _Job(job_id, spec, out)
            self._jobs[job_id] = job
        job.thread = threading.Thread(target=self._work, args=(job, spec, out), name=f"disviz-{job_id}", daemon=True)
        job.thread.start()
        return job_id

    def _config(self, spec: JobSpec, out: Path) -> Any:
        from disviz.core.device import pick_device
        from disviz.engine.train import TrainConfig

        pick_device(spec.device)  # a bad device fails here, before any thread setting
        return TrainConfig(
            **spec.run_fields(),
            out=out,
            save_every=spec.save_every,
            log_every=spec.log_every,
            resume=spec.resume,
            reset_optimizer=spec.reset_optimizer,
            num_threads=None,  # the manager sets torch's threads itself (see _limit_threads)
        )

    def _cpu_threads(self, spec: JobSpec) -> int | None:
        from disviz.core.device import pick_device

        if self.num_threads and pick_device(spec.device).type == "cpu":
            return int(self.num_threads)
        return None

    def _work(self, job: _Job, spec: JobSpec, out: Path) -> None:
        """The worker thread: run the engine, mirror its events into the snapshot."""
        from disviz.engine.train import train

        def on_event(ev: Any) -> None:
            with self._lock:
                self._apply(job.snap, ev)
            if ev.kind in ("checkpoint", "done", "stopped"):
                _bump_version()

        try:
            with self._lock:
                job.snap.status = "running"
                job.snap.started = time.time()
            if job.stop_event.is_set():
                with self._lock:
                    job.snap.status, job.snap.message = "stopped", "stopped before training started"
                return
            cfg = self._config(spec, out)
            with _limit_threads(self._cpu_threads(spec)):
                path = train(cfg, callback=on_event, stop_event=job.stop_event)
            with self._lock:
                job.snap.checkpoint = str(path)
                if job.snap.status not in ("done", "stopped"):
                    job.snap.status = "stopped" if job.stop_event.is_set() else "done"
        except Exception as exc:  # a job must never take the app down: report it in the snapshot
            msg = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, UserError):
                log.error("training job %s failed:\n%s", job.snap.id, traceback.format_exc())
            with self._lock:
                job.snap.status = "error"
                job.snap.error = msg
                if is_checkpoint(out):
                    job.snap.checkpoint = str(out)
        finally:
            with self._lock:
                job.snap.finished = time.time()
            _bump_version()

    @staticmethod
    def _apply(snap: JobSnapshot, ev: Any) -> None:
        """Fold one TrainEvent into the snapshot (called under the manager lock)."""
        snap.total = int(ev.total or snap.total)
        if ev.kind == "start":
            snap.step = int(ev.step)
            snap.stage = ev.stage
            snap.device = str(ev.data.get("device", ""))
            snap.summary = ev.message
            if ev.data.get("batch_size"):
                snap.spec["batch_size"] = int(ev.data["batch_size"])
        elif ev.kind == "step":
            snap.step = int(ev.step)
            snap.losses = dict(ev.losses)
            snap.images_per_s = float(ev.images_per_s)
            snap.stage = ev.stage
            hist = snap.history
            n = len(hist["step"])
            for k in ev.losses:
                hist.setdefault(k, [None] * n)
            hist["step"].append(int(ev.step))
            hist["images_per_s"].append(float(ev.images_per_s))
            hist["stage"].append(ev.stage)
            for k, col in hist.items():
                if k not in ("step", "images_per_s", "stage"):
                    col.append(ev.losses.get(k))
            kl = ev.data.get("kl_per_latent")
            if kl is not None:
                snap.kl_per_latent = [float(v) for v in kl]
                snap.kl_history.append((int(ev.step), *snap.kl_per_latent))
        elif ev.kind == "eval":
            snap.evals.append(
                {"hook": ev.data.get("hook", ev.message), "step": int(ev.step), **ev.data.get("record", {})}
            )
        elif ev.kind == "checkpoint":
            snap.checkpoint = str(ev.data.get("path") or ev.message)
        elif ev.kind in ("done", "stopped"):
            snap.step = int(ev.step)
            snap.status = ev.kind
            snap.message = ev.message
        elif ev.kind == "error":
            snap.status = "error"
            snap.error = ev.message
        elif ev.kind == "warning":  # the model's collapse guard: shown on the Train page
            snap.warnings.append(f"step {ev.step}: {ev.message}")

    # --- control and inspection -----------------------------------------------------------
    def stop(self, job_id: str) -> None:
        """Ask a job to stop after its current step (it then saves a checkpoint)."""
        job = self._get(job_id)
        job.stop_event.set()

    def _get(self, job_id: str) -> _Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise TrainingError(
                f"no training job {job_id!r} on this server (it may have been started before a restart)"
            )
        return job

    def snapshot(self, job_id: str) -> JobSnapshot:
        """A deep copy of the job's current state."""
        job = self._get(job_id)
        with self._lock:
            return _copy(job.snap)

    def jobs(self) -> list[JobSnapshot]:
        """All jobs of this process, newest first."""
        with self._lock:
            snaps = [_copy(j.snap) for j in self._jobs.values()]
        return sorted(snaps, key=lambda s: s.created, reverse=True)

    def active_jobs(self) -> list[JobSnapshot]:
        return [s for s in self.jobs() if s.active]

    def wait(self, job_id: str, timeout: float | None = None) -> JobSnapshot:
        """Block until the job's thread ends (tests, scripts); returns the final snapshot."""
        job = self._get(job_id)
        if job.thread is not None:
            job.thread.join(timeout)
        return self.snapshot(job_id)

    def forget(self, job_id: str) -> None:
        """Drop a finished job from the list (its checkpoint stays on disk)."""
        job = self._get(job_id)
        if job.snap.active:
            raise TrainingError(f"job {job_id} is still running; stop it first")
        with self._lock:
            self._jobs.pop(job_id, None)

    def stop_all(self, timeout: float | None = None) -> None:
        """Stop every job and wait for the threads (server shutdown, tests)."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.stop_event.set()
        for job in jobs:
            if job.thread is not None:
                with contextlib.suppress(RuntimeError):
                    job.thread.join(timeout)


_manager: TrainingManager | None = None
_manager_lock = threading.Lock()


def get_manager() -> TrainingManager:
    """The process-wide manager (all browser sessions share it, so jobs outlive reloads)."""
    global _manager
    with _manager_lock:
        if _manager is None:
            _manager = TrainingManager()
        return _manager
