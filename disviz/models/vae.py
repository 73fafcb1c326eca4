"""The Gaussian VAE skeleton shared by β-VAE, β-TCVAE and DeVAE: one conv encoder giving
(μ, ln σ²), one conv decoder giving logits, and the loss reductions of docs/methods.md#loss-reductions."""

from __future__ import annotations

import torch

from disviz.models.backbone import ConvDecoder, ConvEncoder, kl_per_dim, reparameterize, split_gaussian
from disviz.models.base import DisentangledModel, reconstruction_loss

__all__ = ["GaussianVAE"]


class GaussianVAE(DisentangledModel):
    """Encoder → (μ, ln σ²) [B, d]; decoder(z) → logits [B, C, 64, 64]; the representation is μ.

    Subclasses implement ``loss``. ``decoder_in`` lets DeVAE feed [z, space embedding].
    """

    representation = "mean"

    def __init__(self, config, dataset_info, decoder_in: int | None = None):
        config.validate()
        super().__init__(config, dataset_info)
        d, c = config.latent_dim, dataset_info.channels
        self.encoder = ConvEncoder(c, 2 * d, config.base_channels, config.hidden)
        self.decoder = ConvDecoder(decoder_in or d, c, config.base_channels, config.hidden)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [B, C, 64, 64] -> (μ, ln σ²), each [B, d] float32."""
        return split_gaussian(self.encoder(x))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    @torch.no_grad()
    def kl_per_latent(self, x: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.posterior(x)
        return kl_per_dim(mu, logvar).mean(0)  # [d]

    # --- reductions (config.reduction: 'sum' = disentanglement_lib, 'mean' = disent / QLAE code)
    def recon_term(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Batch-mean reconstruction loss (scalar)."""
        return reconstruction_loss(logits, x, self.recon_kind, self.config.reduction).mean()

    def kl_term(self, kl: torch.Tensor) -> torch.Tensor:
        """kl: [B, d] -> batch mean of Σ_j KL_j ('sum') or of mean_j KL_j ('mean')."""
        per_sample = kl.sum(1) if self.config.reduction == "sum" else kl.mean(1)
        return per_sample.mean()

    def sample_latent(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return reparameterize(mu, logvar)
