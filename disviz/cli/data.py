"""``python -m disviz data ...`` and ``python -m disviz bench data``: list, describe, render, cache, time datasets."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from disviz.core.errors import DatasetError
from disviz.data import DATASETS, dataset_names, load_dataset, parse_options
from disviz.data.base import GroundTruthDataset


def _load(args: argparse.Namespace) -> GroundTruthDataset:
    return load_dataset(
        args.name, path=getattr(args, "data_path", None), **parse_options(getattr(args, "data_option", []))
    )


def cmd_list(args: argparse.Namespace) -> int:
    """`data list`: every registered dataset with its description and options."""
    width = max(len(n) for n in dataset_names())
    for name in dataset_names():
        spec = DATASETS[name]
        opts = ", ".join(f"{k}={v}" for k, v in spec.option_defaults().items())
        print(f"{name:<{width}}  {spec.description}" + (f"  [options: {opts}]" if opts else ""))
    return 0


def _fmt_values(v: np.ndarray) -> str:
    v = np.asarray(v)
    if len(v) <= 8:
        return ", ".join(f"{x:g}" for x in v)
    return f"{v[0]:g}, {v[1]:g}, …, {v[-1]:g}"


def cmd_info(args: argparse.Namespace) -> int:
    """`data info NAME`: size, channels and each factor's values."""
    ds = _load(args)
    info = ds.info()
    print(f"{info.name}: {len(ds):,} images, 64×64×{info.channels}, {'binary' if info.binary else 'grey/RGB'}")
    if info.options:
        print("options: " + ", ".join(f"{k}={v}" for k, v in info.options.items()))
    width = max(len(n) for n in info.factor_names)
    for name, size, values in zip(info.factor_names, info.factor_sizes, ds.factor_values, strict=True):
        print(f"  {name:<{width}}  {size:>3}  [{_fmt_values(values)}]")
    return 0


def image_grid(images: np.ndarray, cols: int | None = None, pad: int = 2) -> np.ndarray:
    """uint8 [N, 64, 64, C] -> one uint8 RGB grid image [H, W, 3] (white gaps)."""
    n = len(images)
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    h, w = images.shape[1:3]
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = im
    return grid


# what marks a rendered grid as ours (so a second render may replace it, and nothing else is replaced)
_MARK_TEXT = "disviz data render"


def _mark(suffix: str) -> dict[str, object]:
    """Save options that mark an image as this command's: PNG text, JPEG comment (WebP: none)."""
    if suffix == ".png":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("Software", _MARK_TEXT)
        return {"pnginfo": info}
    if suffix in (".jpg", ".jpeg"):
        return {"comment": _MARK_TEXT.encode()}
    return {}


def _rendered_here(path: Path) -> bool:
    """An image this command wrote (its PNG text / JPEG comment); WebP carries no mark."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            mark = im.info.get("Software") or im.info.get("comment")
    except (OSError, ValueError, Image.DecompressionBombError):
        return False
    return mark in (_MARK_TEXT, _MARK_TEXT.encode())


def cmd_render(args: argparse.Namespace) -> int:
    """`data render NAME`: a PNG grid of random samples (to see what a model will be trained on)."""
    from PIL import Image

    from disviz.core.limits import check_images, check_seed
    from disviz.core.outputs import check_output, check_overwrite

    out = check_output(args.out, "file", (".png", ".jpg", ".jpeg", ".webp"))
    check_overwrite(out, _rendered_here, "a grid rendered by disviz")
    check_seed(args.seed)
    ds = _load(args)
    check_images(args.n, ds.channels)
    images, _ = ds.sample(args.n, np.random.default_rng(args.seed))
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_grid(images)).save(out, **_mark(out.suffix.lower()))
    print(f"wrote {out} ({args.n} samples of {ds.name})")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    """`data build`: the bit-packed dSprites cache that makes training's sampler fast."""
    from disviz.data.dsprites import build_cache, cache_path

    if args.name not in (
        "dsprites",
        "color_dsprites",
        "noisy_dsprites",
        "scream_dsprites",
        "dsprites_noshape",
        "correlated_dsprites",
    ):
        raise DatasetError(
            f"data build caches the procedural dSprites grid only (all dSprites variants share it), not {args.name!r}"
        )

    def progress(done: int, total: int) -> None:
        print(f"\r  {done}/{total} (shape, scale) blocks", end="", flush=True)

    print(f"building {cache_path()} (737,280 images bit-packed, 377 MB) with 2 processes …")
    path, secs = build_cache(processes=2, progress=progress)
    print(f"\ndone in {secs:.1f} s: {path}")
    return 0


def _rate(fn, n_items: int, min_time: float = 1.0) -> float:
    """Items per second of ``fn()`` (which handles ``n_items``), repeated for at least ``min_time``."""
    fn()  # warm-up
    t0 = time.perf_counter()
    reps = 0
    while True:
        fn()
        reps += 1
        dt = time.perf_counter() - t0
        if dt >= min_time:
            return reps * n_items / dt


def cmd_bench(args: argparse.Namespace) -> int:
    """`bench data`: images/s of lazy rendering, the batch samplers and (``--full``) the cache build."""
    import torch

    from disviz.core.device import pick_device
    from disviz.data.dsprites import DSprites, build_cache, open_cache
    from disviz.data.shapes3d import Shapes3DLike, Shapes3DRenderer

    rng = np.random.default_rng(0)
    device = pick_device("auto")
    print(f"data benchmark (numpy {np.__version__}, torch threads {torch.get_num_threads()}, sampler device {device})")
    lazy = DSprites(use_cache=False)
    for n in (1, 256):
        idx = lazy.sample_indices(n, rng)
        r = _rate(lambda idx=idx: lazy.images(idx), n)
        print(f"  dsprites lazy render, batch {n:>4}: {r:>10,.0f} images/s")
    fresh = Shapes3DRenderer()
    geo = np.stack([np.arange(16) % 8, np.arange(16) % 4, np.arange(16) % 15], axis=1)
    t0 = time.perf_counter()
    fresh._cast(geo)
    print(
        f"  shapes3d ray casting (cold, 2×2 supersampled), batch 16: {16 / (time.perf_counter() - t0):>8,.0f} images/s"
    )
    s3 = Shapes3DLike()
    s3.renderer.weights(np.arange(480))  # all 480 geometries cast once (a few seconds)
    for n in (1, 64):
        idx = s3.sample_indices(n, rng)
        r = _rate(lambda idx=idx: s3.images(idx), n)
        print(f"  shapes3d render (geometry cached), batch {n:>3}: {r:>10,.0f} images/s")
    for label, ds in (("dsprites (lazy)", lazy), ("shapes3d", s3)):
        bs = ds.batch_sampler(64, device, seed=0)
        r = _rate(lambda bs=bs: _sync(next(bs), device), 1, min_time=2.0)
        print(f"  batch sampler {label}, batch 64: {r:>8,.1f} batches/s = {64 * r:>10,.0f} images/s")
    if open_cache() is not None:
        cached = DSprites(use_cache=True)
        bs = cached.batch_sampler(64, device, seed=0)
        r = _rate(lambda: _sync(next(bs), device), 1)
        print(f"  batch sampler dsprites (packed cache), batch 64: {r:>8,.1f} batches/s = {64 * r:>10,.0f} images/s")
    else:
        print("  (no packed dSprites cache: run `python -m disviz data build` to time the cached sampler)")
    if args.full:
        with tempfile.TemporaryDirectory() as tmp:
            path, secs = build_cache(Path(tmp) / "dsprites_bench.npy", processes=2)
            print(f"  full dSprites build (737,280 images, 2 processes): {secs:.1f} s = {737_280 / secs:,.0f} images/s")
    return 0


def _sync(t, device) -> None:
    if getattr(device, "type", "") == "cuda":
        import torch

        torch.cuda.synchronize()
