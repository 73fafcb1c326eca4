"""QLAE authors' checkpoints (github kylehkhsu/latent_quantization, JAX / equinox): ``model.eqx`` + the
run's ``config.yaml``.

Their ``scripts/train_ae.py`` saves ``eqx.tree_serialise_leaves(model)``: the model's array and scalar
leaves, in pytree order, each as one ``.npy`` record, with no names and no structure. So the structure
comes from the run's config (hydra's ``.hydra/config.yaml`` or wandb's ``config.yaml``, found next to the
file or up to three folders above it), and the leaf order from their source: a ``QuantizedAE`` is
``encoder`` (``transition_shape``, ``conv`` blocks: conv weight [+ instance-norm weight, bias], ``dense``
blocks: weight, bias, ``head``), ``latent`` (flags, counts, the per-latent codebooks), ``decoder``, then
scalars. Each record is read with numpy's ``.npy`` header parser (no pickle allowed), its shape checked
against the plan before its bytes are read.

The networks are rebuilt in torch from their source (``disentangle/blocks``, ``encoders/image.py``,
``decoders/image.py``, ``decoders/style_image.py``, ``latents/quantized.py``): convs without bias,
instance norm = GroupNorm(C, C, eps 1e-6), leaky ReLU slope 0.2; equinox's transposed conv convolves
the dilated input with its [out, in, k, k] weight as it is, torch's flips the kernel: torch's weight is
equinox's transposed to [in, out, k, k] and flipped in both spatial axes. ``encode`` is their ``z_quantized`` (the nearest
codebook value per latent, first on ties, as ``jnp.argmin``), ``decode`` their decoder's
``x_hat_logits``; the codebooks become the sliders' values.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from disviz.core.limits import LimitError, check_parameters
from disviz.data.base import DatasetInfo
from disviz.importers.base import ImportedConfig, ImportedModel
from disviz.importers.errors import ModelImportError
from disviz.models.base import ConfigError

__all__ = ["QLAEConfig", "QLAEModel", "convert", "find_config"]

_ACTS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
_NORMS = ("instance_norm", "layer_norm", "none")
_TWICE_SOURCES = {"shapes3d": 12, "isaac3d": 18, "falcor3d": 14, "mpi3d": 14}  # their train_ae.py
MAX_CONFIG_BYTES = 1024 * 1024


def _act(name: str) -> list[nn.Module]:
    if name == "none":
        return []
    if name not in _ACTS:
        raise ConfigError(f"unknown activation {name!r} in the QLAE config")
    return [_ACTS[name]()]


def _conv_block(
    cin: int, cout: int, k: int, s: int, p: int, norm: str, act: str, transpose: bool = False
) -> nn.Sequential:
    """Their Conv2DBlock / ConvTranspose2DBlock: conv without bias, [instance norm], [activation]."""
    conv = (nn.ConvTranspose2d if transpose else nn.Conv2d)(cin, cout, k, s, p, bias=False)
    layers: list[nn.Module] = [conv]
    if norm == "instance_norm":
        layers.append(nn.GroupNorm(cout, cout, eps=1e-6))
    elif norm != "none":
        raise ConfigError(f"norm {norm!r} on a conv block is not supported (instance_norm, none)")
    return nn.Sequential(*layers, *_act(act))


def _dense_block(n_in: int, n_out: int, norm: str = "none", act: str = "relu") -> nn.Sequential:
    """Their DenseBlock: linear with bias, [layer norm], [activation]."""
    layers: list[nn.Module] = [nn.Linear(n_in, n_out)]
    if norm == "layer_norm":
        layers.append(nn.LayerNorm(n_out))
    elif norm != "none":
        raise ConfigError(f"norm {norm!r} on a dense block is not supported (layer_norm, none)")
    return nn.Sequential(*layers, *_act(act))


def _conv_out(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def _blocks(spec: dict[str, Any]) -> list[tuple[int, int, int, int]]:
    keys = ("widths", "kernel_sizes", "strides", "paddings")
    try:
        cols = [list(map(int, spec[k])) for k in keys]
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"conv spec needs {keys} lists of integers") from None
    if len({len(c) for c in cols}) != 1:
        raise ConfigError("conv spec lists differ in length")
    return list(zip(*cols, strict=True))


@dataclass
class QLAEConfig(ImportedConfig):
    """The encoder / decoder sub-configs of the run (their hydra ``*_partial`` entries, ``_target_`` short)."""

    latent_kind: str = "quantised"
    encoder_spec: dict[str, Any] = field(default_factory=dict)
    decoder_spec: dict[str, Any] = field(default_factory=dict)


class _StyleBlock(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, s: int, p: int, act: str, w_size: int):
        super().__init__()
        self.forward_block = _conv_block(cin, cout, k, s, p, "none", act, transpose=True)
        self.conditioning = _dense_block(w_size, 2 * cout)
        self.channels = cout

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        scale, bias = self.conditioning(w).chunk(2, dim=1)  # each [B, C]
        x = F.group_norm(self.forward_block(x), self.channels, eps=1e-6)  # x: [B, C, H, W]
        return x * scale[:, :, None, None] + bias[:, :, None, None]


class QLAEModel(ImportedModel):
    """Their QuantizedAE (ImageEncoder + QuantizedLatent + ImageDecoder / StyleImageDecoder) in torch."""

    name = "qlae_jax"
    config_class = QLAEConfig

    def __init__(self, config: QLAEConfig, dataset_info: DatasetInfo):
        super().__init__(config, dataset_info)
        enc, dec, c, d = config.encoder_spec, config.decoder_spec, dataset_info.channels, config.latent_dim
        if enc.get("_target_") != "ImageEncoder" or dec.get("_target_") not in ("ImageDecoder", "StyleImageDecoder"):
            raise ConfigError(
                f"networks {enc.get('_target_')} / {dec.get('_target_')}: supported are ImageEncoder with "
                "ImageDecoder or StyleImageDecoder"
            )
        conv = enc["conv_partial"]
        blocks, size, cin = [], 64, c
        for w, k, s, p in _blocks(conv):
            blocks.append(_conv_block(cin, w, k, s, p, conv.get("norm", "none"), conv.get("activation", "none")))
            cin, size = w, _conv_out(size, k, s, p)
        self.transition_shape = (cin, size, size)
        dense = enc["dense_partial"]
        widths = [int(w) for w in dense["widths"]]
        n = cin * size * size
        self.enc_conv = nn.Sequential(*blocks)
        self.enc_dense = nn.Sequential(
            *(
                _dense_block(a, b, dense.get("norm", "none"), dense.get("activation", "relu"))
                for a, b in zip([n, *widths], widths, strict=False)
            )
        )
        self.enc_head = nn.Linear(widths[-1] if widths else n, d)
        self.register_buffer("codebook", torch.zeros(d, int(config.codebooks and len(config.codebooks[0]) or 1)))
        self.style = dec["_target_"] == "StyleImageDecoder"
        ddense = dec["dense_partial"]
        dw = [int(w) for w in ddense["widths"]]
        self.dec_dense = nn.Sequential(
            *(
                _dense_block(a, b, ddense.get("norm", "none"), ddense.get("activation", "relu"))
                for a, b in zip([d, *dw], dw, strict=False)
            )
        )
        w_size = dw[-1] if dw else d
        if self.style:
            cin = int(dec["input_channels"])
            self.input_map = nn.Parameter(torch.zeros(cin, size, size))  # [C_in, h, w]
            spec = dec["style_conv_transpose_partial"]
            self.dec_blocks = nn.ModuleList()
            for w, k, s, p in _blocks(spec):
                self.dec_blocks.append(_StyleBlock(cin, w, k, s, p, spec.get("activation", "none"), w_size))
                cin = w
        else:
            tr = dec["transition_partial"]
            self.dec_transition = _dense_block(
                w_size, math.prod(self.transition_shape), tr.get("norm", "none"), tr.get("activation", "relu")
            )
            spec = dec["conv_transpose_partial"]
            blocks = []
            for w, k, s, p in _blocks(spec):
                blocks.append(
                    _conv_block(cin, w, k, s, p, spec.get("norm", "none"), spec.get("activation", "none"), True)
                )
                cin = w
            self.dec_blocks = nn.Sequential(*blocks)
        last = dec["conv_partial"]
        self.dec_out = _conv_block(
            cin, c, int(last["kernel_size"]), int(last.get("stride", 1)), int(last.get("padding", 0)),
            last.get("norm", "none"), last.get("activation", "none"),
        )  # fmt: skip

    def continuous(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, 64, 64] -> their z_continuous [B, D] (the head's output)."""
        return self.enc_head(self.enc_dense(self.enc_conv(x).flatten(1)))

    def quantise(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z: [B, D] -> (nearest codebook values [B, D], their indices [B, D])."""
        idx = (z.unsqueeze(-1) - self.codebook.unsqueeze(0)).abs().argmin(-1)  # [B, D]
        return torch.gather(self.codebook.expand(z.shape[0], -1, -1), 2, idx.unsqueeze(-1)).squeeze(-1), idx

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantise(self.continuous(x))[0].float()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        w = self.dec_dense(z)  # [B, W]
        if self.style:
            x = self.input_map.unsqueeze(0).expand(z.shape[0], -1, -1, -1)
            for block in self.dec_blocks:
                x = block(x, w)
        else:
            x = self.dec_blocks(self.dec_transition(w).view(z.shape[0], *self.transition_shape))
        return self.dec_out(x)  # [B, C, 64, 64] logits


# --- reading the run -----------------------------------------------------------------------
def find_config(eqx_file: Path) -> Path:
    """The run's config: ``config.yaml`` or ``.hydra/config.yaml`` beside ``eqx_file`` or up to 3 folders up."""
    tried = []
    for folder in [eqx_file.parent, *list(eqx_file.parents)[1:4]]:
        for cand in (folder / "config.yaml", folder / ".hydra" / "config.yaml"):
            tried.append(str(cand))
            if cand.is_file():
                return cand
    raise ModelImportError(
        f"{eqx_file}: a QLAE model.eqx holds no structure; its run's config.yaml (hydra or wandb) is needed, "
        f"looked for {tried[:2]} and 3 folders up"
    )


def _short(spec: Any) -> Any:
    """Config dict with ``_target_`` shortened to the class name, ``_partial_`` dropped (recursively)."""
    if isinstance(spec, dict):
        out = {k: _short(v) for k, v in spec.items() if k != "_partial_"}
        if isinstance(out.get("_target_"), str):
            out["_target_"] = out["_target_"].rsplit(".", 1)[-1]
        return out
    return list(map(_short, spec)) if isinstance(spec, list) else spec


def _read_config(path: Path) -> dict[str, Any]:
    try:
        import yaml
    except ModuleNotFoundError:
        raise ModelImportError("reading a QLAE run's config.yaml needs PyYAML (pip install pyyaml)") from None
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ModelImportError(f"{path} is larger than {MAX_CONFIG_BYTES // 1024} kB; not a run config")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ModelImportError(f"{path} is not readable YAML ({exc})") from None
    if not isinstance(cfg, dict):
        raise ModelImportError(f"{path} does not hold a config mapping")
    if all(isinstance(v, dict) and "value" in v for k, v in cfg.items() if k != "wandb_version"):  # wandb's layout
        cfg = {k: v["value"] for k, v in cfg.items() if k != "wandb_version"}
    return cfg


def _plan(model: QLAEModel, d: int, n_values: list[int]) -> list[tuple[str, tuple[int, ...] | None]]:
    """(name, shape) of every leaf in their pytree order; shape None marks a Python scalar leaf."""
    plan: list[tuple[str, tuple[int, ...] | None]] = [(f"transition_shape.{i}", None) for i in range(3)]

    def seq(prefix: str, module: nn.Module) -> None:
        for name, t in module.named_parameters():
            if name.endswith("weight") and t.ndim == 4 and isinstance(_owner(module, name), nn.ConvTranspose2d):
                plan.append((f"{prefix}.{name}", (t.shape[1], t.shape[0], *t.shape[2:])))  # equinox: [out, in, k, k]
            else:
                plan.append((f"{prefix}.{name}", tuple(t.shape)))

    seq("enc_conv", model.enc_conv)
    seq("enc_dense", model.enc_dense)
    seq("enc_head", model.enc_head)
    plan += [("is_continuous", None), ("num_latents", None), ("num_inputs", None)]
    plan += [(f"num_values.{i}", None) for i in range(d)]
    plan += [(f"codebook.{i}", (n_values[i],)) for i in range(d)]
    plan.append(("optimize_values", None))
    if model.style:
        plan.append(("input_map", tuple(model.input_map.shape)))
        seq("dec_dense", model.dec_dense)
        for i, block in enumerate(model.dec_blocks):
            seq(f"dec_blocks.{i}.forward_block", block.forward_block)
            seq(f"dec_blocks.{i}.conditioning", block.conditioning)
        seq("dec_out", model.dec_out)
    else:
        seq("dec_dense", model.dec_dense)
        seq("dec_transition", model.dec_transition)
        seq("dec_blocks", model.dec_blocks)
        seq("dec_out", model.dec_out)
        plan += [(f"dec_transition_shape.{i}", None) for i in range(3)]
    return plan


def _owner(module: nn.Module, param_name: str) -> nn.Module:
    return module.get_submodule(param_name.rsplit(".", 1)[0]) if "." in param_name else module


def _read_leaf(f: Any, path: Path, name: str, remaining: int) -> np.ndarray:
    """One ``.npy`` record: header parsed, object arrays refused, size checked before reading."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        header = fmt.read_array_header_1_0(f) if version == (1, 0) else fmt.read_array_header_2_0(f)
    except (ValueError, EOFError, OSError) as exc:
        raise ModelImportError(f"{path} is truncated or damaged at leaf {name!r} ({exc})") from None
    shape, fortran, dtype = header
    if dtype.hasobject:
        raise ModelImportError(f"{path}: leaf {name!r} is a pickled object; refused (no code from the file is run)")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > remaining:
        raise ModelImportError(f"{path} is truncated: leaf {name!r} needs {nbytes} bytes, {remaining} are left")
    raw = f.read(nbytes)
    if len(raw) != nbytes:
        raise ModelImportError(f"{path} is truncated at leaf {name!r}")
    arr = np.frombuffer(raw, dtype=dtype)
    return arr.reshape(shape, order="F" if fortran else "C")


def convert(path: Path, info: DatasetInfo) -> tuple[QLAEModel, dict[str, Any]]:
    """(model, provenance facts) from a QLAE ``model.eqx`` and its run's config."""
    cfg_path = find_config(path)
    cfg = _read_config(cfg_path)
    mp = cfg.get("model_partial")
    if not isinstance(mp, dict) or not str(mp.get("_target_", "")).endswith("QuantizedAE"):
        raise ModelImportError(
            f"{cfg_path}: model_partial is {mp.get('_target_') if isinstance(mp, dict) else mp!r}; only their "
            "QuantizedAE (QLAE) is supported"
        )
    latent = mp.get("latent_partial") or {}
    d = latent.get("num_latents")
    if d == "twice_sources":
        d = _TWICE_SOURCES.get(str((cfg.get("data") or {}).get("name")))
    nv = latent.get("num_values_per_latent", 10)
    if not isinstance(d, int) or d < 1:
        raise ModelImportError(f"{cfg_path}: cannot tell the number of latents ({latent.get('num_latents')!r})")
    n_values = [int(nv)] * d if isinstance(nv, int) else [int(v) for v in nv]
    enc, dec = (
        _short(mp.get("encoder_partial") or cfg.get("encoder_partial")),
        _short(mp.get("decoder_partial") or cfg.get("decoder_partial")),
    )
    try:
        config = QLAEConfig(latent_dim=d, codebooks=[[0.0] * n for n in n_values], encoder_spec=enc, decoder_spec=dec)
        if len(set(n_values)) != 1:
            raise ConfigError("latents with different codebook sizes are not supported")
        model = QLAEModel(config, info)
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise ModelImportError(f"{cfg_path}: its networks cannot be rebuilt ({exc})") from None
    plan = _plan(model, d, n_values)
    try:
        check_parameters(sum(math.prod(s) for _, s in plan if s), f"the weights of {path}")
    except LimitError as exc:
        raise ModelImportError(str(exc)) from None
    leaves: dict[str, np.ndarray] = {}
    size = path.stat().st_size
    with open(path, "rb") as f:
        for name, shape in plan:
            arr = _read_leaf(f, path, name, size - f.tell())
            if shape is not None and tuple(arr.shape) != shape:
                raise ModelImportError(
                    f"{path}: leaf {name!r} has shape {tuple(arr.shape)}, the config's network expects {shape}; "
                    "the config is not this model's"
                )
            leaves[name] = arr
    ts = tuple(int(leaves[f"transition_shape.{i}"]) for i in range(3))
    if ts != model.transition_shape or int(leaves["num_latents"]) != d:
        raise ModelImportError(
            f"{path}: the file's shapes {ts} / {int(leaves['num_latents'])} latents do not fit its config"
        )
    state = {}
    for name in model.state_dict():
        if name in ("z_low", "z_high"):
            continue
        if name == "codebook":
            state[name] = torch.from_numpy(np.stack([leaves[f"codebook.{i}"] for i in range(d)]).astype(np.float32))
            continue
        arr = leaves[name]
        if isinstance(_owner(model, name), nn.ConvTranspose2d) and name.endswith("weight"):
            arr = arr.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]  # equinox convolves the dilated input unflipped
        state[name] = torch.from_numpy(np.array(arr, dtype=np.float32, order="C"))  # a writable copy
    model.load_state_dict(state, strict=False)
    model.config.codebooks = model.codebook.tolist()
    step = re.search(r"step=(\d+)", str(path))
    facts = {
        "library": "kylehkhsu/latent_quantization (equinox)",
        "library_version": None,
        "config": cfg_path.name,
        "networks": f"{enc.get('_target_')}/{dec.get('_target_')}",
        "steps": int(step.group(1)) + 1 if step else 0,
    }
    return model, facts
