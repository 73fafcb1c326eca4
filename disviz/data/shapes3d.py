"""Shapes3D-like: a procedural look-alike of DeepMind's 3dshapes, rendered by numpy ray casting.

Same six factors, sizes, label values and ordering as ``3dshapes.h5`` (floor_hue 10, wall_hue 10,
object_hue 10, scale 8, shape 4 = cube/cylinder/sphere/capsule, orientation 15, orientation
fastest). The scene imitates the GQN "rooms" set-up the originals came from: an object standing at
the centre of a square room (floor + four walls of one hue), one directional light + ambient with
a hard shadow, and a camera at fixed height and pitch that orbits the vertical axis by the
orientation angle (so the wall corner shifts with the azimuth). Rays are cast for a whole batch
at once (vectorised over images and pixels) with 2×2 supersampling. The exact MuJoCo scene is not
public, so the pixels are *not* those of the real file; only the factor schema is identical.
"""

from __future__ import annotations

import colorsys
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from disviz.data.base import BatchSampler, GroundTruthDataset

FACTOR_NAMES = ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"]
FACTOR_SIZES = (10, 10, 10, 8, 4, 15)
HUE_VALUES = np.linspace(0.0, 0.9, 10)
SCALE_VALUES = np.linspace(0.75, 1.25, 8)
SHAPE_VALUES = np.arange(4, dtype=np.float64)
SHAPE_NAMES = ("cube", "cylinder", "sphere", "capsule")
ORIENTATION_VALUES = np.linspace(-30.0, 30.0, 15)  # degrees
_INF = np.float32(np.inf)


@dataclass(frozen=True)
class Scene:
    """Fixed scene constants (world units; y up, the object at the origin on the floor y = 0)."""

    room_half: float = 4.0  # walls at x = ±4, z = ±4
    cam_dist: float = 3.1  # horizontal distance of the camera from the object
    cam_height: float = 1.7
    target_height: float = 0.55  # the camera looks at (0, target_height, 0)
    fov_deg: float = 50.0  # vertical = horizontal field of view
    size: float = 0.5  # object half-extent at scale 1
    light: tuple[float, float, float] = (-0.45, 1.0, 0.55)  # direction towards the light
    ambient: float = 0.4
    diffuse: float = 0.6  # ambient + diffuse <= 1: no clipping, so shading is linear in the colour
    saturation: float = 0.9  # fixed S of HSV
    value: float = 1.0  # fixed V of HSV
    supersample: int = 2  # 2×2 rays per pixel


def hue_rgb(hues: np.ndarray, s: float, v: float) -> np.ndarray:
    """HSV hues [N] -> RGB float32 [N, 3]."""
    return np.array([colorsys.hsv_to_rgb(float(h), s, v) for h in np.ravel(hues)], dtype=np.float32).reshape(-1, 3)


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


# --- analytic object intersections: o, d [M, 3] -> t [M] (inf on miss), n [M, 3] ------------------
def _hit_box(o: np.ndarray, d: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned box [-a, a] × [0, 2a] × [-a, a] (slab test); a: [M]."""
    lo = np.stack([-a, np.zeros_like(a), -a], axis=1)  # [M, 3]
    hi = np.stack([a, 2 * a, a], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t1 = (lo - o) * inv
        t2 = (hi - o) * inv
    tmin = np.minimum(t1, t2)  # [M, 3]
    tmax = np.maximum(t1, t2)
    tmin = np.nan_to_num(tmin, nan=-_INF)
    tmax = np.nan_to_num(tmax, nan=_INF)
    t_near = tmin.max(axis=1)
    t_far = tmax.min(axis=1)
    hit = (t_near <= t_far) & (t_near > 1e-4)
    axis = tmin.argmax(axis=1)
    n = np.zeros_like(o)
    n[np.arange(len(o)), axis] = -np.sign(d[np.arange(len(o)), axis])
    return np.where(hit, t_near, _INF), n


def _hit_sphere(o: np.ndarray, d: np.ndarray, c: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sphere centre c [M, 3], radius r [M]; d is unit length."""
    oc = o - c
    b = np.einsum("ij,ij->i", oc, d)
    cc = np.einsum("ij,ij->i", oc, oc) - r * r
    disc = b * b - cc
    sq = np.sqrt(np.maximum(disc, 0))
    t = -b - sq
    hit = (disc >= 0) & (t > 1e-4)
    t = np.where(hit, t, _INF)
    n = _normalize(o + d * np.where(hit, t, 0)[:, None] - c)
    return t, n


def _hit_cyl_side(
    o: np.ndarray, d: np.ndarray, r: np.ndarray, y0: np.ndarray, y1: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Side of the upright cylinder x² + z² = r², y0 <= y <= y1."""
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = o[:, 0] * d[:, 0] + o[:, 2] * d[:, 2]
    c = o[:, 0] ** 2 + o[:, 2] ** 2 - r * r
    disc = b * b - a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-b - np.sqrt(np.maximum(disc, 0))) / a
    y = o[:, 1] + t * d[:, 1]
    hit = (disc >= 0) & (a > 1e-9) & (t > 1e-4) & (y >= y0) & (y <= y1)
    t = np.where(hit, t, _INF)
    p = o + d * np.where(hit, t, 0)[:, None]
    n = np.stack([p[:, 0], np.zeros_like(t), p[:, 2]], axis=1)
    return t, _normalize(n + np.float32(1e-12))


def _hit_disc(o: np.ndarray, d: np.ndarray, r: np.ndarray, y: np.ndarray, up: float) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (y - o[:, 1]) / d[:, 1]
    p = o + d * np.nan_to_num(t, posinf=0, neginf=0)[:, None]
    hit = np.isfinite(t) & (t > 1e-4) & (p[:, 0] ** 2 + p[:, 2] ** 2 <= r * r)
    n = np.zeros_like(o)
    n[:, 1] = up
    return np.where(hit, t, _INF), n


def _closest(*hits: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    ts = np.stack([h[0] for h in hits], axis=0)  # [H, M]
    k = ts.argmin(axis=0)
    ns = np.stack([h[1] for h in hits], axis=0)  # [H, M, 3]
    m = np.arange(ts.shape[1])
    return ts[k, m], ns[k, m]


def hit_object(o: np.ndarray, d: np.ndarray, shape: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First hit of rays o, d [M, 3] with the object (shape [M], half-extent a [M]).

    Rays are first culled against a bounding sphere (centre (0, 1.2a, 0), radius 1.9a holds every
    shape), so the exact tests only run on the few rays near the object.
    """
    t = np.full(len(o), _INF, dtype=np.float32)
    n = np.zeros_like(o)
    oc = o.copy()
    oc[:, 1] -= 1.2 * a
    b = np.einsum("ij,ij->i", oc, d)
    disc = b * b - (np.einsum("ij,ij->i", oc, oc) - (1.9 * a) ** 2)
    near = np.flatnonzero((disc >= 0) & (-b + np.sqrt(np.maximum(disc, 0)) > 0))
    if len(near) == 0:
        return t, n
    t[near], n[near] = _hit_exact(o[near], d[near], shape[near], a[near])
    return t, n


def _hit_exact(o: np.ndarray, d: np.ndarray, shape: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.full(len(o), _INF, dtype=np.float32)
    n = np.zeros_like(o)
    zeros = np.zeros_like(a)
    for k in range(4):
        sel = np.flatnonzero(shape == k)
        if len(sel) == 0:
            continue
        oo, dd, aa = o[sel], d[sel], a[sel]
        if k == 0:  # cube: side 2a
            tk, nk = _hit_box(oo, dd, aa)
        elif k == 1:  # cylinder: radius a, height 2a
            tk, nk = _closest(
                _hit_cyl_side(oo, dd, aa, zeros[sel], 2 * aa),
                _hit_disc(oo, dd, aa, 2 * aa, 1.0),
                _hit_disc(oo, dd, aa, zeros[sel], -1.0),
            )
        elif k == 2:  # sphere: radius a, resting on the floor
            c = np.stack([zeros[sel], aa, zeros[sel]], axis=1)
            tk, nk = _hit_sphere(oo, dd, c, aa)
        else:  # capsule: upright pill, radius 0.6a, height 2.4a
            r = 0.6 * aa
            ya, yb = r, 2.4 * aa - r
            ca = np.stack([zeros[sel], ya, zeros[sel]], axis=1)
            cb = np.stack([zeros[sel], yb, zeros[sel]], axis=1)
            tk, nk = _closest(_hit_cyl_side(oo, dd, r, ya, yb), _hit_sphere(oo, dd, ca, r), _hit_sphere(oo, dd, cb, r))
        t[sel], n[sel] = tk, nk
    return t, n


# --- the renderer ---------------------------------------------------------------------------------
class Shapes3DRenderer:
    """Vectorised ray caster: factor classes [N, 6] -> uint8 [N, 64, 64, 3].

    Geometry and light depend only on (scale, shape, orientation) — 480 combinations — and the
    hues only colour the three surfaces (floor, walls, object). Because shading is linear
    (``ambient + diffuse <= 1``, no clipping), a pixel is exactly
    ``Σ_surface weight[surface, pixel] · rgb[surface]``, where ``weight`` is the supersample-averaged
    light on that surface. The renderer ray-casts each geometry once (lazily, batched) and keeps
    its weights [3, 64, 64]; an image is then one small einsum — identical pixels, ~100× faster.
    """

    def __init__(self, scene: Scene | None = None, chunk: int = 16):
        self.scene = scene or Scene()
        self.chunk = int(chunk)
        sc = self.scene
        if sc.ambient + sc.diffuse > 1.0 + 1e-9:
            raise ValueError("Scene: ambient + diffuse must be <= 1 (linear shading)")
        res = 64 * sc.supersample
        px = (np.arange(res, dtype=np.float32) + 0.5) / res * 2 - 1  # [-1, 1]
        self._sx, self._sy = np.meshgrid(px, -px)  # [res, res], sy up
        self._tan = np.float32(np.tan(np.radians(sc.fov_deg) / 2))
        self._light = _normalize(np.asarray(sc.light, dtype=np.float32))
        self._rgb = hue_rgb(HUE_VALUES, sc.saturation, sc.value)  # [10, 3]
        self._weights = np.zeros((8 * 4 * 15, 3, 64, 64), dtype=np.float32)  # per geometry key
        self._done = np.zeros(8 * 4 * 15, dtype=bool)
        self._lock = threading.Lock()

    def weights(self, keys: np.ndarray) -> np.ndarray:
        """Geometry keys (scale·60 + shape·15 + orientation) [N] -> light weights [N, 3, 64, 64]."""
        keys = np.asarray(keys, dtype=np.int64)
        with self._lock:
            todo = np.unique(keys[~self._done[keys]])
            for i in range(0, len(todo), self.chunk):
                k = todo[i : i + self.chunk]
                geo = np.stack([k // 60, (k // 15) % 4, k % 15], axis=1)
                self._weights[k] = self._cast(geo)
                self._done[k] = True
        return self._weights[keys]

    def render(self, classes: np.ndarray) -> np.ndarray:
        classes = np.asarray(classes, dtype=np.int64)
        w = self.weights(classes[:, 3] * 60 + classes[:, 4] * 15 + classes[:, 5])  # [N, 3, 64, 64]
        colours = self._rgb[classes[:, :3]]  # [N, 3 surfaces (floor, wall, object), 3 rgb]
        img = np.matmul(w.reshape(len(w), 3, 4096).transpose(0, 2, 1), colours)  # [N, 4096, 3]
        return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8).reshape(len(w), 64, 64, 3)

    def _cast(self, geo: np.ndarray) -> np.ndarray:
        """Ray-cast geometries (scale, shape, orientation) [N, 3] -> weights [N, 3, 64, 64]."""
        sc = self.scene
        n = len(geo)
        ss = sc.supersample
        res = 64 * ss
        p = res * res
        phi = np.radians(ORIENTATION_VALUES[geo[:, 2]]).astype(np.float32)  # [N]
        cam = np.stack(
            [sc.cam_dist * np.sin(phi), np.full(n, sc.cam_height), sc.cam_dist * np.cos(phi)], axis=1
        ).astype(np.float32)
        target = np.array([0.0, sc.target_height, 0.0], dtype=np.float32)
        fwd = _normalize(target[None] - cam)  # [N, 3]
        right = _normalize(np.cross(fwd, np.array([0.0, 1.0, 0.0], dtype=np.float32)[None]))
        up = np.cross(right, fwd)
        sx = self._sx.reshape(1, p, 1) * self._tan
        sy = self._sy.reshape(1, p, 1) * self._tan
        d = _normalize(fwd[:, None, :] + sx * right[:, None, :] + sy * up[:, None, :]).reshape(-1, 3)  # [N*P, 3]
        o = np.repeat(cam, p, axis=0)  # [N*P, 3]
        img_of = np.repeat(np.arange(n), p)  # [N*P]
        shape = geo[img_of, 1]
        a = (sc.size * SCALE_VALUES[geo[:, 0]]).astype(np.float32)[img_of]

        # room interior: the nearest exit plane (floor, four walls; the ceiling is out of view)
        R = np.float32(sc.room_half)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_floor = np.where(d[:, 1] < 0, -o[:, 1] / d[:, 1], _INF)
            t_x = np.where(d[:, 0] > 0, (R - o[:, 0]) / d[:, 0], (-R - o[:, 0]) / d[:, 0])
            t_z = np.where(d[:, 2] > 0, (R - o[:, 2]) / d[:, 2], (-R - o[:, 2]) / d[:, 2])
        t_x = np.where(np.isfinite(t_x) & (t_x > 0), t_x, _INF)
        t_z = np.where(np.isfinite(t_z) & (t_z > 0), t_z, _INF)
        t_room = np.minimum(np.minimum(t_floor, t_x), t_z)
        surf = np.where(t_floor <= np.minimum(t_x, t_z), 0, np.where(t_x <= t_z, 1, 2))  # 0 floor, 1 x-wall, 2 z-wall
        n_room = np.zeros_like(d)
        n_room[surf == 0, 1] = 1.0
        n_room[surf == 1, 0] = -np.sign(d[surf == 1, 0])
        n_room[surf == 2, 2] = -np.sign(d[surf == 2, 2])

        t_obj, n_obj = hit_object(o, d, shape, a)
        on_obj = t_obj < t_room
        t = np.where(on_obj, t_obj, t_room)
        nrm = np.where(on_obj[:, None], n_obj, n_room)
        pos = o + d * t[:, None]

        # hard shadow: room points whose ray to the light hits the (convex) object
        L = self._light
        lam = np.clip(nrm @ L, 0, None)
        shadow = np.zeros(len(d), dtype=bool)
        cand = np.flatnonzero(~on_obj & (lam > 0))
        if len(cand):
            so = pos[cand] + nrm[cand] * np.float32(1e-3)
            sd = np.broadcast_to(L, so.shape).copy()
            ts, _ = hit_object(so, sd, shape[cand], a[cand])
            shadow[cand] = np.isfinite(ts)
        light = (sc.ambient + sc.diffuse * lam * (~shadow)).astype(np.float32)  # [N*P]

        kind = np.where(on_obj, 2, np.minimum(surf, 1))  # 0 floor, 1 wall, 2 object
        w = (kind[None, :] == np.arange(3)[:, None]) * light[None, :]  # [3, N*P]
        w = w.reshape(3, n, 64, ss, 64, ss).mean(axis=(3, 5))  # 2×2 supersampling -> [3, N, 64, 64]
        return np.ascontiguousarray(w.transpose(1, 0, 2, 3), dtype=np.float32)


class Shapes3DLike(GroundTruthDataset):
    """Shapes3D-like (procedural look-alike of 3dshapes; same factor schema, not the same pixels).

    Images are rendered on demand; the renderer keeps the 480 ray-cast geometries (23 MB when all
    are done), so after warm-up any image costs one small einsum and the sampler needs no image cache.
    """

    name = "shapes3d"
    categorical = {"shape": SHAPE_NAMES}
    description = "Shapes3D-like: procedural ray-cast look-alike of 3dshapes, RGB, 6 factors, 480,000 images"
    channels = 3
    binary = False
    _shared_renderer: Shapes3DRenderer | None = None

    def __init__(self) -> None:
        self.factor_names = list(FACTOR_NAMES)
        self.factor_sizes = FACTOR_SIZES
        self.factor_values = [HUE_VALUES, HUE_VALUES, HUE_VALUES, SCALE_VALUES, SHAPE_VALUES, ORIENTATION_VALUES]
        self.options: dict[str, Any] = {}
        if Shapes3DLike._shared_renderer is None:  # one geometry cache per process
            Shapes3DLike._shared_renderer = Shapes3DRenderer()
        self.renderer = Shapes3DLike._shared_renderer

    def _render(self, classes: np.ndarray) -> np.ndarray:
        return self.renderer.render(classes)

    def batch_sampler(self, batch_size: int, device: Any = "cpu", seed: int = 0) -> BatchSampler:
        return Shapes3DBatchSampler(self, batch_size, device, seed)


class Shapes3DBatchSampler(BatchSampler):
    """Composes batches on the device: the 480 geometry weight maps (24 MB) live there, and a batch
    is ``weights[geometry] · rgb[hues]`` — no images cross the bus. On creation all geometries are
    ray-cast once (a few seconds on a CPU). Pixels equal ``images()/255`` up to float rounding.
    """

    def __init__(self, dataset: Shapes3DLike, batch_size: int, device: Any = "cpu", seed: int = 0):
        super().__init__(dataset, batch_size, device, seed)
        import torch

        self._torch = torch
        r = dataset.renderer
        w = r.weights(np.arange(480)).reshape(480, 3, 4096)
        self._w = torch.from_numpy(np.ascontiguousarray(w)).to(device)  # [480, 3, 4096]
        self._rgb = torch.from_numpy(r._rgb).to(device)  # [10, 3]

    def __next__(self) -> Any:
        torch = self._torch
        cls = torch.from_numpy(self.dataset.factors(self.next_indices())).to(self._w.device)  # [B, 6]
        geo = cls[:, 3] * 60 + cls[:, 4] * 15 + cls[:, 5]
        colours = self._rgb[cls[:, :3]]  # [B, 3 surfaces, 3 rgb]
        x = torch.bmm(colours.transpose(1, 2), self._w[geo])  # [B, 3, 4096]
        return torch.round(x.clamp_(0, 1) * 255).div_(255).reshape(-1, 3, 64, 64)
