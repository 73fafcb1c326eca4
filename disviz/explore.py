"""Latent exploration logic behind the app: traversals, slider ranges, codebooks, interpolation, GIFs.

UI-free on purpose (never imports streamlit): the pages are thin and call these functions, the
tests call them directly, and ``python -m disviz bench app`` times them without a browser.

Images cross this module's boundary as uint8 ``[N, 64, 64, C]`` (the dataset format); latents as
float64 numpy ``[N, D]``. Every decode of a grid is one batched no-grad forward pass.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from disviz.checkpoints import (
    SCAN_MAX_FOLDERS,
    SCAN_TIME_LIMIT_S,
    checkpoint_summary,
    list_checkpoints,
    load_checkpoint,
    read_card,
    scan_checkpoints,
)
from disviz.data.base import DatasetInfo, GroundTruthDataset, to_tensor_batch
from disviz.diagnostics.annealing import ordering_text
from disviz.errors import CheckpointError, DatasetError, UserError

__all__ = [
    "RANGE_MODES",
    "CheckpointEntry",
    "LatentStats",
    "SliderSpec",
    "UploadError",
    "checkpoint_roots",
    "cmd_bench",
    "codebook_grid",
    "codebook_usage",
    "dataset_for_card",
    "decode",
    "encode",
    "interpolate",
    "latent_stats",
    "list_entries",
    "load_upload",
    "row_labels",
    "slider_spec",
    "sort_latents",
    "traversal_gif",
    "traversal_tiles",
    "traversal_values",
    "triangle_wave",
]

#: traversal range modes ("latent cycles", named as in disentanglement_lib / disent)
RANGE_MODES: dict[str, str] = {
    "std_gaussian": "prior quantiles of N(0, 1), ±3σ",
    "fitted_gaussian": "quantiles of a Gaussian fitted to the encodings, ±3σ",
    "fixed_interval": "the fixed interval [-2, 2]",
    "conf_interval": "mean ± 2σ of the encodings",
    "minmax_interval": "min / max of the encodings on data",
}
#: the prior quantile of -3σ: 'std_gaussian' spans the same ±3σ as the slider
_Q3 = 0.5 * math.erfc(3 / math.sqrt(2))
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_PIXELS = 4096 * 4096


class UploadError(DatasetError):
    """An uploaded base image cannot be used (wrong type, corrupt, too large)."""


# --- checkpoints ---------------------------------------------------------------------------
def checkpoint_roots(extra: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """Folders the app searches: ./checkpoints, the Train page's runs folder, $DISVIZ_CHECKPOINTS, extras."""
    from disviz.jobs import runs_root

    roots = [Path("checkpoints"), runs_root()]
    env = os.environ.get("DISVIZ_CHECKPOINTS", "")
    roots += [Path(p) for p in env.split(os.pathsep) if p.strip()]
    roots += [Path(p) for p in extra if str(p).strip()]
    out: list[Path] = []
    for r in roots:
        if r not in out:
            out.append(r)
    return out


@dataclass
class CheckpointEntry:
    """One picker entry: path + one-line summary, or the reason it cannot be used."""

    path: Path
    label: str
    card: dict[str, Any] | None = None
    error: str | None = None
    mtime: float = 0.0


def _display_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def list_entries(roots: Sequence[str | os.PathLike[str]]) -> list[CheckpointEntry]:
    """Every checkpoint under ``roots`` with its card summary (cheap: reads card.json only)."""
    out = []
    for path in list_checkpoints(roots):
        name = _display_path(path)
        try:
            mtime = max((path / f).stat().st_mtime for f in ("card.json", "model.safetensors") if (path / f).exists())
        except (OSError, ValueError):
            mtime = 0.0
        try:
            card = read_card(path)
        except CheckpointError as exc:
            out.append(CheckpointEntry(path, f"{name} — broken", None, str(exc), mtime))
            continue
        if "annealing" in path.parts and "model" not in card:
            continue
        out.append(CheckpointEntry(path, f"{name} — {checkpoint_summary(card)}", card, None, mtime))
    return out


SCAN_LIMITS = f"{SCAN_MAX_FOLDERS:,} folders or {SCAN_TIME_LIMIT_S:g} s"


def scan_folder(folder: str | os.PathLike[str]) -> tuple[list[Path], bool]:
    """(checkpoints under ``folder``, complete?): the bounded walk the sidebar's "Add a folder" uses."""
    return scan_checkpoints(folder)


def default_entry(entries: Sequence[CheckpointEntry], dataset: str = "dsprites") -> CheckpointEntry | None:
    """The checkpoint the app opens on: the shipped ``dataset`` model with the highest MIG its card's
    evaluate report measured (the most instructive to look at first); else the first usable entry.
    Only ``./checkpoints`` counts, so a user's half-trained run never becomes the default."""
    best, best_mig = None, -math.inf
    for e in entries:
        card = e.card or {}
        shipped = Path(_display_path(Path(e.path))).parts[:1] == ("checkpoints",)
        if e.error or (card.get("dataset") or {}).get("name") != dataset or not shipped:
            continue
        mig = ((card.get("metrics") or {}).get("scores") or {}).get("mig")
        if isinstance(mig, (int, float)) and math.isfinite(mig) and mig > best_mig:
            best, best_mig = e, float(mig)
    return best or next((e for e in entries if not e.error), entries[0] if entries else None)


def dataset_for_card(card: dict[str, Any]) -> GroundTruthDataset:
    """The dataset a checkpoint was trained on (name, options and real file from its card)."""
    from disviz.data import load_dataset

    ds = card.get("dataset") or {}
    train = card.get("train") or {}
    name = ds.get("name")
    if not name:
        raise CheckpointError("the checkpoint card names no dataset; retrain it with this disviz")
    options = dict(ds.get("options") or {})
    path = train.get("dataset_path")
    if path and not Path(path).exists():
        path = None  # moved machine: load_dataset falls back to $DISVIZ_DATA / procedural
    try:
        return load_dataset(name, path=path, **options)
    except TypeError:
        return load_dataset(name, path=path)


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> tuple[Any, dict[str, Any]]:
    """(model in eval mode, card); a thin alias so pages never import checkpoints directly."""
    return load_checkpoint(path, device=device)


# --- encode / decode -----------------------------------------------------------------------
def _device_of(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.inference_mode()
def encode(model: Any, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """uint8 images [N, 64, 64, C] -> representation [N, D] (float64 numpy)."""
    dev = _device_of(model)
    out = []
    for i in range(0, len(images), batch_size):
        x = to_tensor_batch(images[i : i + batch_size], dev)  # x: [B, C, 64, 64]
        out.append(model.encode(x).float().cpu().numpy())
    if not out:
        return np.zeros((0, model.latent_dim))
    return np.concatenate(out).astype(np.float64)


@torch.inference_mode()
def decode(model: Any, z: np.ndarray) -> np.ndarray:
    """Latents [N, D] -> uint8 images [N, 64, 64, C]; one batched forward pass."""
    dev = _device_of(model)
    zt = torch.as_tensor(np.asarray(z, dtype=np.float32), device=dev)  # zt: [N, D]
    probs = torch.sigmoid(model.decode(zt).float()).clamp_(0, 1)  # probs: [N, C, 64, 64]
    return (probs * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


# --- statistics on data ------------------------------------------------------------------------
@dataclass
class LatentStats:
    """What sliders, sorting and labels need, from a sample of the data.

    codes: [N, D] representations; factors: [N, K] classes; kl: [D] mean KL per latent in nats
    (None for non-variational models); nmi: [D, K] normalised MI latent x factor.
    """

    codes: np.ndarray
    factors: np.ndarray
    factor_names: list[str]
    kl: np.ndarray | None
    nmi: np.ndarray
    images: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 64, 64, 1), np.uint8))


def _discretise(x: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bins per column (disentanglement_lib's histogram discretiser)."""
    lo, hi = x.min(0, keepdims=True), x.max(0, keepdims=True)
    width = np.where(hi > lo, hi - lo, 1.0)
    return np.clip(((x - lo) / width * bins).astype(np.int64), 0, bins - 1)


def _entropy(labels: np.ndarray) -> float:
    _, counts = np.unique(labels, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def normalised_mi(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> np.ndarray:
    """[D, K] I(z_j; v_k) / H(v_k) with z discretised into ``bins`` equal-width bins.

    Only used to sort and label traversal rows; the Metrics page shows the metrics module's own
    estimators. Normalising by H(v_k) follows MIG. The small-sample bias is removed by subtracting
    the MI with a shuffled copy of the factor (a permutation baseline).
    """
    zd = _discretise(np.asarray(codes, dtype=np.float64), bins)
    d, k = zd.shape[1], factors.shape[1]
    out = np.zeros((d, k))
    shuffled = np.random.default_rng(0).permutation(len(factors))
    for b in range(k):
        hv = _entropy(factors[:, b])
        if hv <= 0:
            continue
        for a in range(d):
            mi = _mi(zd[:, a], factors[:, b], hv)
            # plug-in MI is biased upwards by ~(bins-1)(|V|-1)/2N nats on small samples; subtract
            # the MI with shuffled factors so a collapsed latent reads ~0, not 0.3
            bias = _mi(zd[:, a], factors[shuffled, b], hv)
            out[a, b] = min(1.0, max(0.0, mi - bias) / hv)
    return out


def _mi(a: np.ndarray, v: np.ndarray, hv: float) -> float:
    joint = a * (int(v.max()) + 1) + v
    return _entropy(a) + hv - _entropy(joint)


@torch.inference_mode()
def latent_stats(model: Any, dataset: GroundTruthDataset, n: int = 512, seed: int = 0) -> LatentStats:
    """Encode ``n`` random data images; per-latent KL and NMI with the factors."""
    images, classes = dataset.sample(n, np.random.default_rng(seed))
    codes = encode(model, images)
    kl = None
    x = to_tensor_batch(images[: min(n, 256)], _device_of(model))
    kl_t = model.kl_per_latent(x)
    if kl_t is not None:
        kl = kl_t.float().cpu().numpy().astype(np.float64)
    nmi = normalised_mi(codes, classes)
    return LatentStats(codes, classes, list(dataset.info().factor_names), kl, nmi, images)


def sort_latents(stats: LatentStats, by: str = "kl") -> list[int]:
    """Latent order for the traversal grid: 'kl' (mean KL, largest first) or 'mi' (max NMI).

    Models without KL (AE, QLAE) sort by the variance of their codes under 'kl'.
    """
    if by == "mi":
        key = stats.nmi.max(axis=1) if stats.nmi.size else np.zeros(stats.codes.shape[1])
    elif by == "kl":
        key = stats.kl if stats.kl is not None else stats.codes.var(axis=0)
    elif by == "index":
        return list(range(stats.codes.shape[1]))
    else:
        raise ValueError(f"unknown sort {by!r}; use kl, mi or index")
    return [int(i) for i in np.argsort(-np.asarray(key), kind="stable")]


def row_labels(stats: LatentStats, order: Sequence[int]) -> list[str]:
    """'z3 · posX · KL 2.10' per latent: its number, the factor it mostly encodes, its KL (or NMI)."""
    out = []
    for j in order:
        parts = [f"z{j}"]
        if stats.kl is not None and stats.kl[j] < 0.01:
            parts.append("collapsed")
        elif stats.nmi.size:
            k = int(np.argmax(stats.nmi[j]))
            parts.append(f"{stats.factor_names[k]} ({stats.nmi[j, k]:.2f})" if stats.nmi[j, k] > 0.05 else "no factor")
        if stats.kl is not None:
            parts.append(f"KL {stats.kl[j]:.2f}")
        out.append(" · ".join(parts))
    return out


# --- slider ranges -------------------------------------------------------------------------------
@dataclass
class SliderSpec:
    """How to draw one latent's slider: continuous [low, high] with ``step``, or discrete ``values``."""

    index: int
    kind: str
    low: float
    high: float
    step: float
    values: list[float] | None = None
    mode: str = ""


def _range(spec: Any, mode: str, codes: np.ndarray | None) -> tuple[float, float]:
    j = spec.index
    col = None if codes is None or len(codes) == 0 else np.asarray(codes)[:, j]
    if spec.kind in ("deterministic", "uniform") and mode in ("std_gaussian", "fixed_interval"):
        mode = "minmax_interval"  # no prior to take quantiles of
    if mode == "std_gaussian":
        return -3.0, 3.0
    if mode == "fixed_interval":
        return -2.0, 2.0
    if col is None:
        return float(spec.low), float(spec.high)
    mu, sd = float(col.mean()), float(col.std())
    if mode == "fitted_gaussian":
        return mu - 3 * sd, mu + 3 * sd
    if mode == "conf_interval":
        return mu - 2 * sd, mu + 2 * sd
    if mode == "minmax_interval":
        return float(col.min()), float(col.max())
    raise ValueError(f"unknown range mode {mode!r}; use one of {sorted(RANGE_MODES)}")


def slider_spec(spec: Any, mode: str = "std_gaussian", codes: np.ndarray | None = None) -> SliderSpec:
    """Slider for a model's ``LatentSpec``: quantised -> codebook values; else the range mode's interval."""
    if spec.kind == "quantised" and spec.values:
        return SliderSpec(spec.index, spec.kind, float(spec.values[0]), float(spec.values[-1]), 0.0, list(spec.values))
    if mode not in RANGE_MODES:
        raise ValueError(f"unknown range mode {mode!r}; use one of {sorted(RANGE_MODES)}")
    lo, hi = _range(spec, mode, codes)
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    step = max((hi - lo) / 100.0, 1e-3)
    step = float(f"{step:.1g}")
    return SliderSpec(spec.index, spec.kind, round(lo, 4), round(hi, 4), step, None, mode)


def traversal_values(spec: Any, mode: str, codes: np.ndarray | None, steps: int) -> np.ndarray:
    """Column values for one latent's traversal row [steps] (quantised: all codebook values, sorted)."""
    if spec.kind == "quantised" and spec.values:
        return np.asarray(sorted(spec.values), dtype=np.float64)
    if steps < 2:
        raise ValueError("a traversal needs at least 2 steps")
    if mode == "std_gaussian" and spec.kind == "gaussian":
        from statistics import NormalDist

        qs = np.linspace(_Q3, 1 - _Q3, steps)
        return np.asarray([NormalDist().inv_cdf(float(q)) for q in qs])
    if mode == "fitted_gaussian" and codes is not None and len(codes):
        from statistics import NormalDist

        col = np.asarray(codes)[:, spec.index]
        dist = NormalDist(float(col.mean()), max(float(col.std()), 1e-6))
        return np.asarray([dist.inv_cdf(float(q)) for q in np.linspace(_Q3, 1 - _Q3, steps)])
    lo, hi = _range(spec, mode, codes)
    return np.linspace(lo, hi, steps)


def nearest_value(values: Sequence[float], x: float) -> float:
    """The codebook value closest to ``x`` (quantised sliders can only show codebook values)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr[int(np.argmin(np.abs(arr - x)))])


# --- grids -----------------------------------------------------------------------------------
def traversal_tiles(
    model: Any,
    anchor: np.ndarray,
    order: Sequence[int],
    values: Sequence[np.ndarray],
) -> np.ndarray:
    """Decoded traversal tiles [R, S, 64, 64, C]: row r varies latent ``order[r]`` over ``values[r]``.

    anchor: [D] the base code (encoded image: posterior traversal; zeros: prior traversal). Rows
    with fewer values (small codebooks) are padded by repeating their last tile. One decode.
    """
    anchor = np.asarray(anchor, dtype=np.float64)
    steps = max(len(v) for v in values)
    z = np.repeat(anchor[None, None, :], len(order), axis=0).repeat(steps, axis=1)  # z: [R, S, D]
    for r, (j, vals) in enumerate(zip(order, values, strict=True)):
        vals = np.asarray(vals, dtype=np.float64)
        z[r, : len(vals), j] = vals
        z[r, len(vals) :, j] = vals[-1]
    imgs = decode(model, z.reshape(-1, anchor.shape[0]))
    return imgs.reshape(len(order), steps, *imgs.shape[1:])


def codebook_grid(model: Any, anchor: np.ndarray) -> tuple[np.ndarray, list[list[float]]]:
    """QLAE codebook grid: tiles [D, V, 64, 64, C] (latent j set to each of its codebook values)."""
    specs = model.latent_specs()
    if not specs or any(s.kind != "quantised" for s in specs):
        raise UserError("the codebook view needs a quantised model (QLAE); this checkpoint has no codebook")
    values = [sorted(s.values or []) for s in specs]
    tiles = traversal_tiles(model, anchor, [s.index for s in specs], [np.asarray(v) for v in values])
    return tiles, values


def codebook_usage(codes: np.ndarray, values: Sequence[Sequence[float]]) -> np.ndarray:
    """Fraction of data using each codebook value, [D, V] (codes are quantised to their nearest value)."""
    v_max = max(len(v) for v in values)
    out = np.zeros((len(values), v_max))
    for j, vals in enumerate(values):
        arr = np.asarray(vals, dtype=np.float64)
        idx = np.argmin(np.abs(np.asarray(codes)[:, j, None] - arr[None, :]), axis=1)
        out[j, : len(arr)] = np.bincount(idx, minlength=len(arr)) / max(len(idx), 1)
    return out


@torch.inference_mode()
def interpolate(model: Any, image_a: np.ndarray, image_b: np.ndarray, steps: int = 8) -> np.ndarray:
    """Decoded linear interpolation between the encodings of two images, [steps, 64, 64, C].

    Frame 0 decodes code(a), the last decodes code(b). Quantised models snap each point to the
    nearest codebook values (their decoder only ever saw those).
    """
    if steps < 2:
        raise ValueError("interpolation needs at least 2 steps")
    za, zb = encode(model, np.stack([image_a, image_b]))
    t = np.linspace(0.0, 1.0, steps)[:, None]
    z = (1 - t) * za[None, :] + t * zb[None, :]  # z: [steps, D]
    specs = model.latent_specs()
    for s in specs:
        if s.kind == "quantised" and s.values:
            vals = np.asarray(s.values)
            z[:, s.index] = vals[np.argmin(np.abs(z[:, s.index, None] - vals[None, :]), axis=1)]
    return decode(model, z)


# --- GIF ---------------------------------------------------------------------------------------
def triangle_wave(n: int) -> list[int]:
    """Indices 0..n-1..1 (−r → r → −r without repeating the ends): a seamless loop."""
    if n < 1:
        return []
    return list(range(n)) + list(range(n - 2, 0, -1))


def traversal_gif(tiles: np.ndarray, fps: float = 10.0, gutter: int = 2, scale: int = 1) -> bytes:
    """Animated GIF of a traversal: frame t shows column t of every row (rows stacked), triangle wave.

    tiles: [R, S, H, W, C] uint8. Returns the GIF bytes (loops forever).
    """
    import imageio.v3 as iio

    from disviz.figures import compose_grid

    tiles = np.asarray(tiles)
    if tiles.dtype != np.uint8:
        raise ValueError("GIF frames must be uint8 (float frames come out grey)")
    frames = [compose_grid(tiles[:, s : s + 1], gutter=gutter, scale=scale) for s in triangle_wave(tiles.shape[1])]
    buf = io.BytesIO()
    iio.imwrite(buf, np.stack(frames), extension=".gif", duration=int(1000 / fps), loop=0)
    return buf.getvalue()


# --- uploads -----------------------------------------------------------------------------------
def _to_8bit(img: Any) -> Any:
    """16-bit / 32-bit integer and float images scaled to 8 bits by their bit depth; Pillow's own
    ``convert('L')`` clamps 16-bit values at 255, which turned a 16-bit PNG all white."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img, dtype=np.uint16)  # [H, W]
        return Image.fromarray((arr >> 8).astype(np.uint8), "L")
    if img.mode == "I":  # 32-bit int: PNGs of 16-bit depth often decode to this mode
        arr = np.asarray(img, dtype=np.int64)
        top = 65535 if arr.max(initial=0) > 255 else 255
        return Image.fromarray((np.clip(arr, 0, top) * 255 // top).astype(np.uint8), "L")
    if img.mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        top = 1.0 if arr.max(initial=0) <= 1.0 else (255.0 if arr.max() <= 255 else 65535.0)
        return Image.fromarray((np.clip(arr / top, 0, 1) * 255 + 0.5).astype(np.uint8), "L")
    return img


def load_upload(data: bytes, channels: int, name: str = "upload", max_bytes: int = MAX_UPLOAD_BYTES) -> np.ndarray:
    """Decode an uploaded image into the model's input: uint8 [64, 64, C].

    Refuses empty, huge, corrupt or non-image files with a clear ``UploadError``. Decoding goes
    through Pillow (no pickles); the image is centre-cropped to a square and resized to 64x64;
    binary datasets (C=1) get a greyscale image thresholded at 50%.
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise UploadError(f"{name} is empty; upload a PNG or JPEG image")
    if len(data) > max_bytes:
        raise UploadError(f"{name} is {len(data) / 1e6:.1f} MB; upload an image under {max_bytes / 1e6:.0f} MB")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_UPLOAD_PIXELS:
                raise UploadError(f"{name} is {img.width}x{img.height} pixels; upload a smaller image (≤ 4096x4096)")
            img.load()
            img = _to_8bit(img)
            img = img.convert("L" if channels == 1 else "RGB")
            side = min(img.size)
            left, top = (img.width - side) // 2, (img.height - side) // 2
            img = img.crop((left, top, left + side, top + side)).resize((64, 64), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except UploadError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UploadError(f"{name} is not a readable image ({exc}); upload a PNG or JPEG file") from None
    if channels == 1:
        arr = np.where(arr >= 128, 255, 0).astype(np.uint8)[:, :, None]
    return arr


# --- benchmark ---------------------------------------------------------------------------------
def _bench_checkpoints(given: str | None) -> list[Path]:
    if given:
        return [Path(given)]
    return [p for p in list_checkpoints(checkpoint_roots()) if (p / "model.safetensors").is_file()]


def cmd_bench(args: argparse.Namespace) -> int:
    """Server time of a slider move and time to the first traversal, per checkpoint."""
    from disviz.device import describe, pick_device
    from disviz.figures import compose_grid

    paths = _bench_checkpoints(getattr(args, "checkpoint", None))
    if not paths:
        raise CheckpointError(
            "no checkpoints found in ./checkpoints, ./runs or $DISVIZ_CHECKPOINTS; "
            "pass --checkpoint PATH or train one with `python -m disviz train`"
        )
    device = pick_device("auto")
    print(f"device: {describe(device)}; steps per row: 9; slider move = one batched decode + one grid image")
    print(f"{'checkpoint':<40} {'first traversal (s)':>20} {'slider move (ms, median of 20)':>32}")
    for path in paths:
        t0 = time.perf_counter()
        model, card = load_checkpoint(path, device=device)
        dataset = dataset_for_card(card)
        stats = latent_stats(model, dataset, n=256)  # what the Explore page computes on opening
        image = dataset.images(np.asarray([0]))
        anchor = encode(model, image)[0]
        specs = model.latent_specs()
        order = sort_latents(stats, "kl")
        vals = [traversal_values(specs[j], "std_gaussian", stats.codes, 9) for j in order]
        grid = compose_grid(traversal_tiles(model, anchor, order, vals), gutter=2, scale=2)
        first = time.perf_counter() - t0
        times = []
        rng = np.random.default_rng(0)
        for _ in range(20):
            z = anchor.copy()
            j = int(rng.integers(len(specs)))
            z[j] = float(rng.uniform(specs[j].low, specs[j].high))
            t1 = time.perf_counter()
            one = decode(model, z[None, :])
            compose_grid(one[None], gutter=0, scale=4)
            times.append(time.perf_counter() - t1)
        assert grid.dtype == np.uint8
        print(f"{_display_path(path):<40} {first:>20.2f} {1000 * float(np.median(times)):>32.1f}")
    print("targets: slider move < 100 ms on CPU; first traversal < 5 s")
    return 0


def info_of(card: dict[str, Any]) -> DatasetInfo:
    """The DatasetInfo stored in a card."""
    return DatasetInfo.from_dict(card["dataset"])


# --- metric reports (Metrics / Compare pages) ------------------------------------------------------
def _walk(obj: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            yield key, v
            yield from _walk(v, key)


def find_matrix(report: dict[str, Any], names: Sequence[str], n_factors: int) -> np.ndarray | None:
    """The first 2-D matrix in ``report`` whose key path contains one of ``names``, as factors x latents.

    Metric reports store matrices as nested lists; a latents x factors matrix is transposed so
    rows are always the K factors.
    """
    for key, value in _walk(report):
        low = key.lower()
        if not any(n in low for n in names) or not isinstance(value, list) or not value:
            continue
        try:
            m = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            continue
        if m.ndim != 2:
            continue
        if m.shape[0] != n_factors and m.shape[1] == n_factors:
            m = m.T
        if m.shape[0] == n_factors:
            return m
    return None


#: score table rows: (label, key fragments that identify the score in a flat report)
SCORES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("InfoM (modularity)", ("infom",)),
    ("InfoE (explicitness)", ("infoe",)),
    ("InfoC (compactness)", ("infoc",)),
    ("DCI disentanglement", ("dci.disentanglement", "dci_disentanglement")),
    ("DCI completeness", ("dci.completeness", "dci_completeness")),
    ("DCI informativeness", ("dci.informativeness", "dci_informativeness")),
    ("MIG", ("mig",)),
    ("SAP", ("sap",)),
    ("FactorVAE score", ("factorvae", "factor_vae")),
    ("BetaVAE score", ("betavae", "beta_vae")),
    ("reconstruction", ("reconstruction", "recon")),
)


def score_table(report: dict[str, Any] | None) -> list[tuple[str, float | None]]:
    """(label, value) for every headline score; None where the report lacks it."""
    flat = {k.lower(): v for k, v in _walk(report or {}) if isinstance(v, (int, float)) and not isinstance(v, bool)}
    rows: list[tuple[str, float | None]] = []
    for label, frags in SCORES:
        hit = None
        for frag in frags:
            cands = [k for k in flat if k == frag or k.endswith("." + frag) or k.startswith(frag + ".")]
            cands.sort(key=len)
            if cands:
                hit = float(flat[cands[0]])
                break
        rows.append((label, hit))
    return rows


def report_settings(report: dict[str, Any] | None) -> dict[str, Any]:
    """Scalar settings a report records (preset, n, seed, estimators) for display."""
    out: dict[str, Any] = {}
    for key in ("preset", "n", "seed", "settings", "estimators", "config"):
        value = (report or {}).get(key)
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items() if not isinstance(v, (list, dict))})
        elif value is not None and not isinstance(value, list):
            out[key] = value
    return out


def stage_starts(card: dict[str, Any]) -> list[int]:
    """Steps where a multi-stage model (DEFT) entered a new stage, from the card's loss history."""
    hist = card.get("history") or {}
    steps, stages = hist.get("step") or [], hist.get("stage") or []
    out = []
    for i in range(1, min(len(steps), len(stages))):
        if stages[i] is not None and stages[i - 1] is not None and stages[i] != stages[i - 1]:
            out.append(int(steps[i]))
    return out


# --- IFP annealing results (Annealing page) --------------------------------------------------------
def annealing_summary(result: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """(one row per factor, ordering text) for the Annealing page's table, from a factor-mode result.

    Rows show what the result file computed (median, runs frozen, median linear-response bound);
    only the IQR is derived here. The ordering text uses the file's tie groups (Mann–Whitney) when
    present, else the median order.
    """
    rows: list[dict[str, Any]] = []
    for name, group in (result.get("factors") or {}).items():
        if not isinstance(group, dict):
            continue
        vals = np.array([v for v in group.get("ifps", []) if v is not None], dtype=np.float64)
        q1, q3 = np.percentile(vals, [25, 75]) if len(vals) else (np.nan, np.nan)
        rows.append(
            {
                "factor": name,
                "median IFP": group.get("median"),
                "IQR": f"{q1:.1f}–{q3:.1f}" if len(vals) else "—",
                "froze": f"{group.get('n_frozen', len(vals))}/{group.get('n', len(group.get('ifps', [])))}",
                "linear-response bound": group.get("linear_median"),
            }
        )
    return rows, ordering_text(result)


def annealing_view(result: dict[str, Any]) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[float]], float]:
    """(curves per factor, IFPs per factor, threshold) from an annealing result JSON.

    Accepts the runs as a flat list (``result['runs']``: {'factor', 'beta', 'kl', 'ifp'}) or grouped
    per factor (``result['factors']``: {name: {'runs': [...], 'ifps': [...]}} or a list of
    {'name', 'runs'}); IFPs come from ``ifps`` when given, else from the runs.
    """
    curves: dict[str, list[dict[str, Any]]] = {}
    ifps: dict[str, list[float]] = {}

    def add_run(factor: str, run: dict[str, Any]) -> None:
        beta = run.get("beta", run.get("betas", []))
        kl = run.get("kl", run.get("kls", []))
        curves.setdefault(factor, []).append({"beta": list(beta), "kl": list(kl), "ifp": run.get("ifp")})
        if run.get("ifp") is not None:
            ifps.setdefault(factor, []).append(float(run["ifp"]))

    runs = result.get("runs")
    if isinstance(runs, list):
        for run in runs:
            add_run(str(run.get("factor", "?")), run)
    factors = result.get("factors")
    groups: list[tuple[str, Any]] = []
    if isinstance(factors, dict):
        groups = [(str(k), v) for k, v in factors.items()]
    elif isinstance(factors, list):
        groups = [(str(g.get("name", g.get("factor", i))), g) for i, g in enumerate(factors) if isinstance(g, dict)]
    for name, group in groups:
        if not isinstance(group, dict):
            continue
        for run in group.get("runs", []) or []:
            add_run(name, run)
        if isinstance(group.get("ifps"), list):
            ifps[name] = [float(x) for x in group["ifps"] if x is not None]
    if isinstance(result.get("ifps"), dict):
        for name, vals in result["ifps"].items():
            ifps[str(name)] = [float(x) for x in vals if x is not None]
    threshold = float(result.get("threshold", (result.get("config") or {}).get("threshold", 0.1)))
    return curves, ifps, threshold


def recipe_twins(path: Path, files: Sequence[Path]) -> dict[str, Path]:
    """{recipe: file} for ``path`` and its recipe twins among ``files`` (``x.json`` / ``x_reference.json``)."""
    stem = path.stem.removesuffix("_reference")
    twins = {
        "equilibrium": path.with_name(f"{stem}{path.suffix}"),
        "reference": path.with_name(f"{stem}_reference{path.suffix}"),
    }
    known = {Path(f) for f in files}
    return {r: f for r, f in twins.items() if f in known}


def recipe_comparison(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per factor: the median IFP under each recipe (as stored in each file) and their ratio."""
    names: list[str] = []
    for res in results.values():
        names += [n for n in (res.get("factors") or {}) if n not in names]
    rows = []
    for name in names:
        row: dict[str, Any] = {"factor": name}
        for recipe, res in results.items():
            group = (res.get("factors") or {}).get(name) or {}
            row[f"median IFP ({recipe})"] = group.get("median")
            row[f"froze ({recipe})"] = f"{group.get('n_frozen', 0)}/{group.get('n', 0)}"
        eq, ref = row.get("median IFP (equilibrium)"), row.get("median IFP (reference)")
        row["reference / equilibrium"] = round(ref / eq, 2) if eq and ref else None
        rows.append(row)
    return rows


def annealing_files(roots: Sequence[str | os.PathLike[str]] = ("checkpoints/annealing",)) -> list[Path]:
    """Shipped annealing results (``*.json``) in ``roots``, sorted."""
    out: list[Path] = []
    for root in roots:
        if Path(root).is_dir():
            out += sorted(Path(root).glob("*.json"))
    return out
