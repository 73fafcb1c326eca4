"""Traversals: slider ranges per latent, traversal and codebook grids, interpolation, GIFs.

Answers "what does moving one latent do?". Images are uint8 ``[N, 64, 64, C]``, latents float64
``[N, D]``; each grid is one batched decode (``disviz.app.latents.decode``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from disviz.app.latents import decode, encode
from disviz.core.errors import UserError

__all__ = [
    "prior_sample",
    "RANGE_MODES",
    "SliderSpec",
    "codebook_grid",
    "codebook_usage",
    "interpolate",
    "nearest_value",
    "slider_spec",
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


def prior_sample(specs: Sequence[Any], seed: int) -> np.ndarray:
    """A code drawn from the model's prior, [D]: U(low, high) for 'uniform' latents (DiD's c ~ U(−1, 1)),
    N(0, 1) for 'gaussian' ones, a random codebook value for 'quantised' ones. The anchor of a
    generator's own traversal G(c), as opposed to one around the encoding E(x) of a data image."""
    rng = np.random.default_rng(seed)
    out = np.zeros(len(specs))
    for s in specs:
        if s.kind == "uniform":
            out[s.index] = rng.uniform(s.low, s.high)
        elif s.kind == "quantised" and s.values:
            out[s.index] = float(rng.choice(np.asarray(s.values)))
        else:
            out[s.index] = rng.standard_normal()
    return out


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

    from disviz.app.figures import compose_grid

    tiles = np.asarray(tiles)
    if tiles.dtype != np.uint8:
        raise ValueError("GIF frames must be uint8 (float frames come out grey)")
    frames = [compose_grid(tiles[:, s : s + 1], gutter=gutter, scale=scale) for s in triangle_wave(tiles.shape[1])]
    buf = io.BytesIO()
    iio.imwrite(buf, np.stack(frames), extension=".gif", duration=int(1000 / fps), loop=0)
    return buf.getvalue()
