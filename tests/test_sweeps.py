"""Sweeps (issue 14): spec validation, trial expansion, the results table, and real runs on local Ray.

The end-to-end tests really use Ray (one local session shared by the module: starting Ray costs
seconds) and the real engine on tiny networks; the crash test kills a trial's worker process
mid-run through the runner's test hook, the resume test interrupts a real ``python -m disviz
sweep`` process with Ctrl-C (SIGINT) and resumes it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from disviz import cli
from disviz.engine.card import read_card
from disviz.engine.checkpoints import is_checkpoint
from disviz.sweeps.common import SweepError
from disviz.sweeps.results import SweepResults, load_results, spearman_matrix
from disviz.sweeps.spec import expand_trials, load_spec, parse_spec

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

TINY = """
name = "tiny"
models = ["betavae", "betatcvae"]
datasets = ["dsprites"]
seeds = [0, 1]
steps = {steps}
batch_size = 8
metrics = ["mig", "dci_disentanglement", "infom"]
[set]
base_channels = 4
hidden = 16
latent_dim = 3
[eval]
n = 60
[resources]
num_cpus = 1
save_every = 10
"""


def write_spec(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# --- validation (no Ray) ------------------------------------------------------------------------
BAD = {
    "unknown model": ('models = ["vae9000"]', "unknown model 'vae9000'"),
    "unknown key": ('models = ["betavae"]\nepochs = 3', "unknown key(s) ['epochs']"),
    "empty grid": ('models = ["betavae"]\n[grid]\nbeta = []', "[grid] beta is an empty list"),
    "bad type": ('models = ["betavae"]\n[grid]\nbeta = ["high"]', "beta = 'high' for betavae: expected float"),
    "bad int type": ('models = ["betavae"]\n[set]\nlatent_dim = 2.5', "latent_dim = 2.5 for betavae: expected int"),
    "unknown metric": ('models = ["betavae"]\nmetrics = ["accuracy"]', "unknown metric 'accuracy'"),
    "unknown dataset": ('models = ["betavae"]\ndatasets = ["mnist"]', "unknown dataset 'mnist'"),
    "unknown field": ('models = ["betavae"]\n[grid]\ngamma = [1.0]', "'gamma' is not an option of betavae"),
    "field of another model": (
        'models = ["betavae", "qlae"]\n[grid]\nbeta = [1.0]',
        "'beta' is not an option of qlae",
    ),
    "grid not a list": ('models = ["betavae"]\n[grid]\nbeta = 4.0', "[grid] beta must be a list"),
    "bad steps": ('models = ["betavae"]\nsteps = -5', "'steps' must be a positive integer"),
    "no models": ('datasets = ["dsprites"]', "'models' is required"),
    "bad resources": ('models = ["betavae"]\n[resources]\nnum_gpu = 1', "[resources] unknown key(s) ['num_gpu']"),
    "bad distribution": (
        'models = ["betavae"]\n[random]\nlr = { dist = "normal", mean = 1 }',
        "dist one of ['choice', 'int', 'loguniform', 'uniform']",
    ),
    "invalid config": ('models = ["betavae"]\n[set]\nrecon = "poisson"', "recon='poisson'"),
    "not toml": ('models = ["betavae"\n', "not valid TOML"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_spec_is_one_clear_line_before_anything_starts(case, tmp_path, capsys):
    body, expected = BAD[case]
    spec = write_spec(tmp_path, f'name = "bad"\nout = "out"\n{body}\n')
    with pytest.raises(SweepError) as err:
        load_spec(spec)
    assert expected in str(err.value)
    # the CLI prints it as one line, exit code 2, and creates nothing
    assert cli.main(["sweep", str(spec)]) == 2
    stderr = capsys.readouterr().err.strip()
    assert stderr.startswith("error: ") and len(stderr.splitlines()) == 1 and expected in stderr
    assert not (tmp_path / "out").exists()


def test_grid_random_and_seeds_expand_to_stable_trials(tmp_path, capsys):
    text = """
name = "expand"
out = "out"
models = ["betavae", "betatcvae"]
seeds = [0, 1]
steps = 100
[set]
lr = 0.0005
[grid]
latent_dim = [4, 6]
[grid.betavae]
beta = [1.0, 4.0]
[random]
samples = 2
seed = 7
[random.betatcvae]
beta = { dist = "loguniform", low = 1.0, high = 10.0 }
"""
    spec = load_spec(write_spec(tmp_path, text))
    trials = expand_trials(spec)
    # betavae: 2 latent_dim x 2 beta x 2 seeds; betatcvae: 2 latent_dim x 2 draws x 2 seeds
    assert len(trials) == 16
    assert len({t.id for t in trials}) == 16
    assert spec.out == tmp_path / "out"  # a relative out is relative to the spec file
    bv = [t for t in trials if t.model == "betavae"]
    assert {(t.hparams["latent_dim"], t.hparams["beta"]) for t in bv} == {(4, 1.0), (4, 4.0), (6, 1.0), (6, 4.0)}
    assert all(t.overrides["lr"] == 0.0005 and t.steps == 100 for t in trials)
    assert "betavae-dsprites-beta=4-latent_dim=6-s1" in {t.id for t in trials}
    draws = {t.hparams["beta"] for t in trials if t.model == "betatcvae"}
    assert len(draws) == 2 and all(1.0 <= b <= 10.0 for b in draws)
    assert [t.id for t in expand_trials(load_spec(write_spec(tmp_path, text)))] == [t.id for t in trials]
    assert cli.main(["sweep", str(tmp_path / "spec.toml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "16 trials" in out and "betatcvae-dsprites-beta=" in out


def test_results_table_is_atomic_json_and_csv_and_refuses_to_overwrite(tmp_path):
    spec = parse_spec({"name": "t", "models": ["betavae"], "seeds": [0, 1, 2], "metrics": ["mig", "sap"]})
    folder = tmp_path / "sw"
    results = SweepResults(folder, spec, {"note": "test"})
    todo = results.start(expand_trials(spec), resume=False)
    assert len(todo) == 3
    for i, t in enumerate(todo):
        results.update(t.id, status="done", scores={"mig": 0.1 * i, "sap": 0.3 - 0.1 * i}, wall_s=1.0)
    data = load_results(folder)
    assert [r["status"] for r in data["trials"]] == ["done"] * 3
    header = (folder / "results.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["trial", "model", "dataset"] and "mig" in header and "sap" in header
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    names, mat = spearman_matrix(data)
    assert names == ["mig", "sap"] and mat[0, 1] == pytest.approx(-1.0)
    with pytest.raises(SweepError, match="--resume"):
        SweepResults(folder, spec).start(expand_trials(spec), resume=False)
    assert SweepResults(folder, spec).start(expand_trials(spec), resume=True) == []


def test_a_diverging_trial_is_recorded_as_nan_not_raised(tmp_path):
    """The engine's non-finite-loss stop -> status 'nan' (the driver does not retry it)."""
    from disviz.sweeps.runner import run_trial

    task = {
        "trial": {
            "id": "nan-trial",
            "model": "betavae",
            "dataset": "dsprites",
            "seed": 0,
            "steps": 40,
            "batch_size": 8,
            "hparams": {"lr": 1e12},
            "overrides": {"base_channels": 4, "hidden": 16, "latent_dim": 3, "lr": 1e12},
        },
        "folder": str(tmp_path / "nan-trial"),
        "sweep": "t",
        "eval": {"n": 60, "seed": 0, "preset": "fast", "sampling": "pool"},
        "resources": {"device": "cpu", "amp": "off", "save_every": 1000},
        "threads": 1,
        "metrics": ["mig"],
        "attempt": 1,
    }
    entry = run_trial(task)
    assert entry["status"] == "nan" and "diverged" in entry["error"]


# --- real runs on Ray -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_local():
    """One local Ray session for the module (run_sweep joins an initialised session)."""
    pytest.importorskip("ray")
    from disviz.sweeps.runner import ray_session

    with ray_session(num_cpus=2) as ray:
        yield ray


def test_four_trial_sweep_runs_end_to_end_on_ray(ray_local, tmp_path, capsys):
    from disviz.sweeps.runner import run_sweep

    spec = load_spec(write_spec(tmp_path, TINY.format(steps=20)), out=tmp_path / "sw")
    lines: list[str] = []
    results = run_sweep(spec, log=lines.append)
    rows = load_results(tmp_path / "sw")["trials"]
    assert [r["status"] for r in rows] == ["done"] * 4, rows
    assert {r["model"] for r in rows} == {"betavae", "betatcvae"}
    for r in rows:
        folder = tmp_path / "sw" / r["trial"]
        card = read_card(folder)
        assert is_checkpoint(folder) and card["steps"] == 20
        assert card["metrics"]["n"] == 60 and card["sweep"]["trial"] == r["trial"]
        assert set(r["scores"]) == {"mig", "dci_disentanglement", "infom"}
        assert r["wall_s"] > 0 and r["attempts"] == 1
        # the node that ran it (issue 32): hostname, Ray's node IP and id, in the table and the card
        assert r["node"] == socket.gethostname() and r["node_ip"] and len(r["node_id"]) > 8
        assert card["sweep"]["node_id"] == r["node_id"]
    assert results.counts()["done"] == 4 and any("4 done" in line for line in lines)
    assert (tmp_path / "sw" / "results.csv").read_text().count("\n") == 5
    assert json.loads((tmp_path / "sw" / "sweep.json").read_text())["run"]["ray"]
    # --report prints the table without starting Ray
    assert cli.main(["sweep", str(tmp_path / "spec.toml"), "--out", str(tmp_path / "sw"), "--report"]) == 0
    assert "betatcvae-dsprites-s1" in capsys.readouterr().out
    # the catalogue leaves sweep trials out of the picker unless asked for one
    from disviz.app.catalogue import list_entries

    trial = (tmp_path / "sw" / rows[0]["trial"]).resolve()
    assert list_entries([tmp_path]) == []
    listed = list_entries([tmp_path], include=[trial])
    assert [e.path for e in listed] == [trial] and listed[0].label.startswith("[sweep tiny]")


def test_a_trial_whose_worker_dies_is_retried_from_its_checkpoint(ray_local, tmp_path, monkeypatch):
    from disviz.sweeps.runner import CRASH_ENV, run_sweep

    text = TINY.format(steps=30).replace('models = ["betavae", "betatcvae"]', 'models = ["betavae"]')
    text = text.replace("seeds = [0, 1]", "seeds = [0]")
    spec = load_spec(write_spec(tmp_path, text), out=tmp_path / "sw")
    monkeypatch.setenv(CRASH_ENV, "betavae@15")  # the first attempt exits hard at step 20 (saved: 10)
    lines: list[str] = []
    run_sweep(spec, log=lines.append)
    (row,) = load_results(tmp_path / "sw")["trials"]
    # attempts: 2 (one more if a loaded machine also loses a worker for another reason)
    assert row["status"] == "done" and row["attempts"] >= 2, (row, lines)
    assert any("crashed" in line and "retrying" in line for line in lines), lines
    card = read_card(tmp_path / "sw" / row["trial"])
    assert card["steps"] == 30 and card["train"]["resumes"] >= 1
    starts = [s["from_step"] for s in card["train"]["segments"]]
    assert starts[:2] == [0, 10], (starts, lines)  # resumed from its checkpoint, not restarted


def test_interrupted_sweep_resumes_without_redoing_finished_trials(ray_local, tmp_path):
    from disviz.sweeps.runner import run_sweep

    spec_path = write_spec(tmp_path, TINY.format(steps=40))
    out = tmp_path / "sw"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "disviz", "sweep", str(spec_path), "--out", str(out), "--num-cpus", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 900  # generous: a loaded CI machine runs the first trial slowly
        while time.monotonic() < deadline:
            rows = load_results(out)["trials"] if (out / "results.json").is_file() else []
            if any(r["status"] == "done" for r in rows):
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err.decode()[-2000:]
    before = {r["trial"]: r for r in load_results(out)["trials"]}
    done = {t for t, r in before.items() if r["status"] == "done"}
    assert 1 <= len(done) < 4, before
    assert all(r["status"] in ("done", "pending") for r in before.values())
    mtimes = {t: (out / t / "card.json").stat().st_mtime_ns for t in done}

    spec = load_spec(spec_path, out=out)
    with pytest.raises(SweepError, match="--resume"):
        run_sweep(spec)
    lines: list[str] = []
    run_sweep(spec, resume=True, log=lines.append)
    after = {r["trial"]: r for r in load_results(out)["trials"]}
    assert all(r["status"] == "done" for r in after.values())
    assert f"{len(done)} already finished" in lines[0]
    for t in done:  # finished trials were not redone
        assert after[t] == before[t]
        assert (out / t / "card.json").stat().st_mtime_ns == mtimes[t]
    assert len([line for line in lines if ": done" in line]) == 4 - len(done)


def test_the_app_sweep_form_refuses_out_and_oversized_sweeps():
    from disviz.sweeps.jobs import APP_MAX_TRIALS, example_spec, validate_text

    spec = validate_text(example_spec("ok"))
    assert len(spec.trials) == 8 and spec.out.name == "ok"
    with pytest.raises(SweepError, match="remove 'out'"):
        validate_text('out = "/elsewhere"\n' + example_spec("x"))
    many = example_spec("big").replace("seeds = [0, 1]", f"seeds = {list(range(APP_MAX_TRIALS))}")
    with pytest.raises(SweepError, match=f"at most {APP_MAX_TRIALS}"):
        validate_text(many)


def test_sweep_figures_draw_every_trial_as_a_point_and_a_bounded_correlation_matrix():
    from disviz.sweeps.figures import group_choices, rank_correlation_figure, score_distribution_figure

    rows = [
        {
            "trial": f"{m}-s{s}",
            "model": m,
            "dataset": "dsprites",
            "seed": s,
            "status": "done" if s < 3 else "nan",
            "hparams": {"beta": b},
            "scores": {"mig": 0.1 * s + (0.2 if m == "b" else 0), "sap": 0.05 * s, "infom": 0.3 - 0.02 * s},
        }
        for m, b in (("a", 1.0), ("b", 4.0))
        for s in range(4)
    ]
    data = {"metrics": ["mig", "sap", "infom"], "trials": rows}
    assert group_choices(data) == ["model", "beta"]
    fig = score_distribution_figure(data, "mig", by="beta")
    assert [t.name for t in fig.data] == ["a", "b"]
    assert sum(len(t.y) for t in fig.data) == 6  # the finished trials only, each one a point
    assert fig.data[1].customdata[0][0] == "b-s0" and fig.data[1].boxpoints == "all"
    heat = rank_correlation_figure(data).data[0]
    z = [[v for v in row] for row in heat.z]
    assert len(z) == 3 and heat.zmin == -1 and heat.zmax == 1
    assert z[1][2] == pytest.approx(-1.0)  # sap rises, infom falls with the seed in both models
    empty = rank_correlation_figure({"metrics": ["mig"], "trials": rows[:2]})
    assert not empty.data and "at least 3" in empty.layout.annotations[0].text
