"""A sweep's results table: ``results.json`` + ``results.csv`` in the sweep folder, rewritten
atomically after every change so a killed driver never loses a finished result and the app can
poll it; reading it back (typed), flat rows, CSV, the printed table and rank correlations."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from disviz.core.errors import UserError
from disviz.core.limits import LimitError, read_text_bounded
from disviz.core.outputs import atomic_write
from disviz.core.paths import RESULTS_CSV, RESULTS_JSON
from disviz.sweeps.common import FINISHED, NODE_KEYS, STATUSES, SweepError, format_value

if TYPE_CHECKING:
    from disviz.sweeps.spec import SweepSpec, Trial

__all__ = [
    "SweepResults",
    "flat_rows",
    "format_table",
    "live_status",
    "load_results",
    "results_csv",
    "spearman_matrix",
    "table_columns",
]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class SweepResults:
    """The results table of one sweep folder, rewritten atomically after every change.

    ``results.json`` holds the spec, how it was run and one row per trial (status, attempts,
    times, scores, the checkpoint folder); ``results.csv`` is the same table flat, one column per
    hyper-parameter and per score. Finished rows (done / nan) are never dropped, not even when a
    resumed spec no longer lists their trial.
    """

    def __init__(self, folder: str | os.PathLike[str], spec: SweepSpec, run: dict[str, Any] | None = None):
        self.folder = Path(folder)
        self.spec = spec
        self.run = dict(run or {})
        self.rows: dict[str, dict[str, Any]] = {}

    # -- state ------------------------------------------------------------------------------
    def check_start(self, resume: bool) -> dict[str, Any] | None:
        """The existing table, if any; a SweepError when there is one and this is not a resume."""
        existing = load_results(self.folder) if (self.folder / RESULTS_JSON).is_file() else None
        if existing is not None and not resume:
            done = sum(1 for r in existing["trials"] if r.get("status") in FINISHED)
            raise SweepError(
                f"{self.folder} already holds sweep results ({done} finished trial(s)); pass --resume to "
                "continue it, or change 'name' / 'out' in the spec"
            )
        return existing

    def start(self, trials: Sequence[Trial], resume: bool) -> list[Trial]:
        """Open the table for a (resumed) run; returns the trials still to run."""
        existing = self.check_start(resume)
        if existing is not None:
            self.run = {
                **existing.get("run", {}),
                **self.run,
                "resumes": int(existing.get("run", {}).get("resumes", 0)) + 1,
            }
            for row in existing["trials"]:
                if isinstance(row, dict) and isinstance(row.get("trial"), str):
                    self.rows[row["trial"]] = row
        todo = []
        for t in trials:
            row = self.rows.get(t.id)
            if row is not None and row.get("status") in FINISHED:
                continue
            recovered = _recover_from_card(self.folder / t.id, t)
            if recovered is not None:  # finished, but the driver died before it wrote the row
                self.rows[t.id] = {**self._base_row(t), **recovered}
                continue
            self.rows[t.id] = {**self._base_row(t), "attempts": int((row or {}).get("attempts", 0))}
            todo.append(t)
        self.write()
        return todo

    def _base_row(self, t: Trial) -> dict[str, Any]:
        return {
            "trial": t.id,
            "model": t.model,
            "dataset": t.dataset,
            "seed": t.seed,
            "steps": t.steps,
            "hparams": dict(t.hparams),
            "config": dict(t.overrides),
            "status": "pending",
            "attempts": 0,
            "wall_s": None,
            "train_s": None,
            "eval_s": None,
            "scores": {},
            **dict.fromkeys(NODE_KEYS),  # which machine ran it (sweeps.runner.node_info)
            "checkpoint": t.id,
            "error": "",
            "finished": None,
        }

    def update(self, trial_id: str, **fields: Any) -> None:
        self.rows[trial_id].update(fields)
        self.write()

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for r in self.rows.values():
            out[r.get("status", "pending")] = out.get(r.get("status", "pending"), 0) + 1
        return out

    # -- files ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "sweep": self.spec.name,
            "description": self.spec.description,
            "spec": self.spec.raw,
            "metrics": list(self.spec.metrics),
            "run": self.run,
            "updated": _now(),
            "trials": list(self.rows.values()),
        }

    def write(self) -> None:
        data = self.to_dict()
        atomic_write(self.folder / RESULTS_JSON, json.dumps(data, indent=1, allow_nan=True, default=str))
        atomic_write(self.folder / RESULTS_CSV, results_csv(data))


def _recover_from_card(folder: Path, t: Trial) -> dict[str, Any] | None:
    """A trial whose card says it finished (its ``sweep`` entry) although the table does not."""
    from disviz.engine.card import load_card
    from disviz.engine.checkpoints import is_checkpoint

    if not is_checkpoint(folder):
        return None
    try:
        entry = load_card(folder).sweep
    except UserError:
        return None
    if not isinstance(entry, dict) or entry.get("trial") != t.id or entry.get("status") not in FINISHED:
        return None
    return {
        k: entry[k]
        for k in ("status", "attempts", "wall_s", "train_s", "eval_s", "scores", "error", "finished", *NODE_KEYS)
        if k in entry
    }


def live_status(folder: str | os.PathLike[str], row: Mapping[str, Any]) -> str:
    """A row's status, with 'queued' shown as 'running' while the trial holds its folder's lock."""
    status = str(row.get("status", "pending"))
    if status == "queued":
        from disviz.engine.folders import lock_path  # the engine's and evaluate's writer lock

        if lock_path(Path(folder) / str(row.get("trial"))).exists():
            return "running"
    return status


def load_results(folder: str | os.PathLike[str], live: bool = False) -> dict[str, Any]:
    """The parsed ``results.json`` of a sweep folder (JSON only: nothing is unpickled); ``live``:
    statuses as ``live_status`` reports them."""
    path = Path(folder) / RESULTS_JSON
    try:
        data = json.loads(read_text_bounded(path, "sweep results"))
    except LimitError as exc:
        raise SweepError(str(exc)) from None
    except FileNotFoundError:
        raise SweepError(
            f"{folder} holds no {RESULTS_JSON}; it is not a sweep folder (run python -m disviz sweep)"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SweepError(f"{path} cannot be read ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("trials"), list):
        raise SweepError(f"{path} is not a sweep results table (no 'trials' list)")
    data["trials"] = [r for r in data["trials"] if isinstance(r, dict) and isinstance(r.get("trial"), str)]
    _check_table(data, path)
    if live:
        for r in data["trials"]:
            r["status"] = live_status(folder, r)
    return data


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# every row field the table, the CLI report and the Sweeps page read: its check and what it must be
_ROW_TYPES: dict[str, tuple[Any, str]] = {
    **dict.fromkeys(
        ("model", "dataset", "status", "error", *NODE_KEYS, "checkpoint", "finished"),
        (lambda v: isinstance(v, str), "a string"),
    ),  # fmt: skip
    **dict.fromkeys(("seed", "attempts"), (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")),
    "steps": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    **dict.fromkeys(("wall_s", "train_s", "eval_s"), (_is_num, "a number")),
    **dict.fromkeys(("hparams", "config"), (lambda v: isinstance(v, dict), "an object")),
    "scores": (
        lambda v: isinstance(v, dict) and all(x is None or _is_num(x) for x in v.values()),
        "an object of numbers",
    ),  # fmt: skip
}


def _check_table(data: dict[str, Any], path: Path) -> None:
    """Types of every field a reader uses (null allowed): a damaged or edited table is one clear error,
    not a TypeError in the page."""
    fix = "restore it, or delete it and run the sweep with --resume (finished trials are recovered from their cards)"
    metrics = data.get("metrics")
    if metrics is not None and not (isinstance(metrics, list) and all(isinstance(m, str) for m in metrics)):
        raise SweepError(f"{path}: 'metrics' must be a list of score names; {fix}")
    for key in ("run", "spec"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise SweepError(f"{path}: {key!r} must be an object; {fix}")
    for row in data["trials"]:
        for key, (ok, what) in _ROW_TYPES.items():
            if row.get(key) is not None and not ok(row[key]):
                raise SweepError(
                    f"{path}: trial {row['trial']!r}: {key!r} must be {what}, found {row[key]!r:.60}; {fix}"
                )


def table_columns(data: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(hyper-parameter names, metric names) of a results table, in a stable order."""
    hp = sorted({k for r in data["trials"] for k in (r.get("hparams") or {})})
    metrics = list(data.get("metrics") or [])
    for r in data["trials"]:
        for k in r.get("scores") or {}:
            if k not in metrics:
                metrics.append(k)
    return hp, metrics


def flat_rows(data: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """(header, rows): one flat dict per trial, a column per hyper-parameter and per score."""
    hp, metrics = table_columns(data)
    header = ["trial", "model", "dataset", *hp, "seed", "steps", "status", "attempts", "wall_s", *metrics]
    header += [*NODE_KEYS, "config", "checkpoint", "error"]
    rows = []
    for r in data["trials"]:
        keys = ("trial", "model", "dataset", "seed", "steps", "status", "attempts", "wall_s", *NODE_KEYS)
        flat = {k: r.get(k) for k in keys}
        flat.update({k: (r.get("hparams") or {}).get(k) for k in hp})
        flat.update({k: (r.get("scores") or {}).get(k) for k in metrics})
        flat["config"] = " ".join(f"{k}={format_value(v)}" for k, v in sorted((r.get("config") or {}).items()))
        flat["checkpoint"], flat["error"] = r.get("checkpoint"), r.get("error") or ""
        rows.append(flat)
    return header, rows


def results_csv(data: Mapping[str, Any]) -> str:
    header, rows = flat_rows(data)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(
            {k: ("" if v is None else format_value(v) if isinstance(v, (list, tuple)) else v) for k, v in r.items()}
        )
    return buf.getvalue()


def format_table(data: Mapping[str, Any]) -> str:
    """The table for a terminal (``sweep SPEC --report``): short columns, scores to 3 decimals."""
    header, rows = flat_rows(data)
    header = [h for h in header if h not in ("node_ip", "node_id", "config", "checkpoint", "error")]

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    cells = [[cell(r.get(h)) for h in header] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    errors = [f"{r['trial']}: {r['error']}" for r in rows if r.get("error")]
    return "\n".join(lines + (["", "errors:", *errors] if errors else []))


def spearman_matrix(data: Mapping[str, Any], metrics: Sequence[str] | None = None) -> tuple[list[str], Any]:
    """(metric names, Spearman rank-correlation matrix) over the finished trials.

    Rank correlation because the metrics live on different scales and only their orderings of
    the models are comparable; a metric with fewer than 3 scored trials or no spread is left out.
    """
    import numpy as np
    from scipy.stats import spearmanr

    _, all_metrics = table_columns(data)
    names = [m for m in (metrics or all_metrics)]
    rows = [r for r in data["trials"] if r.get("status") == "done"]
    cols = []
    kept = []
    for m in names:
        v = np.array([float((r.get("scores") or {}).get(m, float("nan"))) for r in rows], dtype=float)
        ok = np.isfinite(v)
        if ok.sum() >= 3 and np.nanstd(v[ok]) > 0:
            cols.append(v)
            kept.append(m)
    k = len(kept)
    mat = np.full((k, k), np.nan)
    for i in range(k):
        for j in range(k):
            ok = np.isfinite(cols[i]) & np.isfinite(cols[j])
            if ok.sum() >= 3:
                mat[i, j] = 1.0 if i == j else float(spearmanr(cols[i][ok], cols[j][ok]).statistic)
    return kept, mat
