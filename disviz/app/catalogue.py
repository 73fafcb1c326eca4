"""The checkpoint catalogue: which checkpoints the app can open, and how one is opened.

Answers "what is there to look at?": the folders searched, one picker entry per checkpoint (read
from card.json only, so listing stays cheap), the default checkpoint, and the dataset and model a
card names. UI-free, like every module the pages call.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from disviz.core.errors import CheckpointError
from disviz.core.paths import is_sweep_trial
from disviz.data.base import GroundTruthDataset
from disviz.engine.card import Card, load_card
from disviz.engine.checkpoints import (
    SCAN_MAX_FOLDERS,
    SCAN_TIME_LIMIT_S,
    checkpoint_summary,
    list_checkpoints,
    load_checkpoint,
    scan_checkpoints,
)

__all__ = [
    "SCAN_LIMITS",
    "CheckpointEntry",
    "dataset_for_card",
    "default_entry",
    "list_entries",
    "load_model",
    "scan_folder",
]


@dataclass
class CheckpointEntry:
    """One picker entry: path + one-line summary, or the reason it cannot be used."""

    path: Path
    label: str
    card: Card | None = None
    error: str | None = None
    mtime: float = 0.0


def display_path(path: Path) -> str:
    """How the app names a checkpoint folder: relative to the working directory when under it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def list_entries(
    roots: Sequence[str | os.PathLike[str]], include: Sequence[str | os.PathLike[str]] = ()
) -> list[CheckpointEntry]:
    """Every checkpoint under ``roots`` with its card summary (cheap: reads card.json only).

    Sweep trials (folders next to a sweep's results table) are left out: a sweep holds dozens of
    near-identical runs that would bury the picker; the Sweeps page opens them by putting their
    path in ``include``, which lists it whatever its folder.
    """
    out = []
    extra = [Path(p).resolve() for p in include if str(p).strip()]
    for path in list_checkpoints(roots):
        if is_sweep_trial(path) and path.resolve() not in extra:
            continue
        out.append(_remembered_entry(path))
    listed = {e.path.resolve() for e in out if e is not None}
    for path in extra:
        if path not in listed and (path / "card.json").is_file():
            out.append(_remembered_entry(path))
    return [e for e in out if e is not None]


_ENTRY_MEMO: OrderedDict[tuple[str, str], tuple[tuple[int, ...], CheckpointEntry | None]] = OrderedDict()
_ENTRY_MEMO_SIZE = 2048  # entries (a class's server lists the same few dozen folders again and again)
_ENTRY_LOCK = threading.Lock()


def _file_stamp(path: Path) -> tuple[int, ...]:
    stamp: list[int] = []
    for name in ("card.json", "model.safetensors"):
        try:
            st = (path / name).stat()
            stamp += [st.st_mtime_ns, st.st_size]
        except OSError:
            stamp += [-1, -1]
    return tuple(stamp)


def _remembered_entry(path: Path) -> CheckpointEntry | None:
    """``_entry(path)``, parsed again only when card.json or the weights changed (mtime / size).

    Why: cards of long runs hold their training history (~1 MB of JSON); parsing every card on every
    page load was most of a page load's server CPU. Shared by all sessions; read-only; bounded.
    The key includes the working directory because the entry's label is relative to it.
    """
    key = (str(path.resolve()), os.getcwd())
    stamp = _file_stamp(path)
    with _ENTRY_LOCK:
        hit = _ENTRY_MEMO.get(key)
        if hit is not None and hit[0] == stamp:
            _ENTRY_MEMO.move_to_end(key)
            return hit[1]
    entry = _entry(path)
    with _ENTRY_LOCK:
        _ENTRY_MEMO[key] = (stamp, entry)
        _ENTRY_MEMO.move_to_end(key)
        while len(_ENTRY_MEMO) > _ENTRY_MEMO_SIZE:
            _ENTRY_MEMO.popitem(last=False)
    return entry


def _entry(path: Path) -> CheckpointEntry | None:
    name = display_path(path)
    try:
        mtime = max((path / f).stat().st_mtime for f in ("card.json", "model.safetensors") if (path / f).exists())
    except (OSError, ValueError):
        mtime = 0.0
    try:
        card = load_card(path)
    except CheckpointError as exc:
        return CheckpointEntry(path, f"{name} — broken", None, str(exc), mtime)
    if "annealing" in path.parts and card.model is None:
        return None
    prefix = ""
    if is_sweep_trial(path):
        name = (card.sweep or {}).get("sweep") or path.parent.name
        prefix = f"[sweep {name}] "
    if card.imported is not None:  # converted from another library (disviz.importers)
        prefix = f"[imported {card.imported.get('format', '?')}] "
    return CheckpointEntry(path, f"{prefix}{name} — {checkpoint_summary(card)}", card, None, mtime)


SCAN_LIMITS = f"{SCAN_MAX_FOLDERS:,} folders or {SCAN_TIME_LIMIT_S:g} s"


def scan_folder(folder: str | os.PathLike[str]) -> tuple[list[Path], bool]:
    """(checkpoints under ``folder``, complete?): the bounded walk the sidebar's "Add a folder" uses."""
    return scan_checkpoints(folder)


def default_entry(entries: Sequence[CheckpointEntry], dataset: str = "dsprites") -> CheckpointEntry | None:
    """The checkpoint the app opens on: the shipped ``dataset`` model with the highest MIG its card's
    evaluate report measured (the most instructive to look at first); else the first usable entry.
    Only ``./checkpoints`` counts, so a user's half-trained run never becomes the default, and not its
    ``seeds/`` folder: the extra seeds are there to show the spread, the shipped seed 0 is the model."""
    best, best_mig = None, -math.inf
    for e in entries:
        parts = Path(display_path(Path(e.path))).parts
        shipped = parts[:1] == ("checkpoints",) and parts[1:2] != ("seeds",)
        if e.error or e.card is None or e.card.dataset_name != dataset or not shipped:
            continue
        mig = e.card.scores.get("mig")
        if isinstance(mig, (int, float)) and math.isfinite(mig) and mig > best_mig:
            best, best_mig = e, float(mig)
    return best or next((e for e in entries if not e.error), entries[0] if entries else None)


def dataset_for_card(card: Card) -> GroundTruthDataset:
    """The dataset a checkpoint was trained on (name, options and real file from its card)."""
    from disviz.data import load_dataset

    name = card.dataset_name
    if not name:
        raise CheckpointError("the checkpoint card names no dataset; retrain it with this disviz")
    options = card.dataset_options
    path = card.train.dataset_path if card.train else None
    if path and not Path(path).exists():
        path = None  # moved machine: load_dataset falls back to $DISVIZ_DATA / procedural
    try:
        return load_dataset(name, path=path, **options)
    except TypeError:
        return load_dataset(name, path=path)


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> tuple[Any, Card]:
    """(model in eval mode, card); a thin alias so pages never import checkpoints directly."""
    return load_checkpoint(path, device=device)
