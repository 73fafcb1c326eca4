"""Shapes3D-like: schema identical to 3dshapes.h5, renders vary along every factor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from disviz.data import load_dataset
from disviz.data import shapes3d as s3


@pytest.fixture(scope="module")
def ds():
    return load_dataset("shapes3d")


def test_schema_matches_the_real_file(ds):
    assert ds.factor_names == ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"]
    assert ds.factor_sizes == (10, 10, 10, 8, 4, 15) and len(ds) == 480_000
    np.testing.assert_allclose(ds.factor_values[0], np.arange(10) / 10)
    np.testing.assert_allclose(ds.factor_values[3], np.linspace(0.75, 1.25, 8))
    np.testing.assert_allclose(ds.factor_values[5], np.linspace(-30, 30, 15))
    assert ds.index([[1, 2, 3, 4, 3, 5]])[0] == 48000 + 2 * 4800 + 3 * 480 + 4 * 60 + 3 * 15 + 5
    info = ds.info()
    assert info.channels == 3 and not info.binary


def test_renders_differ_along_every_factor(ds):
    base = np.array([2, 5, 8, 4, 1, 7])
    for k, name in enumerate(ds.factor_names):
        imgs = ds.images(ds.sweep(name, base)).astype(int)
        assert imgs.shape == (ds.factor_sizes[k], 64, 64, 3)
        diffs = np.abs(np.diff(imgs, axis=0)).reshape(len(imgs) - 1, -1).mean(1)
        assert (diffs > 0.2).all(), (name, diffs)


def test_colours_sit_where_they_belong(ds):
    # floor at the bottom corners, wall at the top rows, object in the middle
    img = ds.images_from_factors([[0, 3, 6, 7, 2, 7]])[0].astype(float)  # red floor, cyan-ish wall
    rgb = s3.hue_rgb(s3.HUE_VALUES, ds.renderer.scene.saturation, 1.0) * 255
    floor, wall, obj = img[60, 2], img[2, 32], img[34, 32]

    def nearest_hue(px):  # shading scales the colour: compare directions, not values
        unit = rgb / np.linalg.norm(rgb, axis=1, keepdims=True)
        return int(np.argmax(unit @ (px / np.linalg.norm(px))))

    assert (nearest_hue(floor), nearest_hue(wall), nearest_hue(obj)) == (0, 3, 6)


def test_deterministic_cached_and_antialiased(ds):
    idx = np.array([7, 123_456, 7, 479_999])
    a = ds.images(idx)
    assert a.dtype == np.uint8 and np.array_equal(a[0], a[2])
    fresh = s3.Shapes3DRenderer()  # a renderer with an empty geometry cache gives the same pixels
    assert np.array_equal(a, fresh.render(ds.factors(idx)))
    # 2×2 supersampling gives intermediate colours at object edges: more distinct colours than surfaces
    assert len(np.unique(a[1].reshape(-1, 3), axis=0)) > 20


def test_shapes_have_the_right_silhouettes(ds):
    areas = []
    for shape in range(4):
        img = ds.images_from_factors([[0, 0, 5, 7, shape, 7]])[0].astype(int)
        obj = np.abs(img - ds.images_from_factors([[0, 0, 0, 7, shape, 7]])[0].astype(int)).sum(-1) > 30
        areas.append(obj.sum())
        rows, cols = np.nonzero(obj)
        assert 20 < rows.mean() < 50 and 24 < cols.mean() < 40  # centred, standing on the floor
    cube, cyl, sphere, capsule = areas
    assert sphere < cube and capsule < cyl  # sphere/capsule are rounder/thinner
    small = ds.images_from_factors([[0, 0, 5, 0, 0, 7]])[0].astype(int)
    small_obj = np.abs(small - ds.images_from_factors([[0, 0, 0, 0, 0, 7]])[0].astype(int)).sum(-1) > 30
    assert small_obj.sum() < 0.7 * cube


def test_surface_weights_partition_the_image(ds):
    """A wall-hue change touches only pixels that see a wall; shading stays within [ambient, 1]."""
    r = ds.renderer
    geo = np.array([2 * 60 + 3 * 15 + 11])
    w = r.weights(geo)[0]  # [3 surfaces, 64, 64]
    total = w.sum(0)
    assert total.min() >= r.scene.ambient - 1e-6 and total.max() <= 1 + 1e-6
    a = ds.images_from_factors([[1, 4, 7, 2, 3, 11]])[0]
    b = ds.images_from_factors([[1, 8, 7, 2, 3, 11]])[0]
    changed = (a != b).any(-1)
    assert changed.any() and not changed[w[1] == 0].any()
    assert (w[2] > 0).sum() > 100 and (w[0] > 0).sum() > 500  # object and floor are visible


def test_batch_sampler(ds):
    sampler = ds.batch_sampler(8, "cpu", seed=0)
    b = next(sampler)
    assert b.shape == (8, 3, 64, 64) and b.dtype == torch.float32
    assert 0 <= float(b.min()) and float(b.max()) <= 1


def test_device_sampler_matches_images(ds):
    sampler = ds.batch_sampler(16, "cpu", seed=5)
    idx = ds.sample_indices(16, np.random.default_rng(5))
    batch = next(sampler)
    ref = torch.from_numpy(ds.images(idx)).permute(0, 3, 1, 2).float() / 255
    assert batch.shape == (16, 3, 64, 64)
    assert (batch - ref).abs().max() <= 1.01 / 255  # equal up to one rounding step
    assert (batch != ref).float().mean() < 0.01
