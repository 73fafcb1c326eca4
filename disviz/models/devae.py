"""DeVAE: VAEs with a Decremental Information Bottleneck (Wu et al., ICLR 2023 submission,
arXiv 2303.12959; code erow/disentanglement_lib). docs/methods.md#devae.

One §0 encoder gives (μ₀, ln σ₀²). K latent spaces are chained by learnable diagonal
*disentanglement-invariant* maps: μ_{i+1} = e^{w¹_i}⊙μ_i and (as in the code) ln σ²_{i+1} =
ln σ²_i + w²_i, all w initialised to 0, so every space is a per-latent rescaling of space 0 and an
axis-aligned factorisation survives the chain. Space i has its own β_i (β₀ = 1 < β₁ < …, the
decremental bottleneck). One shared §0 decoder reads [z_i, e_i] with e_i a learnable d-dim
embedding of the space (initialised N(0, 1) [I]).

Objective: L_i = E[−ln p(x|z_i, e_i)] + β_i KL_i and ``weighting='sum'`` (default, the code):
L = Σ_i sⁱ·L_i; ``weighting='sample'`` (the paper): one space i ~ p(i) ∝ sⁱ per batch, L = L_i.
The K decoder passes run as one batch of K·B. The representation (metrics, sliders) is μ₀.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from disviz.data.base import DatasetInfo
from disviz.models.backbone import kl_per_dim
from disviz.models.base import ConfigError, ModelConfig, reconstruction_loss
from disviz.models.vae import GaussianVAE

__all__ = ["DeVAE", "DeVAEConfig"]


@dataclass
class DeVAEConfig(ModelConfig):
    """Paper defaults: Adam 1e-4, batch 256, 300k iterations, betas [1, 10, 40], s = 1,
    BCE for binary data and MSE (L2) for RGB (Shapes3D)."""

    batch_size: int = 256
    betas: tuple[float, ...] = (1.0, 10.0, 40.0)
    s: float = 1.0
    weighting: str = "sum"

    def validate(self) -> None:
        super().validate()
        if not self.betas or any(not b >= 0 for b in self.betas):
            raise ConfigError(f"betas={self.betas!r} must be a non-empty list of values >= 0, one per space")
        if not self.s > 0:
            raise ConfigError(f"s={self.s} must be > 0")
        if self.weighting not in ("sum", "sample"):
            raise ConfigError(f"weighting={self.weighting!r}: use sum (the code) or sample (the paper)")


class DeVAE(GaussianVAE):
    name = "devae"
    config_class = DeVAEConfig

    def __init__(self, config: DeVAEConfig, dataset_info: DatasetInfo):
        config.validate()
        super().__init__(config, dataset_info, decoder_in=2 * config.latent_dim)
        k, d = len(config.betas), config.latent_dim
        self.log_scale = nn.Parameter(torch.zeros(max(k - 1, 0), d))  # w¹: μ_{i+1} = e^{w¹_i} μ_i
        self.logvar_shift = nn.Parameter(torch.zeros(max(k - 1, 0), d))  # w²: ln σ²_{i+1} = ln σ²_i + w²_i
        self.space_embedding = nn.Parameter(torch.randn(k, d))  # e_i
        weights = torch.tensor([config.s**i for i in range(k)], dtype=torch.float32)
        self.register_buffer("space_weights", weights, persistent=False)

    def default_rgb_recon(self) -> str:
        return "gaussian"

    @property
    def n_spaces(self) -> int:
        return len(self.config.betas)

    def spaces(self, mu0: torch.Tensor, logvar0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Space-0 posterior [B, d] -> all spaces' (μ, ln σ²), each [K, B, d]."""
        cum_scale = torch.cumsum(self.log_scale, 0)  # [K-1, d]
        cum_shift = torch.cumsum(self.logvar_shift, 0)
        mu = torch.cat([mu0[None], mu0[None] * cum_scale.exp()[:, None, :]], 0)
        logvar = torch.cat([logvar0[None], logvar0[None] + cum_shift[:, None, :]], 0)
        return mu, logvar

    def decode_space(self, z: torch.Tensor, space: int | torch.Tensor) -> torch.Tensor:
        """z: [B, d] decoded as a member of ``space`` (index or [B] indices) -> logits."""
        e = self.space_embedding[space]
        e = e.expand(z.shape[0], -1) if e.dim() == 1 else e
        return self.decoder(torch.cat([z, e.to(z.dtype)], 1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode_space(z, 0)

    def loss(self, x: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        b = x.shape[0]
        k = self.n_spaces
        mu0, logvar0 = self.posterior(x)  # each [B, d]
        mu, logvar = self.spaces(mu0, logvar0)  # each [K, B, d]
        z = self.sample_latent(mu, logvar)  # [K, B, d]
        space_ids = torch.arange(k, device=x.device).repeat_interleave(b)  # [K·B]
        logits = self.decode_space(z.reshape(k * b, -1), space_ids)  # [K·B, C, 64, 64]
        x_rep = x.repeat(k, 1, 1, 1)
        recon = reconstruction_loss(logits, x_rep, self.recon_kind, self.config.reduction).view(k, b).mean(1)  # [K]
        kl_dims = kl_per_dim(mu, logvar)  # [K, B, d]
        kl = (kl_dims.sum(2) if self.config.reduction == "sum" else kl_dims.mean(2)).mean(1)  # [K]
        betas = torch.tensor(self.config.betas, dtype=torch.float32, device=x.device)
        per_space = recon + betas * kl  # L_i: [K]
        if self.config.weighting == "sum":
            loss = (self.space_weights * per_space).sum()
        else:
            i = torch.multinomial(self.space_weights / self.space_weights.sum(), 1)
            loss = per_space[i].squeeze(0)
        out = {"loss": loss, "recon": recon[0], "kl": kl[0]}
        for i in range(1, k):
            out[f"recon_{i}"] = recon[i]
            out[f"kl_{i}"] = kl[i]
        return out
