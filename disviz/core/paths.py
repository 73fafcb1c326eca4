"""Where runs are written and where checkpoints are looked for: the one owner of these paths.

The CLI, the app's picker, the Train page and sweeps all ask here, so a run the app trains is
found by the CLI and the other way round.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "RESULTS_CSV",
    "RESULTS_JSON",
    "SHIPPED_ROOT",
    "SPEC_FILE",
    "checkpoint_roots",
    "find_sweeps",
    "is_sweep_trial",
    "runs_root",
    "sweeps_root",
]

#: the shipped checkpoints, relative to the working directory (the repository root when run via make)
SHIPPED_ROOT = Path("checkpoints")

# a sweep folder: these files beside one checkpoint folder per trial
SPEC_FILE = "sweep.json"  # the resolved spec + how it was run, written when a sweep starts
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"


def runs_root() -> Path:
    """Where new runs are written (Train page, imports, sweeps): ``$DISVIZ_RUNS`` or ``./runs``."""
    return Path(os.environ.get("DISVIZ_RUNS") or "runs")


def sweeps_root() -> Path:
    """Default parent of sweep folders: under the runs root, so the app finds them."""
    return runs_root() / "sweeps"


def checkpoint_roots(extra: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """Folders searched for checkpoints, in order and without repeats: ./checkpoints, the runs root,
    ``$DISVIZ_CHECKPOINTS`` (os.pathsep-separated), then ``extra``."""
    roots = [SHIPPED_ROOT, runs_root()]
    roots += [
        Path(p.strip()).expanduser() for p in os.environ.get("DISVIZ_CHECKPOINTS", "").split(os.pathsep) if p.strip()
    ]
    roots += [Path(p).expanduser() for p in extra if str(p).strip()]
    out: list[Path] = []
    for r in roots:
        if r not in out:
            out.append(r)
    return out


def find_sweeps(roots: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Sweep folders (holding results.json) directly under ``<root>/sweeps/`` or ``<root>`` itself."""
    out: list[Path] = []
    for root in roots:
        root = Path(root)
        for base in (root / "sweeps", root):
            if not base.is_dir():
                continue
            for p in sorted(base.iterdir()):
                if p.is_dir() and not p.name.startswith(".") and (p / RESULTS_JSON).is_file() and p not in out:
                    out.append(p)
    return out


def is_sweep_trial(path: str | os.PathLike[str]) -> bool:
    """A checkpoint folder that is one trial of a sweep (its parent holds the sweep's table)."""
    parent = Path(path).parent
    return (parent / RESULTS_JSON).is_file() or (parent / SPEC_FILE).is_file()
