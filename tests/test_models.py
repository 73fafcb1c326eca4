"""Models: every method trains on tiny data, shapes and slider specs are right, and the
method-specific mechanics (QLAE gradients, DEFT stages, DeVAE rescalings, β-TCVAE TC) hold."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from disviz.core.errors import UserError
from disviz.data.base import DatasetInfo
from disviz.engine.checkpoints import load_checkpoint, save_checkpoint
from disviz.models import MODELS, UNAVAILABLE, ConfigError, config_for, create_model, model_names
from disviz.models.backbone import ConvDecoder, ConvEncoder, QLAEDecoder, QLAEEncoder
from disviz.models.betatcvae import total_correlation

SIX = ["ae", "betavae", "betatcvae", "qlae", "deft", "devae"]
TINY = {"base_channels": 4, "hidden": 16}
DSPRITES = DatasetInfo("dsprites", 1, ("shape", "scale", "orientation", "posX", "posY"), (3, 6, 40, 32, 32), True)
SHAPES3D = DatasetInfo(
    "shapes3d",
    3,
    ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"),
    (10, 10, 10, 8, 4, 15),
    False,
)


def squares(n: int = 16, channels: int = 1, seed: int = 0) -> torch.Tensor:
    """dSprites-like batch: one white square of random size/position per image, [n, C, 64, 64]."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, channels, 64, 64), np.float32)
    for i in range(n):
        s = int(rng.integers(8, 20))
        r, c = rng.integers(0, 64 - s, size=2)
        colour = rng.uniform(0.5, 1.0, size=(channels, 1, 1)) if channels == 3 else 1.0
        x[i, :, r : r + s, c : c + s] = colour
    return torch.from_numpy(x)


def tiny(name: str, info: DatasetInfo = DSPRITES, **kw):
    torch.manual_seed(0)
    return create_model(name, info, **{**TINY, **kw})


# --- registry and configs ---------------------------------------------------------------------------
def test_registry_has_the_six_models_and_tolerates_did():
    assert set(SIX) <= set(MODELS)
    assert model_names()[:6] == SIX
    assert "did" in MODELS or "did" in UNAVAILABLE
    with pytest.raises(ConfigError, match="unknown model"):
        create_model("vqvae", DSPRITES)


def test_config_overrides_are_cast_from_strings_and_checked():
    cfg = config_for("deft", DSPRITES, betas="[5, 2, 1]", gamma="0.3", slowdown="freeze", stage_steps="7")
    assert cfg.betas == (5.0, 2.0, 1.0) and cfg.gamma == 0.3 and cfg.slowdown == "freeze" and cfg.stage_steps == 7
    assert config_for("betavae", DSPRITES, beta="2").beta == 2.0
    assert config_for("qlae", DSPRITES, lr="0.002").lr == 0.002
    with pytest.raises(ConfigError, match="no option 'betaa'") as err:
        config_for("betavae", DSPRITES, betaa="2")
    assert isinstance(err.value, UserError) and isinstance(err.value, ValueError)
    with pytest.raises(ConfigError, match="expected float"):
        config_for("betavae", DSPRITES, beta="big")
    with pytest.raises(ConfigError, match="arch"):
        config_for("qlae", DSPRITES, arch="resnet")
    with pytest.raises(ConfigError, match="groups"):
        config_for("deft", DSPRITES, groups="11")
    # JSON round trip (checkpoint cards store tuples as lists)
    cfg2 = type(cfg).from_dict({**cfg.to_dict(), "betas": [5.0, 2.0, 1.0]})
    assert cfg2 == cfg


def test_paper_defaults_per_dataset():
    assert config_for("qlae", DSPRITES).latent_dim == 10 and config_for("qlae", SHAPES3D).latent_dim == 12
    q = config_for("qlae", DSPRITES)
    assert (q.lr, q.batch_size, q.weight_decay, q.values_per_latent, q.reduction) == (1e-3, 128, 0.1, 10, "mean")
    assert config_for("ae", SHAPES3D).weight_decay == 0.001 and config_for("ae", DSPRITES).weight_decay == 0.0
    d = config_for("deft", DSPRITES)
    assert (d.latent_dim, d.groups, d.betas) == (10, 5, (70.0, 30.0, 12.0, 1.0))
    c = config_for("deft", SHAPES3D)
    assert (c.latent_dim, c.groups, c.betas) == (12, 4, (10.0, 7.0, 5.0, 1.0))
    assert config_for("devae", DSPRITES).betas == (1.0, 10.0, 40.0)
    assert config_for("betavae", DSPRITES).reduction == "sum"
    # RGB likelihoods: L2 for DEFT / DeVAE, Bernoulli for the disentanglement_lib baselines
    assert tiny("deft", SHAPES3D).recon_kind == "gaussian" and tiny("devae", SHAPES3D).recon_kind == "gaussian"
    assert tiny("betavae", SHAPES3D).recon_kind == "bernoulli" and tiny("deft").recon_kind == "bernoulli"


# --- backbone ---------------------------------------------------------------------------------------
def test_backbone_shapes_and_paper_sizes():
    x = torch.rand(2, 3, 64, 64)
    assert ConvEncoder(3, 20, 4, 16)(x).shape == (2, 20)
    assert ConvDecoder(10, 3, 4, 16)(torch.randn(2, 10)).shape == (2, 3, 64, 64)
    assert QLAEEncoder(3, 12, 4, 16)(x).shape == (2, 12)
    assert QLAEDecoder(12, 3, 4, 16)(torch.randn(2, 12)).shape == (2, 3, 64, 64)
    # paper-size conv encoder: the dense layer reads 4·4·64 = 1024 features, k2 in the last two convs
    enc = ConvEncoder(1, 20)
    assert enc.fc[0].in_features == 1024 and enc.convs[4].kernel_size == (2, 2)
    assert ConvDecoder(10, 1).fc[2].out_features == 1024
    assert QLAEEncoder(3, 12).fc[0].in_features == 4096
    qdec = QLAEDecoder(12, 3)
    assert qdec.const.shape == (1, 256, 4, 4) and len(qdec.blocks) == 12
    assert torch.allclose(qdec.const, torch.full_like(qdec.const, 0.1))


# --- every model ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SIX)
def test_model_trains_on_a_fixed_batch(name):
    model = tiny(name, lr=1e-2)
    opts = model.configure_optimizers()
    x = squares(16)
    losses = []
    for step in range(25):
        terms = model.train_step(x, step, opts)
        assert "loss" in terms and all(torch.isfinite(v).all() for v in terms.values()), terms
        losses.append(float(terms["loss"]))
    assert np.mean(losses[-5:]) < 0.9 * losses[0], losses


@pytest.mark.parametrize("name", SIX)
@pytest.mark.parametrize("info", [DSPRITES, SHAPES3D], ids=["binary", "rgb"])
def test_shapes_specs_and_reconstruction(name, info):
    model = tiny(name, info).eval()
    x = squares(5, info.channels)
    z = model.encode(x)
    d = model.latent_dim
    assert z.shape == (5, d)
    assert model.decode(z).shape == (5, info.channels, 64, 64)
    r = model.reconstruct(x)
    assert r.shape == x.shape and float(r.min()) >= 0 and float(r.max()) <= 1
    specs = model.latent_specs()
    assert [s.index for s in specs] == list(range(d))
    kind = {"ae": "deterministic", "qlae": "quantised"}.get(name, "gaussian")
    assert all(s.kind == kind and s.low < s.high for s in specs)
    if kind == "gaussian":
        assert all((s.low, s.high) == (-3.0, 3.0) for s in specs)
        kl = model.kl_per_latent(x)
        assert kl.shape == (d,) and bool((kl >= 0).all())
    else:
        assert model.kl_per_latent(x) is None


@pytest.mark.parametrize("name", SIX)
def test_checkpoint_round_trip_gives_identical_outputs(name, tmp_path):
    model = tiny(name)
    opts = model.configure_optimizers()
    x = squares(8)
    for step in range(3):
        model.train_step(x, step, opts)
    model.eval()
    card = {"model": name, "config": model.config.to_dict(), "dataset": DSPRITES.to_dict(), "seed": 0, "steps": 3}
    save_checkpoint(tmp_path / "ck", model, card)
    loaded, _ = load_checkpoint(tmp_path / "ck")
    with torch.no_grad():
        assert torch.equal(model.encode(x), loaded.encode(x))
        assert torch.equal(model.decode(model.encode(x)), loaded.decode(loaded.encode(x)))
    assert [s.values for s in model.latent_specs()] == [s.values for s in loaded.latent_specs()]


def test_ae_slider_range_follows_the_encodings():
    model = tiny("ae", lr=1e-3)
    opts = model.configure_optimizers()
    x = squares(16)
    for step in range(3):
        model.train_step(x, step, opts)
    with torch.no_grad():
        z = model.encode(x)
    specs = model.latent_specs()
    lo, hi = z.min(0).values, z.max(0).values
    # the EMA range brackets the current encodings' spread (within the drift of 3 small steps)
    for j, s in enumerate(specs):
        assert s.low != -3.0 and s.high != 3.0
        assert abs(s.low - float(lo[j])) < 0.5 and abs(s.high - float(hi[j])) < 0.5


# --- QLAE -------------------------------------------------------------------------------------------
def _grads(params) -> list[torch.Tensor | None]:
    return [p.grad for p in params]


def test_qlae_quantisation_and_commitment_gradients_go_to_the_right_place():
    model = tiny("qlae")
    x = squares(8)
    enc_params = list(model.encoder.parameters())

    def backward(which: str) -> None:
        model.zero_grad(set_to_none=True)
        z = model.continuous(x)
        q, _ = model.quantize(z)
        quant, commit = model.latent_losses(z, q)
        (quant if which == "quant" else commit).backward()

    backward("quant")
    assert model.codebook.grad is not None and float(model.codebook.grad.abs().sum()) > 0
    assert all(g is None or float(g.abs().sum()) == 0 for g in _grads(enc_params))
    backward("commit")
    assert model.codebook.grad is None or float(model.codebook.grad.abs().sum()) == 0
    assert sum(float(g.abs().sum()) for g in _grads(enc_params) if g is not None) > 0


def test_qlae_codebook_moves_quantises_and_optimisers_follow_the_code():
    model = tiny("qlae", lr=1e-2)
    start = model.codebook.detach().clone()
    assert torch.allclose(start[0], torch.linspace(-0.5, 0.5, 10))
    opts = model.configure_optimizers()
    adamw, adam = opts
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["weight_decay"] == 0.1
    assert type(adam) is torch.optim.Adam and adam.defaults["weight_decay"] == 0
    names = {id(p): n for n, p in model.named_parameters()}
    unreg = {names[id(p)] for p in adam.param_groups[0]["params"]}
    reg = {names[id(p)] for p in adamw.param_groups[0]["params"]}
    assert "codebook" in unreg and all(n.endswith("bias") or n == "codebook" for n in unreg)
    assert "decoder.const" in reg and not any(n.endswith("bias") for n in reg)
    x = squares(16)
    for step in range(5):
        model.train_step(x, step, opts)
    assert float((model.codebook.detach() - start).abs().max()) > 1e-3
    z = model.encode(x)  # every code is one of its latent's codebook values
    cb = model.codebook.detach()
    assert all(bool(torch.isclose(z[:, j, None], cb[j][None]).any(1).all()) for j in range(z.shape[1]))
    specs = model.latent_specs()
    assert all(s.values == sorted(s.values) and len(s.values) == 10 for s in specs)
    assert specs[0].values == sorted(cb[0].tolist())


def test_qlae_clips_weight_gradients_element_wise_only():
    model = tiny("qlae")
    model.configure_optimizers()
    for p in model.parameters():
        p.grad = torch.full_like(p, 5.0)
    model.clip_gradients()
    assert float(model.decoder.const.grad.max()) == 1.0
    assert float(model.encoder.fc[0].weight.grad.max()) == 1.0
    assert float(model.encoder.fc[0].bias.grad.max()) == 5.0 and float(model.codebook.grad.max()) == 5.0


# --- DEFT -------------------------------------------------------------------------------------------
def test_deft_fixed_stage_schedule_and_group_status():
    model = tiny("deft", schedule="steps", stage_steps=10)  # 5 groups of 2, betas 70/30/12/1
    assert [model.stage(s) for s in (0, 9, 10, 25, 30, 10_000)] == [0, 0, 1, 2, 3, 3]
    assert [model.beta(s) for s in (0, 10, 20, 30)] == [70.0, 30.0, 12.0, 1.0]
    assert model.group_status(0) == ["current"] + ["inactive"] * 4
    assert model.group_status(1) == ["earlier", "current", "inactive", "inactive", "inactive"]
    # author code: 4 stages for 5 groups leaves the last group untrained (noise, KL 0)
    assert model.group_status(3) == ["earlier"] * 3 + ["current", "inactive"]
    rest = tiny("deft", schedule="steps", stage_steps=10, remaining_groups="last")
    assert rest.group_status(3) == ["earlier"] * 3 + ["current"] * 2  # the option: last stage takes the rest
    auto = tiny("deft", schedule="steps", steps=1000)  # stage_steps 0 -> steps // #stages
    assert auto.stage_length() == 250 and auto.stage(999) == 3
    # resolved at build time: the card keeps it, a resume with more steps keeps the boundaries
    assert auto.config.stage_steps == 250 and auto.config.replace(steps=4000).stage_steps == 250


def test_deft_reference_schedule_uses_continuous_beta_and_thresholds():
    ref = tiny("deft", steps=1000)  # the default schedule: β(t) = max(150 e^{-20 t/T}, 1), T = 1000
    assert ref.config.schedule == "reference" and ref.n_stages == 5
    stages = [ref.stage(s) for s in range(0, 1000, 5)]
    assert stages[0] == 0 and stages[-1] == 4 and all(a <= b for a, b in zip(stages, stages[1:], strict=False))
    # stage k+1 starts once β(t) has fallen to β_k: 70 at t = ln(150/70)/20, 1 at t = ln(150)/20
    for k, b in enumerate((70.0, 30.0, 12.0, 1.0)):
        first = next(s for s in range(1000) if ref.stage(s) == k + 1)
        assert ref.reference_beta(first) <= b < ref.reference_beta(first - 1)
    assert next(s for s in range(1000) if ref.stage(s) == 1) == math.ceil(1000 * math.log(150 / 70) / 20)
    # the loss uses β(t), not the stage's threshold
    assert ref.beta(100) == pytest.approx(150 * math.exp(-2.0)) and ref.beta(999) == 1.0
    x = squares(4)
    assert float(ref.loss(x, 100)["beta"]) == pytest.approx(150 * math.exp(-2.0))
    # 5 stages for 5 groups: the β = 1 stage trains the last group alone; every group is used
    assert ref.group_status(4) == ["earlier"] * 4 + ["current"]
    assert ref.group_status(5) == ["earlier"] * 5  # beyond G every group is an earlier one (author cap)


def test_deft_sub_encoders_are_narrow_like_the_author_code():
    model = create_model("deft", DSPRITES)
    enc = model.encoders[0]
    assert enc.convs[0].out_channels == 8 and enc.convs[-2].out_channels == 16 and enc.fc[0].out_features == 64
    assert model.decoder.fc[0].out_features == 256  # the decoder stays the §0 one
    wide = create_model("deft", DSPRITES, encoder_channels=32, encoder_hidden=256)
    n_narrow = sum(p.numel() for p in model.encoders.parameters())
    n_wide = sum(p.numel() for p in wide.encoders.parameters())
    assert n_wide > 8 * n_narrow


def test_deft_learning_rates_gradients_and_inactive_groups():
    model = tiny("deft", schedule="steps", remaining_groups="last", stage_steps=10, lr=1e-3)
    opts = model.configure_optimizers()
    x = squares(8)
    before = [torch.cat([p.detach().flatten().clone() for p in enc.parameters()]) for enc in model.encoders]
    model.train_step(x, 15, opts)  # stage 1: group 0 earlier, group 1 current, 2..4 inactive
    lrs = [g["lr"] for g in opts[0].param_groups]
    assert lrs == pytest.approx([1e-4, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3])
    assert int(model.trained_stage) == 1
    grads = [any(p.grad is not None for p in enc.parameters()) for enc in model.encoders]
    assert grads == [True, True, False, False, False]
    after = [torch.cat([p.detach().flatten() for p in enc.parameters()]) for enc in model.encoders]
    moved = [float((a - b).abs().max()) for a, b in zip(after, before, strict=True)]
    # Adam's first step moves each parameter by ≈ its lr: the earlier group moves γ = 0.1 as far
    assert moved[0] == pytest.approx(0.1 * moved[1], rel=0.05) and moved[2:] == [0.0, 0.0, 0.0]
    with torch.no_grad():
        mu, logvar = model.posterior_at(x, 1)
    assert float(mu[:, 4:].abs().max()) == 0 and float(logvar[:, 4:].abs().max()) == 0
    assert float(mu[:, :4].abs().max()) > 0
    model.train_step(x, 35, opts)  # last stage: 0..2 earlier, 3 and 4 current
    assert [g["lr"] for g in opts[0].param_groups] == pytest.approx([1e-4] * 3 + [1e-3] * 3)


def test_deft_freeze_option_uses_the_diagonal_projection():
    model = tiny("deft", schedule="steps", stage_steps=10, slowdown="freeze")
    opts = model.configure_optimizers()
    x = squares(8)
    model.train_step(x, 12, opts)  # stage 1
    assert opts[0].param_groups[0]["lr"] == 0.0
    assert all(p.grad is None for p in model.encoders[0].parameters())
    assert float(model.proj_log_scale.grad[:2].abs().sum()) > 0 and float(model.proj_shift.grad[:2].abs().sum()) > 0
    assert float(model.proj_log_scale.grad[2:].abs().sum()) == 0
    with torch.no_grad():
        model.proj_log_scale[:2] = torch.tensor([0.5, -0.2])
        mu_raw = model.encoders[0](x).float()[:, :2]
        mu = model.posterior_at(x, 1)[0][:, :2]
    assert torch.allclose(mu, mu_raw * torch.tensor([0.5, -0.2]).exp(), atol=1e-6)


# --- DeVAE ------------------------------------------------------------------------------------------
def test_devae_spaces_are_rescalings_of_space_zero():
    model = tiny("devae")
    with torch.no_grad():
        model.log_scale.normal_()
        model.logvar_shift.normal_()
        mu0, logvar0 = model.posterior(squares(6))
        mu, logvar = model.spaces(mu0, logvar0)
    assert mu.shape == (3, 6, 10)
    scale = torch.cumsum(model.log_scale.detach(), 0).exp()  # [K-1, d]
    shift = torch.cumsum(model.logvar_shift.detach(), 0)
    assert torch.equal(mu[0], mu0) and torch.equal(logvar[0], logvar0)
    for i in (1, 2):
        assert torch.allclose(mu[i], mu0 * scale[i - 1], atol=1e-6)
        assert torch.allclose(logvar[i] - logvar0, shift[i - 1].expand_as(logvar0), atol=1e-5)
    assert torch.equal(model.encode(squares(6)), mu0)


def test_devae_loss_is_the_s_weighted_sum_and_the_maps_learn():
    model = tiny("devae", s=0.5, lr=1e-2)
    torch.manual_seed(1)
    with torch.no_grad():
        terms = model.loss(squares(8), 0)
    betas = (1.0, 10.0, 40.0)
    recon = [terms["recon"], terms["recon_1"], terms["recon_2"]]
    kl = [terms["kl"], terms["kl_1"], terms["kl_2"]]
    expect = sum(0.5**i * (recon[i] + betas[i] * kl[i]) for i in range(3))
    assert float(terms["loss"]) == pytest.approx(float(expect), rel=1e-5)
    opts = model.configure_optimizers()
    for step in range(3):
        model.train_step(squares(8), step, opts)
    assert float(model.log_scale.detach().abs().max()) > 0 and float(model.space_embedding.grad.abs().sum()) > 0
    sampled = tiny("devae", weighting="sample")
    with torch.no_grad():
        t = sampled.loss(squares(8), 0)
    per_space = [
        float(t[r] + b * t[k])
        for r, k, b in zip(("recon", "recon_1", "recon_2"), ("kl", "kl_1", "kl_2"), betas, strict=True)
    ]
    assert any(float(t["loss"]) == pytest.approx(v, rel=1e-5) for v in per_space)


# --- β-TCVAE ----------------------------------------------------------------------------------------
def _tc_loop(z, mu, logvar, n_data):
    """Brute-force MWS estimate, one sample at a time (the oracle)."""
    m, d = z.shape
    log_nm = math.log(n_data * m)
    total = 0.0
    for n in range(m):
        dens = -0.5 * (math.log(2 * math.pi) + logvar + (z[n] - mu) ** 2 / logvar.exp())  # [M, d]
        joint = torch.logsumexp(dens.sum(1), 0) - log_nm
        marg = sum(torch.logsumexp(dens[:, j], 0) - log_nm for j in range(d))
        total += float(joint - marg)
    return total / m


def test_total_correlation_estimate_is_sane():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(64, 4, generator=g)
    logvar = torch.full((64, 4), -4.0)
    z = mu + (0.5 * logvar).exp() * torch.randn(64, 4, generator=g)
    tc = float(total_correlation(z, mu, logvar, 1000))
    assert tc == pytest.approx(_tc_loop(z, mu, logvar, 1000), rel=1e-4)
    # one latent has no total correlation
    assert float(total_correlation(z[:, :1], mu[:, :1], logvar[:, :1], 1000)) == pytest.approx(0.0, abs=1e-4)
    # copies of one latent are maximally dependent: a clearly larger TC than independent latents
    mu = 2 * torch.randn(256, 4, generator=g)
    logvar = torch.full((256, 4), -1.0)
    z = mu + (0.5 * logvar).exp() * torch.randn(256, 4, generator=g)
    mu_c, z_c = mu[:, :1].repeat(1, 4), z[:, :1].repeat(1, 4)
    independent = float(total_correlation(z, mu, logvar, 1000))
    assert float(total_correlation(z_c, mu_c, logvar, 1000)) > independent + 2.0
    model = tiny("betatcvae")
    assert model.n_data == 3 * 6 * 40 * 32 * 32
    with torch.no_grad():
        terms = model.loss(squares(8), 0)
    assert float(terms["loss"]) == pytest.approx(float(terms["recon"] + terms["kl"] + 5.0 * terms["tc"]), rel=1e-5)


def test_deft_fused_group_encoders_equal_the_separate_ones():
    model = tiny("deft", schedule="steps", remaining_groups="last", stage_steps=10)
    x = squares(4)
    with torch.no_grad():
        mu, logvar = model.posterior_at(x, 3)  # all five groups active, run fused
        separate = torch.cat([enc(x).float() for enc in model.encoders], 1)  # [B, 2·d] in group order
    starts = np.cumsum([0, *model.group_sizes])
    for g, size in enumerate(model.group_sizes):
        own = separate[:, 2 * starts[g] : 2 * starts[g] + 2 * size]
        assert torch.allclose(mu[:, starts[g] : starts[g] + size], own[:, :size], atol=1e-6)
        assert torch.allclose(logvar[:, starts[g] : starts[g] + size], own[:, size:], atol=1e-6)
