"""Read tensors out of PyTorch / Lightning checkpoints without running anything the file names.

Why not ``torch.load``: a ``.ckpt`` is a pickle, and unpickling calls whatever callables the file
names (``os.system`` included). ``weights_only=True`` is safe but refuses real Lightning
checkpoints, whose hyper-parameters hold the training library's own objects (disent pickles its
whole ``AutoEncoder`` and config dataclass). Here ``data.pkl`` is read by a ``pickle.Unpickler``
whose ``find_class``:

* maps the handful of torch tensor-rebuild functions and storage types onto *our* lazy builders
  (a tensor is a record of storage key, offset, size and stride; nothing is read yet);
* refuses, with ``UnsafeCheckpointError``, anything from modules that can act on the system or on
  Python itself (``os``, ``subprocess``, ``builtins`` other than plain containers, ``importlib``,
  torch / numpy functions, …);
* gives every other name an inert stand-in class: calling, constructing or filling it records the
  arguments and runs nothing, so the library's config objects come through as data to read.

Storages are then read from the zip records one by one (bounds-checked against the record's
size) for just the tensors a caller asks for, after ``check_parameters`` has refused sizes
beyond the memory budget.
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import math
import os
import pickle
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from disviz.core.limits import LimitError, check_parameters
from disviz.importers.errors import ModelImportError, UnsafeCheckpointError

__all__ = [
    "LazyTensor",
    "Stub",
    "TorchArchive",
    "is_stub",
    "open_torch_archive",
    "stub_name",
]

MAX_PICKLE_BYTES = 64 * 1024 * 1024  # data.pkl of a real checkpoint is kilobytes to a few MB

_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}
_NUMPY_DTYPES = {
    torch.float32: np.float32,
    torch.float64: np.float64,
    torch.float16: np.float16,
    torch.int64: np.int64,
    torch.int32: np.int32,
    torch.int16: np.int16,
    torch.int8: np.int8,
    torch.uint8: np.uint8,
    torch.bool: np.bool_,
}

# top-level modules whose names in a checkpoint are refused outright: they reach the system,
# the interpreter or the file system, and no honest checkpoint needs them
_REFUSED_MODULES = frozenset(
    """os posix nt subprocess sys builtins __builtin__ shutil socket importlib runpy pickle _pickle marshal
    types code codeop ctypes pty webbrowser multiprocessing threading _thread signal io _io tempfile operator
    functools inspect platform asyncio pdb bdb timeit codecs _codecs posixpath ntpath glob fileinput zipfile
    tarfile http urllib ftplib smtplib xmlrpc ssl select selectors mmap resource gc weakref atexit site
    sysconfig distutils setuptools pip venv ensurepip logging copyreg _posixsubprocess dill cloudpickle
    joblib yaml ruamel""".split()
)
_SAFE_BUILTINS = {"set": set, "frozenset": frozenset, "slice": slice, "complex": complex, "bytearray": bytearray}


# --- inert stand-ins ------------------------------------------------------------------------
class Stub:
    """Stand-in for a class named in a pickle: records what the pickle hands it, runs nothing.

    Subclasses are made per name (``_stub_module`` / ``_stub_name``). Attribute reads of what the
    pickle set work as usual (``obj.__dict__`` after BUILD); list / dict filling opcodes are kept.
    """

    _stub_module = ""
    _stub_name = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE: cls(*args)
        self.__dict__["_stub_args"] = args
        self.__dict__["_stub_kwargs"] = kwargs

    def __setstate__(self, state: Any) -> None:  # BUILD
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            state = {**state[0], **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update({k: v for k, v in state.items() if isinstance(k, str)})
        else:
            self.__dict__["_stub_state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:  # SETITEMS on a dict subclass
        self.__dict__.setdefault("_stub_items", {})[key] = value

    def append(self, value: Any) -> None:  # APPENDS on a list subclass
        self.__dict__.setdefault("_stub_list", []).append(value)

    def extend(self, values: Any) -> None:
        self.__dict__.setdefault("_stub_list", []).extend(values)

    def __repr__(self) -> str:
        return f"<stand-in {self._stub_module}.{self._stub_name}>"


def is_stub(obj: Any) -> bool:
    return isinstance(obj, Stub) or (isinstance(obj, type) and issubclass(obj, Stub))


def stub_name(obj: Any) -> str:
    """'module.Qual.Name' of a stand-in instance or class ('' for anything else)."""
    cls = obj if isinstance(obj, type) else type(obj)
    if not (isinstance(cls, type) and issubclass(cls, Stub)):
        return ""
    return f"{cls._stub_module}.{cls._stub_name}"


# --- lazy tensors ---------------------------------------------------------------------------
class _Sealed:
    """What ``find_class`` hands out for allowed names: one shared object per name, so a pickle's BUILD
    opcode (which sets attributes or calls ``__setstate__`` on any object it holds) must not change it
    for later loads; no ``__dict__``, and ``__setstate__`` refuses."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise UnsafeCheckpointError("the checkpoint tries to modify a tensor-rebuild helper; refused")


class _StorageType(_Sealed):
    """torch.<X>Storage named in the pickle: only its dtype matters."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: torch.dtype):
        object.__setattr__(self, "dtype", dtype)


class _Call(_Sealed):
    """An allowed callable (our own inert builders, plain containers)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Any):
        object.__setattr__(self, "fn", fn)

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


@dataclass(frozen=True)
class _LazyStorage:
    key: str
    dtype: torch.dtype
    numel: int


@dataclass(frozen=True)
class LazyTensor:
    """A tensor named by the pickle; read from the archive only by ``TorchArchive.tensor``."""

    storage: _LazyStorage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def dtype(self) -> torch.dtype:
        return self.storage.dtype


def _int_tuple(v: Any, what: str) -> tuple[int, ...]:
    if not isinstance(v, (tuple, list)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in v):
        raise ModelImportError(f"malformed tensor record in the checkpoint ({what} = {v!r})")
    return tuple(v)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> LazyTensor:
    if not isinstance(storage, _LazyStorage) or not isinstance(offset, int):
        raise ModelImportError("malformed tensor record in the checkpoint (storage or offset)")
    shape, strides = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(shape) != len(strides) or any(s < 0 for s in shape) or any(s < 0 for s in strides) or offset < 0:
        raise ModelImportError(f"malformed tensor record in the checkpoint (size {shape}, stride {strides})")
    return LazyTensor(storage, offset, shape, strides)


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    builders = [v for (m, _), v in _ALLOWED.items() if m == "torch._utils"]
    if not any(func is b for b in builders) or not isinstance(args, tuple):
        raise UnsafeCheckpointError("the checkpoint asks to rebuild a tensor through an unexpected function")
    return func(*args)


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """copyreg._reconstructor for stand-ins only (protocol 0/1 pickles of plain objects)."""
    if isinstance(cls, type) and issubclass(cls, Stub):
        return cls.__new__(cls)
    raise UnsafeCheckpointError(f"the checkpoint asks to reconstruct {cls!r} through copyreg; refused")


def _safe_getattr(obj: Any, name: Any) -> Any:
    """getattr on a stand-in class only (how protocol-2 pickles name nested classes, e.g. Framework.cfg)."""
    if isinstance(obj, type) and issubclass(obj, Stub) and isinstance(name, str) and not name.startswith("__"):
        return _make_stub(obj._stub_module, f"{obj._stub_name}.{name}")
    raise UnsafeCheckpointError(f"the checkpoint calls getattr({obj!r}, {name!r}); refused (no code is run)")


_STUBS: dict[tuple[str, str], type[Stub]] = {}


def _make_stub(module: str, name: str) -> type[Stub]:
    key = (module, name)
    if key not in _STUBS:
        _STUBS[key] = type(name.rsplit(".", 1)[-1], (Stub,), {"_stub_module": module, "_stub_name": name})
    return _STUBS[key]


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _Call(_rebuild_tensor),
    ("torch._utils", "_rebuild_tensor"): _Call(_rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): _Call(_rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): _Call(_rebuild_parameter),
    ("torch._tensor", "_rebuild_from_type_v2"): _Call(_rebuild_from_type_v2),
    ("collections", "OrderedDict"): _Call(collections.OrderedDict),
    ("copyreg", "_reconstructor"): _Call(_reconstructor),
    ("torch", "Size"): _Call(tuple),
    **{("builtins", k): _Call(v) for k, v in _SAFE_BUILTINS.items()},
    ("builtins", "getattr"): _Call(_safe_getattr),
    **{("torch", k): _StorageType(v) for k, v in _STORAGE_DTYPES.items()},
    **{("torch.storage", k): _StorageType(v) for k, v in _STORAGE_DTYPES.items()},
}
# numpy scalars / arrays in loop states: kept as inert stand-ins (never needed, never built)
_NUMPY_STANDINS = {
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
}


class SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that never resolves a name to real code (see the module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names first, as pickle's own find_class does (protocol-2 files say 'commands' for subprocess)
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        key = (module, name)
        if key in _ALLOWED:
            return _ALLOWED[key]
        if key in _NUMPY_STANDINS:
            return _make_stub(module, name)
        top = module.split(".", 1)[0]
        if top in _REFUSED_MODULES or top in ("torch", "numpy"):
            if top in ("torch", "numpy") and _is_library_class(module, name):
                return _make_stub(module, name)  # torch.nn layers pickled inside a model object
            raise UnsafeCheckpointError(
                f"the file asks to call {module}.{name} while loading; refused: only tensors and plain data are "
                "read from a checkpoint (no code from the file was run)"
            )
        return _make_stub(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if (
            isinstance(pid, tuple)
            and len(pid) == 5
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
            and isinstance(pid[2], str)
            and isinstance(pid[4], int)
            and pid[4] >= 0
        ):
            return _LazyStorage(pid[2], pid[1].dtype, pid[4])
        raise ModelImportError(f"malformed storage record in the checkpoint: {pid!r:.80}")


def _is_library_class(module: str, name: str) -> bool:
    """True when torch / numpy's own ``module.name`` is a class (it then becomes a stand-in);
    functions from them are refused."""
    obj: Any = sys.modules.get(module)  # only modules already imported: a file never makes us import one
    if obj is None:
        return name[:1].isupper()  # an unloaded torch module's class (by convention) stays an inert stand-in
    for part in name.split("."):
        obj = getattr(obj, part, None)
    return isinstance(obj, type)


def safe_loads(data: bytes) -> Any:
    """Unpickle ``data`` with ``SafeUnpickler``; tensors come back as ``LazyTensor`` records."""
    try:
        return SafeUnpickler(io.BytesIO(data)).load()
    except (UnsafeCheckpointError, ModelImportError):
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise ModelImportError(
            f"the checkpoint's pickle is corrupt or truncated ({type(exc).__name__}: {exc})"
        ) from None
    except RecursionError:
        raise ModelImportError("the checkpoint's pickle is nested too deeply to read") from None


# --- the zip archive ------------------------------------------------------------------------
class TorchArchive:
    """A zip-format ``torch.save`` file: ``obj`` is its unpickled content (stand-ins and lazy
    tensors); ``tensor(lazy)`` reads one tensor's values."""

    def __init__(self, path: Path, zf: zipfile.ZipFile, prefix: str, obj: Any, big_endian: bool):
        self.path = path
        self._zf = zf
        self._prefix = prefix
        self.obj = obj
        self._big_endian = big_endian
        self._cache: dict[str, torch.Tensor] = {}

    def close(self) -> None:
        self._zf.close()
        self._cache.clear()

    def __enter__(self) -> TorchArchive:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def check_budget(self, tensors: list[LazyTensor], what: str) -> None:
        """Refuse before reading when the storages behind ``tensors`` exceed the memory budget."""
        storages = {t.storage.key: t.storage for t in tensors}
        count = sum(max(1, s.numel * s.dtype.itemsize // 4) for s in storages.values())
        try:
            check_parameters(count, what)
        except LimitError as exc:
            raise ModelImportError(str(exc)) from None

    def _storage(self, s: _LazyStorage) -> torch.Tensor:
        if s.key in self._cache:
            return self._cache[s.key]
        if s.dtype not in _NUMPY_DTYPES:
            raise ModelImportError(f"{self.path}: tensors of dtype {s.dtype} are not supported; save them as float32")
        name = f"{self._prefix}data/{s.key}"
        try:
            info = self._zf.getinfo(name)
        except KeyError:
            raise ModelImportError(f"{self.path} is truncated or damaged: storage record {name!r} is missing") from None
        want = s.numel * s.dtype.itemsize
        if info.file_size < want:
            raise ModelImportError(
                f"{self.path} is truncated or damaged: storage {s.key} holds {info.file_size} bytes, needs {want}"
            )
        try:
            with self._zf.open(info) as f:
                raw = f.read(want)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ModelImportError(f"{self.path} is truncated or damaged ({exc})") from None
        if len(raw) != want:
            raise ModelImportError(f"{self.path} is truncated: storage {s.key} is short")
        arr = np.frombuffer(raw, dtype=_NUMPY_DTYPES[s.dtype])
        if self._big_endian:
            arr = arr.byteswap()
        out = torch.from_numpy(arr.copy())
        self._cache[s.key] = out
        return out

    def tensor(self, t: Any, what: str = "tensor") -> torch.Tensor:
        """The values of lazy tensor ``t`` (a fresh contiguous tensor), bounds-checked."""
        if not isinstance(t, LazyTensor):
            raise ModelImportError(f"{self.path}: {what} is not a tensor (found {type(t).__name__})")
        base = self._storage(t.storage)
        last = t.offset + sum((n - 1) * s for n, s in zip(t.shape, t.stride, strict=True)) if t.numel else t.offset
        if t.numel and last >= t.storage.numel:
            raise ModelImportError(f"{self.path}: {what} reaches past the end of its storage; the file is damaged")
        return torch.as_strided(base, t.shape, t.stride, t.offset).clone()


def _zip_prefix(zf: zipfile.ZipFile, path: Path) -> str:
    pkls = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
    if not pkls:
        raise ModelImportError(f"{path} is a zip file but not a torch checkpoint (no <name>/data.pkl inside)")
    return pkls[0][: -len("data.pkl")]


def is_torchscript_archive(zf: zipfile.ZipFile) -> bool:
    return any(n.split("/", 2)[1:2] == ["code"] for n in zf.namelist()) and any(
        n.endswith("constants.pkl") for n in zf.namelist()
    )


def open_torch_archive(path: str | os.PathLike[str]) -> TorchArchive:
    """Open a zip-format torch checkpoint and unpickle its ``data.pkl`` safely (no tensor read yet)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ModelImportError(f"cannot read {path} ({exc.strerror or exc})") from None
    if magic[:2] != b"PK":
        raise ModelImportError(
            f"{path} is not a zip-format torch checkpoint (torch ≥ 1.6 / Lightning); an old pickle-format file "
            "must be re-saved with a current torch.save first"
        )
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelImportError(f"{path} is truncated or not a valid zip archive ({exc})") from None
    try:
        if is_torchscript_archive(zf):
            raise ModelImportError(
                f"{path} is a TorchScript archive, not a training checkpoint; import it with --format torchscript "
                "and a TOML file that names it"
            )
        prefix = _zip_prefix(zf, path)
        info = zf.getinfo(prefix + "data.pkl")
        if info.file_size > MAX_PICKLE_BYTES:
            raise ModelImportError(
                f"{path}: its pickle is {info.file_size / 1e6:.0f} MB, above the {MAX_PICKLE_BYTES / 1e6:.0f} MB a "
                "checkpoint's metadata can need; refused"
            )
        try:
            data = zf.read(info)
            order = (
                zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
                if (prefix + "byteorder") in zf.namelist()
                else "little"
            )
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ModelImportError(f"{path} is truncated or damaged ({exc})") from None
        obj = safe_loads(data)
        return TorchArchive(path, zf, prefix, obj, big_endian=order == "big")
    except BaseException:
        zf.close()
        raise
