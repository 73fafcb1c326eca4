"""disviz.app.explore: slider ranges per latent kind, traversal tiles, sorting, GIFs, uploads, interpolation."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from disviz.app import explore as ex
from disviz.data import load_dataset
from disviz.engine.card import Card, Report
from disviz.models import create_model
from disviz.models.base import LatentSpec

TINY = {"base_channels": 4, "hidden": 16}


@pytest.fixture(scope="module")
def dataset():
    return load_dataset("dsprites")


@pytest.fixture(scope="module")
def vae(dataset):
    torch.manual_seed(0)
    return create_model("betavae", dataset.info(), **TINY).eval()


@pytest.fixture(scope="module")
def qlae(dataset):
    torch.manual_seed(0)
    return create_model("qlae", dataset.info(), **TINY).eval()


def _codes(n=200, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(loc=1.0, scale=0.5, size=(n, d))


def test_slider_ranges_per_mode_for_gaussian_latents():
    spec = LatentSpec(0, "gaussian", -3, 3)
    codes = _codes()
    col = codes[:, 0]
    s = ex.slider_spec(spec, "std_gaussian", codes)
    assert (s.low, s.high) == (-3.0, 3.0) and s.values is None and s.mode == "std_gaussian"
    s = ex.slider_spec(spec, "fixed_interval", codes)
    assert (s.low, s.high) == (-2.0, 2.0)
    s = ex.slider_spec(spec, "minmax_interval", codes)
    assert s.low == pytest.approx(col.min(), abs=1e-4) and s.high == pytest.approx(col.max(), abs=1e-4)
    s = ex.slider_spec(spec, "conf_interval", codes)
    assert s.low == pytest.approx(col.mean() - 2 * col.std(), abs=1e-4)
    s = ex.slider_spec(spec, "fitted_gaussian", codes)
    assert s.high == pytest.approx(col.mean() + 3 * col.std(), abs=1e-4)
    assert 0 < s.step <= (s.high - s.low) / 50
    with pytest.raises(ValueError, match="range mode"):
        ex.slider_spec(spec, "bogus", codes)


def test_slider_for_quantised_and_deterministic_latents():
    q = LatentSpec(1, "quantised", -1, 1, values=[-1.0, 0.0, 1.0])
    s = ex.slider_spec(q, "std_gaussian", None)
    assert s.values == [-1.0, 0.0, 1.0] and s.kind == "quantised"
    d = LatentSpec(0, "deterministic", -5, 5)
    codes = _codes()
    # an AE has no prior: std_gaussian falls back to the data range
    s = ex.slider_spec(d, "std_gaussian", codes)
    assert s.low == pytest.approx(codes[:, 0].min(), abs=1e-4)


def test_traversal_values_prior_quantiles_and_codebook():
    g = LatentSpec(0, "gaussian", -3, 3)
    v = ex.traversal_values(g, "std_gaussian", None, 9)
    assert (
        v[0] == pytest.approx(-3, abs=1e-6)
        and v[-1] == pytest.approx(3, abs=1e-6)
        and v[4] == pytest.approx(0, abs=1e-9)
    )
    assert np.all(np.diff(v) > 0) and np.diff(v)[4] < np.diff(v)[0]  # quantiles: denser near the mean
    q = LatentSpec(0, "quantised", -1, 1, values=[1.0, -1.0, 0.5])
    assert list(ex.traversal_values(q, "std_gaussian", None, 9)) == [-1.0, 0.5, 1.0]


def test_traversal_tiles_vary_only_their_row_latent(vae):
    anchor = np.zeros(vae.latent_dim)
    vals = [np.linspace(-3, 3, 5), np.linspace(-3, 3, 5)]
    tiles = ex.traversal_tiles(vae, anchor, [0, 3], vals)
    assert tiles.shape == (2, 5, 64, 64, 1) and tiles.dtype == np.uint8
    # the centre column of both rows is the anchor decoded
    np.testing.assert_array_equal(tiles[0, 2], tiles[1, 2])
    np.testing.assert_array_equal(tiles[0, 2], ex.decode(vae, anchor[None])[0])
    # the row's first tile is the anchor with latent 0 at -3
    z = anchor.copy()
    z[0] = -3
    np.testing.assert_array_equal(tiles[0, 0], ex.decode(vae, z[None])[0])


def test_sort_latents_by_kl_and_mi():
    codes = _codes(300, 3)
    factors = np.stack([(codes[:, 2] > 1).astype(int), np.zeros(300, int)], axis=1)
    factors[:, 1] = np.random.default_rng(1).integers(0, 3, 300)
    nmi = ex.normalised_mi(codes, factors)
    stats = ex.LatentStats(codes, factors, ["a", "b"], np.array([0.5, 2.0, 0.1]), nmi)
    assert ex.sort_latents(stats, "kl") == [1, 0, 2]
    assert ex.sort_latents(stats, "mi")[0] == 2  # latent 2 determines factor a
    assert nmi[2, 0] > 0.9 and nmi[0, 0] < 0.2
    labels = ex.row_labels(stats, [2, 1])
    assert labels[0].startswith("z2 · a") and "KL 0.10" in labels[0]
    no_kl = ex.LatentStats(codes * np.array([1, 5, 0.1]), factors, ["a", "b"], None, nmi)
    assert ex.sort_latents(no_kl, "kl") == [1, 0, 2]  # code variance instead of KL


def test_latent_stats_on_a_model(vae, dataset):
    stats = ex.latent_stats(vae, dataset, n=64)
    assert stats.codes.shape == (64, vae.latent_dim) and stats.factors.shape == (64, 5)
    assert stats.kl is not None and stats.kl.shape == (vae.latent_dim,) and (stats.kl >= 0).all()
    assert stats.nmi.shape == (vae.latent_dim, 5) and (stats.nmi >= 0).all() and (stats.nmi <= 1 + 1e-9).all()


def test_gif_header_and_frame_count(vae):
    import imageio.v3 as iio

    tiles = ex.traversal_tiles(vae, np.zeros(vae.latent_dim), [0, 1], [np.linspace(-3, 3, 6)] * 2)
    gif = ex.traversal_gif(tiles, fps=10)
    assert gif[:6] == b"GIF89a"
    frames = iio.imread(io.BytesIO(gif), index=None, extension=".gif")
    assert frames.shape[0] == len(ex.triangle_wave(6)) == 10  # 0..5..1: seamless loop
    assert ex.triangle_wave(4) == [0, 1, 2, 3, 2, 1]
    with pytest.raises(ValueError, match="uint8"):
        ex.traversal_gif(tiles.astype(np.float32))


def _png(size=(100, 80), mode="RGB") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    img = Image.new(mode, size, (255, 255, 255) if mode == "RGB" else 255)
    img.paste((0, 0, 0) if mode == "RGB" else 0, (0, 0, size[0] // 2, size[1]))
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_upload_converts_to_64px_with_dataset_channels():
    rgb = ex.load_upload(_png(), channels=3)
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    binary = ex.load_upload(_png(), channels=1)
    assert binary.shape == (64, 64, 1) and set(np.unique(binary)) <= {0, 255}
    assert binary[32, 0, 0] == 0 and binary[32, 63, 0] == 255  # left half black after the centre crop


def test_upload_errors_are_clear():
    with pytest.raises(ex.UploadError, match="empty"):
        ex.load_upload(b"", 1)
    with pytest.raises(ex.UploadError, match="not a readable image"):
        ex.load_upload(b"this is not an image at all", 1, name="notes.png")
    with pytest.raises(ex.UploadError, match="not a readable image"):
        ex.load_upload(_png()[:60], 3, name="cut.png")  # truncated file
    with pytest.raises(ex.UploadError, match="MB"):
        ex.load_upload(_png(), 3, max_bytes=100)
    with pytest.raises(ex.UploadError, match="pixels"):
        ex.load_upload(_png(size=(5000, 4000), mode="L"), 1)


def test_interpolation_endpoints_are_the_decoded_encodings(vae, dataset):
    a, b = dataset.images(np.array([0, 5000]))
    frames = ex.interpolate(vae, a, b, steps=5)
    assert frames.shape == (5, 64, 64, 1)
    za, zb = ex.encode(vae, np.stack([a, b]))
    np.testing.assert_array_equal(frames[0], ex.decode(vae, za[None])[0])
    np.testing.assert_array_equal(frames[-1], ex.decode(vae, zb[None])[0])


def test_codebook_grid_and_usage(qlae, dataset):
    specs = qlae.latent_specs()
    anchor = ex.encode(qlae, dataset.images(np.array([0])))[0]
    tiles, values = ex.codebook_grid(qlae, anchor)
    assert tiles.shape[:2] == (qlae.latent_dim, max(len(v) for v in values))
    assert values[0] == sorted(specs[0].values)
    codes = np.array(
        [[values[0][0]] * qlae.latent_dim, [values[0][-1]] * qlae.latent_dim, [values[0][-1]] * qlae.latent_dim]
    )
    usage = ex.codebook_usage(codes, values)
    assert usage[0, 0] == pytest.approx(1 / 3) and usage[0, len(values[0]) - 1] == pytest.approx(2 / 3)
    np.testing.assert_allclose(usage.sum(axis=1), 1.0)


def test_codebook_grid_refuses_gaussian_models(vae):
    from disviz.core.errors import UserError

    with pytest.raises(UserError, match="QLAE"):
        ex.codebook_grid(vae, np.zeros(vae.latent_dim))


def test_report_helpers():
    report = Report.from_dict(
        {
            "preset": "fast",
            "n": 1000,
            "scores": {"infom": 0.4, "mig": 0.2, "dci_disentanglement": 0.3},
            "details": {
                "infomec": {"nmi": [[0.1, 0.5, 0.2], [0.9, 0.0, 0.2]]},  # factors x latents (2 x 3)
                "dci": {"importance": [[0.1, 0.9], [0.5, 0.0], [0.2, 0.2]]},  # latents x factors (3 x 2)
            },
        }
    )
    table = dict(ex.score_table(report))
    assert table["InfoM (modularity)"] == 0.4 and table["MIG"] == 0.2 and table["DCI disentanglement"] == 0.3
    assert table["SAP"] is None
    m = ex.report_matrix(report, "nmi", n_factors=2)
    assert m.shape == (2, 3) and m[1, 0] == 0.9
    imp = ex.report_matrix(report, "importance", n_factors=2)  # transposed to factors x latents
    assert imp.shape == (2, 3) and imp[0, 1] == 0.5
    assert ex.report_matrix(report, "nmi", n_factors=5) is None and ex.report_matrix(None, "nmi", 2) is None
    assert ex.report_settings(report) == {"preset": "fast", "n": 1000}
    card = Card(history={"step": [0, 10, 20, 30], "stage": [1, 1, 2, 3]})
    assert ex.stage_starts(card) == [20, 30]


def test_checkpoint_roots_and_entries(tmp_path, monkeypatch, vae):
    from disviz.engine.checkpoints import save_checkpoint

    monkeypatch.setenv("DISVIZ_CHECKPOINTS", str(tmp_path / "a") + __import__("os").pathsep + str(tmp_path / "b"))
    roots = ex.checkpoint_roots([tmp_path / "c"])
    assert roots[-3:] == [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    card = {"model": "betavae", "config": vae.config.to_dict(), "dataset": vae.dataset_info.to_dict(), "steps": 3}
    save_checkpoint(tmp_path / "a" / "good", vae, card)
    (tmp_path / "b" / "bad").mkdir(parents=True)
    (tmp_path / "b" / "bad" / "card.json").write_text("{not json")
    (tmp_path / "b" / "bad" / "model.safetensors").write_bytes(b"")
    entries = ex.list_entries([tmp_path / "a", tmp_path / "b"])
    by_name = {e.path.name: e for e in entries}
    assert by_name["good"].error is None and "betavae · dsprites · 3 steps" in by_name["good"].label
    assert by_name["bad"].card is None and "not valid JSON" in by_name["bad"].error


def test_annealing_view_flat_and_grouped():
    flat = {
        "threshold": 0.2,
        "runs": [
            {"factor": "a", "beta": [3, 1], "kl": [0, 1], "ifp": 2.0},
            {"factor": "a", "beta": [3, 1], "kl": [0, 1], "ifp": None},
        ],
    }
    curves, ifps, thr = ex.annealing_view(flat)
    assert thr == 0.2 and len(curves["a"]) == 2 and ifps == {"a": [2.0]}
    grouped = {"factors": {"b": {"runs": [{"betas": [2, 1], "kls": [0, 3], "ifp": 1.5}], "ifps": [1.5, 1.7]}}}
    curves, ifps, thr = ex.annealing_view(grouped)
    assert thr == 0.1 and curves["b"][0]["kl"] == [0, 3] and ifps["b"] == [1.5, 1.7]


def test_the_app_opens_on_the_best_shipped_dsprites_model_by_mig():
    from disviz.app.catalogue import CheckpointEntry, default_entry

    def entry(path: str, ds: str, mig: float | None, error: str | None = None) -> CheckpointEntry:
        card = {"dataset": {"name": ds}, "metrics": {"scores": {"mig": mig}} if mig is not None else {}}
        return CheckpointEntry(Path(path), path, Card.from_dict(card), error)

    found = [
        entry("checkpoints/dsprites/ae", "dsprites", 0.05),
        entry("checkpoints/dsprites/devae", "dsprites", 0.31),
        entry("checkpoints/dsprites/broken", "dsprites", 0.9, error="bad"),
        entry("checkpoints/shapes3d/qlae", "shapes3d", 0.6),
        entry("runs/mine", "dsprites", 0.8),  # a user's own run is never the default
        entry("checkpoints/seeds/dsprites/devae-seed1", "dsprites", 0.7),  # nor an extra seed
        entry("checkpoints/dsprites/did", "dsprites", None),
    ]
    assert default_entry(found).path == Path("checkpoints/dsprites/devae")
    assert default_entry(found[3:4]).path == Path("checkpoints/shapes3d/qlae")  # no dSprites: the first
    assert default_entry([]) is None
