"""Output paths, validated before the work starts so a late failure never loses a result.

One rule for every command (train folders, annealing JSON, rendered images, exports): the path
must not sit under a file, must be of the right kind (a folder for checkpoints, a file with a
known extension otherwise), and its nearest existing folder must be writable.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from disviz.core.errors import UserError

__all__ = ["OutputPathError", "atomic_write", "check_output", "check_overwrite", "check_path_length"]


class OutputPathError(UserError):
    """An output path cannot be written."""


def check_output(
    path: str | os.PathLike[str], kind: str = "file", suffixes: Sequence[str] = (), option: str = "--out"
) -> Path:
    """``path`` if a ``kind`` ('file' or 'folder') can be written there; OutputPathError otherwise."""
    p = Path(path)
    if not str(path).strip():
        raise OutputPathError(f"{option} is empty; give a path")
    check_path_length(p, option, room=SIBLING_ROOM, error=OutputPathError)
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


def check_overwrite(
    path: str | os.PathLike[str], ours: Callable[[Path], bool], what: str, option: str = "--out"
) -> None:
    """Refuse to replace an existing file that ``ours`` does not recognise as one disviz wrote (``what``):
    a re-run may replace its own result, never a file of the user's that happens to have the name."""
    p = Path(path)
    if p.is_file() and not ours(p):
        raise OutputPathError(
            f"{option} {p} already exists and is not {what}; disviz only replaces files it wrote: "
            "move it or choose another name"
        )


# the writers here put hidden siblings next to an output (".NAME.tmp-PID-xxxxxxxx", ".NAME.old-…",
# ".NAME.lock"): the last name must leave room for them
SIBLING_ROOM = 32


def check_path_length(
    path: str | os.PathLike[str], option: str, room: int = 0, error: type[UserError] = UserError
) -> Path:
    """Refuse names the file system cannot hold (NAME_MAX per component, PATH_MAX in all) with one
    ``error`` line, before any stat() of them raises ENAMETOOLONG: input paths (checkpoints, specs,
    data files) and outputs (``room``: bytes kept for the writers' hidden siblings) alike."""
    p = Path(path)
    full = Path(os.path.abspath(p))
    probe = Path(full.anchor)
    for ancestor in reversed(full.parents):  # shortest first: a too-long name must not reach stat()
        if not os.path.isdir(ancestor):  # isdir swallows ENAMETOOLONG
            break
        probe = ancestor

    def limit(name: str, default: int) -> int:
        try:
            return int(os.pathconf(probe, name))
        except (OSError, ValueError, AttributeError):
            return default

    name_max, path_max = limit("PC_NAME_MAX", 255), limit("PC_PATH_MAX", 4096)
    parts = p.parts
    for i, part in enumerate(parts):
        extra = room if i == len(parts) - 1 else 0
        if len(os.fsencode(part)) + extra > name_max:
            why = f" ({name_max} per name, less room for temporary copies)" if extra else " (NAME_MAX)"
            raise error(
                f"{option}: the name {part[:40]}… is {len(os.fsencode(part)):,} bytes; this file system allows "
                f"{name_max - extra}{why}; choose a shorter name"
            )
    total = len(os.fsencode(os.path.abspath(p))) + room
    if total > path_max:
        raise error(
            f"{option}: the path is {total - room:,} bytes; this file system allows {path_max - room:,} "
            f"(PATH_MAX{', less room for temporary copies' if room else ''}); choose a shorter path"
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
