"""Importing models trained elsewhere (disviz.importers, ``python -m disviz import``).

The disent fixtures in tests/fixtures/imports/ were made by the real library
(tests/fixtures/imports/make_fixtures.py, disent 0.8.0 + torch 2.14.1 in a scratch venv): each ``.ckpt``
is a Lightning checkpoint and the ``.npz`` beside it holds disent's own encoder outputs and decoder
logits for fixed inputs. Nothing here needs disent. The hostile-pickle tests build checkpoints whose
pickle would run code and check that none runs.
"""

from __future__ import annotations

import collections
import hashlib
import io
import os
import pickle
import re
import runpy
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from disviz.cli import main as cli_main
from disviz.engine.card import read_card
from disviz.engine.checkpoints import load_checkpoint
from disviz.importers import ModelImportError, UnsafeCheckpointError, detect_format, import_model
from disviz.importers.disent import build_decoder, build_encoder
from disviz.importers.safe_pickle import open_torch_archive, stub_name

FIXTURES = Path(__file__).parent / "fixtures" / "imports"
ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-4

# name, dataset with the fixture's channels, what disent's decoder outputs
DISENT = [
    ("disent_betavae_conv64", "dsprites", "logits"),  # EncoderConv64 / DecoderConv64, bce
    ("disent_betavae_conv64norm", "shapes3d", "logits"),  # Conv64Norm: layer norm + leaky ReLU / swish + batch norm
    ("disent_ae_linear", "dsprites", "pixels"),  # EncoderLinear / DecoderLinear, AE with mse, full training ckpt
]


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("imported")
    return {name: import_model(FIXTURES / f"{name}.ckpt", root / name, ds) for name, ds, _ in DISENT}


# --- disent: equality with the library's own outputs -------------------------------------------
@pytest.mark.parametrize("name,dataset,output", DISENT)
def test_disent_matches_library(imported: dict[str, Path], name: str, dataset: str, output: str) -> None:
    model, card = load_checkpoint(imported[name])
    ref = np.load(FIXTURES / f"{name}.npz")
    x, z = torch.from_numpy(ref["x"]), torch.from_numpy(ref["z"])  # x: [4, C, 64, 64], z: [4, D]
    with torch.no_grad():
        rep = model.encode(x).numpy()  # [4, D]
        raw = model.decoder(z).numpy()  # [4, C, 64, 64]: disent's decode_partial
        logits = model.decode(z).numpy()
    assert np.abs(rep - ref["representation"]).max() < TOL
    assert np.abs(raw - ref["logits"]).max() < TOL
    if output == "logits":
        assert np.abs(logits - ref["logits"]).max() < TOL
        assert np.abs(rep - ref["mean"]).max() < TOL
        logvar = model.raw(x)[:, model.latent_dim :].detach().numpy()
        assert np.abs(logvar - ref["logvar"]).max() < TOL
        assert model.kl_per_latent(x).shape == (model.latent_dim,)
    else:  # disent's decoder outputs pixels: disviz's sigmoid(decode) draws them (clamped to (0, 1))
        probs = torch.sigmoid(torch.from_numpy(logits)).numpy()
        assert np.abs(probs - np.clip(ref["logits"], 1e-4, 1 - 1e-4)).max() < TOL
    imp = card.imported
    assert imp["format"] == "disent" and imp["library"] == "disent"
    assert imp["source_sha256"] == hashlib.sha256((FIXTURES / f"{name}.ckpt").read_bytes()).hexdigest()
    assert card.steps == 4 and card.dataset["name"] == dataset


def test_disent_architecture_read_from_checkpoint(imported: dict[str, Path]) -> None:
    cfg = read_card(imported["disent_betavae_conv64norm"])["config"]
    assert (cfg["encoder"], cfg["encoder_activation"], cfg["encoder_norm"], cfg["encoder_norm_pre_act"]) == (
        "EncoderConv64Norm", "leaky_relu", "layer", True,
    )  # fmt: skip
    assert (cfg["decoder"], cfg["decoder_activation"], cfg["decoder_norm"], cfg["decoder_norm_pre_act"]) == (
        "DecoderConv64Norm", "swish", "batch", False,
    )  # fmt: skip
    ae = read_card(imported["disent_ae_linear"])
    assert ae["config"]["latent_kind"] == "deterministic" and ae["imported"]["framework"] == "Ae"


def test_imported_models_work_like_disviz_models(imported: dict[str, Path]) -> None:
    from disviz.app.catalogue import list_entries
    from disviz.app.latents import decode, encode
    from disviz.engine.evaluate import evaluate_checkpoint

    model, card = load_checkpoint(imported["disent_ae_linear"])
    specs = model.latent_specs()
    assert all(s.kind == "deterministic" and s.low < s.high for s in specs)  # range measured on the data
    from disviz.app.catalogue import dataset_for_card

    ds = dataset_for_card(card)
    images, factors = ds.sample(64, rng=0)
    codes = encode(model, images)
    assert codes.shape == (64, 3) and decode(model, codes[:2]).shape == (2, 64, 64, 1)
    entries = list_entries([imported["disent_ae_linear"].parent])
    assert entries and all("[imported disent]" in e.label for e in entries)
    report = evaluate_checkpoint(imported["disent_ae_linear"], n=400, preset="fast", device="cpu")
    assert 0.0 <= report["scores"]["mig"] <= 1.0
    assert read_card(imported["disent_ae_linear"])["metrics"]["scores"]["mig"] == report["scores"]["mig"]


# --- the DEFT / DeVAE authors' checkpoints (erow/disentanglement_lib, their code run in make_fixtures.py) ----
def test_erow_deft_matches_their_frac_encoder(tmp_path: Path) -> None:
    model, card = load_checkpoint(import_model(FIXTURES / "erow_deft.ckpt", tmp_path / "deft", "dsprites"))
    ref = np.load(FIXTURES / "erow_deft.npz")
    x, z = torch.from_numpy(ref["x"]), torch.from_numpy(ref["z"])  # x: [4, 1, 64, 64], z: [4, 5]
    with torch.no_grad():
        mu, logvar = model.posterior(x)
        assert np.abs(model.encode(x).numpy() - ref["mean"]).max() < TOL
        assert np.abs(logvar.numpy() - ref["logvar"]).max() < TOL
        assert np.abs(model.decode(z).numpy() - ref["logits"]).max() < TOL
    # the stage their regulariser had reached (not stored by them): group 0 projected, 1 raw, 2–4 zero
    assert card.config["stage"] == int(ref["stage"]) == 1 and card.imported["method"] == "DEFT"
    assert (mu[:, 2:] == 0).all()


def test_erow_devae_matches_every_space(tmp_path: Path) -> None:
    out = import_model(FIXTURES / "erow_devae.ckpt", tmp_path / "devae", "dsprites")
    model, card = load_checkpoint(out)
    ref = np.load(FIXTURES / "erow_devae.npz")
    x, z = torch.from_numpy(ref["x"]), torch.from_numpy(ref["z"])
    assert card.config["space"] == 0 and card.config["spaces"] == 3
    with torch.no_grad():
        assert np.abs(model.encode(x).numpy() - ref["mean0"]).max() < TOL  # disviz shows space 0
        for s in range(3):
            model.config.space = s
            mu, logvar = model.posterior(x)
            assert np.abs(mu.numpy() - ref[f"mean{s}"]).max() < TOL
            assert np.abs(logvar.numpy() - ref[f"logvar{s}"]).max() < TOL
            assert np.abs(model.decode(z).numpy() - ref[f"logits{s}"]).max() < TOL


# --- the QLAE authors' JAX / equinox checkpoints (their code run in make_fixtures.py) ----------------
@pytest.mark.parametrize("name", ["qlae_style", "qlae_image"])
def test_qlae_matches_their_quantised_latents_codebooks_and_decoder(tmp_path: Path, name: str) -> None:
    model, card = load_checkpoint(import_model(FIXTURES / name / "model.eqx", tmp_path / name, "dsprites"))
    ref = np.load(FIXTURES / name / "reference.npz")
    x, z = torch.from_numpy(ref["x"]), torch.from_numpy(ref["z"])  # x: [4, 1, 64, 64], z: [4, 4]
    with torch.no_grad():
        zc = model.continuous(x)
        zq, idx = model.quantise(zc)
        assert np.abs(zc.numpy() - ref["z_continuous"]).max() < TOL
        assert np.array_equal(idx.numpy(), ref["z_indices"]) and np.abs(zq.numpy() - ref["z_quantized"]).max() < TOL
        assert np.abs(model.encode(x).numpy() - ref["z_quantized"]).max() < TOL
        assert np.abs(model.decode(z).numpy() - ref["logits"]).max() < TOL
        assert np.abs(model.decode(model.encode(x)).numpy() - ref["x_hat_logits"]).max() < TOL
    assert np.abs(np.asarray(card.config["codebooks"]) - ref["codebooks"]).max() < TOL
    specs = model.latent_specs()
    assert all(s.kind == "quantised" for s in specs) and model.representation == "quantised"
    assert np.allclose(specs[0].values, ref["codebooks"][0])
    assert card.imported["format"] == "qlae" and card.imported["config"] == "config.yaml"


def test_qlae_bad_inputs(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    data = (FIXTURES / "qlae_style" / "model.eqx").read_bytes()
    (run / "model.eqx").write_bytes(data)
    with pytest.raises(ModelImportError, match="config.yaml"):  # no config beside it or above
        import_model(run / "model.eqx", tmp_path / "m", "dsprites")
    # the other decoder's config: the leaves do not fit
    (run / "config.yaml").write_bytes((FIXTURES / "qlae_image" / "config.yaml").read_bytes())
    with pytest.raises(ModelImportError, match="has shape|does not fit|truncated"):
        import_model(run / "model.eqx", tmp_path / "m", "dsprites")
    (run / "config.yaml").write_bytes((FIXTURES / "qlae_style" / "config.yaml").read_bytes())
    (run / "model.eqx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelImportError, match="truncated"):
        import_model(run / "model.eqx", tmp_path / "m", "dsprites")
    # a pickled object where an array should be: refused, nothing run
    buf = io.BytesIO()
    np.save(buf, np.array([_Call(os.system, f"touch {tmp_path / 'pwned'}")], dtype=object), allow_pickle=True)
    (run / "model.eqx").write_bytes(buf.getvalue())
    with pytest.raises(ModelImportError, match="pickled object; refused"):
        import_model(run / "model.eqx", tmp_path / "m", "dsprites", "qlae")
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "m").exists()


def test_detect_format() -> None:
    for name, _, _ in DISENT:
        assert detect_format(FIXTURES / f"{name}.ckpt") == "disent"
    assert detect_format(FIXTURES / "erow_deft.ckpt") == detect_format(FIXTURES / "erow_devae.ckpt") == "erow"
    assert detect_format(FIXTURES / "qlae_style" / "model.eqx") == "qlae"


def test_cli_import_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = FIXTURES / "disent_betavae_conv64.ckpt"
    out = tmp_path / "m"
    assert cli_main(["import", str(src), "--out", str(out), "--dataset", "dsprites"]) == 0
    assert read_card(out)["imported"]["architecture"] == "EncoderConv64/DecoderConv64"
    assert cli_main(["import", str(src), "--out", str(out), "--dataset", "dsprites"]) == 2  # exists
    # the 1-channel model on an RGB dataset: one clear line, nothing written
    bad = tmp_path / "rgb"
    capsys.readouterr()
    assert cli_main(["import", str(src), "--out", str(bad), "--dataset", "shapes3d"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "1-channel" in err and "\n" not in err
    assert not bad.exists()


# --- bad files: one clear error, nothing left behind -----------------------------------------
def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_truncated_checkpoint(tmp_path: Path) -> None:
    data = (FIXTURES / "disent_betavae_conv64.ckpt").read_bytes()
    for cut in (100, len(data) // 2, len(data) - 200):
        src = tmp_path / f"cut{cut}.ckpt"
        src.write_bytes(data[:cut])
        with pytest.raises(ModelImportError, match="truncated|damaged|not a valid zip|corrupt"):
            import_model(src, tmp_path / "out" / "m", "dsprites", "disent")
        assert _leftovers(tmp_path / "out") == []


def test_not_a_checkpoint(tmp_path: Path) -> None:
    src = tmp_path / "notes.ckpt"
    src.write_text("hello")
    with pytest.raises(ModelImportError, match="not a zip-format torch checkpoint|unknown file type"):
        import_model(src, tmp_path / "m", "dsprites")
    with pytest.raises(ModelImportError, match="is not a file"):
        import_model(tmp_path / "missing.ckpt", tmp_path / "m", "dsprites")


def _rename_key(src: Path, dst: Path, old: bytes, new: bytes) -> None:
    """Copy a torch zip checkpoint, replacing one key in its pickle by another of the same length."""
    assert len(old) == len(new)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename.endswith("data.pkl"):
                assert old in data
                data = data.replace(old, new)
            zout.writestr(item, data)


def test_missing_keys(tmp_path: Path) -> None:
    src = tmp_path / "renamed.ckpt"
    _rename_key(
        FIXTURES / "disent_betavae_conv64.ckpt", src, b"_model._decoder.model.11.bias", b"_model._decoder.model.11.bia$"
    )
    with pytest.raises(ModelImportError, match=r"tensors do not match.*missing \['decoder.11.bias'\]"):
        import_model(src, tmp_path / "m", "dsprites")
    assert not (tmp_path / "m").exists()


# A fake "disent" package lets the tests pickle checkpoints with disent's class names (as disent does)
# without disent: wrong architectures and shape mismatches the real library would not write.
@pytest.fixture
def fake_disent(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    made = {}
    for module, names in {
        "disent.model._base": ["AutoEncoder"],
        "disent.model.ae._vae_conv64": ["EncoderConv64", "DecoderConv64"],
        "disent.model.ae._vae_fc": ["EncoderFC", "DecoderFC"],
        "disent.model.ae._resnet": ["EncoderResnet"],
        "disent.frameworks.vae._unsupervised__betavae": ["BetaVae"],
    }.items():
        mod = types.ModuleType(module)
        for name in names:
            cls = type(name, (nn.Module,), {"__module__": module})
            setattr(mod, name, cls)
            made[name] = cls
        monkeypatch.setitem(sys.modules, module, mod)
        parts = module.split(".")
        for i in range(1, len(parts)):  # parent packages, so pickle's import of the module succeeds
            parent = ".".join(parts[:i])
            if parent not in sys.modules:
                monkeypatch.setitem(sys.modules, parent, types.ModuleType(parent))
    return types.SimpleNamespace(**made)


def _fake_ckpt(path: Path, fake: types.SimpleNamespace, enc: str, dec: str, z: int, state_z: int | None = None) -> None:
    def part(kind: str, arch: str, z_total: int) -> nn.Module:
        m = getattr(fake, arch)()
        m._x_shape, m._z_size, m._z_multiplier = (1, 64, 64), z, 2 if kind == "encoder" else 1
        build = build_encoder if kind == "encoder" else build_decoder
        m.model = build(arch if arch in ("EncoderConv64", "DecoderConv64", "EncoderFC", "DecoderFC") else "EncoderConv64",
                        1, z_total, "relu", "none", True)  # fmt: skip
        return m

    ae = fake.AutoEncoder()
    ae._encoder, ae._decoder = part("encoder", enc, 2 * z), part("decoder", dec, z)
    sz = state_z or z
    state = {f"_model._encoder.model.{k}": v for k, v in part("encoder", enc, 2 * sz).model.state_dict().items()}
    state |= {f"_model._decoder.model.{k}": v for k, v in part("decoder", dec, sz).model.state_dict().items()}
    torch.save({"state_dict": state, "global_step": 7, "hyper_parameters": {"model": ae}}, path)


def test_fc_networks_import(tmp_path: Path, fake_disent: types.SimpleNamespace) -> None:
    src = tmp_path / "fc.ckpt"
    _fake_ckpt(src, fake_disent, "EncoderFC", "DecoderFC", z=2)
    model, card = load_checkpoint(import_model(src, tmp_path / "m", "dsprites"))
    assert card.config["encoder"] == "EncoderFC" and card.steps == 7
    assert model.encode(torch.rand(2, 1, 64, 64)).shape == (2, 2)


def test_wrong_architecture(tmp_path: Path, fake_disent: types.SimpleNamespace) -> None:
    src = tmp_path / "resnet.ckpt"
    _fake_ckpt(src, fake_disent, "EncoderResnet", "DecoderConv64", z=2)
    with pytest.raises(ModelImportError, match="EncoderResnet / DecoderConv64 is not supported"):
        import_model(src, tmp_path / "m", "dsprites")
    assert not (tmp_path / "m").exists()


def test_shape_mismatch(tmp_path: Path, fake_disent: types.SimpleNamespace) -> None:
    src = tmp_path / "shapes.ckpt"
    _fake_ckpt(src, fake_disent, "EncoderConv64", "DecoderConv64", z=2, state_z=5)  # card says 2, tensors 5
    with pytest.raises(ModelImportError, match=r"has shape \(10, 256\), the rebuilt network expects \(4, 256\)"):
        import_model(src, tmp_path / "m", "dsprites")
    assert not (tmp_path / "m").exists()


# --- hostile pickles --------------------------------------------------------------------------
def _torch_zip(path: Path, payload: bytes) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/version", "3\n")


class _Call:
    """Pickles as ``func(*args)``: what a malicious checkpoint does."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args


def _hostile_payloads(marker: Path) -> dict[str, bytes]:
    cmd = f"touch {marker}"
    wrap = {"state_dict": {}, "hyper_parameters": {}}
    return {
        "os.system": pickle.dumps({**wrap, "x": _Call(os.system, cmd)}, protocol=2),
        "builtins.eval": pickle.dumps({**wrap, "x": _Call(eval, f"__import__('os').system({cmd!r})")}, protocol=4),
        "subprocess.call": pickle.dumps({**wrap, "x": _Call(subprocess.call, ["touch", str(marker)])}, protocol=2),
        "builtins.exec": pickle.dumps(_Call(exec, f"open({str(marker)!r}, 'w').close()"), protocol=0),
        "getattr escape": pickle.dumps(_Call(getattr, collections.OrderedDict, "__class__"), protocol=2),
        # the classic hand-written one: GLOBAL 'posix system' + REDUCE
        "posix.system": b"cposix\nsystem\n(V" + cmd.encode() + b"\ntR.",
        "torch.load": pickle.dumps(_Call(torch.load, str(marker)), protocol=2),
    }


@pytest.mark.parametrize("kind", list(_hostile_payloads(Path("m"))))
def test_hostile_pickle_runs_no_code(tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    src = tmp_path / "evil.ckpt"
    _torch_zip(src, _hostile_payloads(marker)[kind])
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        open_torch_archive(src)
    assert cli_main(["import", str(src), "--out", str(tmp_path / "m"), "--dataset", "dsprites"]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "no code" in err and err.count("\n") == 1
    assert not marker.exists() and not (tmp_path / "m").exists()


def test_unknown_classes_become_inert_standins(tmp_path: Path) -> None:
    """A class the file names but this process does not know is read as data; calling it runs nothing."""
    payload = b"(dp0\nS'cfg'\np1\ncsomelib.sub\nThing\np2\n(S'x'\ntRp3\ns."  # {'cfg': somelib.sub.Thing('x')}
    src = tmp_path / "odd.ckpt"
    _torch_zip(src, payload)
    with open_torch_archive(src) as archive:
        cfg = archive.obj["cfg"]
    assert stub_name(cfg) == "somelib.sub.Thing" and cfg._stub_args == ("x",)


# --- bring your own TorchScript (the README example) ------------------------------------------
def _readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Bring your own module", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_torchscript_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    (tmp_path / "example.py").write_text(_readme_example(), encoding="utf-8")  # a file: TorchScript reads source
    runpy.run_path(str(tmp_path / "example.py"), run_name="readme_example")
    assert cli_main(["import", "my_model.toml", "--out", "runs/imported/my_model", "--dataset", "dsprites"]) == 0
    model, card = load_checkpoint("runs/imported/my_model")
    assert card.model == "torchscript" and card.imported["format"] == "torchscript"
    enc, dec = torch.jit.load("encoder.pt"), torch.jit.load("decoder.pt")
    x = torch.rand(3, 1, 64, 64)  # x: [3, 1, 64, 64]
    with torch.no_grad():
        assert (model.encode(x) - enc(x)).abs().max() < TOL
        z = torch.randn(3, 4)
        assert (model.decode(z) - dec(z)).abs().max() < TOL
    assert all(s.kind == "deterministic" for s in model.latent_specs())
    assert set(card.imported["files"]) == {"encoder.pt", "decoder.pt"}


def test_torchscript_single_module_and_codebooks(tmp_path: Path) -> None:
    class Both(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64 * 64, 2))
            self.dec = nn.Sequential(nn.Linear(2, 3 * 64 * 64), nn.Unflatten(1, (3, 64, 64)), nn.Sigmoid())

        @torch.jit.export
        def encode(self, x: torch.Tensor) -> torch.Tensor:
            return torch.round(self.enc(x))

        @torch.jit.export
        def decode(self, z: torch.Tensor) -> torch.Tensor:
            return self.dec(z)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.decode(self.encode(x))

    torch.jit.script(Both()).save(str(tmp_path / "both.pt"))
    (tmp_path / "q.toml").write_text(
        'module = "both.pt"\noutput = "probabilities"\n[latents]\nkind = "quantised"\n'
        "codebooks = [[-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]]\n"
    )
    model, card = load_checkpoint(import_model(tmp_path / "q.toml", tmp_path / "m", "shapes3d"))
    specs = model.latent_specs()
    assert [s.kind for s in specs] == ["quantised", "quantised"] and specs[0].values == [-1.0, 0.0, 1.0]
    assert model.representation == "quantised"
    z = torch.tensor([[1.0, -1.0]])
    ref = torch.jit.load(str(tmp_path / "both.pt")).decode(z).clamp(1e-4, 1 - 1e-4)
    assert (torch.sigmoid(model.decode(z)) - ref).abs().max() < TOL


def test_torchscript_spec_errors(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('encoder = "nope.pt"\ndecoder = "nope.pt"\n')
    with pytest.raises(ModelImportError, match="does not exist"):
        import_model(tmp_path / "a.toml", tmp_path / "m", "dsprites")
    (tmp_path / "b.toml").write_text('module = "x.pt"\ncolour = "red"\n')
    with pytest.raises(ModelImportError, match="unknown key"):
        import_model(tmp_path / "b.toml", tmp_path / "m", "dsprites")
    (tmp_path / "x.pt").write_bytes(b"not torchscript")
    (tmp_path / "c.toml").write_text('module = "x.pt"\n')
    with pytest.raises(ModelImportError, match="cannot be loaded"):
        import_model(tmp_path / "c.toml", tmp_path / "m", "dsprites")
    assert not (tmp_path / "m").exists()


# --- the app's sidebar panel ------------------------------------------------------------------
_PANEL_APP = """
import sys
sys.path.insert(0, {root!r})
import streamlit as st
from pages._import_panel import import_panel
with st.sidebar:
    import_panel()
st.write("picked", st.session_state.get("ckpt_pick"))
"""


def test_app_panel_imports_and_selects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("DISVIZ_RUNS", str(tmp_path / "runs"))
    at = AppTest.from_string(_PANEL_APP.format(root=str(ROOT)), default_timeout=60).run()
    at.text_input(key="imp_path").input(str(FIXTURES / "disent_betavae_conv64.ckpt"))
    at.selectbox(key="imp_dataset").select("shapes3d")  # wrong: a 1-channel model
    at.text_input(key="imp_name").input("conv64")
    at.button(key="imp_go").click().run()
    assert "1-channel" in at.sidebar.error[0].value and not (tmp_path / "runs" / "imported" / "conv64").exists()
    at.selectbox(key="imp_dataset").select("dsprites")
    at.button(key="imp_go").click().run()
    out = (tmp_path / "runs" / "imported" / "conv64").resolve()
    assert not at.sidebar.error and "Imported" in at.sidebar.success[0].value
    assert at.session_state["ckpt_pick"] == str(out)
    assert read_card(out)["imported"]["source"] == "disent_betavae_conv64.ckpt"


PAGES = ["explore.py", "latent_space.py", "codebook.py", "metrics.py", "compare.py"]


@pytest.fixture(scope="module")
def imported_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A disent VAE and a TorchScript quantised model (the codebook page's case), imported for the app."""
    root = tmp_path_factory.mktemp("app_imports")
    import_model(FIXTURES / "disent_betavae_conv64.ckpt", root / "disent-vae", "dsprites")

    class Q(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = nn.Sequential(nn.AvgPool2d(16), nn.Flatten(), nn.Linear(16, 3), nn.Tanh())
            self.dec = nn.Sequential(nn.Linear(3, 64 * 64), nn.Unflatten(1, (1, 64, 64)))

        @torch.jit.export
        def encode(self, x: torch.Tensor) -> torch.Tensor:
            return torch.round(self.enc(x) * 2.0) / 2.0  # values in {-1, -0.5, 0, 0.5, 1}

        @torch.jit.export
        def decode(self, z: torch.Tensor) -> torch.Tensor:
            return self.dec(z)

    torch.manual_seed(0)
    torch.jit.script(Q()).save(str(root / "q.pt"))
    (root / "q.toml").write_text(
        'module = "q.pt"\n[latents]\nkind = "quantised"\ncodebooks = ['
        + ", ".join(["[-1.0, -0.5, 0.0, 0.5, 1.0]"] * 3)
        + "]\n"
    )
    import_model(root / "q.toml", root / "ts-quantised", "dsprites")
    import_model(FIXTURES / "qlae_style" / "model.eqx", root / "qlae-style", "dsprites")
    return root


@pytest.mark.parametrize("page", PAGES)
def test_imported_models_open_on_every_page(imported_root: Path, page: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("DISVIZ_CHECKPOINTS", str(imported_root))
    monkeypatch.setenv("DISVIZ_RUNS", str(imported_root / "runs"))
    monkeypatch.chdir(imported_root)
    for name in ("disent-vae", "ts-quantised", "qlae-style"):
        at = AppTest.from_file(str(ROOT / "pages" / page), default_timeout=120)
        at.session_state["ckpt"] = str((imported_root / name).resolve())
        at.run()
        assert not at.exception, (page, name, [e.value for e in at.exception])
        assert not at.error, (page, name, [e.value for e in at.error])
        if page == "explore.py":
            assert "explore_decoded_hash" in at.session_state  # decoded through the imported model
        if page == "codebook.py" and name != "disent-vae":
            assert tuple(at.session_state["codebook_shape"])[:2] in ((3, 5), (4, 5))  # latents x codebook values


def test_hostile_pickle_cannot_modify_the_shared_helpers(tmp_path: Path) -> None:
    """BUILD on an allowed name (here torch.FloatStorage) must not change it for the next load."""
    payload = (
        b"\x80\x02ctorch\nFloatStorage\n}X\x05\x00\x00\x00dtypeK\x01sb."  # FloatStorage.__setstate__({'dtype': 1})
    )
    src = tmp_path / "evil.ckpt"
    _torch_zip(src, payload)
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        open_torch_archive(src)
    model, _ = load_checkpoint(import_model(FIXTURES / "disent_ae_linear.ckpt", tmp_path / "m", "dsprites"))
    ref = np.load(FIXTURES / "disent_ae_linear.npz")
    assert np.abs(model.encode(torch.from_numpy(ref["x"])).detach().numpy() - ref["representation"]).max() < TOL
