"""The DEFT / DeVAE authors' PyTorch checkpoints (github erow/disentanglement_lib, branch ``pytorch``).

Their trainer is a Lightning module (``methods/unsupervised/train.py: PLModel``) whose ``encode`` /
``decode`` attributes are the networks; ``dlib_run`` and ``examples/devae.py`` save it with Lightning's
``ModelCheckpoint``. The networks are rebuilt here from their source (own code, same layer order, so
``encode.*`` / ``decode.*`` load by name):

* ``conv_encoder`` (4×4 convs, stride 2, padding 1: 64→32→16→8→4, a 4×4 conv to 8·base channels at
  1×1, a dense layer to mean ‖ log-variance) with ``base_channel`` 32, and ``deconv_decoder`` (dense
  to 256, a 4×4 transposed conv to 4×4, then four stride-2 transposed convs to 64×64, logits).
* DEFT's ``FracEncoder``: G ``conv_encoder``s with base 8, K = D / G latents each, and one diagonal
  ``Projection`` per group (μ·e^{W1}, ln σ² + W2). Its forward depends on the training stage, which
  is *not* in the checkpoint (a plain attribute): groups before the stage go through their
  projection, the stage's group is raw, later groups are zeros. The stage is recomputed as the DEFT
  regulariser set it during training, min((global_step − 1) // stage_steps, len(betas) − 1), from
  the gin bindings Lightning stored as hyper-parameters (``deft.stage_steps``, ``deft.betas``).
* DeVAE (``examples/devae.py``): a ``conv_encoder`` whose space s is reached through projections
  0…s−1, and a ``deconv_decoder`` reading [z, stage embedding of s]. disviz shows space 0, as their
  ``convert()`` and disviz's own DeVAE do; the other spaces' weights are kept (``space`` on the card).

``encode`` is their mean μ, ``decode`` their decoder's output (logits: their loss and ``convert()``
apply the sigmoid).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from disviz.data.base import DatasetInfo
from disviz.importers.base import ImportedConfig, ImportedModel, load_mapped_weights
from disviz.importers.errors import ModelImportError
from disviz.importers.safe_pickle import LazyTensor, TorchArchive
from disviz.models.base import ConfigError

__all__ = ["ErowConfig", "ErowModel", "convert", "looks_like_erow"]

_VIEW_KEY = "decode.net.2.shape"  # their View layer's buffer: the reshape target, not a weight


def conv_encoder(c: int, k: int, base: int) -> nn.Sequential:
    """[B, c, 64, 64] -> [B, 2k] (mean ‖ log-variance), as their ``conv_encoder.net``."""
    return nn.Sequential(
        nn.Conv2d(c, base, 4, 2, 1), nn.ReLU(), nn.Conv2d(base, base, 4, 2, 1), nn.ReLU(),  # [B, base, 16, 16]
        nn.Conv2d(base, 2 * base, 4, 2, 1), nn.ReLU(), nn.Conv2d(2 * base, 2 * base, 4, 2, 1), nn.ReLU(),  # 4×4
        nn.Conv2d(2 * base, 8 * base, 4), nn.ReLU(), nn.Flatten(), nn.Linear(8 * base, 2 * k),  # [B, 2k]
    )  # fmt: skip


def deconv_decoder(n_in: int, c: int) -> nn.Sequential:
    """[B, n_in] -> [B, c, 64, 64] logits, as their ``deconv_decoder.net`` (index 2 is their View)."""
    return nn.Sequential(
        nn.Linear(n_in, 256), nn.ReLU(), nn.Unflatten(1, (256, 1, 1)),
        nn.ConvTranspose2d(256, 64, 4), nn.ReLU(), nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(),  # [B, 64, 8, 8]
        nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(),
        nn.ConvTranspose2d(32, c, 4, 2, 1),  # [B, c, 64, 64]
    )  # fmt: skip


class Projection(nn.Module):
    """Their diagonal map between spaces / of a finished DEFT group: (μ·e^{W1}, ln σ² + W2)."""

    def __init__(self, k: int):
        super().__init__()
        self.W1 = nn.Parameter(torch.zeros(1, k))  # [1, k]
        self.W2 = nn.Parameter(torch.zeros(1, k))

    def forward(self, mu: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return mu * self.W1.exp(), logvar + self.W2


class _Conv(nn.Module):
    """Holder so state-dict names read ``<prefix>.net.<i>`` as theirs do."""

    def __init__(self, net: nn.Sequential):
        super().__init__()
        self.net = net


@dataclass
class ErowConfig(ImportedConfig):
    """Which of their networks, and the facts their forward passes depend on."""

    encoder: str = "conv"  # conv | frac (DEFT) | devae
    decoder: str = "deconv"  # deconv | devae
    base_channel: int = 32
    groups: int = 1  # DEFT's G
    stage: int = 0  # DEFT's training stage (see the module docstring)
    spaces: int = 1  # DeVAE's projections / stage embeddings
    space: int = 0  # the DeVAE space shown

    def validate(self) -> None:
        super().validate()
        if self.encoder not in ("conv", "frac", "devae") or self.decoder not in ("deconv", "devae"):
            raise ConfigError(f"unknown network {self.encoder}/{self.decoder}")
        if self.groups < 1 or self.latent_dim % self.groups or not 0 <= self.stage < max(self.groups, 1):
            raise ConfigError(f"groups {self.groups} / stage {self.stage} do not fit {self.latent_dim} latents")
        if not 0 <= self.space < max(self.spaces, 1):
            raise ConfigError(f"space {self.space} is not one of the {self.spaces} spaces")


class ErowModel(ImportedModel):
    """Their PLModel's encode / decode behind the disviz interface."""

    name = "erow"
    config_class = ErowConfig

    def __init__(self, config: ErowConfig, dataset_info: DatasetInfo):
        super().__init__(config, dataset_info)
        c, d = dataset_info.channels, config.latent_dim
        self.encoder = nn.Module()
        if config.encoder == "frac":
            k = d // config.groups
            self.encoder.sub_encoders = nn.ModuleList(
                _Conv(conv_encoder(c, k, config.base_channel)) for _ in range(config.groups)
            )
            self.encoder.projs = nn.ModuleList(Projection(k) for _ in range(config.groups))
        else:
            self.encoder.net = conv_encoder(c, d, config.base_channel)
            if config.encoder == "devae":
                self.encoder.projs = nn.ModuleList(Projection(d) for _ in range(config.spaces))
        self.decoder = nn.Module()
        self.decoder.net = deconv_decoder(2 * d if config.decoder == "devae" else d, c)
        if config.decoder == "devae":
            self.decoder.stage_embed = nn.Embedding(config.spaces, d)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [B, C, 64, 64] -> (μ, ln σ²), each [B, D], as their ``encode`` returns them."""
        cfg: ErowConfig = self.config  # type: ignore[assignment]
        if cfg.encoder == "frac":
            mus, logvars = [], []
            for i, (sub, proj) in enumerate(zip(self.encoder.sub_encoders, self.encoder.projs, strict=True)):
                if i > cfg.stage:  # not reached in training: zeros, as their forward
                    mus.append(torch.zeros_like(mus[-1]))
                    logvars.append(torch.zeros_like(logvars[-1]))
                    continue
                mu, logvar = sub.net(x).chunk(2, dim=1)  # each [B, K]
                if i < cfg.stage:
                    mu, logvar = proj(mu, logvar)
                mus.append(mu)
                logvars.append(logvar)
            return torch.cat(mus, 1), torch.cat(logvars, 1)
        mu, logvar = self.encoder.net(x).chunk(2, dim=1)  # each [B, D]
        if cfg.encoder == "devae":
            for proj in list(self.encoder.projs)[: cfg.space]:
                mu, logvar = proj(mu, logvar)
        return mu, logvar

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0].float()

    def decode(self, z: torch.Tensor, space: int | None = None) -> torch.Tensor:
        if self.config.decoder == "devae":
            s = self.config.space if space is None else space
            e = self.decoder.stage_embed.weight[s].expand(z.shape[0], -1)  # [B, D]
            z = torch.cat([z, e], 1)  # [B, 2D]
        return self.decoder.net(z)

    def kl_per_latent(self, x: torch.Tensor) -> torch.Tensor | None:
        mu, logvar = (t.float() for t in self.posterior(x))
        return (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).mean(0)


def looks_like_erow(obj: Any) -> bool:
    """A Lightning checkpoint whose state dict holds their PLModel's ``encode.`` / ``decode.`` tensors."""
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    return (
        isinstance(state, dict)
        and any(str(k).startswith("encode.") for k in state)
        and any(str(k).startswith("decode.net.") for k in state)
    )


def _shape(state: dict[str, Any], key: str, where: str) -> tuple[int, ...]:
    t = state.get(key)
    if not isinstance(t, LazyTensor):
        raise ModelImportError(f"{where}: tensor {key!r} is missing; not a conv_encoder / deconv_decoder checkpoint")
    return t.shape


def convert(archive: TorchArchive, info: DatasetInfo) -> tuple[ErowModel, dict[str, Any]]:
    """(model, provenance facts) from their Lightning checkpoint; the architecture is read from the
    state dict's names and shapes, DEFT's stage from the stored gin bindings."""
    ckpt, where = archive.obj, str(archive.path)
    if not looks_like_erow(ckpt):
        raise ModelImportError(f"{where} is not an erow/disentanglement_lib checkpoint (no encode./decode. tensors)")
    state = {str(k): v for k, v in ckpt["state_dict"].items()}
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt.get("hyper_parameters"), dict) else {}
    step = ckpt.get("global_step") if isinstance(ckpt.get("global_step"), int) else 0
    n_sub = len({k.split(".")[2] for k in state if k.startswith("encode.sub_encoders.")})
    n_proj = len({k.split(".")[2] for k in state if k.startswith("encode.projs.")})
    facts: dict[str, Any] = {"library": "erow/disentanglement_lib", "library_version": None, "steps": step}
    facts["lightning_version"] = ckpt.get("pytorch-lightning_version")
    if n_sub:
        first = _shape(state, "encode.sub_encoders.0.net.0.weight", where)
        k = _shape(state, "encode.sub_encoders.0.net.11.weight", where)[0] // 2
        stage_steps, betas = hp.get("deft.stage_steps"), hp.get("deft.betas")
        if not (isinstance(stage_steps, int) and stage_steps > 0 and isinstance(betas, list) and betas):
            raise ModelImportError(
                f"{where}: a FracEncoder (DEFT) checkpoint without deft.stage_steps / deft.betas in its "
                "hyper-parameters; its forward depends on the training stage, which cannot be told without them"
            )
        stage = min(max(step - 1, 0) // stage_steps, len(betas) - 1, n_sub - 1)
        arch = {"encoder": "frac", "groups": n_sub, "stage": stage, "base_channel": first[0], "latent_dim": k * n_sub}
        facts |= {"method": "DEFT", "deft_betas": betas, "deft_stage_steps": stage_steps, "deft_stage": stage}
    else:
        first = _shape(state, "encode.net.0.weight", where)
        d = _shape(state, "encode.net.11.weight", where)[0] // 2
        arch = {"encoder": "devae" if n_proj else "conv", "base_channel": first[0], "latent_dim": d}
        if n_proj:
            arch["spaces"] = n_proj
            facts |= {"method": "DeVAE", "devae_betas": hp.get("devae.betas")}
        else:
            regs = hp.get("model.regularizers")
            facts["method"] = "VAE (" + ", ".join(map(str, regs)) + ")" if isinstance(regs, list) else "VAE"
    if "decode.stage_embed.weight" in state:
        arch["decoder"] = "devae"
        arch["spaces"] = _shape(state, "decode.stage_embed.weight", where)[0]
    if first[1] != info.channels:
        raise ModelImportError(
            f"{where}: the model takes {first[1]}-channel images but {info.name} has {info.channels}; "
            "choose the dataset it was trained on"
        )
    try:
        model = ErowModel(ErowConfig(latent_kind="gaussian", **arch), info)
    except ConfigError as exc:
        raise ModelImportError(f"{where}: {exc}") from None
    view = state.pop(_VIEW_KEY, None)
    if isinstance(view, LazyTensor) and archive.tensor(view, _VIEW_KEY).tolist() != [-1, 256, 1, 1]:
        raise ModelImportError(
            f"{where}: its decoder reshapes to {archive.tensor(view).tolist()}, not deconv_decoder's"
        )
    _load(model, archive, state)
    return model, facts


def _load(model: ErowModel, archive: TorchArchive, state: dict[str, Any]) -> None:
    """``encode.*`` → ``encoder.*``, ``decode.*`` → ``decoder.*``."""
    theirs = {
        k.replace("encode.", "encoder.", 1).replace("decode.", "decoder.", 1): v
        for k, v in state.items()
        if k.startswith(("encode.", "decode."))
    }
    load_mapped_weights(model, archive, theirs, f"the rebuilt {model.config.encoder}/{model.config.decoder} network")
