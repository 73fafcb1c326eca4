"""IFP annealing test: when does each factor's information freeze into a VAE?

For a factor k and a random base of the other factors, a VAE with one latent is trained on the
|V_k| images in which only k varies while β is annealed from high to low; the β at which its KL
rises above a threshold is the factor's information freezing point (IFP). Repeating over bases
gives an IFP distribution per factor, which DEFT's stage thresholds are meant to separate.

Why the defaults differ from the reference test: an IFP is a β on the scale of the likelihood it
was measured with, so the default is the trained models' scale (64×64, loss summed over pixels);
and it should be a property of the images, not of the optimiser, so the default recipe keeps the
VAE at equilibrium while β falls. All runs train together as one vectorised model. Procedure,
scale, recipes, network, measurements and interpretations: docs/methods.md#ifp-annealing-test.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from disviz.core.device import pick_device
from disviz.core.errors import DatasetError, TrainingError, UserError
from disviz.core.limits import MAX_ANNEAL_RUNS, LimitError, check_batch, check_count, check_seed, read_text_bounded
from disviz.data.base import GroundTruthDataset
from disviz.models.base import _cast_like

FORMAT = "disviz-annealing"
FORMAT_VERSION = 1
Progress = Callable[[float, str], None]


class AnnealingResultError(UserError):
    """An annealing result file is missing or malformed."""


@dataclass
class AnnealConfig:
    """Settings of one annealing test (paper/reference defaults)."""

    steps: int = 8000  # T (reference: 8 000)
    schedule: str = "exp"  # "exp": 1 + β_max·e^{−γt/T}; "linear": max(β_max(1 − t/T), 1)
    beta_max: float | None = None  # None: max(70, 1.25 × largest linear bound) (docs/methods.md#scale)
    recipe: str = "equilibrium"  # "equilibrium" (defaults below) | "reference" (REFERENCE_RECIPE)
    gamma: float = 15.0
    threshold: float = 0.1  # nat
    window: int = 50  # moving-median window for the KL trace [I]
    arch: str = "mlp"  # "mlp": batched one-hidden-layer MLP VAE per run; "conv": the reference tiny conv backbone
    batch_size: int | None = None  # None: full batch (each run's own |V_k| images); int: sample with replacement
    lr: float = 2e-3  # Adam; the reference's 5e-4 lags far behind the falling β (docs/methods.md#recipes)
    base_channels: int = 8  # conv arch only
    hidden: int = 64
    pool: int = 1  # k×k average pooling before training; 1 = the models' 64×64 scale (2 divides IFPs by ≈ 4)
    latent_dim: int = 1  # per run (1 for the IFP test; label-free uses 10)
    warmup: int | None = None  # steps trained at β(0) before the schedule starts (not recorded); None: steps // 8
    latent_init: float = 1.0  # mlp arch: scale of the decoder's latent-input weights at init
    activation: str = "elu"  # mlp arch: hidden activation ("relu", "elu", "tanh")
    antithetic: bool = True  # mlp arch: each image decoded with ε and −ε (2× decoder work)
    stop_recon: float | None = None  # truncate a run's curve once its recon < this (reference: 1.0)
    max_points: int = 400  # curve points kept in the JSON per run
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def cast_overrides(cls, raw: dict[str, str]) -> dict[str, Any]:
        """``--set`` strings -> typed field values (unknown keys are a clear error).

        Lets a CLI user restore the reference recipe, e.g. ``--set warmup=0 --set lr=0.0005
        --set antithetic=false --set activation=relu --set latent_init=0.01``."""
        defaults = cls()
        names = {f.name for f in fields(cls)} - {"steps", "schedule", "arch", "pool", "batch_size", "extra", "recipe"}
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in names:
                raise TrainingError(f"annealing has no option {key!r}; options: {sorted(names)}")
            current = getattr(defaults, key)
            if current is None:  # optional numeric fields (warmup: int, stop_recon/beta_max: float)
                current = 0 if key == "warmup" else 0.0
            out[key] = _cast_like(current, value, key)  # ConfigError (a TrainingError) on a bad value
        return out

    def validate(self) -> None:
        def finite_positive(name: str, value: Any) -> None:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
            if not ok:
                raise TrainingError(f"annealing option {name}={value!r} must be a finite number > 0")

        for name in ("lr", "gamma", "threshold", "latent_init"):
            finite_positive(name, getattr(self, name))
        if self.beta_max is not None:
            finite_positive("beta_max", self.beta_max)
        if self.stop_recon is not None:
            finite_positive("stop_recon", self.stop_recon)
        for name in ("steps", "hidden", "base_channels", "latent_dim", "window", "max_points"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TrainingError(f"annealing option {name}={value!r} must be a positive integer")
        if self.steps > 1_000_000 or self.hidden > 65_536 or self.latent_dim > 1024:
            raise TrainingError(
                f"annealing options out of range (steps ≤ 1,000,000, hidden ≤ 65,536, latent_dim ≤ 1024): "
                f"steps={self.steps}, hidden={self.hidden}, latent_dim={self.latent_dim}"
            )
        if self.schedule not in ("exp", "linear"):
            raise TrainingError(f"schedule must be 'exp' or 'linear', got {self.schedule!r}")
        if self.arch not in ("mlp", "conv"):
            raise TrainingError(f"arch must be 'mlp' or 'conv', got {self.arch!r}")
        if self.steps < 2 or (self.batch_size is not None and self.batch_size < 1) or self.window < 1:
            raise TrainingError("steps must be >= 2 and batch_size (when given), window >= 1")
        if self.warmup is None:
            self.warmup = self.steps // 8
        if self.warmup < 0 or self.activation not in ACTIVATIONS:
            raise TrainingError(f"warmup must be >= 0 and activation one of {sorted(ACTIVATIONS)}")
        if self.pool < 1 or 64 % self.pool or (self.arch == "conv" and self.pool != 1):
            raise TrainingError(f"pool must divide 64 (and be 1 for arch 'conv'), got {self.pool}")
        if (self.beta_max is not None and self.beta_max <= 0) or self.threshold <= 0:
            raise TrainingError("beta_max and threshold must be positive")
        if self.recipe not in RECIPES:
            raise TrainingError(f"recipe must be one of {sorted(RECIPES)}, got {self.recipe!r}")

    @classmethod
    def for_recipe(cls, recipe: str = "equilibrium", **overrides: Any) -> AnnealConfig:
        """The config of a named recipe, then ``overrides`` (explicit values win over the recipe's)."""
        if recipe not in RECIPES:
            raise TrainingError(f"recipe must be one of {sorted(RECIPES)}, got {recipe!r}")
        return cls(**{**RECIPES[recipe], "recipe": recipe, **overrides})


# The reference recipe of erow/disentanglement_lib's annealing test, on our network and scale.
REFERENCE_RECIPE: dict[str, Any] = {
    "lr": 5e-4,
    "batch_size": 64,
    "warmup": 0,
    "activation": "relu",
    "antithetic": False,
    "latent_init": 1.0,
}
RECIPES: dict[str, dict[str, Any]] = {"equilibrium": {}, "reference": REFERENCE_RECIPE}
REFERENCE_BETA_MAX = 70.0


def auto_beta_max(bounds: Sequence[float]) -> tuple[float, str]:
    """Start β of the schedule for runs with these linear-response bounds, and a note saying why.

    The reference starts at 1 + 70; a run whose bound is above that is frozen from the first step
    and its IFP is unmeasurable, so the start is raised to 1.25 × the largest bound (rounded up to 10).
    """
    top = max(bounds, default=0.0)
    if 1.25 * top <= REFERENCE_BETA_MAX:
        return REFERENCE_BETA_MAX, "reference start β = 1 + 70"
    start = float(math.ceil(1.25 * top / 10.0) * 10)
    n_above = sum(1 for b in bounds if b >= REFERENCE_BETA_MAX)
    return start, (
        f"start raised from the reference 70 to {start:g}: {n_above} of {len(bounds)} runs have a linear-response "
        f"bound above 70 (largest {top:.0f}) and would be frozen from the first step"
    )


def beta_schedule(
    t: np.ndarray | int, steps: int, kind: str = "exp", beta_max: float = REFERENCE_BETA_MAX, gamma: float = 15.0
):
    """β at step(s) t of T=steps: exp ``1 + β_max·e^{−γt/T}`` or linear ``max(β_max(1 − t/T), 1)``."""
    t = np.asarray(t, dtype=np.float64)
    if kind == "exp":
        return 1.0 + beta_max * np.exp(-gamma * t / steps)
    if kind == "linear":
        return np.maximum(beta_max * (1.0 - t / steps), 1.0)
    raise TrainingError(f"unknown schedule {kind!r}; choose 'exp' or 'linear'")


# --- pure logic ------------------------------------------------------------------------------
def moving_median(x: np.ndarray, window: int) -> np.ndarray:
    """Centred moving median (edges use the available samples)."""
    x = np.asarray(x, dtype=np.float64)
    if window <= 1 or len(x) == 0:
        return x.copy()
    half = window // 2
    padded = np.pad(x, (half, window - 1 - half), mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, window), axis=1)


def find_ifp(
    beta: Sequence[float] | np.ndarray,
    kl: Sequence[float] | np.ndarray,
    threshold: float = 0.1,
    window: int = 50,
    frozen_at_start: bool = False,
) -> float | None:
    """β at which the smoothed KL first rises above ``threshold`` as β falls; None if it never does.

    ``beta``/``kl`` are in training order (β decreasing). The trace must first be at or below the
    threshold (information squeezed out at high β); the crossing β is interpolated linearly
    between the two samples that bracket it. With ``frozen_at_start`` (the trace starts after a
    warm-up at β(0)), a trace that never drops to the threshold returns ``beta[0]``: the factor
    froze at or above β(0). One that starts above but then drops is a warm-up that had not yet
    squeezed the initial encoder out (short runs), so its IFP is the later rise as usual.
    """
    b = np.asarray(beta, dtype=np.float64)
    k = moving_median(np.asarray(kl, dtype=np.float64), window)
    if b.shape != k.shape or b.ndim != 1:
        raise ValueError(f"beta and kl must be 1-D of equal length, got {b.shape} and {k.shape}")
    below = np.nonzero(k <= threshold)[0]
    if len(below) == 0:
        return float(b[0]) if frozen_at_start and len(k) else None
    after = np.nonzero(k[below[0] :] > threshold)[0]
    if len(after) == 0:
        return None
    i = below[0] + after[0]  # first sample above; i-1 is at or below
    k0, k1 = k[i - 1], k[i]
    f = (threshold - k0) / (k1 - k0) if k1 != k0 else 1.0
    return float(b[i - 1] + f * (b[i] - b[i - 1]))


def linear_ifp(images: np.ndarray, binary: bool, pool: int = 1) -> float:
    """β below which the collapsed one-latent VAE is unstable, from linear response: the IFP bound.

    At β above it the optimum encodes nothing; just below it a Gaussian-encoder VAE starts to
    encode the top principal direction of the sweep. Expanding the loss to second order around
    the collapsed decoder output p (the mean image) gives a linear-Gaussian VAE whose latent turns
    on at β_c = λ_max(Σ_w) (Lucas et al. 2019, β-VAE form), with Σ_w the sweep's pixel covariance
    (1/N) whitened by the loss curvature: ``diag(p(1−p))^{-1/2}`` for Bernoulli, ``×2`` for the
    L2 loss on [0, 1] outputs. A trained VAE meets β_c only at equilibrium; its measured IFP
    (lagging behind a falling β) is lower. ``images``: uint8 [N, 64, 64, C].
    """
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).double() / 255.0  # [N, C, 64, 64]
    x = _pool(x, pool).flatten(1).numpy()  # [N, P]
    xc = x - x.mean(0)
    if binary:
        var = x.mean(0) * (1 - x.mean(0))
        live = var > 1e-12  # constant pixels carry no information
        xc = xc[:, live] / np.sqrt(var[live])
    else:
        xc = xc * math.sqrt(2.0)
    gram = xc @ xc.T / len(x)  # [N, N]: same non-zero spectrum as the [P, P] covariance
    return float(np.linalg.eigvalsh(gram)[-1]) if len(x) > 1 else 0.0


def ordering_groups(per_factor: dict[str, Sequence[float | None]], alpha: float = 0.05) -> list[list[str]]:
    """Factors ordered by median IFP (high → low), adjacent ones tied in one group unless a
    two-sided Mann–Whitney U test separates them at ``alpha``. Why: factors whose IFP
    distributions are statistically the same (posX and posY in dSprites) have no stable order;
    a strict ranking of them would flip between seeds. Runs that never froze count as β = 0."""
    from scipy.stats import mannwhitneyu

    vals = {n: np.array([0.0 if v is None else float(v) for v in ifps]) for n, ifps in per_factor.items()}
    names = sorted(vals, key=lambda n: -float(np.median(vals[n])) if len(vals[n]) else 0.0)
    groups: list[list[str]] = []
    for name in names:
        if groups:
            prev = vals[groups[-1][-1]]
            if len(prev) < 2 or len(vals[name]) < 2 or mannwhitneyu(prev, vals[name]).pvalue >= alpha:
                groups[-1].append(name)
                continue
        groups.append([name])
    return groups


def ordering_text(result: dict[str, Any]) -> str:
    """'{posX, posY} > scale > ...' from a result's tie groups (its median ordering for older files)."""
    groups = result.get("ordering_groups") or [[n] for n in result.get("ordering", [])]
    groups = [g for g in groups if g]
    return " > ".join("{" + ", ".join(g) + "}" if len(g) > 1 else g[0] for g in groups)


def ifp_density(ifps: Sequence[float | None], grid: Sequence[float] | np.ndarray) -> np.ndarray:
    """Gaussian KDE of the IFPs on ``grid`` (Silverman bandwidth; None/NaN dropped); integrates to ~1."""
    v = np.asarray([x for x in ifps if x is not None and np.isfinite(x)], dtype=np.float64)
    g = np.asarray(grid, dtype=np.float64)
    if len(v) == 0:
        return np.zeros_like(g)
    std = v.std(ddof=1) if len(v) > 1 else 0.0
    bw = 1.06 * std * len(v) ** (-0.2) if std > 0 else max(0.05 * abs(v.mean()), 0.5)
    z = (g[:, None] - v[None, :]) / bw
    return np.exp(-0.5 * z**2).sum(1) / (len(v) * bw * math.sqrt(2 * math.pi))


def dkl_dbeta_peaks(
    beta: np.ndarray, kl_total: np.ndarray, window: int = 50, rel: float = 0.2
) -> tuple[np.ndarray, list[float]]:
    """Label-free freezing points: −ΔKL/Δβ of the smoothed total KL and the β of its local peaks
    (above ``rel`` × the largest)."""
    b = np.asarray(beta, dtype=np.float64)
    k = moving_median(kl_total, window)
    db = np.diff(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(db != 0, -np.diff(k) / db, 0.0)  # KL gained per unit of β lost (db < 0)
    rate = moving_median(np.nan_to_num(rate), window)
    rate = np.concatenate([rate[:1], rate]) if len(rate) else np.zeros(len(b))
    if not len(rate) or rate.max() <= 0:
        return rate, []
    peaks = []
    top = rate.max()
    for i in range(1, len(rate) - 1):
        if rate[i] >= rel * top and rate[i] >= rate[i - 1] and rate[i] > rate[i + 1]:
            if not peaks or abs(b[i] - peaks[-1]) > 1e-9:
                peaks.append(float(b[i]))
    return rate, peaks


# --- the batched model ----------------------------------------------------------------------
class BatchedVAE(nn.Module):
    """R independent tiny conv VAEs in one module: x [B, R, C, 64, 64] -> logits, μ, ln σ²."""

    def __init__(self, runs: int, channels: int, latent_dim: int = 1, base_channels: int = 8, hidden: int = 64):
        super().__init__()
        r, c, h, d = runs, base_channels, hidden, latent_dim
        self.r, self.ch, self.c, self.d = r, channels, c, d
        self.enc = nn.ModuleList(
            [nn.Conv2d(r * (channels if i == 0 else c), r * c, 4, 2, 1, groups=r) for i in range(4)]
        )
        self.dec = nn.ModuleList(
            [nn.ConvTranspose2d(r * c, r * (channels if i == 3 else c), 4, 2, 1, groups=r) for i in range(4)]
        )
        self.fc = nn.ParameterDict()
        for name, (i, o) in {"e1": (16 * c, h), "e2": (h, 2 * d), "d1": (d, h), "d2": (h, 16 * c)}.items():
            self.fc[name + "_w"] = nn.Parameter(torch.randn(r, i, o) / math.sqrt(i))
            self.fc[name + "_b"] = nn.Parameter(torch.zeros(r, o))

    def _lin(self, x: torch.Tensor, name: str) -> torch.Tensor:
        # x: [B, R, in] -> [B, R, out], one weight matrix per run
        return torch.einsum("bri,rio->bro", x, self.fc[name + "_w"]) + self.fc[name + "_b"]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        h = x.reshape(b, self.r * self.ch, 64, 64)
        for conv in self.enc:
            h = F.relu(conv(h))  # h: [B, R*c, 4, 4] at the end
        h = F.relu(self._lin(h.reshape(b, self.r, 16 * self.c), "e1"))
        out = self._lin(h, "e2")  # [B, R, 2d]
        return out[..., : self.d], out[..., self.d :]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]
        h = F.relu(self._lin(F.relu(self._lin(z, "d1")), "d2"))  # [B, R, 16c]
        h = h.reshape(b, self.r * self.c, 4, 4)
        for i, conv in enumerate(self.dec):
            h = conv(h)
            if i < 3:
                h = F.relu(h)
        return h.reshape(b, self.r, self.ch, 64, 64)

    def losses(
        self, x: torch.Tensor, binary: bool, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, R, C, 64, 64] (mask [B, R]: 1 = real image, 0 = padding) -> (recon [R], KL [R],
        KL per latent [R, d]), means over each run's real images."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        logits = self.decode(z)
        rec = _recon(logits, x, binary).sum((2, 3, 4))  # [B, R]
        kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1)  # [B, R, d]
        if mask is None:
            return rec.mean(0), kl.mean(0).sum(1), kl.mean(0)
        n = mask.sum(0).clamp_min(1)  # [R]
        kl_dim = (kl * mask[..., None]).sum(0) / n[:, None]  # [R, d]
        return (rec * mask).sum(0) / n, kl_dim.sum(1), kl_dim


def _recon(logits: torch.Tensor, x: torch.Tensor, binary: bool) -> torch.Tensor:
    """Per-pixel reconstruction loss: Bernoulli (binary data) or L2 on sigmoid outputs (RGB)."""
    if binary:
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return (torch.sigmoid(logits) - x).pow(2)


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"relu": F.relu, "elu": F.elu, "tanh": torch.tanh}


class BatchedMLPVAE(nn.Module):
    """R independent one-hidden-layer MLP VAEs as batched matmuls (``torch.baddbmm`` over runs).

    Per run: encoder ``D -> hidden`` ReLU ``-> 2d`` (μ, ln σ²); decoder ``d -> hidden`` ReLU
    ``-> D`` logits, with D = C·S·S pixels. Weights are stacked [R, in, out]. Runs with different
    image counts (factors with different |V_k|) are trained full-batch without padding by giving
    each group of equal-length runs its own module (one bmm per group).
    """

    @classmethod
    def from_config(cls, runs: int, pixels: int, cfg: AnnealConfig) -> BatchedMLPVAE:
        """The one way the test builds it: every optimisation field of ``cfg`` applies (factor and label-free)."""
        return cls(runs, pixels, cfg.latent_dim, cfg.hidden, cfg.latent_init, cfg.activation, cfg.antithetic)

    def __init__(
        self,
        runs: int,
        pixels: int,
        latent_dim: int = 1,
        hidden: int = 64,
        latent_init: float = 1.0,
        activation: str = "elu",
        antithetic: bool = True,
    ):
        super().__init__()
        self.r, self.dpix, self.d = runs, pixels, latent_dim
        self.act = ACTIVATIONS[activation]
        self.antithetic = antithetic
        self.w = nn.ParameterDict()
        self.b = nn.ParameterDict()
        for name, (i, o) in {"e1": (pixels, hidden), "e2": (hidden, 2 * latent_dim), "d1": (latent_dim, hidden),
                             "d2": (hidden, pixels)}.items():  # fmt: skip
            bound = 1.0 / math.sqrt(i)  # nn.Linear's default init, per run
            self.w[name] = nn.Parameter(torch.empty(runs, i, o).uniform_(-bound, bound))
            self.b[name] = nn.Parameter(torch.empty(runs, 1, o).uniform_(-bound, bound))
        with torch.no_grad():  # latent_init < 1 damps the decoder's z weights (docs/methods.md#recipes)
            self.w["d1"].mul_(latent_init)

    def _lin(self, x: torch.Tensor, name: str) -> torch.Tensor:
        # x: [R, N, in] -> [R, N, out]; whole parameters, never slices: a slice's backward fills a
        # zero gradient of the full [R, in, out] tensor per use (measured: 26 % of a 64×64 step)
        return torch.baddbmm(self.b[name], x, self.w[name])

    def losses(self, x: torch.Tensor, binary: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [R, N, D] -> (recon [R], KL [R], KL per latent [R, d])."""
        h = self.act(self._lin(x, "e1"))
        out = self._lin(h, "e2")  # [R, N, 2d]
        mu, logvar = out[..., : self.d], out[..., self.d :]
        eps = torch.randn_like(mu)
        if self.antithetic:  # ε and −ε: the gradient noise linear in ε cancels exactly
            eps, mu_s, lv_s, x_s = (
                torch.cat([eps, -eps], 1),
                mu.repeat(1, 2, 1),
                logvar.repeat(1, 2, 1),
                x.repeat(1, 2, 1),
            )
        else:
            mu_s, lv_s, x_s = mu, logvar, x
        z = mu_s + eps * (0.5 * lv_s).exp()
        logits = self._lin(self.act(self._lin(z, "d1")), "d2")  # [R, N (×2), D]
        recon = _recon(logits, x_s, binary).sum(2).mean(1)  # [R]
        kl_dim = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).mean(1)  # [R, d]
        return recon, kl_dim.sum(1), kl_dim


# --- running ---------------------------------------------------------------------------------
def _subsample(n: int, max_points: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, max_points)).round().astype(int))


@contextlib.contextmanager
def _flush_denormals(device: torch.device) -> Iterator[None]:
    """Flush subnormal floats to zero on CPU while annealing (restored after): late in a run (β ≈ 1)
    unused weights and Adam moments decay into subnormals, which made CPU steps several times slower."""
    on = device.type == "cpu" and torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if on:
            torch.set_flush_denormal(False)


StepLosses = Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def _train(
    model: nn.Module,
    step_losses: StepLosses,
    cfg: AnnealConfig,
    device: torch.device,
    seed: int,
    progress: Progress | None,
    stop_event: threading.Event | None,
    label: str,
) -> dict[str, np.ndarray] | None:
    """Anneal β over cfg.steps; returns per-step β [T], recon [T, R], KL [T, R], KL per latent [T, R, d]."""
    gen = torch.Generator(device=device).manual_seed(seed)
    # fused Adam: one kernel per tensor instead of ~10 elementwise passes (sqrt/div were 25 % of a step)
    try:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=device.type in ("cpu", "cuda"))
    except (RuntimeError, TypeError):
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    beta_max = REFERENCE_BETA_MAX if cfg.beta_max is None else cfg.beta_max  # run_annealing resolves None first
    betas = beta_schedule(np.arange(cfg.steps), cfg.steps, cfg.schedule, beta_max, cfg.gamma)
    # history preallocated once: appending T small tensors interleaved with each step's large
    # temporaries fragmented the CPU heap (RSS grew ~1 MB/step, 9.5 GB for a 5×8-base run)
    hist_t: dict[str, torch.Tensor] = {}
    total = cfg.warmup + cfg.steps
    report_every = max(total // 100, 1)
    with _flush_denormals(device):
        for i in range(total):
            if stop_event is not None and stop_event.is_set():
                return None
            t = max(i - cfg.warmup, 0)
            recon, kl, kl_dim = step_losses(gen)  # [R], [R], [R, d]
            loss = (recon + float(betas[t]) * kl).sum()  # runs share no parameters: sum = independent runs
            if not torch.isfinite(loss):
                raise TrainingError(f"annealing diverged at step {t} (non-finite loss); try a smaller --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i >= cfg.warmup:
                for key, value in (("recon", recon), ("kl", kl), ("kl_dim", kl_dim)):
                    if key not in hist_t:
                        hist_t[key] = torch.empty(cfg.steps, *value.shape, device=value.device)  # [T, R(, d)]
                    hist_t[key][t] = value.detach()
            if progress is not None and (i % report_every == 0 or i == total - 1):
                phase = "warm-up" if i < cfg.warmup else "anneal"
                progress((i + 1) / total, f"{label}: {phase} step {i + 1}/{total}, β={betas[t]:.2f}")
    return {"beta": betas, **{key: value.cpu().numpy() for key, value in hist_t.items()}}


def _pool(x: torch.Tensor, k: int) -> torch.Tensor:
    """x [N, C, 64, 64] -> [N, C, 64/k, 64/k] by k×k average pooling (k = 1: unchanged)."""
    return x if k == 1 else F.avg_pool2d(x, k)


def _factor_model(
    sweeps: list[np.ndarray], cfg: AnnealConfig, c: int, binary: bool, dev: torch.device
) -> tuple[nn.Module, StepLosses]:
    """One vectorised model for all runs (one per sweep, uint8 [N_r, 64, 64, C]) and its step closure.

    Full batch (``batch_size=None``): every step sees each run's own |V_k| images exactly once.
    The MLP groups contiguous runs of equal length (one bmm per group, no padding); the conv
    backbone pads to the longest sweep and masks the padding out of the means. With an int
    ``batch_size`` each run samples that many of its images with replacement (the reference's 64).
    """
    r, lens = len(sweeps), [len(im) for im in sweeps]
    to_t = lambda im: _pool(torch.from_numpy(im).to(dev).permute(0, 3, 1, 2).float() / 255.0, cfg.pool)  # noqa: E731
    data = [to_t(im) for im in sweeps]  # [N_r, C, S, S] each
    n_max = max(lens)
    padded = torch.zeros(r, n_max, *data[0].shape[1:], device=dev)  # [R, Nmax, C, S, S]
    mask = torch.zeros(r, n_max, device=dev)
    for i, x in enumerate(data):
        padded[i, : len(x)], mask[i, : len(x)] = x, 1.0
    length = torch.tensor(lens, device=dev, dtype=torch.float32)
    rows = torch.arange(r, device=dev)[:, None]

    def sample(g: torch.Generator) -> torch.Tensor:
        idx = (torch.rand(r, cfg.batch_size, generator=g, device=dev) * length[:, None]).long()  # [R, B]
        return padded[rows, idx]  # [R, B, C, S, S]

    if cfg.arch == "mlp":
        pixels = padded[0, 0].numel()
        if cfg.batch_size is not None:
            mlp = BatchedMLPVAE.from_config(r, pixels, cfg).to(dev)
            return mlp, lambda g: mlp.losses(sample(g).flatten(2), binary)
        groups: list[torch.Tensor] = []
        start = 0
        for i in range(1, r + 1):
            if i == r or lens[i] != lens[start]:
                groups.append(torch.stack(data[start:i]).flatten(2))  # [R_g, N, D]
                start = i
        mlps = nn.ModuleList(BatchedMLPVAE.from_config(len(x), pixels, cfg) for x in groups).to(dev)

        def full(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            parts = [m.losses(x, binary) for m, x in zip(mlps, groups, strict=True)]
            return tuple(torch.cat(p) for p in zip(*parts))  # type: ignore[return-value]

        return mlps, full
    conv = BatchedVAE(r, c, cfg.latent_dim, cfg.base_channels, cfg.hidden).to(dev)
    if cfg.batch_size is not None:
        return conv, lambda g: conv.losses(sample(g).transpose(0, 1), binary)
    x_all, m_all = padded.transpose(0, 1).contiguous(), mask.t().contiguous()  # [Nmax, R, ...], [Nmax, R]
    return conv, lambda g: conv.losses(x_all, binary, m_all)


def resolve_factors(ds: GroundTruthDataset, factors: Sequence[str] | None) -> list[str]:
    """The factors to anneal: ``factors`` checked against ``ds`` (clear errors), or every varying one."""
    names = list(ds.factor_names)
    if not factors:
        return [n for n, s in zip(names, ds.factor_sizes) if s > 1]
    bad = [f for f in factors if f not in names]
    if bad:
        raise DatasetError(f"unknown factor(s) {bad} for {ds.name}; choose from: {', '.join(names)}")
    small = [f for f in factors if ds.factor_sizes[names.index(f)] < 2]
    if small:
        raise DatasetError(f"factor(s) {small} take a single value in {ds.name}; nothing to anneal")
    return list(factors)


def _summary(values: list[float | None]) -> dict[str, Any]:
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    stat = lambda f: float(f(v)) if len(v) else None  # noqa: E731
    return {
        "ifps": values,
        "n": len(values),
        "n_frozen": int(len(v)),
        "median": stat(np.median),
        "mean": stat(np.mean),
        "std": stat(np.std),
        "min": stat(np.min),
        "max": stat(np.max),
    }


def check_anneal_runs(bases: int, n_factors: int, sweep_len: int, channels: int, cfg: AnnealConfig) -> None:
    """Refuse factors × bases runs that cannot fit, before any sweep is rendered: each run holds its
    sweep as float copies (data, padded batch, activations) and its own MLP with Adam state."""
    pixels = channels * (64 // cfg.pool) ** 2
    per_run = max(sweep_len, cfg.batch_size or 0) * pixels * 4 * 4 + pixels * cfg.hidden * 2 * 4 * 4
    check_count(
        bases,
        "--bases",
        maximum=max(1, MAX_ANNEAL_RUNS // max(n_factors, 1)),
        bytes_each=n_factors * per_run,
        unit=f"bases ({n_factors} factors each: at most {MAX_ANNEAL_RUNS:,} runs)",
    )


def run_annealing(
    dataset: GroundTruthDataset | str,
    factors: Sequence[str] | None = None,
    bases: int = 8,
    steps: int | None = None,
    seed: int = 0,
    schedule: str = "exp",
    label_free: bool = False,
    device: str = "auto",
    out: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    stop_event: threading.Event | None = None,
    recipe: str = "equilibrium",
    **config: Any,
) -> dict[str, Any] | None:
    """Run the annealing test and return the result dict (also written atomically to ``out``).

    Returns None (and writes nothing) when ``stop_event`` is set before the end. ``recipe`` picks
    the optimisation recipe (docs/methods.md#recipes); ``config`` overrides single AnnealConfig fields.
    """
    if isinstance(dataset, str):
        from disviz.data import load_dataset

        dataset = load_dataset(dataset)
    cfg = AnnealConfig.for_recipe(recipe, schedule=schedule, **{k: v for k, v in config.items() if v is not None})
    if steps is not None:
        cfg.steps = int(steps)
    if label_free and "latent_dim" not in config:
        cfg.latent_dim = 10
    cfg.validate()
    check_seed(seed)
    check_count(bases, "--bases", maximum=MAX_ANNEAL_RUNS, bytes_each=0, unit="bases")
    if cfg.batch_size is not None:  # the per-run batch (label-free: the one batch) the sampler allocates
        check_batch(cfg.batch_size, int(dataset.channels))
    dev = pick_device(device)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    ds = dataset
    c = int(ds.channels)
    plan: list[tuple[str, list[int], np.ndarray]] = []
    names: list[str] = []
    bounds: list[float] = []
    if not label_free:
        names = resolve_factors(ds, factors)
        check_anneal_runs(bases, len(names), max(ds.factor_sizes[ds.factor_names.index(n)] for n in names), c, cfg)
        rng = np.random.default_rng(seed)
        for name in names:
            for base in ds.sample_factors(bases, rng):
                plan.append((name, [int(v) for v in base], ds.images(ds.sweep(name, base))))
        bounds = [linear_ifp(im, ds.binary, cfg.pool) for _, _, im in plan]
    note = "set by the caller"
    if cfg.beta_max is None:
        cfg.beta_max, note = auto_beta_max(bounds)
    settings = {
        "dataset": ds.name,
        "dataset_options": dict(getattr(ds, "options", {}) or {}),
        "seed": seed,
        "device": str(dev),
        "label_free": label_free,
        **{k: v for k, v in asdict(cfg).items() if k != "extra"},
        "beta_max_note": note,
        "scale": likelihood_scale(cfg.pool, c, ds.binary),
    }

    if label_free:
        sampler = iter(ds.batch_sampler(cfg.batch_size or 64, dev, seed))  # [B, C, 64, 64]
        if cfg.arch == "mlp":
            model: nn.Module = BatchedMLPVAE.from_config(1, c * (64 // cfg.pool) ** 2, cfg).to(dev)
            step = lambda g: model.losses(_pool(next(sampler), cfg.pool).flatten(1)[None], ds.binary)  # noqa: E731
        else:
            model = BatchedVAE(1, c, cfg.latent_dim, cfg.base_channels, cfg.hidden).to(dev)
            step = lambda g: model.losses(next(sampler)[:, None], ds.binary)  # noqa: E731
        hist = _train(model, step, cfg, dev, seed, progress, stop_event, "label-free")
        if hist is None:
            return None
        keep = _subsample(cfg.steps, cfg.max_points)
        beta, kl_dim = hist["beta"], hist["kl_dim"][:, 0, :]  # [T, d]
        total = kl_dim.sum(1)
        rate, peaks = dkl_dbeta_peaks(beta, total, cfg.window)
        latent_ifps = [
            find_ifp(beta, kl_dim[:, j], cfg.threshold, cfg.window, cfg.warmup > 0) for j in range(cfg.latent_dim)
        ]
        runs = [
            {
                "factor": f"latent {j}",
                "base": None,
                "beta": beta[keep].tolist(),
                "kl": kl_dim[keep, j].tolist(),
                "recon": hist["recon"][keep, 0].tolist(),
                "ifp": latent_ifps[j],
            }
            for j in range(cfg.latent_dim)
        ]
        result: dict[str, Any] = {
            "mode": "label_free",
            "runs": runs,
            "label_free": {
                "beta": beta[keep].tolist(),
                "kl_total": total[keep].tolist(),
                "dkl_dbeta": rate[keep].tolist(),
                "peaks": peaks,
                "latent_ifps": latent_ifps,
            },
            "factors": {},
        }
    else:
        model, step = _factor_model([im for _, _, im in plan], cfg, c, ds.binary, dev)
        hist = _train(model, step, cfg, dev, seed, progress, stop_event, f"{len(names)} factors x {bases} bases")
        if hist is None:
            return None
        runs = []
        for i, (name, base, im) in enumerate(plan):
            beta, kl, rec = hist["beta"], hist["kl"][:, i], hist["recon"][:, i]
            end = len(beta)
            if cfg.stop_recon is not None:
                hit = np.nonzero(rec < cfg.stop_recon)[0]
                end = int(hit[0]) + 1 if len(hit) else end
            keep = _subsample(end, cfg.max_points)
            runs.append(
                {
                    "factor": name,
                    "base": base,
                    "n_images": len(im),
                    "ifp": find_ifp(beta[:end], kl[:end], cfg.threshold, cfg.window, cfg.warmup > 0),
                    "linear_ifp": bounds[i],
                    "step": keep.tolist(),
                    "beta": beta[keep].tolist(),
                    "kl": kl[keep].tolist(),
                    "recon": rec[keep].tolist(),
                }
            )
        per = {name: _summary([run["ifp"] for run in runs if run["factor"] == name]) for name in names}
        order = sorted(names, key=lambda n: -(per[n]["median"] if per[n]["median"] is not None else -1.0))
        for name in names:
            per[name]["linear_median"] = float(np.median([r["linear_ifp"] for r in runs if r["factor"] == name]))
        groups = ordering_groups({n: per[n]["ifps"] for n in names})
        result = {"mode": "factors", "runs": runs, "factors": per, "ordering": order, "ordering_groups": groups}
    result = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "settings": settings,
        "threshold": cfg.threshold,
        **result,
        "elapsed_s": round(time.perf_counter() - t0, 3),
    }
    if out is not None:
        save_annealing_result(out, result)
    return result


def likelihood_scale(pool: int, channels: int, binary: bool) -> str:
    """Human-readable likelihood scale of a result: what its βs are measured against."""
    side = 64 // max(int(pool), 1)
    loss = "Bernoulli" if binary else "L2"
    return f"{side}×{side}, {loss} summed over {side * side * channels:,} values" + (
        "" if pool == 1 else f" (pooled {pool}×{pool}: IFPs ≈ {pool * pool}× below the 64×64 models' scale)"
    )


def deft_stage_comparison(result: dict[str, Any], thresholds: Sequence[float]) -> dict[str, Any]:
    """Where each factor's median IFP falls between DEFT's β thresholds, and whether the thresholds
    separate the result's factor families. Computed from the result, never assumed.

    DEFT's stage k runs while β is in (thresholds[k], thresholds[k-1]] (stage 0: above thresholds[0]);
    a factor whose IFP lies in that band can freeze into stage k's group. The thresholds *agree*
    with the test when every tie group of the ordering (factors the test cannot separate) lies in
    one stage and different groups lie in different stages. ``comparable`` is False for results on
    a pooled scale, whose IFPs are ≈ pool² below DEFT's 64×64 βs.
    """
    settings = result.get("settings") or {}
    pool = int(settings.get("pool") or 1)
    th = sorted((float(b) for b in thresholds), reverse=True)
    stage_of: dict[str, int] = {}
    rows = []
    for name, group in (result.get("factors") or {}).items():
        med = group.get("median") if isinstance(group, dict) else None
        if med is None:
            continue
        stage_of[name] = sum(1 for b in th if float(med) <= b)
        rows.append({"factor": name, "median IFP": float(med), "DEFT stage": stage_of[name]})
    rows.sort(key=lambda r: -r["median IFP"])
    stages = {k: [r["factor"] for r in rows if r["DEFT stage"] == k] for k in range(len(th) + 1)}
    groups = [[n for n in g if n in stage_of] for g in result.get("ordering_groups") or [[r["factor"]] for r in rows]]
    groups = [g for g in groups if g]
    group_stages = [{stage_of[n] for n in g} for g in groups]
    agree = all(len(gs) == 1 for gs in group_stages) and len({min(gs) for gs in group_stages}) == len(groups)

    def band(k: int) -> str:
        return f"β > {th[0]:g}" if k == 0 else f"{th[k - 1]:g} ≥ β" + (f" > {th[k]:g}" if k < len(th) else "")

    bands = "; ".join(f"stage {k} ({band(k)}): {', '.join(v) or 'no factor'}" for k, v in stages.items())
    if pool != 1:
        text = f"not comparable: these IFPs are {pool}×{pool}-pooled, ≈ {pool * pool}× below DEFT's 64×64 βs"
    elif not rows:
        text = "no factor froze; nothing to compare"
    elif len(groups) < 2 and agree:  # one family in one stage: nothing to separate
        agree = None
        text = (
            f"this result does not separate the factors at all (one tie group), so it can neither support nor "
            f"contradict DEFT's thresholds — {bands}"
        )
    elif agree:
        text = f"DEFT's thresholds separate the factor families of this test, one per stage — {bands}"
    else:
        text = (
            f"DEFT's thresholds do NOT separate the factor families of this test on the 64×64 scale — {bands}. "
            "The authors set the thresholds; this test places the freezing points elsewhere."
        )
    return {
        "scale": settings.get("scale") or f"{64 // pool}×{64 // pool} (older result without a recorded scale)",
        "comparable": pool == 1,
        "agree": bool(agree) if pool == 1 and rows and agree is not None else None,
        "rows": rows,
        "stages": stages,
        "text": text,
    }


# --- files -----------------------------------------------------------------------------------
def save_annealing_result(path: str | os.PathLike[str], result: dict[str, Any]) -> Path:
    """Write JSON atomically (``outputs.atomic_write``): readers never see a half-written file."""
    from disviz.core.outputs import atomic_write

    return atomic_write(path, json.dumps(result, allow_nan=False))


def load_annealing_result(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate an annealing result JSON; clear errors for missing/malformed files."""
    from disviz.core.outputs import check_path_length

    p = check_path_length(path, "annealing result", error=AnnealingResultError)
    if not p.is_file():
        raise AnnealingResultError(f"{p}: no such annealing result file; create one with `python -m disviz anneal`")
    try:
        data = json.loads(read_text_bounded(p, "annealing result"))
    except LimitError as exc:
        raise AnnealingResultError(str(exc)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnnealingResultError(f"{p}: not valid JSON ({exc}); re-run `python -m disviz anneal`") from None
    fix = "re-run `python -m disviz anneal` to regenerate it"
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise AnnealingResultError(f"{p}: not a disviz annealing result (format != {FORMAT!r}); {fix}")
    if data.get("format_version") != FORMAT_VERSION:
        raise AnnealingResultError(f"{p}: unsupported format_version {data.get('format_version')!r}; {fix}")
    for key, typ in (("settings", dict), ("runs", list), ("factors", dict), ("threshold", (int, float))):
        if not isinstance(data.get(key), typ):
            raise AnnealingResultError(f"{p}: missing or malformed {key!r}; {fix}")
    for key, kinds in _SETTINGS_TYPES.items():
        value = data["settings"].get(key)
        if value is not None and not _typed(value, kinds):
            raise AnnealingResultError(
                f"{p}: settings.{key} must be {' or '.join(kinds)}, found {type(value).__name__} {value!r}; {fix}"
            )
    for key, kinds in (
        ("mode", ("str",)),
        ("ordering", ("names",)),
        ("label_free", ("dict",)),
        ("elapsed_s", ("number",)),
    ):
        if data.get(key) is not None and not _typed(data[key], kinds):
            raise AnnealingResultError(f"{p}: {key!r} must be {' or '.join(kinds)}; {fix}")
    if not _is_number(data["threshold"]) or not data["threshold"] > 0:
        raise AnnealingResultError(f"{p}: 'threshold' must be a finite number > 0, found {data['threshold']!r}; {fix}")
    for i, run in enumerate(data["runs"]):
        ok = isinstance(run, dict) and isinstance(run.get("factor"), str)
        ok = ok and _numbers(run.get("beta")) and _numbers(run.get("kl"))
        ok = ok and len(run["beta"]) == len(run["kl"])
        ok = ok and (run.get("ifp") is None or _is_number(run.get("ifp")))
        ok = ok and (run.get("recon") is None or _numbers(run.get("recon")))
        if not ok:
            raise AnnealingResultError(
                f"{p}: run {i} is malformed (needs a factor name, beta and kl as equal-length lists of numbers, "
                f"ifp a number or null); {fix}"
            )
    for name, group in data["factors"].items():
        if not isinstance(group, dict) or not isinstance(group.get("ifps"), list):
            raise AnnealingResultError(f"{p}: factor {name!r} has no 'ifps' list; {fix}")
        if not all(v is None or _is_number(v) for v in group["ifps"]):
            raise AnnealingResultError(f"{p}: factor {name!r}: 'ifps' must hold numbers or null; {fix}")
        for key in ("median", "mean", "std", "min", "max", "linear_median"):
            if group.get(key) is not None and not _is_number(group[key]):
                raise AnnealingResultError(f"{p}: factor {name!r}: {key!r} must be a number or null; {fix}")
    groups = data.get("ordering_groups")
    if groups is not None and not (
        isinstance(groups, list)
        and all(isinstance(g, list) and g and all(isinstance(n, str) for n in g) for g in groups)
    ):
        raise AnnealingResultError(f"{p}: 'ordering_groups' must be a list of lists of factor names; {fix}")
    return data


# the type of every settings entry a page or the CLI reads (absent or null is allowed: older results)
_SETTINGS_TYPES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        ("dataset", "device", "recipe", "schedule", "arch", "activation", "beta_max_note", "scale"), ("str",)
    ),
    **dict.fromkeys(("label_free", "antithetic"), ("bool",)),
    **dict.fromkeys(
        (
            "seed",
            "steps",
            "window",
            "batch_size",
            "hidden",
            "base_channels",
            "pool",
            "latent_dim",
            "warmup",
            "max_points",
        ),
        ("int",),
    ),
    **dict.fromkeys(("gamma", "threshold", "lr", "latent_init", "beta_max", "stop_recon"), ("number",)),
    "dataset_options": ("dict",),
}


def _typed(value: Any, kinds: tuple[str, ...]) -> bool:
    checks = {
        "str": lambda v: isinstance(v, str),
        "bool": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": _is_number,
        "dict": lambda v: isinstance(v, dict),
        "names": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    }
    return any(checks[k](value) for k in kinds)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _numbers(v: Any) -> bool:
    return isinstance(v, list) and all(_is_number(x) for x in v)


# --- result paths and DEFT's thresholds -------------------------------------------------------
def recipe_out_path(out: str | os.PathLike[str], recipe: str) -> Path:
    """Where ``anneal --recipe both`` writes the reference-recipe twin of ``out``."""
    out = Path(out)
    return out if recipe == "equilibrium" else out.with_name(f"{out.stem}_{recipe}{out.suffix or '.json'}")


def check_result_path(path: str | os.PathLike[str]) -> Path:
    """Fail before a long run, not after it, when the result could not be written there."""
    from disviz.core.outputs import check_output, check_overwrite

    out = check_output(path, "file", (".json",))
    check_overwrite(out, _is_annealing_result, "an annealing result")
    return out


def _is_annealing_result(path: Path) -> bool:
    try:
        data = json.loads(read_text_bounded(path, "annealing result"))
    except (OSError, ValueError, LimitError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT


def deft_thresholds(dataset: str, checkpoints: str | os.PathLike[str] = "checkpoints") -> tuple[tuple[float, ...], str]:
    """DEFT's β thresholds for ``dataset`` and where they come from: the shipped DEFT checkpoint's
    card when there is one (``checkpoints/<dataset>/deft``), else DEFT's config defaults; ((), reason)
    when neither is known."""
    card_file = Path(checkpoints) / dataset / "deft" / "card.json"
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        betas = json.loads(card_file.read_text(encoding="utf-8"))["config"]["betas"]
        if isinstance(betas, list) and betas and all(isinstance(b, (int, float)) for b in betas):
            return tuple(float(b) for b in betas), f"the shipped {dataset}/deft checkpoint's card"
    from disviz.data import load_dataset
    from disviz.models.deft import DEFTConfig

    try:
        info = load_dataset(dataset).info()
    except UserError as exc:
        return (), f"unknown dataset ({exc})"
    return tuple(DEFTConfig.for_dataset(info).betas), "DEFT's defaults for this dataset"
