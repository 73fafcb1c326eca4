"""Checkpoint folders on disk: atomic swaps, fsync, JSON files and the writer lock.

Why its own module: the card (``card``) and the weights (``checkpoints``) are both written into a
folder under the same lock and swap rules; this is the part they share.

Writes are atomic: a new checkpoint is written into a hidden temp sibling folder, fsynced, and
swapped in with two renames, so a crash (or Ctrl-C) at any point leaves either the previous good
checkpoint or the new complete one. If the process dies between the two renames the previous
checkpoint sits in a hidden ``.<name>.old-*`` sibling and is restored by the next load / save.

A sibling lock file (``.<name>.lock``, created with O_CREAT|O_EXCL, holding pid / host / thread)
stops two processes or two app sessions (threads) from writing the same folder at once; the
holder thread may re-enter it (the trainer holds it for the whole run and saves inside it).
Locks left by dead processes on this host are detected and removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from disviz.core.errors import TrainingError

__all__ = [
    "CARD_FILE",
    "MODEL_FILE",
    "checkpoint_lock",
    "fsync_dir",
    "lock_path",
    "now",
    "recover_interrupted_swap",
    "settle",
    "write_json",
]

MODEL_FILE = "model.safetensors"
CARD_FILE = "card.json"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json(path: Path, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, allow_nan=True, default=_json_default)
        f.flush()
        os.fsync(f.fileno())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy scalars / arrays, torch tensors
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"card value of type {type(obj).__name__} is not JSON-serialisable")


def _backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.old-*"), key=lambda p: p.stat().st_mtime)


def recover_interrupted_swap(path: Path) -> None:
    """A crash between the two renames of a save leaves only the backup: put it back."""
    if path.exists():
        return
    backups = [b for b in _backups(path) if (b / CARD_FILE).is_file() and (b / MODEL_FILE).is_file()]
    if backups:
        with contextlib.suppress(OSError):
            os.replace(backups[-1], path)


def settle(path: Path, wait_s: float = 0.5) -> None:
    """Readers: if ``path`` is missing but a backup exists, a writer may be mid-swap; wait a
    moment, then restore the backup only if nobody holds the writer lock (a crashed save)."""
    if path.exists() or not _backups(path):
        return
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        time.sleep(0.02)
        if path.exists():
            return
    with contextlib.suppress(TrainingError):
        with checkpoint_lock(path, purpose="recover"):
            recover_interrupted_swap(path)


# --- locking -------------------------------------------------------------------------------
_held: dict[str, tuple[int, int]] = {}  # lock path -> (thread ident, depth)
_held_guard = threading.Lock()


def lock_path(path: Path) -> Path:
    path = Path(path).absolute()
    return path.parent / f".{path.name}.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _lock_is_stale(lock: Path) -> bool:
    try:
        info = json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        # unreadable / half-written: stale only when old (a writer may be mid-write)
        with contextlib.suppress(OSError):
            return time.time() - lock.stat().st_mtime > 30
        return False
    if info.get("host") != socket.gethostname():
        return False  # cannot check a pid on another machine
    pid = int(info.get("pid", -1))
    if pid == os.getpid():
        # our own process: every live holder is in _held and was refused before we got here
        return True
    return not _pid_alive(pid)


def _create_lock_file(lock: Path, path: Path, purpose: str, thread: int) -> None:
    lock.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(
        {"pid": os.getpid(), "host": socket.gethostname(), "thread": thread, "purpose": purpose, "since": now()}
    )
    for attempt in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if attempt == 0 and _lock_is_stale(lock):
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                continue
            try:
                holder = json.loads(lock.read_text(encoding="utf-8"))
                who = f"pid {holder.get('pid')} on {holder.get('host')} ({holder.get('purpose')}, since {holder.get('since')})"
            except (OSError, ValueError):
                who = "another process"
            raise TrainingError(
                f"checkpoint folder {path} is locked by {who}; wait for it to finish, or if that "
                f"process is gone delete {lock}"
            ) from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(payload)
        return


@contextlib.contextmanager
def checkpoint_lock(path: str | os.PathLike[str], purpose: str = "write") -> Iterator[Path]:
    """Exclusive writer lock on the checkpoint folder ``path`` (re-entrant for the holding thread).

    Raises TrainingError when another process or thread holds it. The lock is a sibling file
    so it survives the folder being swapped by an atomic save.
    """
    lock = lock_path(Path(path))
    key = str(lock)
    me = threading.get_ident()
    with _held_guard:
        if key in _held:
            owner, depth = _held[key]
            if owner == me:
                _held[key] = (owner, depth + 1)
                reentered = True
            else:
                raise TrainingError(
                    f"checkpoint folder {Path(path)} is being written by another session of this app "
                    f"(thread {owner}); wait until it finishes or choose another output folder"
                )
        else:
            reentered = False
            _held[key] = (me, 1)  # reserve before creating the file (no race with our own threads)
    if not reentered:
        try:
            _create_lock_file(lock, Path(path), purpose, me)
        except BaseException:
            with _held_guard:
                _held.pop(key, None)
            raise
    try:
        yield lock
    finally:
        with _held_guard:
            owner, depth = _held[key]
            if depth > 1:
                _held[key] = (owner, depth - 1)
                release = False
            else:
                del _held[key]
                release = True
        if release:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
