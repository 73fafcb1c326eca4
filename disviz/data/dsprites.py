"""Procedural dSprites (reproduction) and DEFT's variants.

The geometry is the fit in ``docs/datasets.md#dsprites-geometry``: a pixel is on iff its centre lies inside the
shape; centre ``16 + 32·pos`` px; rotation counter-clockwise as displayed; square half-side
9.6·s, ellipse semi-axes 12.75·s × 7.25·s, heart = the classic parametric heart in a
19.5·s × 19·s box. Rendering is vectorised over images and pixels (no per-image loop), so a
batch costs a few array ops; the full grid can also be cached bit-packed on disk (377 MB,
memory-mapped) by ``python -m disviz data build``.

Variants draw their per-image nuisance (colour, noise, crop) from a counter-based hash of the
flat index, so ``images(i)`` is deterministic and vectorised at the same time.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from disviz.core.errors import DatasetError
from disviz.data.base import BatchSampler, GroundTruthDataset, to_tensor_batch

SHAPE_NAMES = ("square", "ellipse", "heart")
SHAPE_VALUES = np.array([1.0, 2.0, 3.0])
SCALE_VALUES = np.linspace(0.5, 1.0, 6)
ORIENTATION_VALUES = np.linspace(0.0, 2 * np.pi, 40)
POS_VALUES = np.linspace(0.0, 1.0, 32)
FACTOR_NAMES = ["shape", "scale", "orientation", "posX", "posY"]
FACTOR_SIZES = (3, 6, 40, 32, 32)
N_IMAGES = 737_280

CACHE_VERSION = 1  # bump when the geometry changes: old cache files are then ignored
CACHE_FILE = f"dsprites_packed_v{CACHE_VERSION}.npy"
PACKED_SHAPE = (N_IMAGES, 64, 8)  # np.packbits over the width axis: 512 B per image

SQUARE_HALF = 9.6  # px at scale 1
ELLIPSE_AXES = (12.75, 7.25)  # semi-axes (along u, along v) px at scale 1
HEART_BOX = (19.5, 19.0)  # geometric width x height px at scale 1

_PIX = np.arange(64, dtype=np.float32) + np.float32(0.5)  # pixel centres


def cache_dir() -> Path:
    """User cache folder: $DISVIZ_CACHE or ~/.cache/disviz (never inside the repo)."""
    env = os.environ.get("DISVIZ_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "disviz"


def cache_path() -> Path:
    return cache_dir() / CACHE_FILE


# --- heart outline as a radial function ----------------------------------------------------------
def _heart_radius_table(n: int = 8192) -> np.ndarray:
    """Radius of the heart outline (in px at scale 1) at ``n`` equally spaced polar angles.

    The parametric heart is star-shaped about its bounding-box centre (checked: the polar angle is
    monotonic along the curve), so "inside" is exactly ``r <= R(angle)``: a vectorised test with
    no polygon loop. Angles are measured in local (u, up) coordinates, up = -v.
    """
    t = np.linspace(0.0, 2 * np.pi, 200_001)
    x = 16 * np.sin(t) ** 3
    y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    x = x * (HEART_BOX[0] / (x.max() - x.min()))
    y = (y - (y.max() + y.min()) / 2) * (HEART_BOX[1] / (y.max() - y.min()))
    ang = np.arctan2(y, x)
    r = np.hypot(x, y)
    order = np.argsort(ang)
    grid = np.linspace(-np.pi, np.pi, n)
    return np.interp(grid, ang[order], r[order], period=2 * np.pi).astype(np.float32)


_HEART_R = _heart_radius_table()


_WIN = 31  # every sprite fits in a 31×31 px window around its centre (max radius ≈ 13.6 px)


def render_masks(
    shape: np.ndarray, scale: np.ndarray, orient: np.ndarray, posx: np.ndarray, posy: np.ndarray
) -> np.ndarray:
    """Class arrays [N] -> binary sprite masks bool [N, 64, 64]; vectorised over all N images.

    The inside tests run on a 31×31 window around each sprite centre (4× fewer pixels than the
    full canvas) and are scattered into the canvas; pixels outside the window are provably off.
    """
    n = len(shape)
    s = SCALE_VALUES[scale].astype(np.float32)  # [N]
    theta = np.mod(ORIENTATION_VALUES[orient], 2 * np.pi)  # 2π -> 0: orientation 0 == 39 exactly
    c = np.cos(theta).astype(np.float32)[:, None, None]
    sn = np.sin(theta).astype(np.float32)[:, None, None]
    cx = (16.0 + 32.0 * POS_VALUES[posx]).astype(np.float32)
    cy = (16.0 + 32.0 * POS_VALUES[posy]).astype(np.float32)
    c0 = np.floor(cx).astype(np.int64) - 15  # window origin, in [1, 33]
    r0 = np.floor(cy).astype(np.int64) - 15
    win = np.arange(_WIN)
    cols = c0[:, None] + win[None, :]  # [N, W]
    rows = r0[:, None] + win[None, :]  # [N, W]
    dx = (_PIX[cols] - cx[:, None])[:, None, :]  # [N, 1, W] (columns)
    dy = (_PIX[rows] - cy[:, None])[:, :, None]  # [N, W, 1] (rows, y down)
    u = c * dx - sn * dy  # [N, W, W]
    v = sn * dx + c * dy  # [N, W, W]
    inside = np.zeros((n, _WIN, _WIN), dtype=bool)
    for k in range(3):
        sel = np.flatnonzero(shape == k)
        if len(sel) == 0:
            continue
        uk, vk = u[sel], v[sel]
        sk = s[sel][:, None, None]
        if k == 0:
            h = np.float32(SQUARE_HALF) * sk
            inside[sel] = (np.abs(uk) <= h) & (np.abs(vk) <= h)
        elif k == 1:
            a = np.float32(ELLIPSE_AXES[0]) * sk
            b = np.float32(ELLIPSE_AXES[1]) * sk
            inside[sel] = (uk / a) ** 2 + (vk / b) ** 2 <= 1.0
        else:
            up = -vk  # lobes up, tip down as displayed
            ang = np.arctan2(up, uk)
            pos = (ang + np.float32(np.pi)) * np.float32((len(_HEART_R) - 1) / (2 * np.pi))
            i0 = np.clip(pos.astype(np.int64), 0, len(_HEART_R) - 2)
            w = pos - i0
            rmax = (_HEART_R[i0] * (1 - w) + _HEART_R[i0 + 1] * w) * sk
            inside[sel] = uk * uk + up * up <= rmax * rmax
    out = np.zeros((n, 64, 64), dtype=bool)
    out[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]] = inside
    return out


def _masks_from_classes(classes: np.ndarray) -> np.ndarray:
    """dSprites classes [N, 5] -> bool [N, 64, 64]."""
    return render_masks(classes[:, 0], classes[:, 1], classes[:, 2], classes[:, 3], classes[:, 4])


# --- counter-based per-index randomness -----------------------------------------------------------
def hash_uniform(keys: np.ndarray) -> np.ndarray:
    """splitmix64 of uint64 ``keys`` -> float32 uniforms in [0, 1), same shape.

    Deterministic per key and vectorised: lets per-image nuisances be "seeded by index" without a
    Python loop over images.
    """
    with np.errstate(over="ignore"):
        z = keys.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def index_uniform(idx: np.ndarray, count: int, salt: int) -> np.ndarray:
    """``count`` uniforms per flat index: float32 [N, count], a pure function of (idx, salt)."""
    keys = idx.astype(np.uint64)[:, None] * np.uint64(count) + np.arange(count, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        keys = keys ^ (np.uint64(salt) * np.uint64(0xD1B54A32D192ED03))
    return hash_uniform(keys)


# --- the packed on-disk cache --------------------------------------------------------------------
_PACKED: dict[str, np.ndarray] = {}


def open_cache() -> np.ndarray | None:
    """The memory-mapped packed grid uint8 [737280, 64, 8], or None when it was not built."""
    p = cache_path()
    key = str(p)
    if key in _PACKED:
        return _PACKED[key]
    if not p.is_file():
        return None
    try:
        arr = np.load(p, mmap_mode="r")
    except (ValueError, OSError):
        return None
    if arr.shape != PACKED_SHAPE or arr.dtype != np.uint8:
        return None
    _PACKED[key] = arr
    return arr


def _block_classes(shape: int, scale: int) -> np.ndarray:
    """All 40 960 classes of one (shape, scale) block in flat order, int64 [40960, 5]."""
    o, x, y = np.meshgrid(np.arange(40), np.arange(32), np.arange(32), indexing="ij")
    n = o.size
    return np.stack([np.full(n, shape), np.full(n, scale), o.ravel(), x.ravel(), y.ravel()], axis=1).astype(np.int64)


def _build_blocks(args: tuple[str, list[tuple[int, int]]]) -> int:
    """Worker: render (shape, scale) blocks into the shared temp .npy (memory-mapped)."""
    path, blocks = args
    out = np.load(path, mmap_mode="r+")
    for shape, scale in blocks:
        cls = _block_classes(shape, scale)
        start = (shape * 6 + scale) * 40960
        for j in range(0, 40960, 1024):  # one orientation (all positions) at a time: ~16 MB temps
            masks = _masks_from_classes(cls[j : j + 1024])
            out[start + j : start + j + 1024] = np.packbits(masks, axis=-1)
        out.flush()
    del out
    return len(blocks)


def build_cache(path: Path | None = None, processes: int = 2, progress: Any = None) -> tuple[Path, float]:
    """Render the full grid bit-packed into ``path`` atomically (temp file + rename).

    Peak RAM stays at a few tens of MB per process: workers write straight into the
    memory-mapped temp file. Returns (path, seconds).
    """
    import multiprocessing as mp

    path = Path(path) if path is not None else cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    t0 = time.perf_counter()
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=PACKED_SHAPE)
    del arr
    blocks = [(sh, sc) for sh in range(3) for sc in range(6)]
    jobs = [(str(tmp), [b]) for b in blocks]
    try:
        if processes <= 1:
            for i, job in enumerate(jobs):
                _build_blocks(job)
                if progress:
                    progress(i + 1, len(jobs))
        else:
            with mp.get_context("spawn").Pool(processes) as pool:
                for i, _ in enumerate(pool.imap_unordered(_build_blocks, jobs)):
                    if progress:
                        progress(i + 1, len(jobs))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _PACKED.pop(str(path), None)
    return path, time.perf_counter() - t0


# --- datasets -------------------------------------------------------------------------------------
@dataclass
class PackedGrid:
    """A dSprites grid read from a real file: packed masks uint8 [N, 64, 8] + its factor grid."""

    packed: np.ndarray
    factor_sizes: tuple[int, ...]  # (shape, scale, orientation, posX, posY)
    factor_values: list[np.ndarray]
    path: str


class DSprites(GroundTruthDataset):
    """Procedural dSprites (reproduction): 3 shapes × 6 scales × 40 orientations × 32 × 32.

    The constant ``color`` factor of the file is dropped (5 factors, same flat ordering).
    Uses the packed on-disk cache when it exists, else renders lazily (both give identical pixels).
    With ``source`` (a real dSprites file, see files.py) the masks come from the file instead.
    """

    name = "dsprites"
    categorical = {"shape": SHAPE_NAMES}
    description = "procedural dSprites (reproduction): binary 64×64, 5 factors, 737,280 images"
    channels = 1
    binary = True

    def __init__(self, use_cache: bool = True, source: PackedGrid | None = None) -> None:
        self.source = source
        self.factor_names = list(FACTOR_NAMES)
        if source is None:
            self.factor_sizes = FACTOR_SIZES
            self.factor_values = [SHAPE_VALUES, SCALE_VALUES, ORIENTATION_VALUES, POS_VALUES, POS_VALUES]
        else:
            self.factor_sizes = tuple(source.factor_sizes)
            self.factor_values = list(source.factor_values)
        self._grid_sizes = np.asarray(self.factor_sizes, dtype=np.int64)
        self._grid_bases = np.concatenate([np.cumprod(self._grid_sizes[::-1])[::-1][1:], [1]]).astype(np.int64)
        self.use_cache = bool(use_cache)
        self.options: dict[str, Any] = {}
        if source is not None:
            self.options["path"] = source.path

    # base-grid helpers (variants map their classes onto the dSprites grid)
    def _base_classes(self, classes: np.ndarray) -> np.ndarray:
        return classes

    def _packed_array(self) -> np.ndarray | None:
        if self.source is not None:
            return self.source.packed
        return open_cache() if self.use_cache else None

    def _base_masks(self, classes: np.ndarray) -> np.ndarray:
        """Own classes [N, K] -> bool masks [N, 64, 64] (from the cache / file when available)."""
        base = self._base_classes(classes)
        packed = self._packed_array()
        if packed is None:
            return _masks_from_classes(base)
        return np.unpackbits(_gather(packed, base @ self._grid_bases), axis=-1).astype(bool)

    def _render(self, classes: np.ndarray) -> np.ndarray:
        return (self._base_masks(classes)[..., None] * np.uint8(255)).astype(np.uint8)

    def packed_masks(self, indices: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """(packed masks uint8 [N, 64, 8] or None, base flat indices [N]) for flat ``indices``."""
        base = self._base_classes(self.factors(indices)) @ self._grid_bases
        packed = self._packed_array()
        return (None if packed is None else _gather(packed, base)), base

    def batch_sampler(self, batch_size: int, device: Any = "cpu", seed: int = 0) -> BatchSampler:
        return DSpritesBatchSampler(self, batch_size, device, seed)


def _gather(packed: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Fancy-index a memmap in sorted order (sequential page reads), return in the asked order."""
    order = np.argsort(idx, kind="stable")
    out = np.empty((len(idx),) + packed.shape[1:], dtype=packed.dtype)
    out[order] = packed[idx[order]]
    return out


class DSpritesBatchSampler(BatchSampler):
    """Fast sampler for binary dSprites.

    With the packed cache, ships 512 B per image to the device and unpacks bits there; on CUDA
    the whole packed grid (377 MB) is made resident on the GPU once (``resident``), so a batch is
    one device gather. Without the cache it renders the batch vectorised on the host.
    Variants with RGB nuisances render on the host (vectorised) and convert on the device.
    """

    def __init__(
        self, dataset: DSprites, batch_size: int, device: Any = "cpu", seed: int = 0, resident: bool | None = None
    ):
        super().__init__(dataset, batch_size, device, seed)
        import torch

        self._torch = torch
        self._shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=device)
        self._binary = dataset.binary and dataset.channels == 1
        packed = dataset._packed_array() if self._binary else None
        dev = torch.device(device)
        if resident is None:
            resident = dev.type == "cuda"
        self._resident = None
        if packed is not None and resident:
            self._resident = torch.from_numpy(np.ascontiguousarray(packed)).to(dev)
        self._has_cache = packed is not None

    def _unpack(self, packed_t: Any) -> Any:
        # packed_t: [B, 64, 8] uint8 -> [B, 1, 64, 64] float32 in {0, 1}
        bits = (packed_t.unsqueeze(-1) >> self._shifts) & 1  # [B, 64, 8, 8]
        return bits.reshape(packed_t.shape[0], 1, 64, 64).float()

    def __next__(self) -> Any:
        idx = self.next_indices()
        if not self._binary:
            return to_tensor_batch(self.dataset.images(idx), self.device)
        ds: DSprites = self.dataset  # type: ignore[assignment]
        if self._resident is not None:
            base = ds._base_classes(ds.factors(idx)) @ ds._grid_bases
            t = self._torch.from_numpy(base).to(self._resident.device, non_blocking=True)
            return self._unpack(self._resident[t])
        if self._has_cache:
            packed, _ = ds.packed_masks(idx)
            return self._unpack(self._torch.from_numpy(packed).to(self.device, non_blocking=True))
        masks = ds._base_masks(ds.factors(idx))  # [B, 64, 64] bool
        t = self._torch.from_numpy(masks.view(np.uint8)).to(self.device, non_blocking=True)
        return t.unsqueeze(1).float()


class ColorDSprites(DSprites):
    """color-dSprites (disentanglement_lib): sprite × RGB colour ~ U(0.5, 1)³ on black, per image."""

    name = "color_dsprites"
    description = "dSprites with a random sprite colour U(0.5,1)^3 per image (RGB)"
    channels = 3
    binary = False

    def _render(self, classes: np.ndarray) -> np.ndarray:
        mask = self._base_masks(classes)  # [N, 64, 64]
        color = 0.5 + 0.5 * index_uniform(self.index(classes), 3, salt=1)  # [N, 3]
        img = mask[..., None] * color[:, None, None, :]  # [N, 64, 64, 3]
        return _to_uint8(img)


class NoisyDSprites(DSprites):
    """noisy-dSprites (disentanglement_lib): min(sprite + U(0,1) noise per pixel & channel, 1)."""

    name = "noisy_dsprites"
    description = "white dSprites sprite on uniform RGB noise (per image, per pixel)"
    channels = 3
    binary = False

    def _render(self, classes: np.ndarray) -> np.ndarray:
        mask = self._base_masks(classes)  # [N, 64, 64]
        noise = index_uniform(self.index(classes), 64 * 64 * 3, salt=2).reshape(-1, 64, 64, 3)
        img = np.minimum(mask[..., None] + noise, 1.0)
        return _to_uint8(img)


def scream_like_texture(height: int = 274, width: int = 350, seed: int = 1893) -> np.ndarray:
    """A procedural stand-in for *The Scream*: float32 [H, W, 3] in [0, 1].

    The painting cannot be shipped, so this is a "scream-like" texture: swirling, domain-warped
    bands (sky-like orange/red/yellow at the top, blue/dark fjord below) with brush-stroke noise.
    It plays the same role in scream-dSprites (a structured, coloured background crop).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yn, xn = yy / height, xx / width
    warp = np.zeros_like(xn)
    for _ in range(6):  # low-frequency domain warp: a sum of random sinusoids
        fx, fy = rng.uniform(1, 5, size=2)
        ph = rng.uniform(0, 2 * np.pi)
        warp += np.sin(2 * np.pi * (fx * xn + fy * yn) + ph) / 6
    swirl = np.sin(2 * np.pi * (5 * yn + 1.5 * warp + 0.6 * np.sin(3 * np.pi * xn)))  # wavy bands
    strokes = np.sin(2 * np.pi * (40 * (xn + yn * 0.3) + 4 * warp)) * 0.15
    t = np.clip(0.5 + 0.5 * swirl + strokes, 0, 1)
    sky = np.array([[0.85, 0.35, 0.12], [0.95, 0.7, 0.2], [0.75, 0.25, 0.2]], dtype=np.float32)
    sea = np.array([[0.12, 0.2, 0.45], [0.3, 0.45, 0.65], [0.08, 0.1, 0.2]], dtype=np.float32)

    def palette(p: np.ndarray, pal: np.ndarray) -> np.ndarray:
        x = p * (len(pal) - 1)
        i = np.clip(x.astype(int), 0, len(pal) - 2)
        w = (x - i)[..., None]
        return pal[i] * (1 - w) + pal[i + 1] * w

    horizon = 0.45 + 0.08 * warp  # wavy horizon between sky and fjord
    top = 1 / (1 + np.exp(-(horizon - yn) * 30))
    img = top[..., None] * palette(t, sky) + (1 - top[..., None]) * palette(t, sea)
    img += rng.normal(0, 0.03, size=img.shape).astype(np.float32)  # canvas grain
    return np.clip(img, 0, 1).astype(np.float32)


class ScreamDSprites(DSprites):
    """scream-dSprites with a *procedural scream-like* background (the painting is not shipped).

    As in disentanglement_lib: a random 64×64 crop of the (350×274) background mixed as
    ``(crop + U(0,1)³) / 2``, and the sprite pixels inverted (``1 − background``). Crop offset and
    colour are drawn per image from its flat index.
    """

    name = "scream_dsprites"
    description = "dSprites on a procedural scream-like texture crop; sprite pixels inverted (RGB)"
    channels = 3
    binary = False
    _texture: np.ndarray | None = None

    @classmethod
    def texture(cls) -> np.ndarray:
        if cls._texture is None:
            cls._texture = scream_like_texture()
        return cls._texture

    def _render(self, classes: np.ndarray) -> np.ndarray:
        tex = self.texture()  # [274, 350, 3]
        mask = self._base_masks(classes)  # [N, 64, 64]
        r = index_uniform(self.index(classes), 5, salt=3)  # [N, 5]
        oy = (r[:, 0] * (tex.shape[0] - 64)).astype(np.int64)
        ox = (r[:, 1] * (tex.shape[1] - 64)).astype(np.int64)
        rows = oy[:, None] + np.arange(64)[None, :]  # [N, 64]
        cols = ox[:, None] + np.arange(64)[None, :]  # [N, 64]
        crop = tex[rows[:, :, None], cols[:, None, :]]  # [N, 64, 64, 3]
        bg = (crop + r[:, None, None, 2:5]) / 2
        img = np.where(mask[..., None], 1.0 - bg, bg)
        return _to_uint8(img)


class DSpritesNoShape(DSprites):
    """dSprites-noshape: 4 factors (scale, orientation, posX, posY).

    ``shape="heart"`` (default, the issue's reading: hearts only, the one shape whose orientation is
    identifiable over 360°) or ``shape="random"`` (disentanglement_lib's reading: shape is a nuisance
    drawn per image from its flat index). ``square``/``ellipse`` fix another shape.
    """

    name = "dsprites_noshape"
    description = "dSprites without the shape factor (hearts only by default): 4 factors"

    def __init__(self, shape: str = "heart", use_cache: bool = True, source: PackedGrid | None = None) -> None:
        super().__init__(use_cache=use_cache, source=source)
        if shape not in (*SHAPE_NAMES, "random"):
            raise DatasetError(f"dsprites_noshape: shape={shape!r} is not one of {(*SHAPE_NAMES, 'random')}")
        if shape != "random" and SHAPE_NAMES.index(shape) >= self.factor_sizes[0]:
            raise DatasetError(
                f"dsprites_noshape: the dSprites file has only {self.factor_sizes[0]} shapes, no {shape!r}"
            )
        self.shape = shape
        self.factor_names = list(FACTOR_NAMES[1:])
        self.factor_sizes = FACTOR_SIZES[1:]
        self.factor_values = self.factor_values[1:]
        self.options = {**self.options, "shape": shape}

    def _base_classes(self, classes: np.ndarray) -> np.ndarray:
        if self.shape == "random":
            n_shapes = int(self._grid_sizes[0])
            shape = (index_uniform(self.index(classes), 1, salt=4)[:, 0] * n_shapes).astype(np.int64)
        else:
            shape = np.full(len(classes), SHAPE_NAMES.index(self.shape), dtype=np.int64)
        return np.concatenate([shape[:, None], classes], axis=1)


class CorrelatedDSprites(DSprites):
    """dSprites whose training distribution correlates two factors.

    How the correlation is induced: a Gaussian copula over the two factors' classes. Draw
    (z_a, z_b) ~ N(0, [[1, r'], [r', 1]]), map each through the normal CDF to a uniform, and
    quantise into the factor's classes; the other factors stay uniform and independent. Both
    marginals stay exactly uniform, and with r' = 2·sin(π·ρ/6) the Spearman (= Pearson of the
    uniforms) correlation is ``correlation`` = ρ; quantisation to few classes shrinks it slightly.
    ``sample_factors`` and hence ``sample_indices`` and the batch sampler draw from this joint;
    ``images`` still renders every grid point (evaluation can use the full, uncorrelated grid via
    ``uniform_factors``).
    """

    name = "correlated_dsprites"
    description = "dSprites with two factors correlated in the training distribution (Gaussian copula)"

    def __init__(
        self,
        factor_a: str = "posX",
        factor_b: str = "posY",
        correlation: float = 0.9,
        use_cache: bool = True,
        source: PackedGrid | None = None,
    ) -> None:
        super().__init__(use_cache=use_cache, source=source)
        for f in (factor_a, factor_b):
            if f not in self.factor_names:
                raise DatasetError(f"correlated_dsprites: unknown factor {f!r}; choose from {self.factor_names}")
        if factor_a == factor_b:
            raise DatasetError("correlated_dsprites: factor_a and factor_b must be two different factors")
        if not -1.0 <= float(correlation) <= 1.0:
            raise DatasetError(f"correlated_dsprites: correlation={correlation} must lie in [-1, 1]")
        self.factor_a, self.factor_b, self.correlation = factor_a, factor_b, float(correlation)
        self.options = {**self.options, "factor_a": factor_a, "factor_b": factor_b, "correlation": self.correlation}

    def uniform_factors(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        return GroundTruthDataset.sample_factors(self, n, rng)

    def sample_factors(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        from scipy.special import ndtr

        rng = np.random.default_rng(rng)
        classes = GroundTruthDataset.sample_factors(self, n, rng)
        rho = 2.0 * math.sin(math.pi * self.correlation / 6.0)
        za = rng.standard_normal(n)
        zb = rho * za + math.sqrt(max(0.0, 1.0 - rho * rho)) * rng.standard_normal(n)
        for f, z in ((self.factor_a, za), (self.factor_b, zb)):
            k = self.factor_names.index(f)
            size = self.factor_sizes[k]
            classes[:, k] = np.minimum((ndtr(z) * size).astype(np.int64), size - 1)
        return classes


class CorrelatedTriangles(GroundTruthDataset):
    """DEFT's correlated-factor toy (erow/disentanglement_lib): a filled triangle on 64×64.

    Factors (orientation bin 32, x 32, y 32). The triangle (11 px box) sits at centre
    ``10 + 44·k/31`` px (32 grid positions, 10 px margin) and points along its orientation,
    ``(bin + 0.5) · 11.25°``. Interpretation of "11×11 px triangle": an isosceles triangle with apex
    5.5 px ahead of the centre and base corners 5.5 px behind, ±5.5 px to the sides.
    The training joint: position uniform; orientation = polar angle of the position about the
    image centre + U[−30°, 30°) jitter, quantised into 32 bins of 11.25°. So orientation is
    correlated with position by construction; ``images`` renders any grid point.
    """

    name = "correlated_triangles"
    description = "DEFT's correlated-factor toy: triangle whose orientation follows its position"
    channels = 1
    binary = True

    def __init__(self, jitter_deg: float = 30.0) -> None:
        self.factor_names = ["orientation", "x", "y"]
        self.factor_sizes = (32, 32, 32)
        self.jitter_deg = float(jitter_deg)
        pos = 10.0 + 44.0 * np.arange(32) / 31.0
        self.factor_values = [(np.arange(32) + 0.5) * 11.25, pos, pos]
        self.options = {"jitter_deg": self.jitter_deg}

    def sample_factors(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        rng = np.random.default_rng(rng)
        x = rng.integers(0, 32, n)
        y = rng.integers(0, 32, n)
        px, py = self.factor_values[1][x] - 32.0, self.factor_values[2][y] - 32.0
        ang = np.degrees(np.arctan2(-py, px)) + rng.uniform(-self.jitter_deg, self.jitter_deg, n)  # CCW, y up
        o = np.floor(np.mod(ang, 360.0) / 11.25).astype(np.int64) % 32
        return np.stack([o, x, y], axis=1).astype(np.int64)

    def _render(self, classes: np.ndarray) -> np.ndarray:
        th = np.radians(self.factor_values[0][classes[:, 0]]).astype(np.float32)[:, None, None]
        cx = self.factor_values[1][classes[:, 1]].astype(np.float32)[:, None, None]
        cy = self.factor_values[2][classes[:, 2]].astype(np.float32)[:, None, None]
        dx = _PIX[None, None, :] - cx  # [N, 1, 64]
        up = cy - _PIX[None, :, None]  # [N, 64, 1] (y up)
        a = np.cos(th) * dx + np.sin(th) * up  # along the pointing direction  [N, 64, 64]
        b = -np.sin(th) * dx + np.cos(th) * up  # across
        # inside the triangle apex (5.5, 0), base (-5.5, ±5.5): a >= -5.5 and |b| <= (5.5 - a) / 2
        inside = (a >= -5.5) & (np.abs(b) <= (5.5 - a) / 2)
        return (inside[..., None] * np.uint8(255)).astype(np.uint8)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


class ToySquares(DSprites):
    """One square at 6 scales × 32 posX × 32 posY, upright: 3 independent factors, 6,144 images.

    Small enough that a generative model's disentanglement (MIG of its encoder on these real
    images) is measurable within minutes on a CPU: DiD's configuration experiments and its
    learning test run here (docs/methods.md#did).
    """

    name = "toy_squares"
    categorical: dict[str, tuple[str, ...]] = {}
    description = "toy: one upright square, scale × posX × posY (3 factors, 6,144 images)"

    def __init__(self, use_cache: bool = True, source: PackedGrid | None = None) -> None:
        super().__init__(use_cache=use_cache, source=source)
        keep = [1, 3, 4]  # scale, posX, posY
        self.factor_names = [FACTOR_NAMES[k] for k in keep]
        self.factor_sizes = tuple(int(self.factor_sizes[k]) for k in keep)
        self.factor_values = [self.factor_values[k] for k in keep]

    def _base_classes(self, classes: np.ndarray) -> np.ndarray:
        zero = np.zeros(len(classes), dtype=np.int64)  # square, orientation 0
        return np.stack([zero, classes[:, 0], zero, classes[:, 1], classes[:, 2]], axis=1)
