"""The networks every method shares, and the Gaussian posterior algebra.

- ``ConvEncoder`` / ``ConvDecoder``: disentanglement_lib's "conv" architecture (docs/methods.md#the-conv-backbone),
  used by β-VAE, β-TCVAE, DEFT and DeVAE.
- ``QLAEEncoder`` / ``QLAEDecoder``: the QLAE "large" architecture (§4), the default of QLAE and AE.
- ``split_gaussian``, ``reparameterize``, ``kl_per_dim``, ``gaussian_log_density``: written once
  here so every VAE computes them the same way.

``base_channels`` and ``hidden`` default to the papers' 32 and 256; tests shrink them. All ops
are plain convolutions / linear layers, so ``model.to(memory_format=torch.channels_last)`` works.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ConvDecoder",
    "ConvEncoder",
    "QLAEDecoder",
    "QLAEEncoder",
    "build_decoder",
    "build_encoder",
    "gaussian_log_density",
    "kl_per_dim",
    "reparameterize",
    "split_gaussian",
]


# --- disentanglement_lib conv backbone (§0) -----------------------------------------------------
class ConvEncoder(nn.Module):
    """conv c k4 s2 → conv c k4 s2 → conv 2c k2 s2 → conv 2c k2 s2 (ReLU) → dense hidden → linear out.

    TF "same" padding for k4 s2 on even sizes equals padding 1; for k2 s2 it is 0. 64 → 32 → 16 → 8 → 4.
    ``negative_slope`` > 0 swaps ReLU for LeakyReLU (same parameters): an encoder that only ever sees
    generated images (DiD's E and H) meets near-constant inputs at the start, and its ReLUs die there.
    """

    def __init__(
        self, in_channels: int, out_dim: int, base_channels: int = 32, hidden: int = 256, negative_slope: float = 0.0
    ):
        super().__init__()
        c = base_channels

        def act() -> nn.Module:
            return nn.LeakyReLU(negative_slope) if negative_slope > 0 else nn.ReLU()

        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, c, 4, 2, 1),
            act(),
            nn.Conv2d(c, c, 4, 2, 1),
            act(),
            nn.Conv2d(c, 2 * c, 2, 2, 0),
            act(),
            nn.Conv2d(2 * c, 2 * c, 2, 2, 0),
            act(),
        )
        self.fc = nn.Sequential(nn.Linear(2 * c * 4 * 4, hidden), act(), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.convs(x)  # h: [B, 2c, 4, 4]
        return self.fc(torch.flatten(h, 1))  # [B, out_dim]


class ConvDecoder(nn.Module):
    """dense hidden → dense 2c·16 (=1024) → 2c×4×4 → deconv 2c, c, c, C (k4 s2) → logits [B, C, 64, 64]."""

    def __init__(self, in_dim: int, out_channels: int, base_channels: int = 32, hidden: int = 256):
        super().__init__()
        c = base_channels
        self.c = c
        self.fc = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * c * 4 * 4), nn.ReLU())
        self.deconvs = nn.Sequential(
            nn.ConvTranspose2d(2 * c, 2 * c, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * c, c, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(c, c, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(c, out_channels, 4, 2, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], 2 * self.c, 4, 4)  # h: [B, 2c, 4, 4]
        return self.deconvs(h)  # logits: [B, C, 64, 64]


# --- QLAE "large" architecture (§4) -------------------------------------------------------------
_QLAE_KSP = ((3, 1, 1), (3, 1, 1), (4, 2, 1))  # per group of three blocks


class QLAEEncoder(nn.Module):
    """12 blocks Conv(no bias) → InstanceNorm(affine) → LeakyReLU 0.2, widths c×3, 2c×3, 4c×3, 8c×3,
    kernel/stride/padding (3,1,1), (3,1,1), (4,2,1) per group (64 → 4), then 8c·16 → hidden → hidden
    (ReLU) → linear to ``out_dim``."""

    def __init__(self, in_channels: int, out_dim: int, base_channels: int = 32, hidden: int = 256):
        super().__init__()
        blocks: list[nn.Module] = []
        prev = in_channels
        for mult in (1, 2, 4, 8):
            width = base_channels * mult
            for k, s, p in _QLAE_KSP:
                blocks += [
                    nn.Conv2d(prev, width, k, s, p, bias=False),
                    nn.InstanceNorm2d(width, affine=True),
                    nn.LeakyReLU(0.2),
                ]
                prev = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Sequential(
            nn.Linear(prev * 4 * 4, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(x)  # h: [B, 8c, 4, 4]
        return self.fc(torch.flatten(h, 1))  # [B, out_dim]


class _StyleBlock(nn.Module):
    """ConvT(no bias) → LeakyReLU 0.2 → InstanceNorm(no affine) → x·scale + bias, [scale, bias] = ReLU(Linear(w))."""

    def __init__(self, c_in: int, c_out: int, k: int, s: int, p: int, w_dim: int):
        super().__init__()
        self.conv = nn.ConvTranspose2d(c_in, c_out, k, s, p, bias=False)
        self.norm = nn.InstanceNorm2d(c_out, affine=False)
        self.style = nn.Linear(w_dim, 2 * c_out)

    def forward(self, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        h = self.norm(F.leaky_relu(self.conv(h), 0.2))  # h: [B, c_out, H, W]
        scale, bias = F.relu(self.style(w)).chunk(2, dim=1)  # each [B, c_out]
        return h * scale[:, :, None, None] + bias[:, :, None, None]


class QLAEDecoder(nn.Module):
    """StyleGAN-like decoder: w = MLP(z) (hidden, hidden), a learnable constant 0.1·ones(8c, 4, 4),
    12 style blocks with widths 8c×3, 4c×3, 2c×3, c×3, then a 3×3 conv to ``out_channels`` logits.

    Interpretation [I]: each group of three transposed convs uses (3,1,1), (3,1,1), (4,2,1) like
    the encoder, so 4 → 8 → 16 → 32 → 64; the MLP has ReLU between and after its two layers.
    """

    def __init__(self, in_dim: int, out_channels: int, base_channels: int = 32, hidden: int = 256):
        super().__init__()
        c8 = base_channels * 8
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.const = nn.Parameter(torch.full((1, c8, 4, 4), 0.1))
        blocks = []
        prev = c8
        for mult in (8, 4, 2, 1):
            width = base_channels * mult
            for k, s, p in _QLAE_KSP:
                blocks.append(_StyleBlock(prev, width, k, s, p, hidden))
                prev = width
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Conv2d(prev, out_channels, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        w = self.mlp(z)  # w: [B, hidden]
        h = self.const.expand(z.shape[0], -1, -1, -1)  # h: [B, 8c, 4, 4]
        for block in self.blocks:
            h = block(h, w)
        return self.out(h)  # logits: [B, C, 64, 64]


def build_encoder(arch: str, in_channels: int, out_dim: int, base_channels: int, hidden: int) -> nn.Module:
    """``arch``: 'conv' (§0) or 'qlae' (§4 large)."""
    if arch == "conv":
        return ConvEncoder(in_channels, out_dim, base_channels, hidden)
    if arch == "qlae":
        return QLAEEncoder(in_channels, out_dim, base_channels, hidden)
    raise ValueError(f"unknown arch {arch!r} (use 'conv' or 'qlae')")


def build_decoder(arch: str, in_dim: int, out_channels: int, base_channels: int, hidden: int) -> nn.Module:
    if arch == "conv":
        return ConvDecoder(in_dim, out_channels, base_channels, hidden)
    if arch == "qlae":
        return QLAEDecoder(in_dim, out_channels, base_channels, hidden)
    raise ValueError(f"unknown arch {arch!r} (use 'conv' or 'qlae')")


# --- Gaussian posterior algebra -----------------------------------------------------------------
def split_gaussian(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder output [B, 2d] -> (μ [B, d], ln σ² [B, d]), in float32 (stable KL under bf16)."""
    mu, logvar = h.float().chunk(2, dim=1)
    return mu, logvar


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = μ + σ·ε, ε ~ N(0, I). [B, d]"""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) per sample and latent: ½(μ² + σ² − ln σ² − 1), [B, d]."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """ln N(z; μ, σ²) elementwise (broadcasting), as in disentanglement_lib's ``gaussian_log_density``."""
    inv_var = torch.exp(-logvar)
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) * inv_var)
