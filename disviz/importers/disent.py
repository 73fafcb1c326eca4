"""nmichlo/disent Lightning checkpoints (``.ckpt``) of its AE / VAE frameworks.

The networks are rebuilt here from disent 0.8.0's source (``disent/model/ae/*.py``), layer for layer
and in the same ``nn.Sequential`` order, so the checkpoint's ``_model._encoder.model.<i>.*`` and
``_model._decoder.model.<i>.*`` tensors load by index:

* ``EncoderConv64`` / ``DecoderConv64``: disentanglement_lib's β-VAE conv net (4×4 convs, stride 2,
  padding 2 in the encoder; transposed 4×4 convs, padding 1, in the decoder), ReLU.
* ``EncoderConv64Norm`` / ``DecoderConv64Norm``: the same but the encoder's last two convs are 2×2
  (padding 1), with a selectable activation (relu / leaky_relu / swish) and norm (batch / instance /
  layer over [H, W] / layer_chn over [C, H, W] / none) before or after it, never after the dense layers.
* ``EncoderLinear`` / ``DecoderLinear``: one dense layer each. ``EncoderFC`` / ``DecoderFC``: the
  β-VAE paper's MLP (ReLU encoder, tanh decoder).

Which classes, channels, latent size, activation and norm were used is read from the pickled
``hyper_parameters['model']`` (disent writes its whole ``AutoEncoder`` there) through the safe
unpickler's stand-ins, then checked against the rebuilt layer list and every tensor shape.
``encode`` is disent's deterministic representation (the first ``z_size`` outputs: the Normal's mean
or the Laplace's location; all outputs for an AE) and ``decode`` is disent's ``decode_partial``, the
decoder before its final activation: logits for the bce / bernoulli losses. For losses without a
sigmoid (mse, mae, normal, …) disent's decoder outputs pixels; disviz draws ``sigmoid(decode)``, so
``decode`` then returns ``logit(clamp(pixels))`` (``decoder_output = "pixels"`` on the card).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from disviz.data.base import DatasetInfo
from disviz.importers.base import ImportedConfig, ImportedModel, load_mapped_weights
from disviz.importers.errors import ModelImportError
from disviz.importers.safe_pickle import TorchArchive, is_stub, stub_name
from disviz.models.base import ConfigError

__all__ = ["DisentConfig", "DisentModel", "ENCODERS", "DECODERS", "convert", "looks_like_disent"]

ENCODERS = ("EncoderConv64", "EncoderConv64Norm", "EncoderLinear", "EncoderFC")
DECODERS = ("DecoderConv64", "DecoderConv64Norm", "DecoderLinear", "DecoderFC")
ACTIVATIONS = ("relu", "leaky_relu", "swish")
NORMS = ("none", "batch", "instance", "layer", "layer_chn")
_LOGIT_LOSSES = ("bce", "bernoulli", "c_bernoulli")
_PIXEL_EPS = 1e-4  # clamp before logit() for decoders that output pixels


class Swish(nn.Module):
    """x · sigmoid(x) (disent.nn.activations.Swish)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


def _activations(
    activation: str, norm: str = "none", shape: tuple[int, int, int] = (0, 0, 0), pre: bool = True
) -> list[nn.Module]:
    """disent's ``_make_activations``: (norm, activation) or (activation, norm); norm 'none' drops it."""
    act: nn.Module = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "swish": Swish}[activation]()
    c, h, w = shape
    layer: nn.Module | None = {
        "none": lambda: None,
        "batch": lambda: nn.BatchNorm2d(c),
        "instance": lambda: nn.InstanceNorm2d(c),
        "layer": lambda: nn.LayerNorm([h, w]),
        "layer_chn": lambda: nn.LayerNorm([c, h, w]),
    }[norm]()
    pair = (layer, act) if pre else (act, layer)
    return [m for m in pair if m is not None]


def build_encoder(arch: str, c: int, z_total: int, activation: str, norm: str, pre: bool) -> nn.Sequential:
    """disent's encoder ``arch`` for [B, c, 64, 64] inputs -> [B, z_total] (mean ‖ log-variance for VAEs)."""
    if arch == "EncoderConv64":
        relu = nn.ReLU
        return nn.Sequential(
            nn.Conv2d(c, 32, 4, 2, 2), relu(), nn.Conv2d(32, 32, 4, 2, 2), relu(),  # [B, 32, 17, 17]
            nn.Conv2d(32, 64, 4, 2, 2), relu(), nn.Conv2d(64, 64, 4, 2, 2), relu(),  # [B, 64, 5, 5]
            nn.Flatten(), nn.Linear(1600, 256), relu(), nn.Linear(256, z_total),
        )  # fmt: skip
    if arch == "EncoderConv64Norm":
        return nn.Sequential(
            nn.Conv2d(c, 32, 4, 2, 2), *_activations(activation, norm, (32, 33, 33), pre),
            nn.Conv2d(32, 32, 4, 2, 2), *_activations(activation, norm, (32, 17, 17), pre),
            nn.Conv2d(32, 64, 2, 2, 1), *_activations(activation, norm, (64, 9, 9), pre),
            nn.Conv2d(64, 64, 2, 2, 1), *_activations(activation, norm, (64, 5, 5), pre),  # [B, 64, 5, 5]
            nn.Flatten(), nn.Linear(1600, 256), *_activations(activation), nn.Linear(256, z_total),
        )  # fmt: skip
    if arch == "EncoderLinear":
        return nn.Sequential(nn.Flatten(), nn.Linear(c * 64 * 64, z_total))
    if arch == "EncoderFC":
        return nn.Sequential(
            nn.Flatten(), nn.Linear(c * 64 * 64, 1200), nn.ReLU(), nn.Linear(1200, 1200), nn.ReLU(),
            nn.Linear(1200, z_total),
        )  # fmt: skip
    raise ConfigError(f"unknown disent encoder {arch!r}; supported: {', '.join(ENCODERS)}")


def build_decoder(arch: str, c: int, z: int, activation: str, norm: str, pre: bool) -> nn.Sequential:
    """disent's decoder ``arch``: [B, z] -> [B, c, 64, 64] before the final activation."""
    if arch == "DecoderConv64":
        relu = nn.ReLU
        return nn.Sequential(
            nn.Linear(z, 256), relu(), nn.Linear(256, 1024), relu(), nn.Unflatten(1, [64, 4, 4]),
            nn.ConvTranspose2d(64, 64, 4, 2, 1), relu(), nn.ConvTranspose2d(64, 32, 4, 2, 1), relu(),
            nn.ConvTranspose2d(32, 32, 4, 2, 1), relu(), nn.ConvTranspose2d(32, c, 4, 2, 1),  # [B, c, 64, 64]
        )  # fmt: skip
    if arch == "DecoderConv64Norm":
        return nn.Sequential(
            nn.Linear(z, 256), *_activations(activation), nn.Linear(256, 1024), *_activations(activation),
            nn.Unflatten(1, [64, 4, 4]),
            nn.ConvTranspose2d(64, 64, 4, 2, 1), *_activations(activation, norm, (64, 8, 8), pre),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), *_activations(activation, norm, (32, 16, 16), pre),
            nn.ConvTranspose2d(32, 32, 4, 2, 1), *_activations(activation, norm, (32, 32, 32), pre),
            nn.ConvTranspose2d(32, c, 4, 2, 1),  # [B, c, 64, 64]
        )  # fmt: skip
    if arch == "DecoderLinear":
        return nn.Sequential(nn.Linear(z, c * 64 * 64), nn.Unflatten(1, (c, 64, 64)))
    if arch == "DecoderFC":
        return nn.Sequential(
            nn.Linear(z, 1200), nn.Tanh(), nn.Linear(1200, 1200), nn.Tanh(), nn.Linear(1200, 1200), nn.Tanh(),
            nn.Linear(1200, c * 64 * 64), nn.Unflatten(1, (c, 64, 64)),
        )  # fmt: skip
    raise ConfigError(f"unknown disent decoder {arch!r}; supported: {', '.join(DECODERS)}")


@dataclass
class DisentConfig(ImportedConfig):
    """The disent networks and framework facts needed to rebuild them (``latent_dim`` = disent's z_size)."""

    encoder: str = "EncoderConv64"
    decoder: str = "DecoderConv64"
    z_multiplier: int = 2  # 2: mean ‖ log-scale (VAEs), 1: the code itself (AEs)
    encoder_activation: str = "relu"
    encoder_norm: str = "none"
    encoder_norm_pre_act: bool = True
    decoder_activation: str = "relu"
    decoder_norm: str = "none"
    decoder_norm_pre_act: bool = True
    decoder_output: str = "logits"  # or "pixels" (mse-style losses: no final sigmoid in disent)

    def validate(self) -> None:
        super().validate()
        if self.encoder not in ENCODERS or self.decoder not in DECODERS:
            raise ConfigError(
                f"unknown disent network {self.encoder}/{self.decoder}; supported: {ENCODERS}, {DECODERS}"
            )
        for act in (self.encoder_activation, self.decoder_activation):
            if act not in ACTIVATIONS:
                raise ConfigError(f"unknown disent activation {act!r}; supported: {ACTIVATIONS}")
        for norm in (self.encoder_norm, self.decoder_norm):
            if norm not in NORMS:
                raise ConfigError(f"unknown disent norm {norm!r}; supported: {NORMS}")
        if self.z_multiplier not in (1, 2) or self.decoder_output not in ("logits", "pixels"):
            raise ConfigError(f"z_multiplier {self.z_multiplier} / decoder_output {self.decoder_output!r} unsupported")


class DisentModel(ImportedModel):
    """A disent AE / VAE, rebuilt layer for layer (see the module docstring)."""

    name = "disent"
    config_class = DisentConfig

    def __init__(self, config: DisentConfig, dataset_info: DatasetInfo):
        super().__init__(config, dataset_info)
        c, d = dataset_info.channels, config.latent_dim
        self.encoder = build_encoder(
            config.encoder, c, d * config.z_multiplier, config.encoder_activation, config.encoder_norm,
            config.encoder_norm_pre_act,
        )  # fmt: skip
        self.decoder = build_decoder(
            config.decoder, c, d, config.decoder_activation, config.decoder_norm, config.decoder_norm_pre_act
        )

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, 64, 64] -> the encoder's output [B, z_multiplier · D]."""
        return self.encoder(x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.raw(x)[:, : self.latent_dim].float()  # [B, D]: mean / location / code

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.decoder(z)  # out: [B, C, 64, 64]
        if self.config.decoder_output == "pixels":
            return torch.logit(out.clamp(_PIXEL_EPS, 1 - _PIXEL_EPS))
        return out

    def kl_per_latent(self, x: torch.Tensor) -> torch.Tensor | None:
        if self.config.z_multiplier != 2 or self.config.latent_kind != "gaussian":
            return None
        mu, logvar = self.raw(x).float().chunk(2, dim=1)  # each [B, D]
        return (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).mean(0)


# --- reading a disent checkpoint ------------------------------------------------------------
def _attrs(obj: Any) -> dict[str, Any]:
    return obj.__dict__ if is_stub(obj) else {}


def _children(module: Any) -> dict[str, Any]:
    mods = _attrs(module).get("_modules")
    return dict(mods) if isinstance(mods, dict) else {}


def looks_like_disent(obj: Any) -> bool:
    """A Lightning checkpoint dict whose state dict holds disent's ``_model._encoder`` tensors."""
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    return isinstance(state, dict) and any(str(k).startswith("_model._encoder.") for k in state)


def _norm_and_activation(layers: list[Any], where: str) -> tuple[str, str, bool]:
    """(activation, norm, norm_pre_act) of a Conv64Norm net from its pickled conv block (first layers)."""
    names = [stub_name(m).rsplit(".", 1)[-1] for m in layers[1:3]]
    act_names = {"ReLU": "relu", "LeakyReLU": "leaky_relu", "Swish": "swish"}
    acts = [act_names[n] for n in names if n in act_names]
    if not acts:
        raise ModelImportError(f"{where}: cannot tell its activation from layers {names}; not a disent Conv64Norm net")
    norm, pre = "none", True
    for i, (n, m) in enumerate(zip(names, layers[1:3], strict=False)):
        shape = _attrs(m).get("normalized_shape")
        found = {"BatchNorm2d": "batch", "InstanceNorm2d": "instance"}.get(n) or (
            ("layer" if len(shape) == 2 else "layer_chn")
            if n == "LayerNorm" and isinstance(shape, (tuple, list))
            else None
        )
        if found:
            norm, pre = found, i == 0
    return acts[0], norm, pre


def _check_layers(built: nn.Sequential, pickled: list[Any], where: str) -> None:
    """The rebuilt layer list must name the same classes, in order, as the pickled one."""
    mine = [type(m).__name__ for m in built]
    theirs = [stub_name(m).rsplit(".", 1)[-1] for m in pickled]
    if mine != theirs:
        raise ModelImportError(
            f"{where}: its layers {theirs} differ from disent's standard network {mine}; a modified architecture "
            "cannot be imported (use --format torchscript with a scripted copy of it)"
        )


def convert(archive: TorchArchive, info: DatasetInfo) -> tuple[DisentModel, dict[str, Any]]:
    """(model with the checkpoint's weights, provenance facts) from a disent Lightning checkpoint."""
    ckpt = archive.obj
    where = str(archive.path)
    if not looks_like_disent(ckpt):
        raise ModelImportError(f"{where} is not a disent checkpoint (no _model._encoder tensors in its state_dict)")
    hparams = ckpt.get("hyper_parameters")
    ae = hparams.get("model") if isinstance(hparams, dict) else None
    if not stub_name(ae).endswith("AutoEncoder"):
        raise ModelImportError(
            f"{where}: its hyper_parameters hold no disent AutoEncoder (disent's frameworks save it there); "
            "was it written by disent's Lightning framework?"
        )
    parts = _children(ae)
    enc, dec = parts.get("_encoder"), parts.get("_decoder")
    enc_name, dec_name = stub_name(enc).rsplit(".", 1)[-1], stub_name(dec).rsplit(".", 1)[-1]
    if enc_name not in ENCODERS or dec_name not in DECODERS:
        raise ModelImportError(
            f"{where}: disent network {enc_name or '?'} / {dec_name or '?'} is not supported; "
            f"supported: encoders {', '.join(ENCODERS)}, decoders {', '.join(DECODERS)}"
        )
    x_shape = _attrs(enc).get("_x_shape")
    z_size, z_mult = _attrs(enc).get("_z_size"), _attrs(enc).get("_z_multiplier")
    if not (isinstance(x_shape, tuple) and len(x_shape) == 3 and isinstance(z_size, int) and z_mult in (1, 2)):
        raise ModelImportError(f"{where}: the pickled encoder has no usable x_shape / z_size / z_multiplier")
    if tuple(x_shape[1:]) != (64, 64):
        raise ModelImportError(f"{where}: the model takes {x_shape[1]}×{x_shape[2]} images; disviz datasets are 64×64")
    if x_shape[0] != info.channels:
        raise ModelImportError(
            f"{where}: the model takes {x_shape[0]}-channel images but {info.name} has {info.channels}; "
            "choose the dataset it was trained on"
        )
    enc_layers = list(_children(_children(enc).get("model")).values())
    dec_layers = list(_children(_children(dec).get("model")).values())
    options: dict[str, Any] = {}
    for side, name, layers in (("encoder", enc_name, enc_layers), ("decoder", dec_name, dec_layers)):
        if name.endswith("Norm"):
            block = layers if side == "encoder" else layers[5:]  # the decoder's first norm block follows its convT
            act, norm, pre = _norm_and_activation(block, f"{where} ({side})")
            options |= {f"{side}_activation": act, f"{side}_norm": norm, f"{side}_norm_pre_act": pre}
    cfg = _attrs(hparams.get("cfg"))
    framework = stub_name(hparams.get("cfg")).rsplit(".", 2)[-2] if stub_name(hparams.get("cfg")) else "?"
    recon = str(cfg.get("recon_loss", "mse"))
    base_loss = "c_bernoulli" if recon.startswith("c_bernoulli") else recon.split("_")[0]
    dist = str(cfg.get("latent_distribution", "normal"))
    if z_mult == 2 and dist not in ("normal", "laplace"):
        raise ModelImportError(f"{where}: latent distribution {dist!r} is not supported (normal, laplace)")
    config = DisentConfig(
        latent_dim=z_size,
        encoder=enc_name,
        decoder=dec_name,
        z_multiplier=z_mult,
        latent_kind="gaussian" if z_mult == 2 and dist == "normal" else "deterministic",
        decoder_output="logits" if base_loss in _LOGIT_LOSSES else "pixels",
        **options,
    )
    try:
        model = DisentModel(config, info)
    except ConfigError as exc:
        raise ModelImportError(f"{where}: {exc}") from None
    _check_layers(model.encoder, enc_layers, f"{where} (encoder)")
    _check_layers(model.decoder, dec_layers, f"{where} (decoder)")
    _load_weights(model, archive, ckpt["state_dict"])
    facts = {
        "library": "disent",
        "library_version": None,  # disent does not record its version in checkpoints
        "lightning_version": ckpt.get("pytorch-lightning_version"),
        "framework": framework,
        "recon_loss": recon,
        "latent_distribution": dist if z_mult == 2 else None,
        "beta": cfg.get("beta"),
        "architecture": f"{enc_name}/{dec_name}",
        "epoch": ckpt.get("epoch"),
    }
    steps = ckpt.get("global_step")
    facts["steps"] = steps if isinstance(steps, int) and steps >= 0 else 0
    return model, facts


def _load_weights(model: DisentModel, archive: TorchArchive, state: dict[str, Any]) -> None:
    """``_model._encoder.model.<i>.*`` → ``encoder.<i>.*`` (and the decoder's likewise)."""
    theirs = {
        str(k).replace("_model._encoder.model.", "encoder.", 1).replace("_model._decoder.model.", "decoder.", 1): v
        for k, v in state.items()
        if str(k).startswith(("_model._encoder.model.", "_model._decoder.model."))
    }
    load_mapped_weights(model, archive, theirs, f"{model.config.encoder}/{model.config.decoder}")
