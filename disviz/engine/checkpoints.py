"""Checkpoint folders: ``model.safetensors`` + ``card.json`` (+ optimiser state for resume).

Why a folder and not one file: the card is human-readable JSON that the app, the CLI and
``evaluate`` read and update without touching the weights, and the weights are safetensors so
loading a checkpoint from someone else can never execute code (nothing is ever unpickled).

Writes are atomic: a new checkpoint is written into a hidden temp sibling folder, fsynced, and
swapped in with two renames, so a crash (or Ctrl-C) at any point leaves either the previous good
checkpoint or the new complete one, never a half-written folder. If the process dies between
the two renames the previous checkpoint sits in a hidden ``.<name>.old-*`` sibling and is
restored automatically by the next load / save.

Optimiser state is flattened into ``optimizer.safetensors`` (tensors) + ``optimizer.json``
(hyper-parameters and scalars) instead of ``torch.save``'s pickle.

A sibling lock file (``.<name>.lock``, created with O_CREAT|O_EXCL, holding pid / host / thread)
stops two processes or two app sessions (threads) from writing the same folder at once; the
holder thread may re-enter it (the trainer holds it for the whole run and saves inside it).
Locks left by dead processes on this host are detected and removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import shutil
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from disviz.core.errors import CheckpointError
from disviz.core.limits import LimitError, read_text_bounded
from disviz.core.paths import checkpoint_roots
from disviz.data.base import DatasetInfo
from disviz.engine.build import build_model, materialise, model_config
from disviz.engine.card import FORMAT, FORMAT_VERSION, Card, as_card, card_is_ours, load_card, write_card
from disviz.engine.folders import (
    CARD_FILE,
    MODEL_FILE,
    checkpoint_lock,
    fsync_dir,
    now,
    recover_interrupted_swap,
    write_json,
)
from disviz.metrics.registry import HEADLINE, finite_scores

__all__ = [
    "MODEL_FILE",
    "OPTIMIZER_FILE",
    "OPTIMIZER_JSON",
    "checkpoint_summary",
    "check_not_foreign",
    "is_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_optimizer_state",
    "save_checkpoint",
    "versions",
]

OPTIMIZER_FILE = "optimizer.safetensors"
OPTIMIZER_JSON = "optimizer.json"
_OWN_FILES = {MODEL_FILE, CARD_FILE, OPTIMIZER_FILE, OPTIMIZER_JSON}
_STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# --- small helpers -------------------------------------------------------------------------
def versions() -> dict[str, str]:
    """Library versions recorded in every card (scores and speed move with them)."""
    import numpy
    import safetensors

    import disviz

    out = {
        "disviz": disviz.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }
    with contextlib.suppress(Exception):
        import sklearn

        out["scikit-learn"] = sklearn.__version__
    return out


# --- saving --------------------------------------------------------------------------------
def _flatten_optimizers(optimizers: list[torch.optim.Optimizer]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimiser state dicts -> (tensors for safetensors, JSON for everything else)."""
    tensors: dict[str, torch.Tensor] = {}
    meta: list[dict[str, Any]] = []
    for i, opt in enumerate(optimizers):
        sd = opt.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for pid, pstate in sd["state"].items():
            for k, v in pstate.items():
                if isinstance(v, torch.Tensor):
                    tensors[f"opt{i}.{pid}.{k}"] = v.detach().to("cpu").contiguous().clone()
                else:
                    scalars.setdefault(str(pid), {})[k] = v
        groups = []
        for g in sd["param_groups"]:
            groups.append({k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()})
        meta.append(
            {
                "class": type(opt).__name__,
                "param_groups": groups,
                "tuple_keys": sorted({k for g in sd["param_groups"] for k, v in g.items() if isinstance(v, tuple)}),
                "scalars": scalars,
                "tensor_keys": sorted(k for k in tensors if k.startswith(f"opt{i}.")),
            }
        )
    return tensors, {"optimizers": meta}


def save_checkpoint(
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    card: Card | Mapping[str, Any],
    optimizers: list[torch.optim.Optimizer] | None = None,
    *,
    dtype: str = "float32",
    extra_tensors: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write the checkpoint folder ``path`` atomically and return it.

    ``card`` gets the format keys, ``versions`` and ``created``/``saved`` filled in.
    ``dtype='float16'`` stores floating weights in half precision for shipping (loaded back
    as float32). ``optimizers`` (for resume) and ``extra_tensors`` (e.g. RNG states) go into
    ``optimizer.safetensors`` + ``optimizer.json``. Files in the folder that are not ours
    (plots, exports) are carried over to the new folder.
    """
    path = Path(path)
    if dtype not in _STORAGE_DTYPES:
        raise CheckpointError(f"unknown storage dtype {dtype!r}; use one of {sorted(_STORAGE_DTYPES)}")
    store = _STORAGE_DTYPES[dtype]
    with checkpoint_lock(path, purpose="save"):
        path.parent.mkdir(parents=True, exist_ok=True)
        recover_interrupted_swap(path)
        if path.exists() and not path.is_dir():
            raise CheckpointError(f"{path} exists and is not a folder; choose another checkpoint path")
        check_not_foreign(path, option="checkpoint folder")
        # we hold the folder's lock, so any temp folder of it is left over from a killed save: remove it
        for stale in path.parent.glob(f".{path.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir()
            # model.safetensors: contiguous CPU copies (also breaks tied-weight sharing)
            state: dict[str, torch.Tensor] = {}
            for k, v in model.state_dict().items():
                t = v.detach().to("cpu")
                if t.is_floating_point() and store != torch.float32:
                    t = t.to(store)
                state[k] = t.contiguous().clone()
            save_file(state, str(tmp / MODEL_FILE), metadata={"format": FORMAT, "dtype": dtype})
            full = dataclasses.replace(as_card(card))  # a copy: the caller's card keeps its fields
            full.format, full.format_version = FORMAT, FORMAT_VERSION
            full.versions = full.versions or versions()
            full.created = full.created or now()
            full.saved = now()
            full.storage_dtype = dtype
            if optimizers or extra_tensors:
                tensors, meta = _flatten_optimizers(list(optimizers or []))
                for k, v in (extra_tensors or {}).items():
                    tensors[f"extra.{k}"] = v.detach().to("cpu").contiguous().clone()
                meta["extra_keys"] = sorted(extra_tensors or {})
                save_file(tensors, str(tmp / OPTIMIZER_FILE))
                write_json(tmp / OPTIMIZER_JSON, meta)
            write_card(tmp, full)
            if path.is_dir():  # keep files others put into the folder
                for entry in path.iterdir():
                    if entry.name not in _OWN_FILES and not (tmp / entry.name).exists():
                        if entry.is_dir():
                            shutil.copytree(entry, tmp / entry.name)
                        else:
                            shutil.copy2(entry, tmp / entry.name)
            for f in tmp.iterdir():
                if f.is_file():
                    with open(f, "rb") as fh:
                        os.fsync(fh.fileno())
            fsync_dir(tmp)
            # swap: path -> backup, tmp -> path, drop backup
            backup = None
            if path.exists():
                backup = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
                os.replace(path, backup)
            os.replace(tmp, path)
            fsync_dir(path.parent)
            if backup is not None:
                shutil.rmtree(backup, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            recover_interrupted_swap(path)
            raise
    return path


# --- foreign folders ----------------------------------------------------------------------
def check_not_foreign(path: str | os.PathLike[str], option: str = "--out") -> None:
    """Refuse a folder holding a checkpoint's files (weights, optimiser state) without a disviz card.

    Why: such files were written by someone else (another library, a copy that lost its card), and
    saving a checkpoint there would replace them; disviz never overwrites a file it did not write.
    """
    p = Path(path)
    try:
        if not p.is_dir():
            return
        present = sorted(name for name in _OWN_FILES if (p / name).exists())
    except OSError:
        return  # unreadable: the writer's own checks say so
    if not present or (CARD_FILE in present and card_is_ours(p / CARD_FILE)):
        return
    card = f"no {CARD_FILE}" if CARD_FILE not in present else f"its {CARD_FILE} was not written by disviz"
    raise CheckpointError(
        f"{option} {p} holds {', '.join(present)} but {card}, so writing a checkpoint "
        f"there would replace files disviz did not write; move them elsewhere (or, for a model trained elsewhere, "
        f"turn it into a checkpoint with `python -m disviz import`), or choose another {option}"
    )


# --- reading -------------------------------------------------------------------------------
def is_checkpoint(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    return (p / CARD_FILE).is_file() and (p / MODEL_FILE).is_file()


def _model_probe(card: Card, where: Path) -> torch.nn.Module:
    """The card's model on the meta device (shapes only, nothing allocated), built the one way
    training builds models, so hostile or mistyped configs are refused before any allocation."""
    if "config" not in card.to_dict():
        raise CheckpointError(f"{where}: card has no 'config' object; the checkpoint is incomplete, retrain it")
    try:
        info = DatasetInfo.from_dict(card.dataset)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{where}: card 'dataset' entry is missing or malformed ({exc!r}); retrain the checkpoint"
        ) from None
    at = f"{where}: "
    config = model_config(str(card.model), info, base=card.config, error=CheckpointError, where=at)
    return build_model(str(card.model), config, info, meta=True, error=CheckpointError, where=at)


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Card]:
    """(model in eval mode on ``device``, its card). Refuses malformed folders with CheckpointError.

    Checks: folder and files exist, card JSON / format / version, model name known, config
    keys, tensor names and shapes equal to what the model expects. Weights stored in half
    precision are cast back to the model's dtype (float32).
    """
    path = Path(path)
    card = load_card(path)
    weights = path / MODEL_FILE
    if not weights.is_file():
        raise CheckpointError(f"{path} has no {MODEL_FILE}; the checkpoint is incomplete, retrain or copy it again")
    # shapes first, on the meta device: a card asking for a huge network is refused before allocation
    probe = _model_probe(card, path)
    shapes = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    try:
        with safe_open(str(weights), framework="pt", device="cpu") as f:
            keys = set(f.keys())
            missing = sorted(set(shapes) - keys)
            unexpected = sorted(keys - set(shapes))
            if missing or unexpected:
                raise CheckpointError(
                    f"{weights}: tensors do not match model {card.model!r} "
                    f"(missing {missing[:5]}{'…' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                    f"{'…' if len(unexpected) > 5 else ''}); the weights belong to a different model or config"
                )
            for k in sorted(keys):  # header only: no tensor is read yet
                stored = tuple(f.get_slice(k).get_shape())
                if stored != shapes[k]:
                    raise CheckpointError(
                        f"{weights}: tensor {k!r} has shape {stored} but model {card.model!r} with this "
                        f"card config expects {shapes[k]}; card config and weights disagree, retrain the checkpoint"
                    )
            model = materialise(probe)
            expected = model.state_dict()
            state = {}
            for k in sorted(keys):
                t = f.get_tensor(k)
                want = expected[k]
                if t.is_floating_point() and t.dtype != want.dtype:
                    t = t.to(want.dtype)
                state[k] = t
    except SafetensorError as exc:
        raise CheckpointError(
            f"{weights} is not a readable safetensors file ({exc}); copy it again or retrain"
        ) from None
    model.load_state_dict(state, strict=True)
    model.to(torch.device(device) if isinstance(device, str) else device)
    model.eval()
    return model, card


def load_optimizer_state(
    path: str | os.PathLike[str], optimizers: list[torch.optim.Optimizer], device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Restore optimiser state saved by ``save_checkpoint`` into ``optimizers`` (same layout).

    Returns the extra tensors (e.g. RNG states). Raises CheckpointError if the saved layout
    does not match (different number of optimisers or parameter groups).
    """
    path = Path(path)
    meta_file, tensor_file = path / OPTIMIZER_JSON, path / OPTIMIZER_FILE
    if not meta_file.is_file() or not tensor_file.is_file():
        raise CheckpointError(
            f"{path} has no optimiser state ({OPTIMIZER_JSON}), e.g. a shipped checkpoint; continue it with "
            "--reset-optimizer (fresh optimiser from these weights) or start a new run"
        )
    try:
        meta = json.loads(read_text_bounded(meta_file, "optimiser state"))
        with safe_open(str(tensor_file), framework="pt", device="cpu") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, ValueError, SafetensorError, LimitError) as exc:
        raise CheckpointError(f"{path}: optimiser state is unreadable ({exc}); start a new run") from None
    saved = meta.get("optimizers", []) if isinstance(meta, dict) else None
    if not isinstance(saved, list):
        raise CheckpointError(f"{meta_file} is malformed (no 'optimizers' list); continue with --reset-optimizer")
    if len(saved) != len(optimizers):
        raise CheckpointError(
            f"{path}: {len(saved)} saved optimisers but the model uses {len(optimizers)}; cannot resume"
        )
    for i, (opt, m) in enumerate(zip(optimizers, saved, strict=True)):
        if not isinstance(m, dict) or not isinstance(m.get("param_groups"), list):
            raise CheckpointError(
                f"{meta_file}: optimiser {i} has no 'param_groups' list; continue with --reset-optimizer"
            )
        if len(m["param_groups"]) != len(opt.param_groups):
            raise CheckpointError(f"{path}: optimiser {i} parameter groups differ from the model's; cannot resume")
        state: dict[int, dict[str, Any]] = {}
        for key in m.get("tensor_keys", []):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = tensors[key]
        for pid, scal in m.get("scalars", {}).items():
            state.setdefault(int(pid), {}).update(scal)
        tuple_keys = set(m.get("tuple_keys", []))
        groups = [{k: (tuple(v) if k in tuple_keys else v) for k, v in g.items()} for g in m["param_groups"]]
        try:
            opt.load_state_dict({"state": state, "param_groups": groups})
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: optimiser {i} state does not fit ({exc}); cannot resume") from None
        _match_param_layout(opt)
    return {k[len("extra.") :]: v for k, v in tensors.items() if k.startswith("extra.")}


def _match_param_layout(opt: torch.optim.Optimizer) -> None:
    """Give state tensors their parameter's memory layout (safetensors stores them contiguous).

    Needed because the fused Adam kernel (torch 2.13, CPU) walks parameter and state storage
    in lockstep: a channels_last parameter with a contiguous ``exp_avg`` silently gets wrong
    updates (measured: foreach / for-loop Adam are unaffected), so a resumed run would drift
    from the uninterrupted one. tests/test_train.py checks resume is bitwise exact.
    """
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p, {})
            for k, v in list(st.items()):
                if isinstance(v, torch.Tensor) and v.shape == p.shape and v.stride() != p.stride():
                    st[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


SCAN_MAX_FOLDERS = 20_000
SCAN_TIME_LIMIT_S = 5.0


def scan_checkpoints(
    root: str | os.PathLike[str], max_folders: int = SCAN_MAX_FOLDERS, time_limit_s: float = SCAN_TIME_LIMIT_S
) -> tuple[list[Path], bool]:
    """(checkpoint folders under ``root``, complete?). Hidden folders are skipped; the walk stops
    after ``max_folders`` folders or ``time_limit_s`` seconds so that pointing at ``/`` answers in
    seconds (complete=False) instead of walking the whole disk."""
    root = Path(root)
    if not root.is_dir():
        return [], True
    found: list[Path] = []
    t0 = time.monotonic()
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda exc: None):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # temp / backup folders of saves
        seen += 1
        if CARD_FILE in filenames:
            found.append(Path(dirpath).resolve())
        if seen >= max_folders or time.monotonic() - t0 > time_limit_s:
            return sorted(found), False
    return sorted(found), True


def list_checkpoints(roots: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None) -> list[Path]:
    """Checkpoint folders (those holding card.json) under ``roots``, sorted; hidden folders skipped;
    each root's walk is bounded (``scan_checkpoints``). ``roots=None`` means ``disviz.core.paths.checkpoint_roots()``."""
    if roots is None:
        roots = checkpoint_roots()
    if isinstance(roots, (str, os.PathLike)):
        roots = [roots]
    found: set[Path] = set()
    for root in roots:
        found.update(scan_checkpoints(root)[0])
    return sorted(found)


def checkpoint_summary(card: Card) -> str:
    """One line for pickers: 'betavae · dsprites · 300,000 steps · InfoM 0.41 · MIG 0.22'."""
    parts = [str(card.model or "?"), str(card.dataset_name or "?"), f"{card.steps:,} steps"]
    scores = finite_scores(card.scores)
    parts += [f"{s.label} {scores[s.key]:.2f}" for s in HEADLINE if s.key in scores]
    return " · ".join(parts)
