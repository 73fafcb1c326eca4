"""Output paths, validated before the work starts so a late failure never loses a result.

One rule for every command (train folders, annealing JSON, rendered images, exports): the path
must not sit under a file, must be of the right kind (a folder for checkpoints, a file with a
known extension otherwise), and its nearest existing folder must be writable.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from disviz.errors import UserError

__all__ = ["OutputPathError", "atomic_write", "check_output"]


class OutputPathError(UserError):
    """An output path cannot be written."""


def check_output(
    path: str | os.PathLike[str], kind: str = "file", suffixes: Sequence[str] = (), option: str = "--out"
) -> Path:
    """``path`` if a ``kind`` ('file' or 'folder') can be written there; OutputPathError otherwise."""
    p = Path(path)
    if not str(path).strip():
        raise OutputPathError(f"{option} is empty; give a path")
    if kind == "file":
        if p.is_dir():
            raise OutputPathError(
                f"{option} {p} is a folder; give a file name inside it, e.g. {p / ('result' + (suffixes[0] if suffixes else ''))}"
            )
        if suffixes and p.suffix.lower() not in suffixes:
            raise OutputPathError(f"{option} {p}: use a name ending in {' or '.join(suffixes)}")
    elif kind == "folder":
        if p.exists() and not p.is_dir():
            raise OutputPathError(f"{option} {p} is a file; give a folder path")
    else:
        raise ValueError(f"kind must be 'file' or 'folder', got {kind!r}")
    probe = p.parent if kind == "file" or not p.exists() else p
    probe = Path(os.path.abspath(probe))
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputPathError(f"{option} {p}: {probe} is a file, so nothing can be created under it")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputPathError(
            f"{option} {p}: {probe} is not writable (read-only or no permission); choose another place"
        )
    return p


def atomic_write(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` to ``path`` via a temp sibling + ``os.replace``: a reader (the app polling a table
    another process is filling) or a crash never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
