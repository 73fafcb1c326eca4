"""The pretrained checkpoints shipped in checkpoints/ (issue 7): they load, their cards are complete,
they reconstruct better than a trivial predictor, and checkpoints/reproduce.sh retrains each one
with the settings on its card."""

from __future__ import annotations

import json
import re
import shlex
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from disviz.data import load_dataset
from disviz.engine.card import read_card
from disviz.engine.checkpoints import list_checkpoints, load_checkpoint

ROOT = Path(__file__).resolve().parents[1] / "checkpoints"
REPRODUCE = ROOT / "reproduce.sh"

#: what issue 7 asks to ship
SHIPPED = [
    "dsprites/ae",
    "dsprites/betavae",
    "dsprites/betatcvae",
    "dsprites/qlae",
    "dsprites/deft",
    "dsprites/devae",
    "dsprites/did",
    "shapes3d/betavae",
    "shapes3d/qlae",
    "shapes3d/devae",
    "shapes3d/did",
]
CARD_KEYS = ("format", "format_version", "model", "config", "dataset", "seed", "steps", "history", "metrics")
REPORTED = ("mig", "infom", "infoe", "dci_disentanglement", "reconstruction")  # what the README table quotes
#: the extra seeds issue 12 asks for (checkpoints/seeds/, reported beside the shipped seed 0)
SEEDS = ["seeds/dsprites/devae-seed1", "seeds/dsprites/deft-seed1"]
#: checkpoints known to miss their own training objective at the shipped CPU budget (see README)
UNDERTRAINED: set[str] = set()


def _folder(name: str) -> Path:
    return ROOT / name


@cache
def _dataset(name: str, options: str):
    return load_dataset(name, **json.loads(options))


@cache
def _runs() -> dict[str, dict]:
    """'dataset/model' (or 'seeds/dataset/model-seedK') -> {'steps', 'seed', 'args'} from the ``run``
    and ``run_seed`` lines of reproduce.sh; a later phase (``MORE=1 run ...``) replaces its first line's."""
    runs = {}
    for line in REPRODUCE.read_text().splitlines():
        later_phase = line.startswith("MORE=1 ")  # continues the line above: its settings are the card's now
        line = line.removeprefix("MORE=1 ")
        if re.match(r"^run \S+ \S+ \d+", line):
            words = shlex.split(line)
            seed, key = 0, f"{words[1]}/{words[2]}"
        elif re.match(r"^run_seed \d+ \S+ \S+ \d+", line):
            words = shlex.split(line)[1:]
            seed, key = int(words[0]), f"seeds/{words[1]}/{words[2]}-seed{words[0]}"
            words = ["run", *words[1:]]
        else:
            continue
        assert not later_phase or key in runs, f"reproduce.sh: 'MORE=1' line for {key} has no first phase above it"
        runs[key] = {"steps": int(words[3]), "seed": seed, "args": words[4:]}
    return runs


def _stop_at(args: list[str]) -> int | None:
    """The --stop-at step of a reproduce.sh line (campaign checkpoints shipped part-way), else None."""
    return int(args[args.index("--stop-at") + 1]) if "--stop-at" in args else None


def _set_options(args: list[str]) -> dict[str, str]:
    """--set k=v and --batch-size n as config key -> string value."""
    out = {}
    it = iter(args)
    for a in it:
        if a == "--set":
            k, _, v = next(it).partition("=")
            out[k] = v
        elif a == "--batch-size":
            out["batch_size"] = next(it)
    return out


def test_every_checkpoint_is_shipped_and_found():
    found = {str(p.relative_to(ROOT)) for p in list_checkpoints([ROOT])}
    assert set(SHIPPED + SEEDS) <= found, f"missing: {sorted(set(SHIPPED + SEEDS) - found)}"


def test_total_size_under_80_mb():
    total = sum(f.stat().st_size for f in ROOT.rglob("*") if f.is_file())
    assert total < 80e6, f"checkpoints/ holds {total / 1e6:.1f} MB"


@pytest.mark.parametrize("name", SHIPPED + SEEDS)
def test_card_complete_and_reproduce_line_matches(name):
    card = read_card(_folder(name))
    for key in CARD_KEYS:
        assert key in card, f"{name}: card lacks {key!r}"
    ds, model = name.removeprefix("seeds/").split("/")
    assert card["model"] == model.split("-seed")[0] and card["dataset"]["name"] == ds
    run = _runs().get(name)
    assert run is not None, f"reproduce.sh has no 'run {ds} {model} ...' (or run_seed) line for {name}"
    assert card["seed"] == run["seed"] == (0 if name in SHIPPED else int(model.rsplit("-seed", 1)[1]))
    planned = card["config"]["steps"]
    stop = _stop_at(run["args"])
    # finished, or (a campaign run shipped part-way) stopped exactly where reproduce.sh stops it
    assert card["steps"] == (planned if stop is None else stop) > 0
    assert card["train"].get("images_seen", card["steps"] * card["train"]["batch_size"]) > 0
    hist = card["history"]
    assert hist["step"] and hist["step"][-1] <= card["steps"]
    assert len(hist["loss"]) == len(hist["step"]) and all(np.isfinite(hist["loss"]))
    assert card["storage_dtype"] == "float16" and not (_folder(name) / "optimizer.safetensors").exists()
    scores = card["metrics"]["scores"]
    for key in REPORTED:
        assert np.isfinite(scores[key]), f"{name}: evaluate score {key} is {scores.get(key)}"
    assert card["metrics"]["n"] == 10_000
    diffusion = card["tracks"].get("diffusion")  # --track-diffusion 100: the information-diffusion curves
    assert diffusion and diffusion[-1]["step"] <= card["steps"]
    assert len(diffusion[-1]["nmi1"]) == len(card["dataset"]["factor_names"])
    # reproduce.sh retrains exactly this run
    assert run["steps"] == planned, f"reproduce.sh plans {run['steps']} steps, the card's config {planned}"
    for key, value in _set_options(run["args"]).items():
        have = card["config"][key]
        assert type(have)(value) == have, f"{name}: reproduce.sh sets {key}={value}, the card has {have}"


def _expect_trained(name: str):
    """The learned-ness checks; strict xfail for the runs the README reports as undertrained, so a
    retrained (e.g. GPU) checkpoint that passes makes the test fail until the mark is removed."""
    if name in UNDERTRAINED:
        return pytest.param(
            name, marks=pytest.mark.xfail(strict=True, raises=AssertionError, reason="undertrained at the CPU budget")
        )
    return name


@pytest.mark.parametrize("name", [_expect_trained(n) for n in SHIPPED + SEEDS])
def test_reconstructs_better_than_the_mean_image(name):
    """BCE of the reconstructions of 32 dataset images beats predicting the mean image of 256 others.

    DiD is a GAN (reconstruction G(E(x)) is no training target): for it the oracle is its own
    objective, E(G(c)) ≈ c, which must beat the trivial estimate 0 (the prior mean)."""
    torch.manual_seed(0)
    model, card = load_checkpoint(_folder(name))
    if card.model == "did":
        with torch.no_grad():
            c = model.sample_codes(64, "cpu")  # [64, d]
            imgs = model.generate(c)  # [64, C, 64, 64]
            est = model.encode(imgs)
        assert torch.isfinite(imgs).all() and 0 <= imgs.min() and imgs.max() <= 1
        assert F.mse_loss(est, c) < 0.5 * c.pow(2).mean(), "E(G(c)) does not recover the code"
        return
    ds = _dataset(card.dataset["name"], json.dumps(card.dataset.get("options", {})))
    rng = np.random.default_rng(0)
    ref, _ = ds.sample(256, rng)
    test, _ = ds.sample(32, rng)
    x = torch.from_numpy(test).float().div(255).permute(0, 3, 1, 2).contiguous()  # [32, C, 64, 64]
    mean = torch.from_numpy(ref).float().div(255).mean(0).permute(2, 0, 1).clamp(1e-3, 1 - 1e-3)  # [C, 64, 64]
    with torch.no_grad():
        r = model.reconstruct(x)  # [32, C, 64, 64]
    assert r.shape == x.shape and torch.isfinite(r).all()
    r = r.clamp(1e-3, 1 - 1e-3)
    bce = F.binary_cross_entropy(r, x)
    baseline = F.binary_cross_entropy(mean.expand_as(x), x)
    assert bce < 0.9 * baseline, f"{name}: BCE {bce:.4f} vs mean-image {baseline:.4f}"


@pytest.mark.parametrize("name", [n for n in SHIPPED if n.endswith("/did")])
def test_did_generates_valid_images(name):
    """Even undertrained, the shipped GAN runs and maps codes to finite images in [0, 1]."""
    torch.manual_seed(0)
    model, _ = load_checkpoint(_folder(name))
    with torch.no_grad():
        c = model.sample_codes(8, "cpu")  # [8, d]
        imgs = model.generate(c)  # [8, C, 64, 64]
        est = model.encode(imgs)  # [8, d]
    assert imgs.shape[0] == 8 and torch.isfinite(imgs).all() and 0 <= imgs.min() and imgs.max() <= 1
    assert est.shape == c.shape and torch.isfinite(est).all()


@pytest.mark.parametrize("name", SEEDS)
def test_extra_seeds_are_reported_on_the_shipped_card(name):
    """Issue 12: every extra seed's scores stand on the shipped seed-0 card (``results_table.py --write``),
    equal to the seed's own evaluate report, with both MIG tracks read at one step that both runs reached."""
    seed_card = read_card(_folder(name))
    base = f"{seed_card['dataset']['name']}/{seed_card['model']}"
    records = {r["checkpoint"]: r for r in read_card(_folder(base)).get("seed_runs", [])}
    record = records.get(f"checkpoints/{name}")
    assert record is not None, f"checkpoints/{base}/card.json does not report {name}; run results_table.py --write"
    assert record["seed"] == seed_card["seed"] != 0 and record["steps"] == seed_card["steps"]
    for key, value in record["scores"].items():
        assert value == seed_card["metrics"]["scores"][key]
    step = record["track_step"]
    shipped = read_card(_folder(base))
    assert step is not None and step <= min(seed_card["steps"], shipped["steps"])
    for card, value in ((seed_card, record["track_mig"]), (shipped, record["seed0_track_mig_at_same_step"])):
        at_step = {p["step"]: p["mig"] for p in card["tracks"]["diffusion"]}
        assert value == at_step[step], f"{name}: a MIG track value at step {step} differs from its card"


def test_annealing_results_shipped():
    """The IFP annealing results the app's Annealing page shows: dSprites (all five factors) and Shapes3D."""
    for ds, factors in (("dsprites", 5), ("shapes3d", 6)):
        path = ROOT / "annealing" / f"{ds}.json"
        res = json.loads(path.read_text())
        assert res["format"] == "disviz-annealing"
        assert len(res["factors"]) == factors, f"{path}: {sorted(res['factors'])}"
        assert sorted(res["ordering"]) == sorted(res["factors"])
        assert res["settings"]["steps"] == 8000 and all("linear_ifp" in run for run in res["runs"])


def test_dsprites_ifps_are_on_the_models_scale_and_below_their_bounds():
    """Issue 12: the shipped dSprites result is measured at 64×64 (the trained models' and DEFT's
    scale), with the raised β start recorded, every run frozen below its linear-response bound,
    and position > scale > {shape, orientation} as DEFT's report has it."""
    from disviz.diagnostics.annealing import deft_stage_comparison, load_annealing_result

    res = load_annealing_result(ROOT / "annealing" / "dsprites.json")
    st = res["settings"]
    assert st["pool"] == 1 and st["scale"].startswith("64×64") and st["recipe"] == "equilibrium"
    assert st["beta_max"] > 70 and "raised" in st["beta_max_note"]
    assert all(run["ifp"] is not None and run["ifp"] <= 1.05 * run["linear_ifp"] for run in res["runs"])
    groups = [sorted(g) for g in res["ordering_groups"]]
    assert groups[0] == ["posX", "posY"] and groups[1] == ["scale"]
    assert sorted(sum(groups[2:], [])) == ["orientation", "shape"]
    comparison = deft_stage_comparison(res, (70.0, 30.0, 12.0, 1.0))
    assert comparison["comparable"] and comparison["agree"] is not None  # the page states the verdict


def test_shapes3d_ifps_are_on_the_models_scale():
    """Issue 12: the shipped Shapes3D result is measured at 64×64 too (L2 over all 12,288 values), its
    raised β start is recorded, and the page's DEFT verdict can be computed from it."""
    from disviz.diagnostics.annealing import deft_stage_comparison, load_annealing_result

    res = load_annealing_result(ROOT / "annealing" / "shapes3d.json")
    st = res["settings"]
    assert st["pool"] == 1 and st["scale"].startswith("64×64") and "12,288" in st["scale"]
    assert st["recipe"] == "equilibrium" and st["beta_max"] > 70 and "raised" in st["beta_max_note"]
    assert max(run["linear_ifp"] for run in res["runs"]) < st["beta_max"]  # no run frozen by construction
    assert sorted(res["ordering"]) == sorted(res["factors"]) and len(res["runs"]) == 48
    assert deft_stage_comparison(res, (10.0, 7.0, 5.0, 1.0))["comparable"]


def test_reference_recipe_twin_uses_the_same_sweeps():
    twin = ROOT / "annealing" / "dsprites_reference.json"
    if not twin.exists():
        pytest.skip("the reference-recipe twin is not shipped yet")
    eq = json.loads((ROOT / "annealing" / "dsprites.json").read_text())
    ref = json.loads(twin.read_text())
    assert ref["settings"]["recipe"] == "reference" and ref["settings"]["batch_size"] == 64
    assert [r["base"] for r in ref["runs"]] == [r["base"] for r in eq["runs"]]
    assert ref["settings"]["pool"] == eq["settings"]["pool"] == 1


def _results_table():
    import importlib.util

    spec = importlib.util.spec_from_file_location("results_table", ROOT / "results_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_results_block_is_what_the_cards_say():
    """checkpoints/README.md shows no number by hand: its results block is results_table.py's output
    from the shipped cards (run ``python checkpoints/results_table.py --write`` after shipping)."""
    import contextlib
    import io

    rt = _results_table()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rt.tables()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split(rt.BEGIN, 1)[1].split(rt.END, 1)[0]
    assert block.strip() == buf.getvalue().strip(), "README results block is stale: run results_table.py --write"


def test_budget_multiple_is_images_seen_over_the_first_checkpoints():
    """Issue 12's budget (≥ 30× the first checkpoint's images): 90,000 steps of 64 = 30× 3,000 steps of 64;
    an extra seed is measured against its shipped model's first checkpoint."""
    rt = _results_table()
    card = {"dataset": {"name": "dsprites"}, "model": "betavae", "steps": 90_000, "train": {"batch_size": 64}}
    assert rt.budget_multiple("dsprites/betavae", card) == 30
    seed = {"dataset": {"name": "dsprites"}, "model": "devae", "steps": 1, "train": {"images_seen": 96_000 * 45}}
    assert rt.budget_multiple("seeds/dsprites/devae-seed1", seed) == 45
    assert rt.budget_multiple("dsprites/new", {**card, "model": "new"}) is None
    assert set(rt.FIRST_IMAGES) == set(SHIPPED)


def test_the_beta_sweep_is_shipped_as_its_results_table_says():
    """Issue 29: the β-VAE sweep lesson 2 reads. Every finished trial is a loadable fp16 checkpoint at the spec's
    10,000 steps with no optimiser state, its scores are the table's; an unfinished trial ships no folder."""
    from disviz.sweeps.results import load_results
    from disviz.sweeps.spec import load_spec

    folder = ROOT / "sweeps" / "dsprites_betavae_beta"
    spec = load_spec(folder / "spec.toml")
    assert spec.models == ["betavae"] and len(spec.seeds) >= 2 and spec.steps >= 10_000
    assert sorted(spec.grid["betavae"]["beta"]) == [1.0, 2.0, 4.0, 6.0, 8.0, 16.0]
    rows = load_results(folder)["trials"]
    done = [r for r in rows if r["status"] == "done"]
    assert len(done) >= 4 and {r["model"] for r in rows} == {"betavae"}
    for r in rows:
        trial = folder / r["trial"]
        if r["status"] != "done":
            assert not trial.exists(), f"{trial} is unfinished but shipped"
            continue
        card = read_card(trial)
        assert card["steps"] == spec.steps and card["config"]["beta"] == r["hparams"]["beta"]
        assert card["storage_dtype"] == "float16" and not (trial / "optimizer.safetensors").exists()
        assert card["metrics"]["scores"]["mig"] == pytest.approx(r["scores"]["mig"])
