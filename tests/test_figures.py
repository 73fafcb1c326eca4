"""disviz.app.figures: grid composition (shapes, gutters, upscaling) and plotly figure contents."""

from __future__ import annotations

import numpy as np
import pytest

from disviz.app.figures import (
    annealing_curves,
    argmax_order,
    codebook_usage_figure,
    compose_grid,
    diffusion_figure,
    heatmap,
    ifp_distribution,
    label_rows,
    to_rgb,
    upscale,
)


def _tiles(r: int, s: int, c: int = 1) -> np.ndarray:
    """Tile (i, j) is filled with the value 10*i + j, so positions can be checked."""
    t = np.zeros((r, s, 64, 64, c), np.uint8)
    for i in range(r):
        for j in range(s):
            t[i, j] = 10 * i + j
    return t


def test_grid_shape_gutters_and_tile_positions():
    grid = compose_grid(_tiles(3, 4), gutter=2, scale=1)
    assert grid.shape == (3 * 64 + 2 * 2, 4 * 64 + 3 * 2, 3)
    assert grid.dtype == np.uint8
    # tile (1, 2) starts at y = 66, x = 132
    assert (grid[66:130, 132:196] == 12).all()
    # gutters are background white, never tile content
    assert (grid[64:66, :] == 255).all() and (grid[:, 64:66] == 255).all()


def test_grid_upscale_is_nearest_neighbour_and_gutter_zero():
    tiles = np.zeros((1, 2, 64, 64, 3), np.uint8)
    tiles[0, 0, 0, 0] = [255, 0, 0]
    grid = compose_grid(tiles, gutter=0, scale=3)
    assert grid.shape == (192, 384, 3)
    assert (grid[:3, :3] == [255, 0, 0]).all() and (grid[3, 3] == 0).all()


def test_grid_refuses_float_tiles():
    with pytest.raises(ValueError, match="uint8"):
        compose_grid(np.zeros((1, 1, 64, 64, 1), np.float32))


def test_to_rgb_and_upscale():
    img = np.arange(4, dtype=np.uint8).reshape(2, 2, 1)
    rgb = to_rgb(img)
    assert rgb.shape == (2, 2, 3) and (rgb[..., 0] == rgb[..., 2]).all()
    up = upscale(rgb, 2)
    assert up.shape == (4, 4, 3) and up[1, 1, 0] == 0 and up[2, 3, 0] == 3


def test_label_rows_adds_a_panel_with_ink_per_row():
    grid = compose_grid(_tiles(2, 3), gutter=2)
    out = label_rows(grid, ["z0 · posX", "z1 · scale"], 64, 2, width=150)
    assert out.shape == (grid.shape[0], grid.shape[1] + 150, 3)
    panel = out[:, :150]
    assert (panel[:64] < 128).any() and (panel[66:] < 128).any()  # text drawn in both rows
    assert (out[:, 150:] == grid).all()
    wide = label_rows(grid, ["z0 · a very long factor name · KL 12.34"], 64, 2, width=50)
    assert wide.shape[1] - grid.shape[1] > 50  # the panel grows to fit long labels


def test_argmax_order_gives_block_diagonal():
    # factors x latents: latent 2 encodes factor 0, latent 0 factor 1, latent 1 nothing much
    m = np.array([[0.1, 0.0, 0.9], [0.8, 0.2, 0.0]])
    order = argmax_order(m)
    assert order == [2, 0, 1]
    reordered = m[:, order]
    assert reordered[0, 0] == 0.9 and reordered[1, 1] == 0.8


def test_heatmap_is_fixed_scale_and_annotated():
    fig = heatmap(np.array([[0.5, 0.25]]), ["shape"], ["z0", "z1"])
    hm = fig.data[0]
    assert hm.zmin == 0 and hm.zmax == 1
    assert list(hm.text[0]) == ["0.50", "0.25"]


def test_annealing_curves_reverse_beta_and_mark_threshold_and_ifp():
    curves = {"posX": [{"beta": [70, 10, 1], "kl": [0.0, 0.5, 2.0], "ifp": 20.0}]}
    fig = annealing_curves(curves, threshold=0.1)
    assert fig.layout.xaxis.autorange == "reversed" and fig.layout.xaxis.type == "log"
    assert any(s.y0 == 0.1 for s in fig.layout.shapes)
    markers = [t for t in fig.data if t.mode == "markers"]
    assert len(markers) == 1 and markers[0].x[0] == 20.0


def test_ifp_distribution_one_violin_per_factor_drops_missing():
    fig = ifp_distribution({"posX": [30.0, 35.0], "shape": [3.0, None, float("nan")], "none": []})
    assert [t.name for t in fig.data] == ["posX", "shape"]
    assert len(fig.data[1].x) == 1


def test_diffusion_figure_reads_lists_and_dicts_and_marks_stages():
    recs = [
        {"step": 0, "nmi1": [0.1, 0.2], "nmi2": {"a": 0.0, "b": 0.1}},
        {"step": 10, "nmi1": [0.5, 0.6], "nmi2": [0.1, 0.2]},
    ]
    fig = diffusion_figure(recs, ["a", "b"], stage_steps=[5])
    assert len(fig.data) == 4
    assert list(fig.data[0].y) == [0.1, 0.5] and list(fig.data[3].y) == [0.1, 0.2]
    assert any(s.x0 == 5 for s in fig.layout.shapes)


def test_codebook_usage_figure_hover_values():
    fig = codebook_usage_figure(np.array([[0.5, 0.5, 0.0]]), [[-1.0, 0.0, 1.0]])
    assert fig.data[0].customdata[0][2] == "1.00"
