"""Sweeps started from the app: ``python -m disviz sweep`` as a background subprocess.

Why a subprocess and not a thread like the Train page's jobs (``disviz.app.jobs``): a sweep's driver
owns a Ray session (one per process, with its own worker processes and signal handling), which
must not live inside the Streamlit server, and a sweep outlasts browser sessions. The subprocess
runs the exact CLI command a user would type, survives page switches and reloads, and a crash in
it cannot take the app down. The page learns its progress from the results table, which the
driver rewrites atomically after every trial, and from the pid file written here; "Stop" sends
SIGINT (the CLI's Ctrl-C: running trials are cancelled, their checkpoints kept for ``--resume``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from disviz.core.limits import LimitError, parse_toml, read_text_bounded
from disviz.core.outputs import atomic_write
from disviz.sweeps.common import SweepError
from disviz.sweeps.spec import SweepSpec, parse_spec

__all__ = [
    "APP_MAX_TRIALS",
    "SweepProcess",
    "driver_state",
    "example_spec",
    "start_sweep",
    "stop_sweep",
    "validate_text",
]

APP_MAX_TRIALS = 24  # the app's sweeps are small; larger ones belong on the command line / a cluster
DRIVER_FILE = ".driver.json"
_PROCS: dict[str, subprocess.Popen[bytes]] = {}  # reaped by driver_state (no zombies)


def example_spec(name: str = "my_sweep") -> str:
    """A small spec the page pre-fills: two models, a β grid, two seeds, tiny short runs."""
    return f'''name = "{name}"
models = ["betavae", "betatcvae"]
datasets = ["dsprites"]
seeds = [0, 1]
steps = 200
batch_size = 32
metrics = ["mig", "dci_disentanglement", "infom", "factorvae"]

[set]                 # small networks: a few minutes on a laptop CPU
base_channels = 8
hidden = 64
lr = 0.0005

[grid]
beta = [1.0, 4.0]

[eval]
n = 1000
preset = "fast"

[resources]
num_cpus = 1
max_retries = 2
'''


def validate_text(text: str, where: str = "spec") -> SweepSpec:
    """Parse and validate a spec typed in the page (same rules as the CLI, plus the app's size cap)."""
    raw = parse_toml(text, where, error=SweepError)
    if "out" in raw:
        raise SweepError(f"{where}: the app writes sweeps under the runs folder; remove 'out'")
    spec = parse_spec(raw, where=where)
    n = len(spec.trials)
    if n > APP_MAX_TRIALS:
        raise SweepError(
            f"{where}: {n} trials; the app runs at most {APP_MAX_TRIALS} (run larger sweeps with python -m disviz sweep)"
        )
    return spec


@dataclass
class SweepProcess:
    """A background sweep driver: its pid, folder and log file."""

    pid: int
    folder: Path
    log: Path
    started: float


def start_sweep(text: str, resume: bool = False, num_cpus: int | None = None) -> SweepProcess:
    """Validate ``text``, write it as ``<sweep folder>/spec.toml`` and start its driver in the background."""
    spec = validate_text(text)
    folder = spec.out
    state = driver_state(folder)
    if state == "running":
        raise SweepError(f"sweep {spec.name} is already running; stop it first or choose another name")
    if (folder / "results.json").is_file() and not resume:
        raise SweepError(f"{folder} already holds sweep {spec.name}; tick 'resume' to continue it, or rename it")
    folder.mkdir(parents=True, exist_ok=True)
    spec_path = folder / "spec.toml"
    atomic_write(spec_path, text)
    log = folder / "driver.log"
    cmd = [sys.executable, "-m", "disviz", "sweep", str(spec_path), "--out", str(folder)]
    if resume:
        cmd.append("--resume")
    if num_cpus:
        cmd += ["--num-cpus", str(int(num_cpus))]
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    _PROCS[str(folder.resolve())] = proc
    info = SweepProcess(proc.pid, folder, log, time.time())
    atomic_write(folder / DRIVER_FILE, json.dumps({"pid": proc.pid, "started": info.started, "cmd": cmd}))
    return info


def _driver(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(read_text_bounded(folder / DRIVER_FILE, "sweep driver file"))
    except (OSError, ValueError, LimitError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None


def driver_state(folder: str | os.PathLike[str]) -> str | None:
    """'running' / 'exited (code N)' for a sweep started from the app, None if it never was."""
    folder = Path(folder)
    proc = _PROCS.get(str(folder.resolve()))
    if proc is not None:
        code = proc.poll()
        return "running" if code is None else f"exited (code {code})"
    info = _driver(folder)
    if info is None:
        return None
    try:  # started by another server process: ask the OS
        os.kill(info["pid"], 0)
    except (ProcessLookupError, PermissionError):
        return "exited"
    cmdline = Path(f"/proc/{info['pid']}/cmdline")
    if cmdline.exists() and b"disviz" not in cmdline.read_bytes():
        return "exited"  # the pid was reused by something else
    return "running"


def stop_sweep(folder: str | os.PathLike[str]) -> bool:
    """SIGINT the sweep's driver (Ctrl-C: running trials cancelled, resumable); True if one was running."""
    folder = Path(folder)
    if driver_state(folder) != "running":
        return False
    info = _driver(folder)
    proc = _PROCS.get(str(folder.resolve()))
    pid = proc.pid if proc is not None else (info or {}).get("pid")
    if not pid:
        return False
    os.kill(int(pid), signal.SIGINT)
    return True
