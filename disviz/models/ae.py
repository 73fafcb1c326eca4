"""AE baseline as in kylehkhsu/latent_quantization: reconstruction only (BCE averaged over pixels),
on the QLAE encoder/decoder (``arch='qlae'``, docs/methods.md#ae), with QLAE's optimiser set-up
(AdamW on weights with element-wise clipping, Adam on biases) and weight decay 0 by default
(0.001 on Shapes3D, as in the code's Shapes3D config).

The latents are unbounded. For sliders the model tracks the range of its encodings during
training (an exponential moving average, momentum ``range_momentum``, of each batch's per-latent
min and max, stored as buffers so it travels with the checkpoint). The app should still prefer
the min/max of the encodings of the data it shows (docs/methods.md#ae [I]); ±3 is the fallback before
any training step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from disviz.data.base import DatasetInfo
from disviz.models.backbone import build_decoder, build_encoder
from disviz.models.base import ConfigError, DisentangledModel, LatentSpec, ModelConfig, reconstruction_loss
from disviz.models.qlae import QLAEOptimisation, n_sources

__all__ = ["AE", "AEConfig"]


@dataclass
class AEConfig(ModelConfig):
    """QLAE-code defaults: lr 1e-3, batch 128, 200k steps, n_z = 2 × #sources [I: the code uses the
    same latent count for all its autoencoders], element clip 1, weight decay 0 (Shapes3D 0.001)."""

    latent_dim: int = 10
    lr: float = 1e-3
    batch_size: int = 128
    steps: int = 200_000
    reduction: str = "mean"
    arch: str = "qlae"
    weight_decay: float = 0.0
    clip: float = 1.0
    range_momentum: float = 0.01

    def validate(self) -> None:
        super().validate()
        if self.arch not in ("qlae", "conv"):
            raise ConfigError(f"arch={self.arch!r}: use qlae (QLAE's network, the default) or conv")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay={self.weight_decay} must be >= 0")
        if not 0 < self.range_momentum <= 1:
            raise ConfigError(f"range_momentum={self.range_momentum} must lie in (0, 1]")

    @classmethod
    def for_dataset(cls, info: DatasetInfo) -> AEConfig:
        wd = 0.001 if info.name == "shapes3d" else 0.0
        return cls(latent_dim=2 * n_sources(info), weight_decay=wd)


class AE(QLAEOptimisation, DisentangledModel):
    name = "ae"
    config_class = AEConfig
    representation = "deterministic"

    def __init__(self, config: AEConfig, dataset_info: DatasetInfo):
        config.validate()
        super().__init__(config, dataset_info)
        d, c = config.latent_dim, dataset_info.channels
        self.encoder = build_encoder(config.arch, c, d, config.base_channels, config.hidden)
        self.decoder = build_decoder(config.arch, d, c, config.base_channels, config.hidden)
        self.register_buffer("z_low", torch.full((d,), -3.0))
        self.register_buffer("z_high", torch.full((d,), 3.0))
        self.register_buffer("range_seen", torch.zeros(()))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).float()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    @torch.no_grad()
    def _track_range(self, z: torch.Tensor) -> None:
        """EMA of the batch's per-latent min / max, without a host sync."""
        m = self.config.range_momentum
        seen = self.range_seen > 0
        for buf, batch in ((self.z_low, z.amin(0)), (self.z_high, z.amax(0))):
            buf.copy_(torch.where(seen, (1 - m) * buf + m * batch, batch))
        self.range_seen.fill_(1.0)

    def loss(self, x: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        z = self.encode(x)  # [B, d]
        if self.training:
            self._track_range(z.detach())
        recon = reconstruction_loss(self.decode(z), x, self.recon_kind, self.config.reduction).mean()
        return {"loss": recon, "recon": recon}

    def latent_specs(self) -> list[LatentSpec]:
        lo, hi = self.z_low.float().cpu().tolist(), self.z_high.float().cpu().tolist()
        return [
            LatentSpec(j, "deterministic", min(a, b), max(a, b) + 1e-6 * (a == b))
            for j, (a, b) in enumerate(zip(lo, hi, strict=True))
        ]
