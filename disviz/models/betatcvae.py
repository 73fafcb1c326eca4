"""β-TCVAE (Chen et al., arXiv 1802.04942) in disentanglement_lib's form: recon + Σ KL + (β−1)·TC.

TC(q(z)) is estimated by minibatch-weighted sampling (MWS) on z ~ q(z|x) of the batch:
``ln q(z_n) ≈ logsumexp_m ln q(z_n|x_m) − ln(N·M)`` and the same per latent for ln q(z_nj).
disentanglement_lib drops the ln(N·M) constants (gradients are unchanged); we keep them, with
N = ``dataset_size`` (0 → the dataset's grid size), so the logged ``tc`` is the MWS estimate itself
rather than an estimate with an offset of (d−1)·ln(N·M). The estimate is biased for small batches:
keep B ≥ 64 (docs/methods.md#beta-tcvae). With ``reduction='mean'`` the TC penalty is divided by d like the
KL (the logged ``tc`` stays the estimate in nats).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from disviz.data.base import DatasetInfo
from disviz.models.backbone import gaussian_log_density, kl_per_dim
from disviz.models.base import ConfigError, ModelConfig
from disviz.models.vae import GaussianVAE

__all__ = ["BetaTCVAE", "BetaTCVAEConfig", "total_correlation"]


def total_correlation(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, dataset_size: int) -> torch.Tensor:
    """MWS estimate of TC(q(z)) = E[ln q(z) − Σ_j ln q(z_j)] from one batch.

    z, mu, logvar: [M, d]. Returns a scalar. Memory O(M²·d).
    """
    m, d = z.shape
    log_qz_cond = gaussian_log_density(z[:, None, :], mu[None, :, :], logvar[None, :, :])  # [M(n), M(m), d]
    log_norm = math.log(max(dataset_size, 1) * m)
    log_qz = torch.logsumexp(log_qz_cond.sum(2), dim=1) - log_norm  # ln q(z_n): [M]
    log_qz_marginals = (torch.logsumexp(log_qz_cond, dim=1) - log_norm).sum(1)  # Σ_j ln q(z_nj): [M]
    return (log_qz - log_qz_marginals).mean()


@dataclass
class BetaTCVAEConfig(ModelConfig):
    """disentanglement_lib backbone and optimiser; β = 6 (Chen et al.'s dSprites value, in the
    disentanglement_lib sweep {1, 2, 4, 6, 8, 10}; DeVAE compares against 12). Shapes3D: β = 3
    (QLAE configs). ``dataset_size`` N of the MWS estimator: 0 = the dataset's grid size."""

    beta: float = 6.0
    dataset_size: int = 0

    def validate(self) -> None:
        super().validate()
        if not self.beta >= 0:
            raise ConfigError(f"beta={self.beta!r} must be >= 0")
        if self.dataset_size < 0:
            raise ConfigError(f"dataset_size={self.dataset_size} must be >= 0 (0 = the dataset's size)")

    @classmethod
    def for_dataset(cls, info: DatasetInfo) -> BetaTCVAEConfig:
        return cls(beta=3.0) if info.name == "shapes3d" else cls()


class BetaTCVAE(GaussianVAE):
    name = "betatcvae"
    config_class = BetaTCVAEConfig

    def __init__(self, config: BetaTCVAEConfig, dataset_info: DatasetInfo):
        super().__init__(config, dataset_info)
        self.n_data = int(config.dataset_size or np.prod(np.asarray(dataset_info.factor_sizes, dtype=np.int64)))

    def loss(self, x: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        mu, logvar = self.posterior(x)  # each [B, d]
        z = self.sample_latent(mu, logvar)
        recon = self.recon_term(self.decode(z), x)
        kl = self.kl_term(kl_per_dim(mu, logvar))
        tc = total_correlation(z, mu, logvar, self.n_data)
        # 'mean' reduction averages the KL over latents; the TC penalty follows the same scale
        tc_term = tc if self.config.reduction == "sum" else tc / self.latent_dim
        loss = recon + kl + (self.config.beta - 1.0) * tc_term
        return {"loss": loss, "recon": recon, "kl": kl, "tc": tc}
