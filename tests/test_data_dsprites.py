"""Procedural dSprites: golden geometry (docs/datasets.md#dsprites-geometry), variants, correlated sampling, registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from disviz.core.errors import DatasetError
from disviz.data import DATASETS, dataset_names, load_dataset, parse_options
from disviz.data import dsprites as dsp


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DISVIZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DISVIZ_DATA", raising=False)
    dsp._PACKED.clear()
    yield
    dsp._PACKED.clear()


def _mask(ds, classes):
    return ds.images_from_factors([classes])[0, ..., 0] > 0


def _extent(m):
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    return rows.min(), rows.max(), cols.min(), cols.max()


def test_square_scale1_pos00_covers_rows_cols_6_to_25():
    ds = load_dataset("dsprites")
    m = _mask(ds, [0, 5, 0, 0, 0])
    assert _extent(m) == (6, 25, 6, 25)
    assert m.sum() == 400  # exactly filled 20 × 20


def test_square_widths_over_scales():
    ds = load_dataset("dsprites")
    widths = [len(np.flatnonzero(_mask(ds, [0, s, 0, 0, 0]).any(0))) for s in range(6)]
    assert widths == [10, 12, 14, 16, 18, 20]


def test_position_moves_32px_and_posy_runs_down():
    ds = load_dataset("dsprites")
    for shape in range(3):
        r0, _, c0, _ = _extent(_mask(ds, [shape, 5, 0, 0, 0]))
        _, _, c1, _ = _extent(_mask(ds, [shape, 5, 0, 31, 0]))
        r1, _, _, _ = _extent(_mask(ds, [shape, 5, 0, 0, 31]))
        assert c1 - c0 == 32 and r1 - r0 == 32


def test_ellipse_and_heart_geometry():
    ds = load_dataset("dsprites")
    ell = _mask(ds, [1, 5, 0, 16, 16])
    r0, r1, c0, c1 = _extent(ell)
    assert c1 - c0 + 1 > r1 - r0 + 1  # major axis horizontal at θ = 0
    assert 280 <= ell.sum() <= 300  # ≈ π·12.75·7.25 = 290
    heart = _mask(ds, [2, 5, 0, 0, 0])
    r0, r1, c0, c1 = _extent(heart)
    assert (c0, c1) == (6, 25) and r1 - r0 + 1 == 17  # 20 wide × 17 tall
    assert 215 <= heart.sum() <= 245  # ≈ 230
    assert heart[r1 - 2 :].sum() < heart[r0 : r0 + 3].sum()  # lobes on top, tip at the bottom
    _, _, c0, c1 = _extent(_mask(ds, [2, 5, 0, 31, 0]))
    assert (c0, c1) == (38, 57)


def test_rotation_is_counter_clockwise_as_displayed():
    ds = load_dataset("dsprites")
    k = 4  # θ ≈ 37°: the ellipse's major axis rises to the right (upper-right = lower row index)
    rows, cols = np.nonzero(_mask(ds, [1, 5, k, 16, 16]))
    assert np.corrcoef(rows, cols)[0, 1] < -0.4
    rows, cols = np.nonzero(_mask(ds, [1, 5, 39 - k, 16, 16]))  # θ ≈ −37°: falls to the right
    assert np.corrcoef(rows, cols)[0, 1] > 0.4


def test_orientation_0_equals_39():
    ds = load_dataset("dsprites")
    for shape in range(3):
        imgs = ds.images(ds.sweep("orientation", [shape, 3, 0, 11, 20]))
        assert np.array_equal(imgs[0], imgs[39])
        assert not np.array_equal(imgs[0], imgs[1])


def test_mean_pixel_over_random_sample():
    ds = load_dataset("dsprites")
    imgs, _ = ds.sample(4000, 0)
    assert imgs.dtype == np.uint8 and imgs.shape == (4000, 64, 64, 1)
    assert set(np.unique(imgs)) <= {0, 255}
    assert abs(imgs.mean() / 255 - 0.043) < 0.003


def test_window_renderer_matches_full_canvas_reference():
    """The 31×31-window renderer equals a direct whole-canvas evaluation for squares/ellipses."""
    rng = np.random.default_rng(3)
    ds = load_dataset("dsprites")
    cls = ds.sample_factors(300, rng)
    cls[:, 0] = rng.integers(0, 2, 300)
    got = ds.images_from_factors(cls)[..., 0] > 0
    x = np.arange(64) + 0.5
    for i, (sh, sc, o, px, py) in enumerate(cls):
        s = dsp.SCALE_VALUES[sc]
        th = np.mod(dsp.ORIENTATION_VALUES[o], 2 * np.pi)
        dx = x[None, :] - (16 + 32 * dsp.POS_VALUES[px])
        dy = x[:, None] - (16 + 32 * dsp.POS_VALUES[py])
        u = np.cos(th) * dx - np.sin(th) * dy
        v = np.sin(th) * dx + np.cos(th) * dy
        ref = (
            (np.abs(u) <= 9.6 * s) & (np.abs(v) <= 9.6 * s)
            if sh == 0
            else (u / (12.75 * s)) ** 2 + (v / (7.25 * s)) ** 2 <= 1
        )
        assert (ref != got[i]).sum() <= 1  # float32 vs float64 on an exact boundary at most


@pytest.mark.parametrize(
    "name",
    [
        "dsprites",
        "color_dsprites",
        "noisy_dsprites",
        "scream_dsprites",
        "dsprites_noshape",
        "correlated_dsprites",
        "correlated_triangles",
        "shapes3d",
    ],
)
def test_index_factor_round_trip(name):
    ds = load_dataset(name)
    rng = np.random.default_rng(1)
    idx = rng.integers(0, len(ds), 500)
    assert np.array_equal(ds.index(ds.factors(idx)), idx)
    cls = ds.sample_factors(200, rng)
    assert np.array_equal(ds.factors(ds.index(cls)), cls)
    assert len(ds) == int(np.prod(ds.factor_sizes))
    assert len(ds.factor_values) == len(ds.factor_names) == len(ds.factor_sizes)
    for vals, size in zip(ds.factor_values, ds.factor_sizes, strict=True):
        assert len(vals) == size


def test_dsprites_ordering_matches_file_bases():
    ds = load_dataset("dsprites")
    assert len(ds) == 737_280
    assert ds.index([[1, 2, 3, 4, 5]])[0] == 1 * 245760 + 2 * 40960 + 3 * 1024 + 4 * 32 + 5


@pytest.mark.parametrize("name", ["color_dsprites", "noisy_dsprites", "scream_dsprites"])
def test_rgb_variants_deterministic_and_follow_the_sprite(name):
    ds = load_dataset(name)
    base = load_dataset("dsprites")
    idx = np.array([5, 123_456, 700_000, 5])
    a, b = ds.images(idx), ds.images(idx[::-1])
    assert a.shape == (4, 64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b[::-1]) and np.array_equal(a[0], a[3])  # seeded by the flat index
    assert not np.array_equal(a[1], ds.images(idx[1] + 1)[0])
    mask = base.images(idx)[..., 0] > 0
    img = a.astype(int)
    if name == "color_dsprites":
        assert (img[~mask] == 0).all()
        assert (img[mask] >= 127).all() and (img[mask] <= 255).all()
        assert len({tuple(img[i][mask[i]][0]) for i in range(3)}) == 3  # different colours
    elif name == "noisy_dsprites":
        assert (img[mask] == 255).all()
        assert 100 < img[~mask].mean() < 155  # U(0,1) noise
    else:
        # sprite pixels are inverted background: sprite brightness ≈ 255 − background brightness
        for i in range(3):
            assert abs(img[i][mask[i]].mean() + img[i][~mask[i]].mean() - 255) < 60


def test_noshape_variants():
    hearts = load_dataset("dsprites_noshape")
    assert hearts.factor_names == ["scale", "orientation", "posX", "posY"]
    base = load_dataset("dsprites")
    cls = hearts.sample_factors(20, 0)
    full = np.concatenate([np.full((20, 1), 2), cls], axis=1)
    assert np.array_equal(hearts.images_from_factors(cls), base.images_from_factors(full))
    rnd = load_dataset("dsprites_noshape", shape="random")
    imgs = rnd.images(np.arange(0, 40960, 97))
    areas = {int(m.sum()) for m in imgs[..., 0] > 0}
    assert len(areas) > 3
    with pytest.raises(DatasetError, match="shape"):
        load_dataset("dsprites_noshape", shape="star")


@pytest.mark.parametrize(
    ("fa", "fb", "rho"), [("posX", "posY", 0.9), ("scale", "orientation", -0.5), ("posX", "posY", 0.0)]
)
def test_correlated_dsprites_shows_the_asked_correlation(fa, fb, rho):
    ds = load_dataset("correlated_dsprites", factor_a=fa, factor_b=fb, correlation=str(rho))
    a, b = ds.factor_names.index(fa), ds.factor_names.index(fb)
    f = ds.sample_factors(30_000, np.random.default_rng(0))
    assert abs(np.corrcoef(f[:, a], f[:, b])[0, 1] - rho) < 0.03
    # marginals stay uniform, other factors independent
    counts = np.bincount(f[:, a], minlength=ds.factor_sizes[a])
    assert counts.min() > 0.75 * counts.mean()
    other = [k for k in range(5) if k not in (a, b)][0]
    assert abs(np.corrcoef(f[:, other], f[:, a])[0, 1]) < 0.03
    # the batch sampler draws from the same joint
    sampler = ds.batch_sampler(64, "cpu", seed=0)
    idx = np.concatenate([sampler.next_indices() for _ in range(300)])
    g = ds.factors(idx)
    assert abs(np.corrcoef(g[:, a], g[:, b])[0, 1] - rho) < 0.04
    assert abs(np.corrcoef(*ds.uniform_factors(20_000, 1)[:, [a, b]].T)[0, 1]) < 0.03


def test_correlated_triangles_orientation_follows_position():
    ds = load_dataset("correlated_triangles")
    f = ds.sample_factors(5000, 0)
    px = ds.factor_values[1][f[:, 1]] - 32
    py = ds.factor_values[2][f[:, 2]] - 32
    polar = np.degrees(np.arctan2(-py, px))
    diff = (ds.factor_values[0][f[:, 0]] - polar + 180) % 360 - 180
    assert np.abs(diff).max() <= 30 + 11.25
    assert 14 < diff.std() < 21  # U[-30, 30) jitter (std 17.3) + bin quantisation
    img = ds.images_from_factors([[0, 16, 16]])[0, ..., 0] > 0
    assert 40 <= img.sum() <= 80  # ≈ half of an 11 × 11 box
    cx = ds.factor_values[1][16]
    for o, sign in ((0, -1), (16, 1)):  # pointing right / left: the mass (the base) sits behind
        m = ds.images_from_factors([[o, 16, 16]])[0, ..., 0] > 0
        assert np.sign(np.nonzero(m)[1].mean() + 0.5 - cx) == sign


def test_packed_cache_is_used_and_identical(tmp_path):
    """A packed cache file gives the same pixels and feeds the sampler (unpacked on the device)."""
    lazy = load_dataset("dsprites", use_cache=False)
    idx = np.random.default_rng(0).integers(0, len(lazy), 64)
    path = dsp.cache_path()
    path.parent.mkdir(parents=True)
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=dsp.PACKED_SHAPE)  # sparse file
    arr[np.sort(idx)] = np.packbits(lazy.images(np.sort(idx))[..., 0] > 0, axis=-1)
    arr.flush()
    del arr
    cached = load_dataset("dsprites")
    assert dsp.open_cache() is not None
    assert np.array_equal(cached.images(idx), lazy.images(idx))
    sampler = cached.batch_sampler(16, "cpu", seed=7)
    assert sampler._has_cache
    ref = np.random.default_rng(7)
    sampler.next_indices = lambda: idx[:16]  # only these rows are filled in the sparse file
    batch = next(sampler)
    assert batch.shape == (16, 1, 64, 64) and batch.dtype == torch.float32
    assert torch.equal(batch, torch.from_numpy(lazy.images(idx[:16])).permute(0, 3, 1, 2).float() / 255)
    del ref


def test_build_blocks_writes_the_lazy_render(tmp_path):
    path = tmp_path / "grid.npy"
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=dsp.PACKED_SHAPE)
    del arr
    dsp._build_blocks((str(path), [(2, 0)]))  # hearts at the smallest scale: 40 960 images
    got = np.load(path, mmap_mode="r")
    lazy = load_dataset("dsprites", use_cache=False)
    idx = np.array([2 * 245760, 2 * 245760 + 12345, 2 * 245760 + 40959])
    assert np.array_equal(np.unpackbits(got[idx], axis=-1), lazy.images(idx)[..., 0] // 255)
    assert got[:1000].sum() == 0  # other blocks untouched


def test_sampler_lazy_matches_images():
    ds = load_dataset("dsprites")
    s = ds.batch_sampler(32, "cpu", seed=3)
    idx = ds.sample_indices(32, np.random.default_rng(3))
    batch = next(s)
    assert torch.equal(batch, torch.from_numpy(ds.images(idx)).permute(0, 3, 1, 2).float() / 255)
    color = load_dataset("color_dsprites").batch_sampler(8, "cpu", seed=0)
    b = next(color)
    assert b.shape == (8, 3, 64, 64) and 0 <= b.min() and b.max() <= 1


def test_registry_and_options():
    assert set(dataset_names()) >= {
        "dsprites",
        "color_dsprites",
        "noisy_dsprites",
        "scream_dsprites",
        "dsprites_noshape",
        "correlated_dsprites",
        "shapes3d",
        "smallnorb",
        "mpi3d",
    }
    assert all(DATASETS[n].description for n in dataset_names())
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("mnist")
    with pytest.raises(DatasetError, match="valid options: factor_a"):
        load_dataset("correlated_dsprites", strength=1)
    with pytest.raises(DatasetError, match="not a valid float"):
        load_dataset("correlated_dsprites", correlation="high")
    with pytest.raises(DatasetError, match=r"\[-1, 1\]"):
        load_dataset("correlated_dsprites", correlation="1.5")
    with pytest.raises(DatasetError, match="unknown factor"):
        load_dataset("correlated_dsprites", factor_a="colour")
    assert load_dataset("dsprites", use_cache="false").use_cache is False
    info = load_dataset("correlated_dsprites", correlation="0.7").info()
    assert info.options["correlation"] == 0.7 and info.binary and info.channels == 1
    assert parse_options(["a=1", "b = x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(DatasetError, match="KEY=VALUE"):
        parse_options(["oops"])
    with pytest.raises(DatasetError, match="procedural"):
        load_dataset("correlated_triangles", path="/nowhere")


def test_hash_uniform_is_uniform_and_deterministic():
    u = dsp.index_uniform(np.arange(20_000), 3, salt=9)
    assert u.shape == (20_000, 3) and u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.std() - (1 / 12) ** 0.5) < 0.01
    assert np.array_equal(u, dsp.index_uniform(np.arange(20_000), 3, salt=9))
    assert not np.array_equal(u, dsp.index_uniform(np.arange(20_000), 3, salt=8))


@pytest.mark.parametrize(
    ("name", "opts"),
    [
        ("correlated_dsprites", {"factor_a": "scale", "correlation": "-0.4"}),
        ("dsprites_noshape", {"shape": "random"}),
        ("dsprites", {}),
    ],
)
def test_info_options_rebuild_the_same_dataset(name, opts):
    """Checkpoint cards store info().options; loading with them must give the same dataset."""
    info = load_dataset(name, **opts).info()
    again = load_dataset(info.name, **info.options)
    assert again.info() == info
    assert np.array_equal(again.images([3, 77_777]), load_dataset(name, **opts).images([3, 77_777]))
