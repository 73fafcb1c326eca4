"""DiD: Disentanglement in Difference (Zhang, Liu, Lu, Pang, Wang, Yang, arXiv 2502.03123, 2025).
docs/methods.md#did. There is no public code and we had only the abstract and third-party summaries, so
everything beyond the known parts is an interpretation [I], each one a config option.

Known [P]: a generator G with a WGAN-GP critic D; a *samples encoder* E trained on generated
images so that E(G(c)) ≈ c (it is the representation); a *difference encoder* H over pairs of
generated images obtained by perturbing c along dimension i or along j ≠ i, with the
inter-dimension loss L_H = −‖H(x, x′) − H(x, x″)‖². No factor labels: real data is only ever
seen by the critic.

Interpretations [I] (the config field is named in brackets):

1. Code prior c ~ U(−1, 1)^d, d = 5 (``latent_dim``; one code per ground-truth factor, item 11), plus
   ``noise_dim`` unregularised U(−1, 1) inputs of G (default 0; E never regresses them and the app's
   decode holds them at 0). G is a DCGAN-64 generator (``arch='dcgan'``:
   dense → 4×4 → four k4 s2 transposed convs with BatchNorm + ReLU, width 2·``base_channels`` = 64 as
   DCGAN's ngf) or the §0 decoder (``arch='conv'``); it outputs logits, the image is their sigmoid.
   The critic mirrors it (four k4 s2 convs, LeakyReLU 0.2, no normalisation because the gradient
   penalty is per sample; ``arch='conv'``: the §0 encoder with one output). E is the §0 conv encoder
   (linear output, not squashed, so it can regress c) with LeakyReLU 0.2 (``encoder_slope``); H
   (``DifferenceEncoder``) is the same encoder applied to both images of a pair, H(x, x′) =
   normalise(f(x′) − f(x)) (``diff_input='subtract'``; 'concat' = the §0 encoder over [x, x′]),
   output dimension ``diff_dim``.
2. WGAN-GP as in Gulrajani et al.: λ = 10 (``gp_weight``), ``n_critic`` = 5 critic iterations per
   generator iteration, Adam 1e-4, β = (0.5, 0.9) for every network (``adam_betas``).
3. One engine step = one generator iteration. ``train_step`` gets ``batch_size`` real images and
   (``critic_data='split'``, default) splits them into ``n_critic`` chunks, one fresh real batch
   per critic iteration as in WGAN-GP; the default ``batch_size`` 320 = 5 × 64 gives the usual
   64 per critic iteration, and the generator batch equals the chunk size. ``critic_data='reuse'``
   lets every critic iteration see the whole batch (fewer real images per step).
4. Pairs: for each base code c, a dimension i is drawn uniformly and j uniformly among the other
   d − 1; c′ = c + δ e_i and c″ = c + δ′ e_j with |δ| ~ U[``delta_min``, ``delta_max``] = U[0.5, 1]
   and a random sign. ``boundary='flip'`` (default) flips the sign when c + δ e_i would leave the
   box, which always lands inside because |δ| ≤ 1, so every perturbation keeps its drawn size;
   ``boundary='clip'`` clips to [−1, 1] (the perturbation can then shrink). Both clamp at the end.
5. Difference loss (``diff_loss``). ``'infonce'`` (default) is a "same dimension is positive"
   contrastive loss as in DisCo (Ren et al. 2022), the abstract's "contrastive loss function ...
   to facilitate inter-dimensional comparison": a second pair along the same i from a fresh base
   code gives the positive v; the keys are all v and all w of the batch, and every key whose
   dimension equals i is a positive of anchor u (multi-positive InfoNCE at ``temperature``).
   ``'literal'`` is the stated bounded form L_H = −‖u − w‖² ∈ [−4, 0] (u = H(x, x′), w = H(x, x″),
   unit vectors). It was the first default and was measured inert: its gradient −2(u − w) is
   zero where H maps both pairs to the same vector, which is where training starts, and the first
   shipped run logged −0.000 at every step; it is kept as an option.
6. How the difference signal shapes G (the "maximising inter-factor differences" part): G is
   trained on ``−D(G(c)) + info_weight·‖E(G(c)) − c‖² + diff_weight·L_H``; the L_H gradient flows
   through H into G, so G learns to make a move along dimension i produce an image difference that
   H can tell apart from a move along j. The info term (InfoGAN-style) makes every dimension of c
   recoverable from the image. Its weight is 200 in the QLInfoWGAN-GP code (docs/methods.md#did, item 6), whose
   codes lie in about ±0.5 (variance 1/12); c ~ U(−1, 1) has 4× that variance, so the same weight
   would be 4× stronger and drown the critic's signal: ``info_weight`` = 50 keeps its scale.
   Setting ``info_weight=0`` / ``diff_weight=0`` stops that gradient reaching G (E and H are then
   trained on detached images), which gives the ablations.
7. E is trained only on codes drawn from the prior (not on the perturbed ones): in the generator
   iteration (the info term) and, with ``encoder_with_critic`` (default), also on the fakes of every
   critic iteration, as QLInfoWGAN-GP trains its encoder with the critic (docs/methods.md#did, item 7). H and E
   have their own Adam. Pairs are shown to H ordered so that the moved coordinate increases.
8. Output logits are softly bounded, l ↦ b·tanh(l/b) with b = ``logit_bound`` = 8 (sigmoid
   3·10⁻⁴ … 0.9997, enough for binary sprites). The first shipped run (``arch='conv'``, no
   normalisation) drove its logits to about −128 against the early critic (dSprites is ~95 %
   black), where the sigmoid's gradient vanishes for every network; the DCGAN generator's
   BatchNorm is the main cure, the bound keeps a way back.
9. What made DiD learn, measured on the toy of ``tests/test_did.py`` (2 or 10 code dimensions,
   tiny widths): G(c) carried c (ridge R² 0.99 from its pixels) while E(G(c)) had R² 0.00: E's
   ReLUs had died on the near-constant early generator output (E's output std 1e-5). LeakyReLU in
   E and H, and E's extra updates in the critic iterations, fixed it (R² ≥ 0.9 within 50–150
   iterations). With 'concat' H every pair mapped to nearly one vector and the InfoNCE loss sat at
   ln(keys) for 100 iterations; 'subtract' with ordered pairs falls from the first iterations.
   ``lr`` = 5e-4 (β = (0.5, 0.9)) [I]: WGAN-GP's 1e-4 is slow for the CPU budget of the shipped
   runs; the toy test uses 1e-3.
10. ``steps`` counts generator iterations (200k [I], as the QLInfoWGAN-GP code); the engine's
   images/s counts real images, i.e. those the critic sees. The shared fields ``recon`` and
   ``reduction`` are unused: DiD has no reconstruction loss (``reconstruct`` is G(E(x))).

11. Disentanglement (issue 33), measured on ``toy_squares`` (one square, scale × posX × posY) by the
   MIG of E on *real* images, 600 steps at the shipped widths (docs/methods.md#did has the table):
   the contrastive loss sits at its floor ln(#positives) from the first hundred steps, i.e. H tells
   the codes apart whatever each code does, so it does not by itself tie a code to a factor; with 10
   codes for 3 factors every factor is spread over many codes (E(real) predicts position with
   kNN R² 0.95 but MIG 0.009). As many codes as factors gave the best toy MIG (0.058); extra noise
   inputs (``noise_dim``, InfoGAN-CR), InfoGAN-CR's pairs that *share* one code (``pairs='share'``,
   H symmetric), small shifts (``delta_min``/``delta_max`` 0.1–0.3), a late or ramped difference
   term (``diff_schedule``, ``diff_start``), an entropy term that puts each difference on one H axis
   (``diff_entropy``) and a spectrally normalised critic (``critic_spectral_norm``) are options.

Interface: ``encode(x)`` = E(x) (``representation = 'samples-encoder'``), ``decode(z)`` = G(z)
logits, so app traversals decode through the generator; latent specs are 'uniform' in [−1, 1].
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from disviz.data.base import DatasetInfo
from disviz.models.backbone import ConvDecoder, ConvEncoder
from disviz.models.base import ConfigError, DisentangledModel, LatentSpec, ModelConfig

PRIOR_VARIANCE = 1.0 / 3.0  # of c ~ U(−1, 1)

__all__ = [
    "DiD", "DiDConfig", "DifferenceEncoder", "axis_entropy", "gradient_penalty", "info_nce", "perturb", "sample_pairs",
]  # fmt: skip


@dataclass
class DiDConfig(ModelConfig):
    """Proposed defaults of docs/methods.md#did (see the module docstring for every [I] choice)."""

    latent_dim: int = 5  # one code per factor (dSprites' 5; InfoGAN-CR's 5 codes): measured on the toy, item 11
    lr: float = 5e-4  # WGAN-GP used 1e-4; measured too slow here (module docstring, item 9)
    adam_betas: tuple[float, ...] = (0.5, 0.9)
    batch_size: int = 320  # real images per step: n_critic chunks of 64
    steps: int = 200_000  # generator iterations
    arch: str = "dcgan"
    n_critic: int = 5
    gp_weight: float = 10.0
    critic_data: str = "split"
    info_weight: float = 50.0  # 200 of the ±0.5-code setting, scaled by its 4× larger code variance
    diff_weight: float = 1.0
    diff_loss: str = "infonce"  # the abstract's "contrastive loss"; 'literal' (−‖u−w‖²) is inert at the start
    diff_input: str = "subtract"  # H(x, x′) = normalise(f(x′) − f(x)); 'concat': §0 encoder over [x, x′]
    encoder_with_critic: bool = True  # E also regresses c on every critic iteration's fakes (QLInfoWGAN-GP)
    encoder_slope: float = 0.2  # LeakyReLU slope in E and H (0: the §0 ReLU, which dies on early G output)
    logit_bound: float = 8.0  # G's logits l -> b·tanh(l/b): no runaway to −128 (0: unbounded)
    diff_dim: int = 32
    temperature: float = 0.1
    noise_dim: int = 0  # unregularised G inputs beside the codes (InfoGAN-CR: 5 codes + 5 noise); E ignores them
    pairs: str = "shift"  # 'shift': c′ moves c along i; 'share': c′ keeps c_i, resamples the rest (InfoGAN-CR)
    diff_schedule: str = "constant"  # 'late': diff weight 0 until diff_start·steps; 'ramp': linear up to it
    diff_start: float = 0.5  # fraction of ``steps`` where 'late' switches on / 'ramp' reaches full weight
    diff_entropy: float = 0.0  # weight of the entropy of H's squared components (one H axis per difference)
    critic_spectral_norm: bool = False  # spectral normalisation of every critic layer (InfoGAN-CR)
    delta_min: float = 0.5
    delta_max: float = 1.0
    boundary: str = "flip"
    collapse_warmup: int = 200  # generator iterations before the collapse guard speaks
    collapse_std: float = 0.01  # mean per-pixel std of G(c) across codes below which G has collapsed

    def validate(self) -> None:
        super().validate()
        if self.arch not in ("dcgan", "conv"):
            raise ConfigError(f"arch={self.arch!r}: use dcgan (DCGAN-64 generator/critic) or conv (§0 backbone)")
        if self.latent_dim < 2:
            raise ConfigError(f"latent_dim={self.latent_dim}: DiD needs at least 2 dimensions (pairs along i and j≠i)")
        if not isinstance(self.n_critic, int) or self.n_critic < 1:
            raise ConfigError(f"n_critic={self.n_critic!r} must be a positive integer")
        if self.critic_data not in ("split", "reuse"):
            raise ConfigError(f"critic_data={self.critic_data!r}: use split (a chunk per critic step) or reuse")
        if self.critic_data == "split" and self.batch_size < 2 * self.n_critic:
            raise ConfigError(
                f"batch_size={self.batch_size} is too small to split into n_critic={self.n_critic} chunks of "
                f"at least 2; use batch_size >= {2 * self.n_critic} (default 320 = 5 × 64) or critic_data=reuse"
            )
        if self.critic_data == "reuse" and self.batch_size < 2:
            raise ConfigError(f"batch_size={self.batch_size} must be at least 2")
        if self.diff_loss not in ("literal", "infonce"):
            raise ConfigError(f"diff_loss={self.diff_loss!r}: use literal (−‖H(x,x′)−H(x,x″)‖²) or infonce")
        if self.boundary not in ("flip", "clip"):
            raise ConfigError(f"boundary={self.boundary!r}: use flip (keep |δ|) or clip (clip to [−1, 1])")
        if not 0 < self.delta_min <= self.delta_max <= 1:
            raise ConfigError(
                f"delta_min={self.delta_min}, delta_max={self.delta_max}: need 0 < delta_min <= delta_max <= 1"
            )
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ConfigError(f"adam_betas={self.adam_betas!r} must be two values in [0, 1)")
        for key in ("gp_weight", "info_weight", "diff_weight"):
            if not getattr(self, key) >= 0:
                raise ConfigError(f"{key}={getattr(self, key)} must be >= 0")
        if not self.logit_bound >= 0:
            raise ConfigError(f"logit_bound={self.logit_bound} must be >= 0 (0 turns the bound off)")
        if self.diff_input not in ("subtract", "concat"):
            raise ConfigError(f"diff_input={self.diff_input!r}: use subtract (f(x′) − f(x)) or concat ([x, x′])")
        if not 0 <= self.encoder_slope < 1:
            raise ConfigError(f"encoder_slope={self.encoder_slope} must be in [0, 1) (0: plain ReLU)")
        if not self.temperature > 0:
            raise ConfigError(f"temperature={self.temperature} must be > 0")
        if self.diff_dim < 1:
            raise ConfigError(f"diff_dim={self.diff_dim} must be a positive integer")
        if not isinstance(self.noise_dim, int) or self.noise_dim < 0:
            raise ConfigError(f"noise_dim={self.noise_dim!r} must be an integer >= 0")
        if self.pairs not in ("shift", "share"):
            raise ConfigError(
                f"pairs={self.pairs!r}: use shift (move code i) or share (keep code i, resample the rest)"
            )
        if self.diff_schedule not in ("constant", "late", "ramp"):
            raise ConfigError(f"diff_schedule={self.diff_schedule!r}: use constant, late or ramp")
        if not 0 <= self.diff_start <= 1:
            raise ConfigError(f"diff_start={self.diff_start} must be a fraction of steps in [0, 1]")
        if not self.diff_entropy >= 0:
            raise ConfigError(f"diff_entropy={self.diff_entropy} must be >= 0")

    @property
    def chunk_size(self) -> int:
        """Images per critic iteration (and generated codes per generator iteration)."""
        return self.batch_size // self.n_critic if self.critic_data == "split" else self.batch_size


# --- perturbation pairs -------------------------------------------------------------------------
def perturb(
    c: torch.Tensor, dims: torch.Tensor, delta_min: float, delta_max: float, boundary: str = "flip"
) -> torch.Tensor:
    """c: [B, d] in [−1, 1], dims: [B] -> c + δ·e_dim with |δ| ~ U[delta_min, delta_max], random sign.

    'flip' turns the sign around when the move would leave the box (always inside since |δ| ≤ 1);
    'clip' clips to the box. Only column ``dims[b]`` of row b changes.
    """
    b = c.shape[0]
    size = torch.empty(b, device=c.device, dtype=c.dtype).uniform_(delta_min, delta_max)  # [B]
    sign = torch.randint(0, 2, (b,), device=c.device).to(c.dtype) * 2 - 1  # [B] ±1
    rows = torch.arange(b, device=c.device)
    base = c[rows, dims]  # [B]
    moved = base + sign * size
    if boundary == "flip":
        outside = (moved > 1) | (moved < -1)
        moved = torch.where(outside, base - sign * size, moved)
    out = c.clone()
    out[rows, dims] = moved.clamp(-1.0, 1.0)
    return out


def sample_pairs(
    n: int, d: int, device: torch.device | str, delta_min: float = 0.5, delta_max: float = 1.0, boundary: str = "flip"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(c, c′, c″, i, j): c ~ U(−1,1)^d [n, d]; c′ moves c along i, c″ along j ≠ i (each [n, d]; i, j [n])."""
    c = torch.rand(n, d, device=device) * 2 - 1
    i, j = pair_dims(n, d, device)
    return (
        c,
        perturb(c, i, delta_min, delta_max, boundary),
        perturb(c, j, delta_min, delta_max, boundary),
        i,
        j,
    )


def pair_dims(n: int, d: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """(i, j) [n] each: i uniform over the d dimensions, j uniform over the d − 1 others."""
    i = torch.randint(0, d, (n,), device=device)
    return i, (i + torch.randint(1, d, (n,), device=device)) % d


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: mean over samples of (‖∇_x̂ D(x̂)‖₂ − 1)², x̂ on random real–fake segments. [B, C, H, W] inputs."""
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    create_graph = torch.is_grad_enabled()  # training: the penalty must be differentiable
    with torch.enable_grad():  # also under no_grad (evaluation of ``loss``): the penalty needs ∇_x̂
        x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)  # [B, C, 64, 64]
        out = critic(x_hat)  # [B]
        (grad,) = torch.autograd.grad(out.float().sum(), x_hat, create_graph=create_graph)
    norm = grad.float().flatten(1).norm(dim=1)  # [B]
    return (norm - 1).pow(2).mean()


# --- networks -----------------------------------------------------------------------------------
class _DCGANGenerator(nn.Module):
    """DCGAN-64: dense d → 8w·4·4 (BN, ReLU) → ConvT 4w, 2w, w (k4 s2, BN, ReLU) → ConvT C → logits [B, C, 64, 64]."""

    def __init__(self, in_dim: int, out_channels: int, width: int):
        super().__init__()
        self.w = width
        self.fc = nn.Sequential(nn.Linear(in_dim, 8 * width * 16), nn.BatchNorm1d(8 * width * 16), nn.ReLU())
        layers: list[nn.Module] = []
        for c_in, c_out in ((8 * width, 4 * width), (4 * width, 2 * width), (2 * width, width)):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        layers.append(nn.ConvTranspose2d(width, out_channels, 4, 2, 1))
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], 8 * self.w, 4, 4)  # h: [B, 8w, 4, 4]
        return self.deconvs(h)  # logits: [B, C, 64, 64]


class _DCGANCritic(nn.Module):
    """DCGAN-64 critic without normalisation: conv w, 2w, 4w, 8w (k4 s2, LeakyReLU 0.2) → linear 1."""

    def __init__(self, in_channels: int, width: int):
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for c_out in (width, 2 * width, 4 * width, 8 * width):
            layers += [nn.Conv2d(prev, c_out, 4, 2, 1), nn.LeakyReLU(0.2)]
            prev = c_out
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(prev * 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.convs(x)  # h: [B, 8w, 4, 4]
        return self.fc(torch.flatten(h, 1)).squeeze(1)  # [B]


class _ConvCritic(nn.Module):
    """§0 encoder with a single output, as a critic: [B, C, 64, 64] -> [B]."""

    def __init__(self, in_channels: int, base_channels: int, hidden: int):
        super().__init__()
        self.net = ConvEncoder(in_channels, 1, base_channels, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class DifferenceEncoder(nn.Module):
    """H: a pair (x, x′) -> unit vector [B, diff_dim].

    ``mode='subtract'`` (default [I]): H(x, x′) = normalise(f(x′) − f(x)) with one shared conv
    encoder f, so H sees the change itself and the part common to both images cancels.
    ``mode='concat'``: the §0 encoder over the channel-concatenated pair (the first design). Measured
    on the toy of tests/test_did.py: with 'concat' every pair maps to nearly the same vector at the
    start (the images differ little), the cosine logits are flat and the InfoNCE loss sat at ln(keys)
    for 100 iterations; with 'subtract' it falls from the first iterations.
    """

    def __init__(
        self, channels: int, out_dim: int, base_channels: int, hidden: int, negative_slope: float = 0.0,
        mode: str = "subtract",
    ):  # fmt: skip
        super().__init__()
        self.mode = mode
        in_channels = channels if mode == "subtract" else 2 * channels
        self.net = ConvEncoder(in_channels, out_dim, base_channels, hidden, negative_slope)

    def forward(self, x: torch.Tensor, x2: torch.Tensor, symmetric: bool = False) -> torch.Tensor:
        """``symmetric``: H(x, x′) = H(x′, x), for unordered pairs (|f(x′) − f(x)|, or both concat orders summed)."""
        if self.mode == "subtract":
            both = self.net(torch.cat([x, x2], dim=0))  # [2B, diff_dim]
            a, b = both.float().chunk(2, dim=0)
            return F.normalize((b - a).abs() if symmetric else b - a, dim=1)
        h = self.net(torch.cat([x, x2], dim=1)).float()  # pair: [B, 2C, 64, 64] -> [B, diff_dim]
        if symmetric:
            h = h + self.net(torch.cat([x2, x], dim=1)).float()
        return F.normalize(h, dim=1)


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """No parameter gradients for ``module`` inside (inputs still get theirs)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(f)


class DiD(DisentangledModel):
    name = "did"
    config_class = DiDConfig
    representation = "samples-encoder"

    def __init__(self, config: DiDConfig, dataset_info: DatasetInfo):
        config.validate()
        super().__init__(config, dataset_info)
        d, c, bc, hid = config.latent_dim, dataset_info.channels, config.base_channels, config.hidden
        g_in = d + config.noise_dim  # G reads the codes, then the noise
        if config.arch == "dcgan":
            self.generator: nn.Module = _DCGANGenerator(g_in, c, 2 * bc)
            self.critic: nn.Module = _DCGANCritic(c, 2 * bc)
        else:
            self.generator = ConvDecoder(g_in, c, bc, hid)
            self.critic = _ConvCritic(c, bc, hid)
        if config.critic_spectral_norm:
            _spectral_normalise(self.critic)
        self.samples_encoder = ConvEncoder(c, d, bc, hid, config.encoder_slope)
        self.diff_encoder = DifferenceEncoder(c, config.diff_dim, bc, hid, config.encoder_slope, config.diff_input)

    # --- interface ---------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, 64, 64] -> E(x): [B, d] float32, the estimate of the generator code."""
        return self.samples_encoder(x).float()

    def decode(self, z: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """z: [B, d] (in [−1, 1]) -> G(z, noise) logits [B, C, 64, 64], softly bounded to ±``logit_bound``.

        ``noise`` [B, noise_dim] defaults to 0, the centre of its U(−1, 1) prior, so that traversals
        of the codes are deterministic."""
        if self.config.noise_dim:
            if noise is None:
                noise = z.new_zeros(z.shape[0], self.config.noise_dim)
            z = torch.cat([z, noise.to(z.dtype)], dim=1)  # [B, d + noise_dim]
        logits = self.generator(z)
        bound = self.config.logit_bound
        return bound * torch.tanh(logits / bound) if bound > 0 else logits

    def generate(self, c: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """c: [B, d] (noise [B, noise_dim] or 0) -> images in [0, 1] [B, C, 64, 64] (what the critic, E and H see)."""
        return torch.sigmoid(self.decode(c, noise))

    def sample_noise(self, n: int, device: torch.device | str) -> torch.Tensor | None:
        """Unregularised inputs of G, U(−1, 1)^noise_dim [n, noise_dim]; None without any."""
        k = self.config.noise_dim
        return torch.rand(n, k, device=device) * 2 - 1 if k else None

    def latent_specs(self) -> list[LatentSpec]:
        return [LatentSpec(i, "uniform", -1.0, 1.0) for i in range(self.latent_dim)]

    def sample_codes(self, n: int, device: torch.device | str) -> torch.Tensor:
        """c ~ U(−1, 1)^d, [n, d]."""
        return torch.rand(n, self.latent_dim, device=device) * 2 - 1

    def difference(self, x: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """H(x, x′): [B, diff_dim], unit norm."""
        return self.diff_encoder(x, x2)

    # --- objectives --------------------------------------------------------------------------
    def critic_terms(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """Critic objective on one real batch [B, C, 64, 64]: D(fake) − D(real) + λ·GP, plus the detached
        fakes and their codes (for E's regression in ``train_step``; evaluation skips it)."""
        with torch.no_grad():
            codes = self.sample_codes(real.shape[0], real.device)  # [B, d]
            fake = self.generate(codes, self.sample_noise(real.shape[0], real.device)).to(real.dtype)
        fake = fake.contiguous(memory_format=_memory_format(real))
        d_real = self.critic(real).float().mean()
        d_fake = self.critic(fake).float().mean()
        gp = gradient_penalty(self.critic, real, fake)
        wgan = d_fake - d_real
        return {
            "critic_loss": wgan + self.config.gp_weight * gp,
            "critic": wgan,
            "gp": gp,
            "fake": fake,
            "codes": codes,
        }

    def diff_scale(self, step: int) -> float:
        """The difference loss's schedule factor in [0, 1] at generator iteration ``step``
        (InfoGAN-CR turns its contrastive term on only once the generator draws well)."""
        cfg = self.config
        edge = cfg.diff_start * cfg.steps
        if cfg.diff_schedule == "constant" or edge <= 0:
            return 1.0
        if cfg.diff_schedule == "late":
            return 1.0 if step >= edge else 0.0
        return min(1.0, step / edge)

    def _partner(
        self, c: torch.Tensor, noise: torch.Tensor | None, dims: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The second code of a pair along ``dims`` [n]: 'shift' moves c [n, d] along it (same noise);
        'share' keeps c's value there and draws everything else afresh (InfoGAN-CR's pairs)."""
        cfg = self.config
        if cfg.pairs == "shift":
            return perturb(c, dims, cfg.delta_min, cfg.delta_max, cfg.boundary), noise
        rows = torch.arange(c.shape[0], device=c.device)
        fresh = self.sample_codes(c.shape[0], c.device)  # [n, d]
        fresh[rows, dims] = c[rows, dims]
        return fresh, self.sample_noise(c.shape[0], c.device)

    def _pair_difference(
        self, x: torch.Tensor, x2: torch.Tensor, c: torch.Tensor, c2: torch.Tensor, dims: torch.Tensor
    ) -> torch.Tensor:
        """H over one pair: ordered along the moved code for 'shift'; symmetric for 'share' pairs."""
        if self.config.pairs == "shift":
            return self.difference(*_ordered(x, x2, c, c2, dims))
        return self.diff_encoder(x, x2, symmetric=True)

    def generator_terms(self, n: int, device: torch.device | str, step: int | None = None) -> dict[str, torch.Tensor]:
        """Generator-side objective on ``n`` fresh codes and their pairs.

        'loss' = −D(G(c)) + info_weight·enc + s(step)·diff_weight·(diff + diff_entropy·entropy), s the
        schedule factor (plus the E / H terms on detached images when a weight is 0, so E and H keep
        learning without shaping G). ``step`` None: the full weight.
        """
        cfg = self.config
        d = self.latent_dim
        c = self.sample_codes(n, device)  # [n, d]
        noise = self.sample_noise(n, device)  # [n, k] or None
        i, j = pair_dims(n, d, device)
        (c_i, n_i), (c_j, n_j) = self._partner(c, noise, i), self._partner(c, noise, j)
        codes, noises = [c, c_i, c_j], [noise, n_i, n_j]
        if cfg.diff_loss == "infonce":
            c2, noise2 = self.sample_codes(n, device), self.sample_noise(n, device)
            c2_i, n2_i = self._partner(c2, noise2, i)
            codes += [c2, c2_i]
            noises += [noise2, n2_i]
        all_noise = torch.cat(noises, 0) if cfg.noise_dim else None  # type: ignore[arg-type]
        images = self.generate(
            torch.cat(codes, 0), all_noise
        )  # one G pass (shared BatchNorm statistics): [kn, C, 64, 64]
        parts = images.split(n, 0)
        x, x_i, x_j = parts[0], parts[1], parts[2]
        with _frozen(self.critic):
            gen = -self.critic(x).float().mean()
        x_e = x if cfg.info_weight > 0 else x.detach()
        enc = F.mse_loss(self.encode(x_e), c)
        scale = 1.0 if step is None else self.diff_scale(step)
        diff_weight = cfg.diff_weight * scale
        if diff_weight == 0:
            parts = tuple(p.detach() for p in parts)
            x, x_i, x_j = parts[0], parts[1], parts[2]
        u = self._pair_difference(x, x_i, c, c_i, i)  # [n, h] along i
        w = self._pair_difference(x, x_j, c, c_j, j)  # [n, h] along j ≠ i
        if cfg.diff_loss == "literal":
            diff = -(u - w).pow(2).sum(1).mean()
            keys = w
        else:
            v = self._pair_difference(parts[3], parts[4], codes[3], codes[4], i)  # [n, h] along i, another base
            keys = torch.cat([v, w], 0)
            diff = info_nce(u, keys, i, torch.cat([i, j], 0), cfg.temperature)
        terms: dict[str, torch.Tensor] = {}
        if cfg.diff_entropy > 0:
            entropy = axis_entropy(torch.cat([u, keys], 0))
            diff = diff + cfg.diff_entropy * entropy
            terms["h_entropy"] = entropy.detach()
        loss = (
            gen
            + (cfg.info_weight if cfg.info_weight > 0 else 1.0) * enc
            + (diff_weight if diff_weight > 0 else 1.0) * diff
        )
        # collapse diagnostics (detached, no sync): per-pixel std of G(c) across the codes, and E's
        # error relative to the prior variance of c ~ U(−1, 1) (1/3): ≈ 1 means E(G(c)) says nothing
        g_std = parts[0].detach().float().std(0).mean()
        enc_rel = enc.detach() / PRIOR_VARIANCE
        return {"loss": loss, "gen": gen, "enc": enc, "diff": diff, "g_std": g_std, "enc_rel": enc_rel, **terms}

    def health(self, losses: dict[str, float], step: int) -> str | None:
        """Collapse guard, after ``collapse_warmup`` generator iterations: G's samples no longer vary
        (mean per-pixel std < ``collapse_std``), or E recovers nothing of c (MSE ≥ 0.95 × prior variance)."""
        cfg = self.config
        if step < cfg.collapse_warmup:
            return None
        g_std, enc_rel = losses.get("g_std"), losses.get("enc_rel")
        if g_std is not None and g_std < cfg.collapse_std:
            return (
                f"generator collapse: G(c) no longer varies across codes (mean per-pixel std {g_std:.4f} < "
                f"{cfg.collapse_std}); the samples are one image, so the representation E cannot learn"
            )
        if enc_rel is not None and enc_rel >= 0.95:
            return f"E(G(c)) recovers nothing of c: its MSE is {enc_rel:.2f} × the prior variance 1/3 of c ~ U(−1, 1)"
        return None

    def loss(self, x: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """Generator-side objective as 'loss' (trains G, E, H; the critic is frozen in it), with
        the critic terms on ``x`` reported detached. Training itself goes through ``train_step``."""
        terms = {k: v.detach() for k, v in self.critic_terms(x).items() if k in ("critic", "gp")}
        terms.update(self.generator_terms(self._gen_batch(x), x.device, step))
        return terms

    def _gen_batch(self, x: torch.Tensor) -> int:
        if self.config.critic_data == "split":
            return max(1, x.shape[0] // self.config.n_critic)
        return x.shape[0]

    # --- optimisation ------------------------------------------------------------------------
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """[critic, generator, encoders E + H]: Adam(lr, adam_betas) each (WGAN-GP settings)."""
        lr, betas = self.config.lr, tuple(self.config.adam_betas)
        return [
            torch.optim.Adam(self.critic.parameters(), lr=lr, betas=betas),
            torch.optim.Adam(self.generator.parameters(), lr=lr, betas=betas),
            torch.optim.Adam(
                list(self.samples_encoder.parameters()) + list(self.diff_encoder.parameters()), lr=lr, betas=betas
            ),
        ]

    def train_step(
        self, x: torch.Tensor, step: int, optimizers: list[torch.optim.Optimizer]
    ) -> dict[str, torch.Tensor]:
        """``n_critic`` critic iterations on the real batch x: [B, C, 64, 64] (split into chunks or
        reused), then one generator iteration that updates G, E and H. Detached terms, no sync."""
        opt_d, opt_g, opt_e = optimizers
        cfg = self.config
        chunks = x.tensor_split(cfg.n_critic, 0) if cfg.critic_data == "split" else (x,) * cfg.n_critic
        critic_sum = gp_sum = None
        for real in chunks:
            opt_d.zero_grad(set_to_none=True)
            opt_e.zero_grad(set_to_none=True)
            terms = self.critic_terms(real)
            loss = terms["critic_loss"]
            if cfg.encoder_with_critic:  # E regresses the codes of these fakes (G gets no gradient)
                loss = loss + F.mse_loss(self.encode(terms["fake"]), terms["codes"])
            loss.backward()  # the critic and E have disjoint parameters and optimisers
            opt_d.step()
            if cfg.encoder_with_critic:
                opt_e.step()
            critic_sum = terms["critic"].detach() if critic_sum is None else critic_sum + terms["critic"].detach()
            gp_sum = terms["gp"].detach() if gp_sum is None else gp_sum + terms["gp"].detach()
        opt_g.zero_grad(set_to_none=True)
        opt_e.zero_grad(set_to_none=True)
        gen_terms = self.generator_terms(self._gen_batch(x), x.device, step)
        gen_terms["loss"].backward()
        opt_g.step()
        opt_e.step()
        out = {k: v.detach() for k, v in gen_terms.items()}
        out["critic"] = critic_sum / cfg.n_critic
        out["gp"] = gp_sum / cfg.n_critic
        return out


def _ordered(
    x: torch.Tensor, x2: torch.Tensor, c: torch.Tensor, c2: torch.Tensor, dims: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pair (x, x2) [B, C, H, W] ordered so that the moved coordinate increases (codes c, c2 [B, d],
    moved dims [B]) [I]: a move and its reverse are one direction for H, whose 'subtract' form is
    antisymmetric and could never align a +δ positive with a −δ one."""
    rows = torch.arange(c.shape[0], device=c.device)
    up = (c2[rows, dims] >= c[rows, dims]).view(-1, 1, 1, 1)  # [B, 1, 1, 1]
    return torch.where(up, x, x2), torch.where(up, x2, x)


def info_nce(
    anchors: torch.Tensor, keys: torch.Tensor, anchor_dims: torch.Tensor, key_dims: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Multi-positive InfoNCE: anchors [n, h] and keys [m, h] (unit vectors); key k is a positive
    of anchor a when their perturbed dimensions match. Mean over anchors of −mean log p(positive)."""
    logits = anchors @ keys.T / temperature  # [n, m]
    log_p = logits.log_softmax(dim=1)
    pos = (anchor_dims[:, None] == key_dims[None, :]).to(log_p.dtype)  # [n, m]
    return -((log_p * pos).sum(1) / pos.sum(1).clamp_min(1)).mean()


def axis_entropy(h: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the squared components of unit vectors h [n, k] (a distribution over the k
    axes): 0 when every difference lies on one axis, ln k when it is spread evenly (DisCo's term)."""
    p = h.float().pow(2).clamp_min(1e-12)  # [n, k], rows sum to 1
    return -(p * p.log()).sum(1).mean()


def _spectral_normalise(module: nn.Module) -> None:
    """Spectral normalisation of every conv and linear layer of ``module``, in place."""
    for name, child in list(module.named_children()):
        if isinstance(child, (nn.Conv2d, nn.Linear)):
            setattr(module, name, nn.utils.parametrizations.spectral_norm(child))
        else:
            _spectral_normalise(child)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """The layout of x (the engine may hand over channels_last batches): fakes follow it."""
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
