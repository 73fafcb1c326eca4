"""Real-file loaders on small fixtures written here in the exact real formats."""

from __future__ import annotations

import gzip
import io
import pickle
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from disviz.core.errors import DatasetError
from disviz.data import dsprites as dsp
from disviz.data import files, load_dataset


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("DISVIZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DISVIZ_DATA", raising=False)
    dsp._PACKED.clear()


# --- dSprites npz --------------------------------------------------------------------------------
SENTINEL: list[str] = []


class _Evil:
    """Unpickling this would run code: the loader must never unpickle."""

    def __reduce__(self):
        return (SENTINEL.append, ("unpickled!",))


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _object_npy_protocol2(obj: object) -> bytes:
    """A 0-d object array as numpy writes it, but pickled with protocol 2 (as Python 2 did)."""
    arr = np.empty((), dtype=object)
    arr[()] = obj
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": ()})
    pickle.dump(arr, buf, protocol=2)
    return buf.getvalue()


def write_dsprites_npz(path: Path, sizes=(1, 3, 2, 4, 4, 4), metadata: object = None, compress=True, drop=None):
    """Reduced-grid dSprites file in the real layout: imgs 0/1 uint8, latents_*, pickled metadata."""
    ds = dsp.DSprites(use_cache=False)
    grids = np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij")
    classes = np.stack([g.ravel() for g in grids], axis=1).astype(np.int64)  # [N, 6]
    # pick spread-out classes of the full grid so the images differ
    full = np.stack(
        [
            classes[:, 1],
            classes[:, 2] * 5 // max(sizes[2] - 1, 1),
            classes[:, 3] * 3,
            classes[:, 4] * 9,
            classes[:, 5] * 9,
        ],
        axis=1,
    )
    imgs = (ds.images_from_factors(full)[..., 0] > 0).astype(np.uint8)
    values = np.stack(
        [
            np.ones(len(classes)),
            dsp.SHAPE_VALUES[full[:, 0]],
            dsp.SCALE_VALUES[full[:, 1]],
            dsp.ORIENTATION_VALUES[full[:, 2]],
            dsp.POS_VALUES[full[:, 3]],
            dsp.POS_VALUES[full[:, 4]],
        ],
        axis=1,
    )
    if metadata is None:
        metadata = {
            "date": "April 2017",
            "version": 1,
            "latents_names": ("color", "shape", "scale", "orientation", "posX", "posY"),
            "latents_sizes": np.array(sizes),
        }
    members = {
        "imgs": _npy_bytes(imgs),
        "latents_classes": _npy_bytes(classes),
        "latents_values": _npy_bytes(values),
        "metadata": _object_npy_protocol2(metadata),
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as zf:
        for k, v in members.items():
            if k != drop:
                zf.writestr(f"{k}.npy", v)
    return imgs, classes, values


def test_dsprites_npz_reduced_grid_without_unpickling(tmp_path):
    path = tmp_path / files.DSPRITES_FILE
    SENTINEL.clear()
    imgs, classes, values = write_dsprites_npz(path, metadata={"evil": _Evil()})
    ds = load_dataset("dsprites", path=str(path))
    assert SENTINEL == []  # the pickled metadata was never loaded
    assert ds.factor_sizes == (3, 2, 4, 4, 4)
    np.testing.assert_allclose(ds.factor_values[1], np.unique(values[:, 2]))
    idx = np.random.default_rng(0).integers(0, len(ds), 50)
    assert np.array_equal(ds.images(idx)[..., 0], imgs[idx] * 255)
    assert np.array_equal(ds.factors(idx), classes[idx, 1:])
    assert np.array_equal(ds.index(ds.factors(idx)), idx)
    assert ds.info().options["path"] == str(path)
    # the packed copy is cached and reused; the metadata pickle is ignored either way
    again = load_dataset("dsprites", path=str(tmp_path))  # a folder holding the expected file name
    assert np.array_equal(again.images(idx), ds.images(idx))
    # variants run on the real masks
    color = load_dataset("color_dsprites", path=str(path)).images(idx)
    assert np.array_equal(color.max(-1) > 0, imgs[idx] > 0)
    b = next(ds.batch_sampler(16, "cpu", 0))
    assert b.shape == (16, 1, 64, 64)


def test_dsprites_npz_python2_metadata_is_readable_by_the_documented_recipe(tmp_path):
    """The fixture really is the real format: np.load(..., encoding='latin1') reads the metadata."""
    path = tmp_path / files.DSPRITES_FILE
    write_dsprites_npz(path)
    with np.load(path, allow_pickle=True, encoding="latin1") as f:
        meta = f["metadata"][()]
        assert meta["latents_names"][0] == "color" and f["imgs"].shape[1:] == (64, 64)


def test_dsprites_env_var(tmp_path, monkeypatch):
    path = tmp_path / files.DSPRITES_FILE
    imgs, _, _ = write_dsprites_npz(path)
    monkeypatch.setenv("DISVIZ_DATA", str(tmp_path))
    assert len(load_dataset("dsprites")) == len(imgs)
    monkeypatch.setenv("DISVIZ_DATA", str(tmp_path / "elsewhere"))  # no file there -> procedural
    assert len(load_dataset("dsprites")) == 737_280


@pytest.mark.parametrize(
    ("drop", "match"), [("imgs", "'imgs' missing"), ("latents_classes", "'latents_classes' missing")]
)
def test_dsprites_npz_missing_key(tmp_path, drop, match):
    path = tmp_path / "d.npz"
    write_dsprites_npz(path, drop=drop)
    with pytest.raises(DatasetError, match=match) as e:
        load_dataset("dsprites", path=str(path))
    assert str(path) in str(e.value)


def test_dsprites_bad_files(tmp_path):
    with pytest.raises(DatasetError, match=files.DSPRITES_FILE) as e:
        load_dataset("dsprites", path=str(tmp_path / "missing.npz"))
    assert "missing.npz" in str(e.value)
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="not a readable .npz"):
        load_dataset("dsprites", path=str(bad))
    wrong = tmp_path / "wrong.npz"
    np.savez(
        wrong,
        imgs=np.zeros((4, 32, 32), np.uint8),
        latents_classes=np.zeros((4, 6), np.int64),
        latents_values=np.zeros((4, 6)),
    )
    with pytest.raises(DatasetError, match=r"imgs has shape \(4, 32, 32\)"):
        load_dataset("dsprites", path=str(wrong))
    shuffled = tmp_path / "shuffled.npz"
    _, classes, values = write_dsprites_npz(tmp_path / "ok.npz")
    np.savez(
        shuffled,
        imgs=np.zeros((len(classes), 64, 64), np.uint8),
        latents_classes=classes[::-1].copy(),
        latents_values=values,
    )
    with pytest.raises(DatasetError, match="row-major"):
        load_dataset("dsprites", path=str(shuffled))


# --- 3dshapes.h5 ---------------------------------------------------------------------------------
def write_shapes3d_h5(path: Path, shuffle: bool = True):
    hues = np.arange(2) / 10
    scales = np.linspace(0.75, 1.25, 8)[[0, 7]]
    orient = np.linspace(-30, 30, 15)[[0, 7, 14]]
    g = np.meshgrid(hues, hues, hues, scales, np.arange(2.0), orient, indexing="ij")
    labels = np.stack([x.ravel() for x in g], axis=1) + np.random.default_rng(0).normal(0, 1e-7, (96, 6))
    imgs = np.random.default_rng(1).integers(0, 256, (96, 64, 64, 3), dtype=np.uint8)
    perm = np.random.default_rng(2).permutation(96) if shuffle else np.arange(96)
    with h5py.File(path, "w") as f:
        f["images"] = imgs[perm]
        f["labels"] = labels[perm]
    return imgs, labels


def test_shapes3d_h5(tmp_path):
    path = tmp_path / files.SHAPES3D_FILE
    imgs, labels = write_shapes3d_h5(path)
    ds = load_dataset("shapes3d", path=str(path))
    assert ds.factor_sizes == (2, 2, 2, 2, 2, 3)
    np.testing.assert_allclose(ds.factor_values[5], [-30, 0, 30])
    idx = np.array([5, 0, 95, 5, 40])
    assert np.array_equal(ds.images(idx), imgs[idx])  # canonical order restored through the labels
    assert np.array_equal(ds.index(ds.factors(idx)), idx)
    assert ds.images(idx).shape == (5, 64, 64, 3)


def test_shapes3d_h5_errors(tmp_path):
    path = tmp_path / "3dshapes.h5"
    with h5py.File(path, "w") as f:
        f["images"] = np.zeros((4, 64, 64, 3), np.uint8)
    with pytest.raises(DatasetError, match="'labels' missing") as e:
        load_dataset("shapes3d", path=str(path))
    assert str(path) in str(e.value)
    bad = tmp_path / "x.h5"
    bad.write_bytes(b"junk")
    with pytest.raises(DatasetError, match="not a readable HDF5"):
        load_dataset("shapes3d", path=str(bad))
    with pytest.raises(DatasetError, match="3dshapes.h5"):
        load_dataset("shapes3d", path=str(tmp_path / "nothing"))


# --- SmallNORB -----------------------------------------------------------------------------------
def norb_matrix(arr: np.ndarray) -> bytes:
    magic = {np.uint8: 0x1E3D4C55, np.int32: 0x1E3D4C54, np.float32: 0x1E3D4C51}[arr.dtype.type]
    dims = list(arr.shape) + [1] * max(0, 3 - arr.ndim)
    header = np.array([magic, arr.ndim, *dims], dtype="<i4").tobytes()
    return header + arr.astype(arr.dtype.newbyteorder("<")).tobytes()


def write_smallnorb(folder: Path, size: int = 8, gz_test: bool = True):
    """Both splits with every (category, elevation, azimuth, lighting) cell once, tiny images."""
    rng = np.random.default_rng(0)
    g = np.meshgrid(np.arange(5), np.arange(9), np.arange(18), np.arange(6), indexing="ij")
    cells = np.stack([x.ravel() for x in g], axis=1)  # [4860, 4]
    out = {}
    for split, inst, gz in (("training", 4, False), ("testing", 0, gz_test)):
        perm = rng.permutation(len(cells))
        c = cells[perm]
        cat = c[:, 0].astype(np.int32)
        info = np.stack([np.full(len(c), inst), c[:, 1], c[:, 2] * 2, c[:, 3]], axis=1).astype(np.int32)
        dat = np.zeros((len(c), 2, size, size), np.uint8)
        dat[:, 0] = (c[:, 0] * 50 + c[:, 3] * 5)[:, None, None]  # brightness encodes category/lighting
        dat[:, 1] = 255  # right camera: must be ignored
        for kind, arr in (("dat", dat), ("cat", cat), ("info", info)):
            name = files.SMALLNORB_FILES[split][kind]
            raw = norb_matrix(arr)
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)
        out[split] = (c, dat)
    return out


def test_smallnorb_binary_matrices(tmp_path):
    write_smallnorb(tmp_path)
    ds = load_dataset("smallnorb", path=str(tmp_path))
    assert ds.factor_sizes == (5, 9, 18, 6) and len(ds) == 4860
    cls = np.array([[0, 0, 0, 0], [4, 8, 17, 5], [2, 3, 9, 1]])
    imgs = ds.images(ds.index(cls))
    assert imgs.shape == (3, 64, 64, 1) and imgs.dtype == np.uint8
    np.testing.assert_allclose(imgs.reshape(3, -1).mean(1), cls[:, 0] * 50 + cls[:, 3] * 5, atol=1)
    idx = np.arange(0, 4860, 7)
    assert np.array_equal(ds.index(ds.factors(idx)), idx)


def test_norb_matrix_reader_and_errors(tmp_path):
    p = tmp_path / "m.mat"
    arr = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    p.write_bytes(norb_matrix(arr))
    assert np.array_equal(files.read_norb_matrix(p), arr)
    one_d = np.arange(5, dtype=np.int32)  # ndim 1 still stores 3 dimension slots
    p.write_bytes(norb_matrix(one_d))
    assert np.array_equal(files.read_norb_matrix(p), one_d)
    p.write_bytes(b"\x00\x00\x00\x00\x01\x00\x00\x00" + b"\x00" * 16)
    with pytest.raises(DatasetError, match="bad SmallNORB magic"):
        files.read_norb_matrix(p)
    p.write_bytes(norb_matrix(arr)[:-4])
    with pytest.raises(DatasetError, match="claims 96 bytes but the file holds 92"):
        files.read_norb_matrix(p)
    with pytest.raises(DatasetError, match="smallnorb-5x46789x9x18x6x2x96x96-training"):
        load_dataset("smallnorb", path=str(tmp_path))
    with pytest.raises(DatasetError, match="needs a real file"):
        load_dataset("smallnorb")


# --- MPI3D ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("compressed", [False, True])
def test_mpi3d_npz(tmp_path, compressed):
    sizes = (2, 2, 1, 1, 3, 2, 2)
    n = int(np.prod(sizes))
    imgs = np.random.default_rng(0).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    path = tmp_path / "mpi3d_toy.npz"
    (np.savez_compressed if compressed else np.savez)(path, images=imgs)
    ds = load_dataset("mpi3d", path=str(path), sizes="2,2,1,1,3,2,2")
    assert ds.factor_sizes == sizes
    assert isinstance(ds._images, np.memmap) != compressed
    idx = np.array([3, 0, 47, 3])
    assert np.array_equal(ds.images(idx), imgs[idx])
    assert np.array_equal(ds.index(ds.factors(idx)), idx)
    with pytest.raises(DatasetError, match="not a known MPI3D size"):
        load_dataset("mpi3d", path=str(path))


def test_mpi3d_sizes_inferred_from_n(tmp_path):
    assert files.mpi3d_sizes(460_800) == (4, 4, 2, 3, 3, 40, 40)
    assert files.mpi3d_sizes(1_036_800) == (6, 6, 2, 3, 3, 40, 40)
    with pytest.raises(DatasetError, match="product"):
        files.mpi3d_sizes(10, "1,2,5")
    bad = tmp_path / "mpi3d_real.npz"
    np.savez(bad, pictures=np.zeros((2, 64, 64, 3), np.uint8))
    with pytest.raises(DatasetError, match="'images' missing"):
        load_dataset("mpi3d", path=str(bad))
    monkey_dir = tmp_path / "data"
    monkey_dir.mkdir()
    with pytest.raises(DatasetError, match="mpi3d_"):
        load_dataset("mpi3d", path=str(monkey_dir))


def test_real_file_info_options_rebuild(tmp_path):
    path = tmp_path / files.DSPRITES_FILE
    write_dsprites_npz(path)
    info = load_dataset("correlated_dsprites", path=str(path), correlation="0.5").info()
    assert info.options["path"] == str(path)
    assert load_dataset(info.name, **info.options).info() == info
