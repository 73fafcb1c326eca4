"""The one interface every model implements, so the app, CLI, metrics and diagnostics
never need to know which method they hold."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from disviz.core.errors import TrainingError
from disviz.data.base import DatasetInfo


class ConfigError(TrainingError, ValueError):
    """A model option is unknown or has a bad value.

    A ``UserError`` for the CLI/app, and a ``ValueError`` for code that already catches that
    (the engine's resume check, checkpoint loading).
    """


@dataclass
class ModelConfig:
    """Fields shared by all models. Subclasses add their own with the papers' defaults.

    ``recon``: 'bernoulli' (sigmoid cross-entropy), 'gaussian' (L2 on sigmoid outputs) or
    'auto' (bernoulli for binary data, the method's choice for RGB). ``base_channels`` and
    ``hidden`` shrink the networks for tests; the defaults are the papers'.
    ``reduction``: how the reconstruction is reduced over pixels: 'sum' (disentanglement_lib,
    DEFT, DeVAE: summed over pixels, averaged over the batch; KL summed over latents) or 'mean'
    (the QLAE code: averaged over pixels; KL averaged over latents). Stored in every checkpoint
    because the β values of the two conventions differ by a factor D/d (docs/methods.md#loss-reductions).
    """

    latent_dim: int = 10
    lr: float = 1e-4
    batch_size: int = 64
    steps: int = 300_000
    recon: str = "auto"
    base_channels: int = 32
    hidden: int = 256
    reduction: str = "sum"

    def validate(self) -> None:
        """Raise ConfigError for values no model can use; subclasses extend it."""
        if self.recon not in ("auto", "bernoulli", "gaussian"):
            raise ConfigError(f"recon={self.recon!r}: use auto, bernoulli or gaussian")
        if self.reduction not in ("sum", "mean"):
            raise ConfigError(f"reduction={self.reduction!r}: use sum or mean")
        for key in ("latent_dim", "batch_size", "steps", "base_channels", "hidden"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{key}={value!r} must be a positive integer")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError(f"lr={self.lr!r} must be a positive number")

    @classmethod
    def for_dataset(cls, info: DatasetInfo) -> ModelConfig:
        """Paper defaults for this dataset; subclasses override where papers differ."""
        return cls()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        fields_by_name = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(d) - set(fields_by_name)
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown config keys {sorted(unknown)}; known: {sorted(fields_by_name)}")
        defaults = cls()
        # JSON turns tuples into lists: give tuple fields their type back
        values = {
            k: tuple(v) if isinstance(getattr(defaults, k), tuple) and isinstance(v, list) else v for k, v in d.items()
        }
        return cls(**values)

    def replace(self, **overrides: Any) -> ModelConfig:
        """Copy with overrides; string values (from ``--set key=value``) are cast to the field type."""
        fields_by_name = {f.name: f for f in dataclasses.fields(self)}
        cast: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in fields_by_name:
                raise ConfigError(f"{type(self).__name__} has no option {key!r}; options: {sorted(fields_by_name)}")
            current = getattr(self, key)
            cast[key] = _cast_like(current, value, key)
        return dataclasses.replace(self, **cast)


def _cast_like(current: Any, value: Any, key: str) -> Any:
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(value)
    if not isinstance(value, str) or isinstance(current, str):
        return value
    try:
        if isinstance(current, bool):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if isinstance(current, int):
            return int(value)
        if isinstance(current, float):
            return float(value)
        if isinstance(current, (list, tuple)):
            items = [v for v in value.replace("[", "").replace("]", "").split(",") if v.strip()]
            elem = current[0] if current else 0.0
            return type(current)(_cast_like(elem, v.strip(), key) for v in items)
    except ValueError as exc:
        raise ConfigError(f"option {key}={value!r}: expected {type(current).__name__}") from exc
    return value


@dataclass
class LatentSpec:
    """How the app should draw a slider for one latent.

    kind: 'gaussian' (VAE posterior mean; prior N(0,1)), 'quantised' (QLAE codebook),
    'deterministic' (AE / DiD code; range from data), 'uniform' (DiD generator code in [-1, 1]).
    """

    index: int
    kind: str
    low: float
    high: float
    values: list[float] | None = None  # codebook values for 'quantised'
    name: str = field(default="")

    def __post_init__(self) -> None:
        if not self.name:
            self.name = f"z{self.index}"


def reconstruction_loss(logits: torch.Tensor, x: torch.Tensor, kind: str, reduction: str = "sum") -> torch.Tensor:
    """Per-sample reconstruction loss, shape [B]: summed over pixels ('sum') or averaged ('mean').

    logits, x: [B, C, 64, 64]; x in [0, 1]. 'bernoulli' is sigmoid cross-entropy,
    'gaussian' is squared error of sigmoid(logits) (DEFT/DeVAE's L2 for RGB data).
    Computed in float32 even under bf16 autocast (the sums are over 12k pixels).
    """
    logits, x = logits.float(), x.float()
    if kind == "bernoulli":
        per_pixel = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    elif kind == "gaussian":
        per_pixel = (torch.sigmoid(logits) - x).pow(2)
    else:
        raise ValueError(f"unknown reconstruction kind {kind!r} (use 'bernoulli' or 'gaussian')")
    if reduction == "mean":
        return per_pixel.flatten(1).mean(dim=1)
    if reduction != "sum":
        raise ValueError(f"unknown reduction {reduction!r} (use 'sum' or 'mean')")
    return per_pixel.flatten(1).sum(dim=1)


class DisentangledModel(nn.Module):
    """Base class of every disviz model.

    Subclasses set ``name`` and ``config_class`` and implement ``encode``, ``decode``,
    ``loss`` and ``latent_specs``. ``train_step`` is the unit the training engine calls;
    adversarial models (DiD) override it.
    """

    name: ClassVar[str] = "base"
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    #: what ``encode`` returns: 'mean', 'quantised', 'deterministic' or 'samples-encoder'
    representation: ClassVar[str] = "mean"

    def __init__(self, config: ModelConfig, dataset_info: DatasetInfo):
        super().__init__()
        self.config = config
        self.dataset_info = dataset_info

    # --- what every model provides -----------------------------------------------------
    @property
    def latent_dim(self) -> int:
        return int(self.config.latent_dim)

    @property
    def recon_kind(self) -> str:
        """Resolved reconstruction likelihood ('bernoulli' or 'gaussian')."""
        if self.config.recon != "auto":
            return self.config.recon
        return "bernoulli" if self.dataset_info.binary else self.default_rgb_recon()

    def default_rgb_recon(self) -> str:
        return "bernoulli"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, 64, 64] in [0,1] -> representation z: [B, D]."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: [B, D] -> image logits [B, C, 64, 64]."""
        raise NotImplementedError

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, 64, 64] -> reconstructed probabilities [B, C, 64, 64]."""
        return torch.sigmoid(self.decode(self.encode(x)))

    def latent_specs(self) -> list[LatentSpec]:
        """One slider description per latent."""
        return [LatentSpec(i, "gaussian", -3.0, 3.0) for i in range(self.latent_dim)]

    def kl_per_latent(self, x: torch.Tensor) -> torch.Tensor | None:
        """Mean KL per latent over the batch, [D], or None for non-variational models."""
        return None

    def loss(self, x: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """Named scalar loss terms; must include 'loss' (the total being minimised)."""
        raise NotImplementedError

    # --- training protocol ---------------------------------------------------------------
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """Default: one Adam over all parameters at config.lr (disentanglement_lib)."""
        return [torch.optim.Adam(self.parameters(), lr=self.config.lr, betas=(0.9, 0.999), eps=1e-8)]

    def on_step(self, step: int, optimizers: list[torch.optim.Optimizer]) -> None:
        """Called before every training step (DEFT switches stages / learning rates here)."""

    def stage(self, step: int) -> int | None:
        """Training stage at ``step`` for multi-stage methods, else None."""
        return None

    def health(self, losses: dict[str, float], step: int) -> str | None:
        """A warning when the logged window means show the run has stopped learning (e.g. a GAN's
        generator collapsed), else None. The engine logs it and records it on the card, once per
        kind of problem, instead of training on silently. Default: no check."""
        return None

    def clip_gradients(self) -> None:
        """Hook between backward and optimizer step (QLAE clips element-wise)."""

    def train_step(
        self, x: torch.Tensor, step: int, optimizers: list[torch.optim.Optimizer]
    ) -> dict[str, torch.Tensor]:
        """One optimisation step on batch x: [B, C, 64, 64]. Returns detached loss terms.

        Never calls ``.item()``: the engine decides when to sync with the device.
        """
        self.on_step(step, optimizers)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        terms = self.loss(x, step)
        terms["loss"].backward()
        self.clip_gradients()
        for opt in optimizers:
            opt.step()
        return {k: v.detach() for k, v in terms.items()}
