"""QLAE: Quantised Latent AutoEncoder (Hsu et al., "Disentanglement via Latent Quantization",
NeurIPS 2023, arXiv 2305.18378; official JAX code kylehkhsu/latent_quantization).

Each latent j has its own learnable scalar codebook of ``values_per_latent`` values, initialised to
``linspace(−codebook_range, codebook_range)``. The encoder output z is snapped to the nearest value
q; the decoder sees ẑ = z + sg(q − z) (straight-through). The two auxiliary losses are computed on
the raw z and the selected q *before* that substitution (docs/methods.md#straight-through-ordering): otherwise the
codebook receives no gradient and the two z-gradients cancel:

    L = BCE_mean(x, σ(dec(ẑ))) + w_q·mean (sg(z) − q)² + w_c·mean (z − sg(q))²

Optimisation as in the code: weights (including InstanceNorm scales and the decoder's constant
input) are clipped element-wise to [−clip, clip] and stepped by AdamW(weight_decay); biases and
codebooks by plain Adam with no decay and no clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from disviz.data.base import DatasetInfo
from disviz.models.backbone import build_decoder, build_encoder
from disviz.models.base import ConfigError, DisentangledModel, LatentSpec, ModelConfig, reconstruction_loss

__all__ = ["QLAE", "QLAEConfig", "n_sources", "split_regularised", "weight_decay_optimizers"]


def n_sources(info: DatasetInfo) -> int:
    """Number of factors that vary (a constant factor such as dSprites' colour is not a source)."""
    return sum(1 for s in info.factor_sizes if s > 1)


def split_regularised(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(weights, biases + codebooks): the QLAE code's regularised / unregularised partition."""
    reg, unreg = [], []
    for name, p in model.named_parameters():
        (unreg if name.endswith("bias") or "codebook" in name else reg).append(p)
    return reg, unreg


def weight_decay_optimizers(model: nn.Module, lr: float, weight_decay: float) -> list[torch.optim.Optimizer]:
    """[AdamW(weights, wd), Adam(biases + codebooks)], both at ``lr``."""
    reg, unreg = split_regularised(model)
    opts: list[torch.optim.Optimizer] = [torch.optim.AdamW(reg, lr=lr, weight_decay=weight_decay)]
    if unreg:
        opts.append(torch.optim.Adam(unreg, lr=lr))
    return opts


class QLAEOptimisation:
    """The QLAE code's optimiser set-up, shared by QLAE and the AE baseline: AdamW with weight decay
    and per-element gradient clipping on weights, plain Adam on biases / codebooks.
    Needs ``self.config.lr``, ``.weight_decay`` and ``.clip``."""

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        self._regularised = split_regularised(self)[0]  # type: ignore[arg-type]
        return weight_decay_optimizers(self, self.config.lr, self.config.weight_decay)  # type: ignore[attr-defined,arg-type]

    def clip_gradients(self) -> None:
        params = getattr(self, "_regularised", None) or split_regularised(self)[0]  # type: ignore[arg-type]
        torch.nn.utils.clip_grad_value_(params, self.config.clip)  # type: ignore[attr-defined]


@dataclass
class QLAEConfig(ModelConfig):
    """Defaults of the official code: lr 1e-3, batch 128, 200k steps, BCE averaged over pixels
    (``reduction='mean'``), n_z = 2 × #sources (``for_dataset``; 10 for dSprites, 12 for Shapes3D),
    10 values per latent in [−0.5, 0.5], weights 0.01 / 0.01, weight decay 0.1, element clip 1,
    the "large" architecture (``arch='qlae'``; ``'conv'`` uses the §0 backbone instead)."""

    latent_dim: int = 10
    lr: float = 1e-3
    batch_size: int = 128
    steps: int = 200_000
    reduction: str = "mean"
    arch: str = "qlae"
    values_per_latent: int = 10
    codebook_range: float = 0.5
    quant_weight: float = 0.01
    commit_weight: float = 0.01
    weight_decay: float = 0.1
    clip: float = 1.0

    def validate(self) -> None:
        super().validate()
        if self.arch not in ("qlae", "conv"):
            raise ConfigError(f"arch={self.arch!r}: use qlae (the paper's large network) or conv")
        if self.values_per_latent < 2:
            raise ConfigError(f"values_per_latent={self.values_per_latent} must be at least 2")
        if not self.codebook_range > 0:
            raise ConfigError(f"codebook_range={self.codebook_range} must be > 0")
        for key in ("quant_weight", "commit_weight", "weight_decay"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key}={getattr(self, key)} must be >= 0")

    @classmethod
    def for_dataset(cls, info: DatasetInfo) -> QLAEConfig:
        return cls(latent_dim=2 * n_sources(info))


class QLAE(QLAEOptimisation, DisentangledModel):
    name = "qlae"
    config_class = QLAEConfig
    representation = "quantised"

    def __init__(self, config: QLAEConfig, dataset_info: DatasetInfo):
        config.validate()
        super().__init__(config, dataset_info)
        d, c = config.latent_dim, dataset_info.channels
        self.encoder = build_encoder(config.arch, c, d, config.base_channels, config.hidden)
        self.decoder = build_decoder(config.arch, d, c, config.base_channels, config.hidden)
        r, v = config.codebook_range, config.values_per_latent
        self.codebook = nn.Parameter(torch.linspace(-r, r, v).repeat(d, 1))  # [d, V]

    def continuous(self, x: torch.Tensor) -> torch.Tensor:
        """Raw encoder output z before quantisation, [B, d] float32."""
        return self.encoder(x).float()

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z: [B, d] -> (q [B, d] with gradient to the codebook, indices [B, d])."""
        idx = (z[:, :, None] - self.codebook[None]).abs().argmin(dim=2)  # [B, d]
        latent = torch.arange(z.shape[1], device=z.device)[None, :]
        return self.codebook[latent, idx], idx

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantize(self.continuous(x))[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def latent_losses(self, z: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(quantisation loss: moves the codebook, commitment loss: moves the encoder), on raw z and q."""
        quant = F.mse_loss(z.detach(), q)
        commit = F.mse_loss(z, q.detach())
        return quant, commit

    def loss(self, x: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        z = self.continuous(x)  # [B, d]
        q, _ = self.quantize(z)
        quant, commit = self.latent_losses(z, q)
        z_hat = z + (q - z).detach()  # straight-through: the value of q, the gradient of z
        recon = reconstruction_loss(self.decode(z_hat), x, self.recon_kind, self.config.reduction).mean()
        loss = recon + self.config.quant_weight * quant + self.config.commit_weight * commit
        return {"loss": loss, "recon": recon, "quant": quant, "commit": commit}

    def latent_specs(self) -> list[LatentSpec]:
        """Per latent: its codebook values, sorted (the app steps through them)."""
        values = torch.sort(self.codebook.detach().float().cpu(), dim=1).values.tolist()
        return [LatentSpec(j, "quantised", v[0], v[-1], values=v) for j, v in enumerate(values)]
