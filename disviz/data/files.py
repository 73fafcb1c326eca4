"""Real dataset files supplied by the user (never downloaded).

Used when ``load_dataset`` gets ``path=`` or ``$DISVIZ_DATA`` is set (a file, or a folder that holds
the expected file name). Every reader checks keys, shapes and dtypes and raises one
``DatasetError`` that names the expected file, the keys/shapes and the path it looked at.

No reader unpickles anything: the dSprites ``metadata`` entry is a Python-2 pickle, so it is
skipped; factor values come from the plain ``latents_values`` array instead.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from disviz.core.errors import DatasetError
from disviz.core.limits import LimitError, check_file_claim
from disviz.core.outputs import check_path_length
from disviz.data.base import GroundTruthDataset
from disviz.data.dsprites import PackedGrid, _gather, cache_dir, index_uniform

DSPRITES_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
SHAPES3D_FILE = "3dshapes.h5"
SMALLNORB_FILES = {
    split: {kind: f"smallnorb-{code}-{split}-{kind}.mat" for kind in ("dat", "cat", "info")}
    for split, code in (("training", "5x46789x9x18x6x2x96x96"), ("testing", "5x01235x9x18x6x2x96x96"))
}
EXPECTED = {
    "dsprites": DSPRITES_FILE,
    "shapes3d": SHAPES3D_FILE,
    "smallnorb": "a folder with smallnorb-*-{training,testing}-{dat,cat,info}.mat[.gz]",
    "mpi3d": "mpi3d_*.npz (key 'images', (N, 64, 64, 3) uint8)",
}


# --- locating files ---------------------------------------------------------------------------------
def resolve_path(kind: str, path: str | os.PathLike[str] | None, required: bool) -> Path | None:
    """The user's file for dataset ``kind``: ``path``, else $DISVIZ_DATA, else None (or an error).

    A folder is searched for the expected file name. $DISVIZ_DATA is only used for a dataset when
    it points at (or contains) that dataset's file, so one variable can serve several datasets.
    """
    explicit = path is not None
    candidate = Path(path).expanduser() if explicit else None
    if candidate is None and os.environ.get("DISVIZ_DATA"):
        candidate = Path(os.environ["DISVIZ_DATA"]).expanduser()
    if candidate is None:
        if required:
            raise DatasetError(
                f"{kind} needs a real file: expected {EXPECTED[kind]}; pass --data-path PATH or set "
                "$DISVIZ_DATA (nothing is downloaded)"
            )
        return None
    check_path_length(candidate, "--data-path" if explicit else "$DISVIZ_DATA", error=DatasetError)
    found = _find(kind, candidate, explicit)
    if found is None and (explicit or required):
        raise DatasetError(
            f"{kind}: expected {EXPECTED[kind]} but looked at {candidate} and found no such file; "
            "put the file there or point --data-path / $DISVIZ_DATA at it"
        )
    return found


def _find(kind: str, p: Path, explicit: bool) -> Path | None:
    """An explicit file is taken if its suffix fits; $DISVIZ_DATA files only by their exact name."""
    if kind == "smallnorb":
        folder = p if p.is_dir() else p.parent
        return folder if folder.is_dir() and _smallnorb_paths(folder, strict=True) else None
    suffix = {"dsprites": ".npz", "shapes3d": ".h5", "mpi3d": ".npz"}[kind]
    if p.is_file():
        if kind == "mpi3d":
            return p if p.suffix == suffix and p.name.startswith("mpi3d") or explicit and p.suffix == suffix else None
        return p if p.name == EXPECTED[kind] or (explicit and p.suffix == suffix) else None
    if p.is_dir():
        if kind == "mpi3d":
            hits = sorted(p.glob("mpi3d_*.npz"))
            return hits[0] if hits else None
        f = p / EXPECTED[kind]
        return f if f.is_file() else None
    return None


# --- npz members without unpickling ---------------------------------------------------------------
def _npz_member(zf: zipfile.ZipFile, key: str, path: Path, expected: str) -> zipfile.ZipInfo:
    try:
        return zf.getinfo(f"{key}.npy")
    except KeyError:
        keys = sorted(n[:-4] for n in zf.namelist() if n.endswith(".npy"))
        raise DatasetError(f"{path}: key {key!r} missing (has {keys}); expected {expected}") from None


def _read_header(fp: IO[bytes], path: Path, key: str) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    except ValueError as exc:
        raise DatasetError(f"{path}: member {key!r} is not a valid .npy array ({exc})") from None
    if fortran or dtype.hasobject:
        raise DatasetError(f"{path}: member {key!r} must be a plain C-ordered numeric array, got dtype {dtype}")
    return tuple(shape), dtype


def _claim(what: str, claimed: float, holds: float | None, compressed: float | None, in_memory: bool = True) -> None:
    """``limits.check_file_claim`` with its refusal as this loader's DatasetError."""
    try:
        check_file_claim(what, claimed, holds, compressed, in_memory=in_memory)
    except LimitError as exc:
        raise DatasetError(str(exc)) from None


def _check_member(
    info: zipfile.ZipInfo, fp: IO[bytes], path: Path, key: str, in_memory: bool = True
) -> tuple[tuple[int, ...], np.dtype]:
    """Header of an .npy member (``fp`` just opened), checked against what the member holds: its
    array bytes must fit in the member, and (read whole) the memory budget and a sane inflation."""
    shape, dtype = _read_header(fp, path, key)
    header_len = fp.tell()
    claimed = math.prod(shape) * dtype.itemsize
    compressed = info.compress_size if info.compress_type != zipfile.ZIP_STORED else None
    _claim(f"{path}: member {key!r} {shape} {dtype}", claimed, info.file_size - header_len, compressed, in_memory)
    return shape, dtype


def _read_small(zf: zipfile.ZipFile, key: str, path: Path, expected: str) -> np.ndarray:
    info = _npz_member(zf, key, path, expected)
    with zf.open(info) as fp:
        _check_member(info, fp, path, key)
    with zf.open(info) as fp:
        try:
            return np.lib.format.read_array(fp, allow_pickle=False)
        except ValueError as exc:
            raise DatasetError(f"{path}: member {key!r} could not be read without unpickling ({exc})") from None


def _open_zip(path: Path, expected: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"{path}: not a readable .npz ({exc}); expected {expected}") from None


# --- dSprites ---------------------------------------------------------------------------------------
_DSPRITES_KEYS = "keys imgs (N, 64, 64) uint8 0/1 and latents_classes / latents_values (N, 6), as in " + DSPRITES_FILE


def load_dsprites_grid(path: Path, chunk: int = 16384) -> PackedGrid:
    """Read a dSprites .npz into a bit-packed grid (512 B per image; never the 3 GB array).

    ``imgs`` is streamed from the zip member in chunks and packed; the packed result is cached in
    the user cache folder keyed by the file's size and mtime, memory-mapped on later loads.
    The grid (sizes, values) is inferred from ``latents_classes``/``latents_values`` and must be the
    full row-major factorial grid, so reduced grids work too. ``metadata`` (a pickle) is ignored.
    """
    path = Path(path)
    with _open_zip(path, _DSPRITES_KEYS) as zf:
        classes = _read_small(zf, "latents_classes", path, _DSPRITES_KEYS)
        values = _read_small(zf, "latents_values", path, _DSPRITES_KEYS)
        info = _npz_member(zf, "imgs", path, _DSPRITES_KEYS)
        with zf.open(info) as fp:
            shape, dtype = _check_member(info, fp, path, "imgs", in_memory=False)  # streamed in chunks
            n = shape[0] if shape else 0
            if len(shape) != 3 or shape[1:] != (64, 64) or dtype != np.uint8:
                raise DatasetError(f"{path}: imgs has shape {shape} dtype {dtype}; expected {_DSPRITES_KEYS}")
            if classes.shape != (n, 6) or values.shape != (n, 6):
                raise DatasetError(
                    f"{path}: latents_classes {classes.shape} / latents_values {values.shape} do not match "
                    f"imgs {shape}; expected {_DSPRITES_KEYS}"
                )
            sizes = tuple(int(s) for s in classes.max(axis=0) + 1)
            grid_sizes = sizes[1:]  # drop the constant colour
            bases = np.concatenate([np.cumprod(np.array(sizes[::-1]))[::-1][1:], [1]])
            if sizes[0] != 1 or int(np.prod(sizes)) != n or not np.array_equal(classes @ bases, np.arange(n)):
                raise DatasetError(
                    f"{path}: latents_classes is not the full row-major dSprites grid (sizes {sizes}, N={n}); "
                    f"expected {_DSPRITES_KEYS}"
                )
            cache = cache_dir() / f"dsprites_file_{_file_key(path)}.npy"
            if cache.is_file():
                packed = np.load(cache, mmap_mode="r")
            else:
                packed = _pack_stream(fp, n, chunk, cache, path)
    factor_values = [_column_values(values[:, k], classes[:, k], sizes[k]) for k in range(1, 6)]
    return PackedGrid(packed=packed, factor_sizes=grid_sizes, factor_values=factor_values, path=str(path))


def _file_key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


def _pack_stream(fp: IO[bytes], n: int, chunk: int, cache: Path, path: Path) -> np.ndarray:
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f"{cache.name}.tmp-{os.getpid()}")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, 64, 8))
    try:
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            buf = fp.read(m * 4096)
            if len(buf) != m * 4096:
                raise DatasetError(f"{path}: imgs is truncated at image {start + len(buf) // 4096} of {n}")
            out[start : start + m] = np.packbits(np.frombuffer(buf, np.uint8).reshape(m, 64, 64) > 0, axis=-1)
        out.flush()
        del out
        os.replace(tmp, cache)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return np.load(cache, mmap_mode="r")


def _column_values(values: np.ndarray, classes: np.ndarray, size: int) -> np.ndarray:
    """The real value of each class of one factor (first occurrence of each class)."""
    first = np.zeros(size, dtype=np.int64)
    first[classes[::-1]] = np.arange(len(classes))[::-1]
    return values[first].astype(np.float64)


# --- Shapes3D ---------------------------------------------------------------------------------------
_SHAPES3D_KEYS = "datasets images (N, 64, 64, 3) uint8 and labels (N, 6) float64 (values), as in 3dshapes.h5"


class Shapes3DFile(GroundTruthDataset):
    """The real ``3dshapes.h5``, read lazily through h5py (images stay on disk).

    Labels are values: each column is mapped to classes by rounding to 1e-4 and ``np.unique``
    (never float equality); rows are looked up through a class -> row table, so files whose rows are
    not in the canonical order still index correctly.
    """

    name = "shapes3d"
    description = "3dshapes.h5 (real file)"
    channels = 3
    binary = False
    categorical = {"shape": ("cube", "cylinder", "sphere", "capsule")}  # the file's shape order

    def __init__(self, path: Path):
        import h5py

        from disviz.data.shapes3d import FACTOR_NAMES

        self.path = Path(path)
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as exc:
            raise DatasetError(f"{self.path}: not a readable HDF5 file ({exc}); expected {_SHAPES3D_KEYS}") from None
        for key in ("images", "labels"):
            if key not in self._h5:
                raise DatasetError(
                    f"{self.path}: dataset {key!r} missing (has {sorted(self._h5)}); expected {_SHAPES3D_KEYS}"
                )
        imgs, labels = self._h5["images"], self._h5["labels"]
        n = imgs.shape[0]
        if imgs.shape[1:] != (64, 64, 3) or imgs.dtype != np.uint8 or labels.shape != (n, 6):
            raise DatasetError(
                f"{self.path}: images {imgs.shape} {imgs.dtype}, labels {labels.shape}; expected {_SHAPES3D_KEYS}"
            )
        _check_h5(self.path, "images", imgs, in_memory=False)  # read lazily, batch by batch
        _check_h5(self.path, "labels", labels)  # read whole below
        lab = np.asarray(labels[:], dtype=np.float64)
        cols = [np.unique(np.round(lab[:, k], 4), return_inverse=True) for k in range(6)]
        self.factor_names = list(FACTOR_NAMES)
        self.factor_values = [c[0] for c in cols]
        self.factor_sizes = tuple(len(c[0]) for c in cols)
        classes = np.stack([c[1].ravel() for c in cols], axis=1).astype(np.int64)
        if int(np.prod(self.factor_sizes)) != n:
            raise DatasetError(f"{self.path}: labels are not a full factorial grid (sizes {self.factor_sizes}, N={n})")
        flat = self.index(classes)
        row = np.full(n, -1, dtype=np.int64)
        row[flat] = np.arange(n)
        if np.any(row < 0):
            raise DatasetError(f"{self.path}: labels repeat a factor combination; expected {_SHAPES3D_KEYS}")
        self._row = row
        self._images = imgs
        self.options = {"path": str(self.path)}

    def images(self, indices: Any) -> np.ndarray:
        idx = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        self.factors(idx)  # range check
        rows = self._row[idx]
        uniq, inv = np.unique(rows, return_inverse=True)  # h5py needs increasing indices
        return np.asarray(self._images[uniq])[inv.ravel()]


def _check_h5(path: Path, key: str, dset: Any, in_memory: bool = True) -> None:
    """An HDF5 dataset's extent against what the file stores for it: chunks never written read as
    fill values, so a 1.7 KB file can claim 10⁹ rows; uncompressed data must be stored in full and
    compressed data within a sane inflation."""
    claimed = math.prod(dset.shape) * dset.dtype.itemsize
    try:
        stored = dset.id.get_storage_size()
        filtered = dset.id.get_create_plist().get_nfilters() > 0
    except Exception as exc:  # h5py raises its own errors for damaged files
        raise DatasetError(f"{path}: dataset {key!r} cannot be inspected ({exc})") from None
    what = f"{path}: dataset {key!r} {tuple(dset.shape)} {dset.dtype}"
    _claim(what, claimed, None if filtered else stored, stored if filtered else None, in_memory)


# --- SmallNORB --------------------------------------------------------------------------------------
_NORB_DTYPES = {
    0x1E3D4C55: np.uint8,
    0x1E3D4C54: np.int32,
    0x1E3D4C51: np.float32,
    0x1E3D4C53: np.float64,
    0x1E3D4C56: np.int16,
}


def read_norb_matrix(path: Path) -> np.ndarray:
    """One SmallNORB "binary matrix" file (.mat or .mat.gz): magic, ndim, dims, data (little-endian)."""
    gz = path.suffix == ".gz"
    try:
        with (gzip.open if gz else open)(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise DatasetError(f"{path}: too short to be a SmallNORB binary matrix")
            magic, ndim = np.frombuffer(head, "<i4")
            dtype = _NORB_DTYPES.get(int(magic) & 0xFFFFFFFF)
            if dtype is None or not 0 < ndim <= 8:
                raise DatasetError(f"{path}: bad SmallNORB magic 0x{int(magic) & 0xFFFFFFFF:08X} / ndim {ndim}")
            nd = max(3, int(ndim))
            dims = tuple(int(d) for d in np.frombuffer(f.read(4 * nd), "<i4")[:ndim])
            if len(dims) != ndim or min(dims) < 0:
                raise DatasetError(f"{path}: SmallNORB header is truncated or has negative sizes {dims}")
            claimed = math.prod(dims) * np.dtype(dtype).itemsize
            on_disk = path.stat().st_size
            # checked before the data is read: the file must hold it (raw) or not inflate absurdly (gz)
            _claim(
                f"{path}: SmallNORB matrix {dims}",
                claimed,
                None if gz else on_disk - 8 - 4 * nd,
                on_disk if gz else None,
            )
            raw = f.read(claimed + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: cannot read SmallNORB matrix ({exc})") from None
    if len(raw) != claimed:
        raise DatasetError(f"{path}: header says {dims} but holds {len(raw) // np.dtype(dtype).itemsize} elements")
    return np.frombuffer(raw, np.dtype(dtype).newbyteorder("<")).reshape(dims)


def _smallnorb_paths(folder: Path, strict: bool = True) -> dict[str, dict[str, Path]] | None:
    out: dict[str, dict[str, Path]] = {}
    for split, files in SMALLNORB_FILES.items():
        out[split] = {}
        for kind, name in files.items():
            for cand in (folder / name, folder / f"{name}.gz"):
                if cand.is_file():
                    out[split][kind] = cand
                    break
            else:
                if strict:
                    raise DatasetError(f"smallnorb: expected {name}[.gz] in {folder}; put the six files there")
                return None
    return out


class SmallNORB(GroundTruthDataset):
    """SmallNORB as in disentanglement_lib: train + test concatenated, left camera, resized 96 -> 64.

    Factors category 5, elevation 9, azimuth 18 (raw 0, 2, …, 34 halved), lighting 6; the instance is a
    nuisance picked per flat index (deterministically, from the 10 instances of that cell).
    """

    name = "smallnorb"
    description = "SmallNORB (real files): 4 factors, instance as nuisance, 64×64 grey"
    channels = 1
    binary = False

    def __init__(self, folder: Path):
        from PIL import Image

        paths = _smallnorb_paths(Path(folder))
        assert paths is not None
        dats, cats, infos = [], [], []
        for split in ("training", "testing"):
            dat = read_norb_matrix(paths[split]["dat"])
            cat = read_norb_matrix(paths[split]["cat"]).astype(np.int64).reshape(-1)
            info = read_norb_matrix(paths[split]["info"]).astype(np.int64)
            m = len(cat)
            if dat.ndim != 4 or dat.shape[0] != m or dat.shape[1] != 2 or info.shape != (m, 4):
                raise DatasetError(
                    f"smallnorb {split}: dat {dat.shape}, cat {cat.shape}, info {info.shape}; expected "
                    "dat (N, 2, H, W) uint8, cat (N,), info (N, 4)"
                )
            dats.append(dat[:, 0])
            cats.append(cat)
            infos.append(info)
        left = np.concatenate(dats)  # [N, H, W]
        cat = np.concatenate(cats)
        info = np.concatenate(infos)
        self.factor_names = ["category", "elevation", "azimuth", "lighting"]
        self.factor_sizes = (5, 9, 18, 6)
        self.factor_values = [np.arange(5), 30.0 + 5.0 * np.arange(9), 20.0 * np.arange(18), np.arange(6)]
        classes = np.stack([cat, info[:, 1], info[:, 2] // 2, info[:, 3]], axis=1)
        try:
            flat = self.index(classes)
        except ValueError as exc:
            raise DatasetError(f"smallnorb: labels out of range ({exc})") from None
        order = np.argsort(flat, kind="stable")
        counts = np.bincount(flat, minlength=len(self))
        if counts.min() == 0:
            raise DatasetError(f"smallnorb: {int((counts == 0).sum())} factor combinations have no image")
        self._start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self._count = counts
        self._order = order
        self._images = np.stack(
            [np.asarray(Image.fromarray(im).resize((64, 64), Image.LANCZOS)) for im in left]
        ).astype(np.uint8)  # resized once at load: [N, 64, 64]
        self.options = {"path": str(folder)}

    def images(self, indices: Any) -> np.ndarray:
        idx = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        self.factors(idx)
        pick = (index_uniform(idx, 1, salt=5)[:, 0] * self._count[idx]).astype(np.int64)
        rows = self._order[self._start[idx] + pick]
        return self._images[rows][..., None]


# --- MPI3D ------------------------------------------------------------------------------------------
MPI3D_NAMES = [
    "object_color",
    "object_shape",
    "object_size",
    "camera_height",
    "background_color",
    "horizontal_axis",
    "vertical_axis",
]
MPI3D_SIZES = {460_800: (4, 4, 2, 3, 3, 40, 40), 1_036_800: (6, 6, 2, 3, 3, 40, 40)}
_MPI3D_KEYS = "key images (N, 64, 64, 3) uint8 with N = 460800 (4×4 colours/shapes) or 1036800 (6×6)"


def mpi3d_sizes(n: int, sizes: str | tuple[int, ...] | None = None) -> tuple[int, ...]:
    """Factor sizes from the number of images (or an explicit comma list that must multiply to n)."""
    if sizes:
        sz = tuple(int(s) for s in sizes.split(",")) if isinstance(sizes, str) else tuple(sizes)
        if len(sz) != 7 or int(np.prod(sz)) != n:
            raise DatasetError(f"mpi3d: sizes={sz} must be 7 factors whose product is N={n}")
        return sz
    if n not in MPI3D_SIZES:
        raise DatasetError(
            f"mpi3d: N={n} images is not a known MPI3D size; expected {_MPI3D_KEYS} (or pass option sizes=a,b,...)"
        )
    return MPI3D_SIZES[n]


class MPI3D(GroundTruthDataset):
    """MPI3D (toy / realistic / real) from an ``.npz``: memory-mapped when stored uncompressed."""

    name = "mpi3d"
    description = "MPI3D (real .npz): 7 factors, sizes inferred from N"
    channels = 3
    binary = False
    max_compressed_bytes = 2 << 30  # a compressed member must be decompressed into RAM

    def __init__(self, path: Path, sizes: str = ""):
        self.path = Path(path)
        with _open_zip(self.path, _MPI3D_KEYS) as zf:
            info = _npz_member(zf, "images", self.path, _MPI3D_KEYS)
            stored = info.compress_type == zipfile.ZIP_STORED
            with zf.open(info) as fp:
                shape, dtype = _check_member(info, fp, self.path, "images", in_memory=not stored)
                header_len = fp.tell()
            if len(shape) != 4 or shape[1:] != (64, 64, 3) or dtype != np.uint8:
                raise DatasetError(f"{self.path}: images has shape {shape} dtype {dtype}; expected {_MPI3D_KEYS}")
            if stored:
                offset = _member_data_offset(self.path, info) + header_len
                _claim(  # the zip directory may lie too: the mapped bytes must lie inside the file
                    f"{self.path}: member 'images' {shape}",
                    offset + math.prod(shape),
                    self.path.stat().st_size,
                    None,
                    in_memory=False,
                )
                self._images = np.memmap(self.path, dtype=np.uint8, mode="r", offset=offset, shape=shape)
            elif info.file_size <= self.max_compressed_bytes:
                self._images = _read_small(zf, "images", self.path, _MPI3D_KEYS)
            else:
                raise DatasetError(
                    f"{self.path}: 'images' is compressed and {info.file_size / 2**30:.1f} GiB; re-save it uncompressed "
                    "(np.savez) so it can be memory-mapped"
                )
        self.factor_names = list(MPI3D_NAMES)
        self.factor_sizes = mpi3d_sizes(shape[0], sizes or None)
        self.factor_values = [np.arange(s) for s in self.factor_sizes]
        self.options = {"path": str(self.path), **({"sizes": sizes} if sizes else {})}

    def images(self, indices: Any) -> np.ndarray:
        idx = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        self.factors(idx)
        return _gather(self._images, idx)


def _member_data_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Byte offset of a stored zip member's data (after its local header)."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        name_len = int.from_bytes(local[26:28], "little")
        extra_len = int.from_bytes(local[28:30], "little")
    return info.header_offset + 30 + name_len + extra_len
