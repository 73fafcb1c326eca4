"""DEFT: Distilling Entangled Factors by Preventing Information Diffusion (Wu et al., Machine
Learning 111(6), 2022; arXiv 2102.03986; author code erow/disentanglement_lib). docs/methods.md#deft.

The latent space is split into G groups, each with its own §0 conv sub-encoder (the Sep-2021 /
journal code generation); one §0 decoder reads all d latents. Training runs in stages with a
decreasing β: stage k minimises ``recon + β_k Σ_j KL_j`` (no TC term). In stage k:

- the *current* group (index min(k, G−1)) learns at the full learning rate η;
- *earlier* groups are slowed (information already frozen in should not diffuse), by
  ``slowdown='lr'`` (default): their parameter group's learning rate is γ·η (γ = ``gamma``, 0.1).
  Scaling gradients instead would be a no-op under Adam (docs/methods.md#why-the-slowdown-is-a-learning-rate), so the rate is
  set on the optimiser's parameter groups at every stage switch, keeping the Adam state; or
  ``slowdown='freeze'`` (the journal version): the sub-encoder is frozen and its detached output
  passes through a learnable diagonal projection μ' = μ·e^{w1}, ln σ²' = ln σ² + w2 (w init 0);
- *later* groups are inactive: μ = 0, ln σ² = 0, so their KL is exactly 0 and z is pure noise;
  their sub-encoders are not even run.

Schedules (both from the author code):

- ``schedule='reference'`` (default; ``examples/deft.py``, the authors' latest script): the loss
  uses the *continuous* β(t) = max(ref_beta_max·e^{−ref_rate·t/T}, 1), T = ``ref_steps``; the
  ``betas`` are only switch thresholds. The run starts in stage 0 and moves to stage k+1 once β(t)
  has fallen to β_k or below, so there are len(betas)+1 stages (dSprites: 5 stages for 5 groups,
  the last, at β = 1, training group 4 alone). Stage s trains group s; from stage G on every group
  is an earlier group (the authors' ``set_stage`` caps at G).
- ``schedule='steps'`` (the code's older ``deft`` regulariser): len(betas) fixed-length stages,
  stage k uses β_k in the loss and trains group k. Groups after the last stage's group are never
  trained in the author code (their latents stay noise, KL 0): ``remaining_groups='inactive'``
  (default) does that; ``'last'`` is this project's earlier interpretation [I] in which the last
  stage trains all remaining groups together.

Sub-encoders are narrow as in the author code's ``FracEncoder`` (conv encoders of base width 8):
``encoder_channels`` 8 and ``encoder_hidden`` 64 (the author's 8·base dense width). Set them to
``base_channels``/``hidden`` for the full-width encoders of earlier disviz versions (≈ 5× the
encoder compute).

Interpretations [I]: (1) when d is not divisible by G, groups are as equal as possible (numpy
``array_split``; the correlated toy's d = 5 in groups of 2 → sizes 2, 2, 1); (2) ``stage_steps=0``
(default) means ``steps // len(betas)`` and ``ref_steps=0`` means ``steps`` (the authors' script
sets T to the total steps): both are resolved when the model is built, so the card holds the actual
values and resuming with a larger ``--steps`` does not move the stage boundaries; (3) the slowdown
of earlier groups defaults to ``lr`` (γ = 0.1, the Sep-2021 code and the notebooks' best γ) rather
than the journal code's ``freeze``; both are options.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from disviz.data.base import DatasetInfo
from disviz.models.backbone import ConvDecoder, ConvEncoder, kl_per_dim, reparameterize, split_gaussian
from disviz.models.base import ConfigError, DisentangledModel, ModelConfig, reconstruction_loss

__all__ = ["DEFT", "DEFTConfig"]


@dataclass
class DEFTConfig(ModelConfig):
    """dSprites defaults of the author code (d 10, G 5, β thresholds 70/30/12/1, β(t) schedule over
    400k steps); ``for_dataset`` applies the other rows of docs/methods.md#defaults-per-dataset. Adam at 1e-4 (the later
    code) with batch 256 (the authors' script). Reconstruction: Bernoulli for binary data, L2 for RGB."""

    latent_dim: int = 10
    batch_size: int = 256
    steps: int = 400_000
    groups: int = 5
    betas: tuple[float, ...] = (70.0, 30.0, 12.0, 1.0)
    stage_steps: int = 0
    schedule: str = "reference"
    ref_beta_max: float = 150.0
    ref_rate: float = 20.0
    ref_steps: int = 0
    gamma: float = 0.1
    slowdown: str = "lr"
    remaining_groups: str = "inactive"
    encoder_channels: int = 8
    encoder_hidden: int = 64

    def validate(self) -> None:
        super().validate()
        if not 1 <= self.groups <= self.latent_dim:
            raise ConfigError(f"groups={self.groups} must lie in [1, latent_dim={self.latent_dim}]")
        if not self.betas or any(not b >= 0 for b in self.betas):
            raise ConfigError(f"betas={self.betas!r} must be a non-empty list of values >= 0, one per stage")
        if self.stage_steps < 0:
            raise ConfigError(f"stage_steps={self.stage_steps} must be >= 0 (0 = steps // len(betas))")
        if self.ref_steps < 0:
            raise ConfigError(f"ref_steps={self.ref_steps} must be >= 0 (0 = steps)")
        if self.schedule not in ("steps", "reference"):
            raise ConfigError(f"schedule={self.schedule!r}: use steps (fixed-length stages) or reference (β(t))")
        if self.slowdown not in ("lr", "freeze"):
            raise ConfigError(f"slowdown={self.slowdown!r}: use lr (γ·η for earlier groups) or freeze")
        if not 0 <= self.gamma <= 1:
            raise ConfigError(f"gamma={self.gamma} must lie in [0, 1]")
        if self.remaining_groups not in ("inactive", "last"):
            raise ConfigError(
                f"remaining_groups={self.remaining_groups!r}: use inactive (author code) or last "
                "(the last stage trains every remaining group)"
            )
        for key in ("encoder_channels", "encoder_hidden"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{key}={value!r} must be a positive integer")

    @classmethod
    def for_dataset(cls, info: DatasetInfo) -> DEFTConfig:
        name = info.name
        if name in ("color_dsprites", "scream_dsprites", "noisy_dsprites", "shapes3d") or (
            not info.binary and name not in ("dsprites", "dsprites_noshape")
        ):
            # the colour/scream rows; [I] also used for noisy-dSprites and Shapes3D (RGB, L2 loss),
            # which the DEFT table does not list
            return cls(latent_dim=12, groups=4, betas=(10.0, 7.0, 5.0, 1.0))
        if name == "dsprites_noshape":
            return cls(betas=(70.0, 30.0, 15.0, 1.0), steps=200_000)
        if name == "correlated_triangles":
            return cls(latent_dim=5, groups=3, betas=(20.0, 1.0), schedule="steps", stage_steps=3_000, steps=10_000)
        return cls()


class DEFT(DisentangledModel):
    name = "deft"
    config_class = DEFTConfig
    representation = "mean"

    def __init__(self, config: DEFTConfig, dataset_info: DatasetInfo):
        config.validate()
        # resolve the schedule's automatic lengths once, so the card records them and a resumed
        # run with a new --steps keeps the stages it was trained with
        config = dataclasses.replace(
            config,
            stage_steps=config.stage_steps or max(1, config.steps // len(config.betas)),
            ref_steps=config.ref_steps or config.steps,
        )
        super().__init__(config, dataset_info)
        d, c = config.latent_dim, dataset_info.channels
        self.group_sizes = [len(a) for a in np.array_split(np.arange(d), config.groups)]
        self.encoders = nn.ModuleList(
            ConvEncoder(c, 2 * size, config.encoder_channels, config.encoder_hidden) for size in self.group_sizes
        )
        self.decoder = ConvDecoder(d, c, config.base_channels, config.hidden)
        # journal version's diagonal projection of frozen groups: μ' = μ·e^{w1}, ln σ²' = ln σ² + w2
        self.proj_log_scale = nn.Parameter(torch.zeros(d))
        self.proj_shift = nn.Parameter(torch.zeros(d))
        self.register_buffer("trained_stage", torch.zeros((), dtype=torch.long))
        self._last_stage: int | None = None

    def default_rgb_recon(self) -> str:
        return "gaussian"

    # --- schedule --------------------------------------------------------------------------------
    @property
    def n_stages(self) -> int:
        """len(betas) + 1 with the β(t) schedule (the betas are thresholds), len(betas) with fixed stages."""
        return len(self.config.betas) + (1 if self.config.schedule == "reference" else 0)

    def stage_length(self) -> int:
        return int(self.config.stage_steps)

    def reference_beta(self, step: int) -> float:
        t = step / max(1, self.config.ref_steps)
        return max(self.config.ref_beta_max * math.exp(-self.config.ref_rate * t), 1.0)

    def stage(self, step: int) -> int:
        if self.config.schedule == "steps":
            return min(step // self.stage_length(), self.n_stages - 1)
        # β(t) only falls, so the author code's one-switch-per-step rule equals counting thresholds passed
        ref = self.reference_beta(step)
        return sum(1 for b in self.config.betas if ref <= b)

    def beta(self, step: int) -> float:
        """The β in the loss: β(t) itself with the reference schedule, the stage's β_k otherwise."""
        if self.config.schedule == "reference":
            return self.reference_beta(step)
        return float(self.config.betas[self.stage(step)])

    def group_status(self, stage: int) -> list[str]:
        """Per group: 'earlier' (slowed / frozen), 'current' (full rate) or 'inactive' (μ = 0, ln σ² = 0)."""
        g_count = len(self.group_sizes)
        last_takes_rest = (
            self.config.schedule == "steps" and self.config.remaining_groups == "last" and stage >= self.n_stages - 1
        )
        out = []
        for g in range(g_count):
            if g < stage:
                out.append("earlier")
            elif g == stage or last_takes_rest:
                out.append("current")
            else:
                out.append("inactive")
        return out

    # --- networks --------------------------------------------------------------------------------
    def posterior_at(self, x: torch.Tensor, stage: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, ln σ²), each [B, d] float32, with groups active / slowed / inactive as in ``stage``."""
        b = x.shape[0]
        mus, logvars = [], []
        start = 0
        freeze = self.config.slowdown == "freeze"
        status_list = self.group_status(stage)
        frozen = [g for g, st in enumerate(status_list) if freeze and st == "earlier"]
        learning = [g for g, st in enumerate(status_list) if st != "inactive" and g not in frozen]
        outputs = dict(zip(learning, self._encode_groups(x, learning), strict=True)) if learning else {}
        if frozen:  # frozen sub-encoders: no graph, no gradient, no backward cost
            with torch.no_grad():
                outputs.update(zip(frozen, self._encode_groups(x, frozen), strict=True))
        for g, status in enumerate(status_list):
            size = self.group_sizes[g]
            if status == "inactive":
                zeros = torch.zeros(b, size, device=x.device, dtype=torch.float32)
                mus.append(zeros)
                logvars.append(zeros)
            else:
                mu, logvar = split_gaussian(outputs[g])  # each [B, size]
                if freeze and status == "earlier":
                    sl = slice(start, start + size)
                    mu = mu.detach() * self.proj_log_scale[sl].exp()
                    logvar = logvar.detach() + self.proj_shift[sl]
                mus.append(mu)
                logvars.append(logvar)
            start += size
        return torch.cat(mus, 1), torch.cat(logvars, 1)

    def _encode_groups(self, x: torch.Tensor, groups: list[int]) -> list[torch.Tensor]:
        """Outputs [B, 2·size_g] of the sub-encoders ``groups``, identical to calling each one.

        The convolutions of all groups run fused: the first conv reads the shared input with the
        groups' filters concatenated, the next three are grouped convs (groups = #active). Each
        sub-encoder keeps its own parameter tensors (per-group learning rates, checkpoints).
        """
        encs = [self.encoders[g] for g in groups]
        n = len(encs)
        if n == 1:
            return [encs[0](x)]
        h = x
        for i, idx in enumerate((0, 2, 4, 6)):  # the four convs of ConvEncoder.convs
            ref = encs[0].convs[idx]
            w = torch.cat([e.convs[idx].weight for e in encs], 0)
            bias = torch.cat([e.convs[idx].bias for e in encs], 0)
            h = F.relu(F.conv2d(h, w, bias, ref.stride, ref.padding, groups=1 if i == 0 else n))
        chunks = torch.flatten(h, 1).chunk(n, 1)  # h: [B, n·2c, 4, 4] -> n × [B, 2c·16]
        return [e.fc(c) for e, c in zip(encs, chunks, strict=True)]

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior at the stage the model has reached (stored in the checkpoint)."""
        return self.posterior_at(x, int(self.trained_stage))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    @torch.no_grad()
    def kl_per_latent(self, x: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.posterior(x)
        return kl_per_dim(mu, logvar).mean(0)  # [d]

    def loss(self, x: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        stage = self.stage(step)
        mu, logvar = self.posterior_at(x, stage)  # each [B, d]
        z = reparameterize(mu, logvar)
        recon = reconstruction_loss(self.decode(z), x, self.recon_kind, self.config.reduction).mean()
        kl_dims = kl_per_dim(mu, logvar)
        kl = (kl_dims.sum(1) if self.config.reduction == "sum" else kl_dims.mean(1)).mean()
        beta = self.beta(step)
        # β is logged as a term so the card's history shows the stage schedule next to the losses
        beta_t = torch.full((), beta, device=kl.device)
        return {"loss": recon + beta * kl, "recon": recon, "kl": kl, "beta": beta_t}

    # --- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """One Adam with a parameter group per sub-encoder (index g) and a last one for the decoder
        and the projections; ``on_step`` sets each group's learning rate for the current stage."""
        groups = [{"params": list(enc.parameters()), "lr": self.config.lr} for enc in self.encoders]
        shared = list(self.decoder.parameters()) + [self.proj_log_scale, self.proj_shift]
        groups.append({"params": shared, "lr": self.config.lr})
        self._last_stage = None
        return [torch.optim.Adam(groups, lr=self.config.lr, betas=(0.9, 0.999), eps=1e-8)]

    def group_lrs(self, stage: int) -> list[float]:
        """Learning rate of each sub-encoder in ``stage`` (the decoder always learns at η)."""
        lr = self.config.lr
        slow = lr * self.config.gamma if self.config.slowdown == "lr" else 0.0
        return [slow if s == "earlier" else lr for s in self.group_status(stage)]

    def on_step(self, step: int, optimizers: list[torch.optim.Optimizer]) -> None:
        stage = self.stage(step)
        if stage == self._last_stage:
            return
        lrs = self.group_lrs(stage)
        pgs = optimizers[0].param_groups
        for g, lr in enumerate(lrs):
            pgs[g]["lr"] = lr
        pgs[-1]["lr"] = self.config.lr
        self.trained_stage.fill_(stage)
        self._last_stage = stage
