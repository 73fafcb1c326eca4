"""Running a sweep on Ray: one Ray task per trial, the engine inside it, faults handled by the driver.

Why Ray core tasks (not Ray Tune): a trial is just ``disviz.engine.train.train`` then the ``evaluate``
path, writing an ordinary checkpoint folder; Ray only places tasks by resources (CPUs, GPUs or
fractions of one) on a local machine or on an existing cluster (``address``), so the same spec
runs unchanged on a laptop or on many GPUs. Ray is imported here only, so ``--help`` and the app
stay fast.

Faults: tasks run with Ray's own retries off, and the driver re-submits a trial whose worker died
or raised, at most ``max_retries`` times; the engine's resume continues it from its last
checkpoint (every trial trains with ``resume=True``, which starts fresh when the folder is empty).
A trial stopped by the engine's non-finite-loss guard is recorded as ``nan`` and not retried (the
same configuration diverges again). Every state change rewrites the results table atomically, and
each finished trial also records its row in its own card (``Card.sweep``), so a killed driver
loses nothing: ``--resume`` skips finished trials and re-runs the rest from their checkpoints.

On a multi-machine cluster the sweep folder must be on a file system every node sees (as for any
job writing files), and every node needs this checkout importable (same path or installed).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from disviz.core.errors import TrainingError
from disviz.core.paths import SPEC_FILE
from disviz.sweeps.common import FINISHED, SweepError
from disviz.sweeps.results import SweepResults
from disviz.sweeps.spec import SweepSpec, Trial, expand_trials

__all__ = ["CRASH_ENV", "default_num_cpus", "ray_session", "run_sweep", "run_trial"]

#: test hook, read by the driver when it submits a trial: "STEP" or "TEXT@STEP" makes the first
#: attempt of every trial (whose id contains TEXT) kill its worker process at the first progress
#: event at or after STEP, once per trial (a marker file next to its folder remembers it)
CRASH_ENV = "DISVIZ_SWEEP_CRASH"
#: how the engine's non-finite-loss stop words its TrainingError (disviz/engine/train.py, _Run._loop)
NAN_PREFIX = "training diverged"


def default_num_cpus() -> int:
    """CPUs a local Ray may use: those this process may run on (cgroups / affinity aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS / Windows
        return max(1, os.cpu_count() or 1)


# --- the trial (runs inside a Ray worker process) ------------------------------------------------
class TrialStopped(RuntimeError):
    """The engine stopped a trial before its last step (a signal): it is not finished, so not scored."""


def run_trial(task: dict[str, Any]) -> dict[str, Any]:
    """Train (resuming whatever is on disk) and evaluate one trial; return its results row fields.

    Raises on a crash so the driver retries; returns ``status="nan"`` for a diverged run.
    """
    threads = int(task["threads"])
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["LOKY_MAX_CPU_COUNT"] = str(threads)  # DCI's forest uses n_jobs=-1: hold it to our share
    import torch

    from disviz.engine.card import Report, load_card, update_card
    from disviz.engine.checkpoints import is_checkpoint
    from disviz.engine.evaluate import evaluate_checkpoint
    from disviz.engine.train import TrainConfig, train

    torch.set_num_threads(threads)
    trial, res, ev = task["trial"], task["resources"], task["eval"]
    folder = Path(task["folder"])
    run = Trial(**trial).run_spec()
    cfg = TrainConfig(
        **{**run.run_fields(), "device": res["device"], "amp": res["amp"]},  # the trial's resources
        out=folder,
        save_every=res["save_every"],
        resume=True,  # continue the last checkpoint of a crashed attempt; a fresh start when there is none
        num_threads=threads,
        log_kl=False,
    )
    crash_at = task.get("crash_at")
    marker = folder.parent / f".{folder.name}.crashed"

    stopped: list[str] = []

    def callback(event: Any) -> None:
        if event.kind == "stopped":
            stopped.append(event.message)
        if crash_at and event.kind == "step" and event.step >= crash_at and not marker.exists():
            marker.touch()
            os._exit(3)  # a hard death of the worker process, as an OOM kill or a segfault would be

    entry: dict[str, Any] = {"sweep": task["sweep"], "trial": trial["id"], "attempts": task["attempt"], **node_info()}
    try:
        train(cfg, callback=callback)
        if stopped:  # Ctrl-C reached the worker too (a terminal signals the whole process group)
            raise TrialStopped(f"{stopped[-1]}; not evaluated (a resumed sweep continues it)")
    except TrainingError as exc:
        if not str(exc).startswith(NAN_PREFIX):
            raise
        entry.update(status="nan", error=str(exc), scores={}, finished=_now())
        if is_checkpoint(folder):
            train = load_card(folder).train
            entry["train_s"] = train.wall_time_s if train else None
            update_card(folder, sweep=entry)
        return entry
    card = load_card(folder)
    report = card.metrics
    settings = {"n": ev["n"], "seed": ev["seed"], "preset": ev["preset"]}
    fresh = (
        report is not None
        and (report.checkpoint or {}).get("step") == card.steps
        and (report.n, report.seed, report.preset) == (ev["n"], ev["seed"], ev["preset"])
        and (report.settings or {}).get("intervention_sampling") == ev["sampling"]
    )
    if not fresh:  # a retry after a crash during evaluation skips nothing it has not done
        report = Report.from_dict(
            evaluate_checkpoint(folder, device=res["device"], sampling=ev["sampling"], **settings)
        )
    train = load_card(folder).train
    train_s = float((train.wall_time_s if train else None) or 0.0)
    eval_s = float((report.timings or {}).get("total") or 0.0)
    entry.update(
        status="done",
        steps=card.steps,
        train_s=round(train_s, 2),
        eval_s=round(eval_s, 2),
        wall_s=round(train_s + eval_s, 2),
        scores={m: (report.scores or {}).get(m) for m in task["metrics"]},
        error="",
        finished=_now(),
    )
    update_card(folder, sweep=entry)
    return entry


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def node_info() -> dict[str, str]:
    """Which machine ran a trial (hostname, node IP, Ray node id): on a cluster, where to look for
    its logs and what a slow or failing node has in common."""
    info = {"node": socket.gethostname(), "node_ip": "", "node_id": ""}
    with contextlib.suppress(Exception):  # outside a Ray worker (tests call run_trial directly)
        import ray

        if ray.is_initialized():
            info["node_ip"] = ray.util.get_node_ip_address()
            info["node_id"] = ray.get_runtime_context().get_node_id()
    return info


# --- Ray ------------------------------------------------------------------------------------------
@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None) -> Iterator[Any]:
    """The ``ray`` module, connected: an already initialised session (tests share one), the cluster
    at ``address``, or a local one started here (and shut down after) with ``num_cpus``."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline: never phone home
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    import ray

    if ray.is_initialized():
        yield ray
        return
    here = str(Path(__file__).resolve().parent.parent)
    paths = [p for p in (here, os.environ.get("PYTHONPATH", "")) if p]
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.ERROR,  # quiet: the driver prints one line per trial
        "log_to_driver": False,
        # workers import disviz from this checkout (on a cluster: the same path on every node)
        "runtime_env": {"env_vars": {"PYTHONPATH": os.pathsep.join(paths), "RAY_USAGE_STATS_ENABLED": "0"}},
    }
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus or default_num_cpus(), num_gpus=num_gpus, **kwargs)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.AuthenticationError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        hint = ""
        chain, cause = [], exc  # Ray 2.60 wraps the GCS's InvalidAuthToken in a ConnectionError's causes
        while cause is not None and len(chain) < 8:
            chain.append(f"{type(cause).__name__} {cause}")
            cause = cause.__cause__ or cause.__context__
        if isinstance(exc, ray.exceptions.AuthenticationError) or "auth" in " ".join(chain).lower():
            hint = (
                "; the cluster uses token authentication: set RAY_AUTH_MODE=token and give this machine the "
                "head's token (~/.ray/auth_token or RAY_AUTH_TOKEN), see README: Sweeps"
            )
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SweepError(f"cannot start or join {where}: {first}{hint}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _error_text(exc: BaseException) -> str:
    """One line for the table: the trial's own exception, or how its worker died."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}".splitlines()[0][:300]
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _crash_step(trial_id: str) -> int | None:
    value = os.environ.get(CRASH_ENV, "").strip()
    if not value:
        return None
    text, _, step = value.rpartition("@")
    if text and text not in trial_id:
        return None
    return int(step)


def run_sweep(
    spec: SweepSpec,
    resume: bool = False,
    address: str | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    log: Callable[[str], None] = print,
    stop_event: threading.Event | None = None,
    note: str = "",
) -> SweepResults:
    """Run every unfinished trial of ``spec`` on Ray; the table in ``spec.out`` is kept current.

    ``stop_event`` (or Ctrl-C) cancels the running trials (their checkpoints stay for ``resume``)
    and raises KeyboardInterrupt after the table is written.
    """
    trials = expand_trials(spec)
    folder = spec.out.resolve()
    SweepResults(folder, spec).check_start(resume)  # refuse before starting Ray or writing anything
    from disviz.core.outputs import atomic_write

    with ray_session(address, num_cpus, num_gpus) as ray:
        cluster = ray.cluster_resources()
        if spec.resources.num_gpus and not cluster.get("GPU"):
            raise SweepError(
                f"the spec asks for num_gpus = {spec.resources.num_gpus} per trial but the Ray cluster has no GPU; "
                "set num_gpus = 0 in [resources]"
            )
        if spec.resources.num_cpus > (cluster.get("CPU") or 0):
            raise SweepError(
                f"a trial asks for {spec.resources.num_cpus:g} CPUs but the Ray cluster has {cluster.get('CPU', 0):g}; "
                "lower [resources] num_cpus or raise --num-cpus"
            )
        run_info = {
            "started": _now(),
            "host": socket.gethostname(),
            "address": address or "local",
            "ray": ray.__version__,
            "cluster_cpus": cluster.get("CPU"),
            "cluster_gpus": cluster.get("GPU", 0),
            "trial_resources": asdict(spec.resources),
            "command": " ".join(["python -m disviz", *sys.argv[1:]]) if sys.argv and "disviz" in sys.argv[0] else "",
        }
        if note:  # a resumed run without one keeps the first run's note
            run_info["note"] = note
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / SPEC_FILE, json.dumps({"spec": spec.raw, "run": run_info}, indent=1, default=str))
        results = SweepResults(folder, spec, run_info)
        todo = results.start(trials, resume)
        skipped = len(trials) - len(todo)
        log(
            f"sweep {spec.name}: {len(trials)} trials, {skipped} already finished, {len(todo)} to run on "
            f"{run_info['address']} Ray ({cluster.get('CPU', 0):g} CPUs, {cluster.get('GPU', 0):g} GPUs) -> {folder}"
        )
        _drive(ray, spec, results, todo, folder, log, stop_event)
    return results


def _drive(
    ray: Any,
    spec: SweepSpec,
    results: SweepResults,
    todo: list[Trial],
    folder: Path,
    log: Callable[[str], None],
    stop_event: threading.Event | None,
) -> None:
    res = spec.resources
    remote = ray.remote(run_trial)
    pending: dict[Any, Trial] = {}
    tries: dict[str, int] = {}  # attempts in this run (a resumed sweep gives a failed trial a new budget)
    total, finished = len(todo), 0

    def submit(trial: Trial) -> None:
        attempt = int(results.rows[trial.id].get("attempts") or 0) + 1  # over every run, for the table
        tries[trial.id] = tries.get(trial.id, 0) + 1
        task = {
            "trial": trial.to_dict(),
            "folder": str(folder / trial.id),
            "sweep": spec.name,
            "eval": asdict(spec.eval),
            "resources": asdict(res),
            "threads": res.torch_threads,
            "metrics": list(spec.metrics),
            "attempt": attempt,
            "crash_at": _crash_step(trial.id) if tries[trial.id] == 1 else None,
        }
        ref = remote.options(
            num_cpus=res.num_cpus,
            num_gpus=res.num_gpus,
            max_retries=0,  # the driver retries, from the trial's checkpoint
            retry_exceptions=False,
            name=f"disviz-trial:{trial.id}",
        ).remote(task)
        pending[ref] = trial
        results.update(trial.id, status="queued", attempts=attempt)

    for t in todo:
        submit(t)
    try:
        while pending:
            if stop_event is not None and stop_event.is_set():
                raise KeyboardInterrupt
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in ready:
                trial = pending.pop(ref)
                row = results.rows[trial.id]
                try:
                    entry = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    message = _error_text(exc)
                    if tries[trial.id] <= res.max_retries:
                        log(
                            f"  {trial.id}: attempt {row['attempts']} crashed ({message}); retrying from its checkpoint"
                        )
                        results.update(trial.id, error=message)
                        submit(trial)
                        continue
                    finished += 1
                    results.update(trial.id, status="failed", error=message, finished=_now())
                    log(f"[{finished}/{total}] {trial.id}: failed after {row['attempts']} attempt(s): {message}")
                    continue
                finished += 1
                results.update(trial.id, **{k: v for k, v in entry.items() if k not in ("sweep", "trial")})
                scores = ", ".join(f"{k}={v:.3f}" for k, v in entry.get("scores", {}).items() if isinstance(v, float))
                took = f" in {entry['wall_s']:.0f} s" if entry.get("wall_s") is not None else ""
                log(f"[{finished}/{total}] {trial.id}: {entry['status']}{took}" + (f": {scores}" if scores else ""))
    except KeyboardInterrupt:
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        for trial in pending.values():
            if results.rows[trial.id].get("status") not in FINISHED:
                results.rows[trial.id]["status"] = "pending"
        results.write()
        log(f"interrupted: {len(pending)} unfinished trial(s) cancelled; continue with --resume")
        raise
    counts = results.counts()
    log("finished: " + ", ".join(f"{counts[s]} {s}" for s in ("done", "nan", "failed") if counts.get(s)))


# --- benchmark (python -m disviz bench sweep) -------------------------------------------------------
def _noop(x: int) -> int:
    return x


def _bench_train(out: str, steps: int, seed: int) -> float:
    """One short training run (the standard conv β-VAE, batch 32, 1 thread); its wall seconds."""
    import torch

    from disviz.engine.train import TrainConfig, train

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    train(
        TrainConfig(
            model="betavae",
            dataset="dsprites",
            out=out,
            steps=steps,
            batch_size=32,
            device="cpu",
            seed=seed,
            save_every=10**9,
            save_optimizer=False,
            log_kl=False,
            num_threads=1,
        )
    )
    return time.perf_counter() - t0


def bench_overhead(ray: Any, rounds: int = 50) -> dict[str, float]:
    """Milliseconds per trivial trial: a Ray task round trip (submit, schedule, run, fetch) vs a call."""
    remote = ray.remote(_noop).options(num_cpus=1)
    t0 = time.perf_counter()
    ray.get(remote.remote(0))
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(rounds):
        ray.get(remote.remote(i))
    warm = (time.perf_counter() - t0) / rounds
    t0 = time.perf_counter()
    for i in range(rounds * 100):
        _noop(i)
    direct = (time.perf_counter() - t0) / (rounds * 100)
    return {"cold_ms": cold * 1e3, "ray_ms": warm * 1e3, "direct_ms": direct * 1e3}


def bench_throughput(ray: Any, n: int, steps: int = 30) -> dict[str, float]:
    """Wall seconds of ``n`` short training trials run one after another in this process vs as ``n``
    parallel Ray tasks (1 CPU each; workers warmed up first, so both sides pay the imports once)."""
    import tempfile

    remote = ray.remote(_bench_train).options(num_cpus=1)
    with tempfile.TemporaryDirectory() as tmp:
        ray.get([remote.remote(f"{tmp}/warm{i}", 2, i) for i in range(n)])  # start + import in n workers
        _bench_train(f"{tmp}/warm", 2, 0)
        t0 = time.perf_counter()
        for i in range(n):
            _bench_train(f"{tmp}/seq{i}", steps, i)
        sequential = time.perf_counter() - t0
        t0 = time.perf_counter()
        ray.get([remote.remote(f"{tmp}/par{i}", steps, i) for i in range(n)])
        parallel = time.perf_counter() - t0
    return {"sequential_s": sequential, "parallel_s": parallel}
