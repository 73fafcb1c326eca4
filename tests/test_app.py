"""AppTest per page: every page runs without exceptions on tiny real checkpoints, and widgets change
what is shown (decoded-image hash, traversal row order, codebook grid, metric report, switch to Explore).

The checkpoints are trained here once per session (disviz.engine.train.train, tiny networks, a few steps)
and reach the app through $DISVIZ_CHECKPOINTS.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # page files import pages._shared
    sys.path.insert(0, str(REPO))

from streamlit.testing.v1 import AppTest  # noqa: E402

TINY = {"base_channels": 4, "hidden": 16}
TIMEOUT = 60


@pytest.fixture(scope="session")
def ckpt_root(tmp_path_factory) -> Path:
    from disviz.engine.train import TrainConfig, train
    from disviz.models import model_names

    root = tmp_path_factory.mktemp("app_ckpts")
    for name in [m for m in ("betavae", "qlae") if m in model_names()]:
        train(
            TrainConfig(
                model=name,
                dataset="dsprites",
                out=root / f"tiny-{name}",
                steps=4,
                batch_size=8,
                device="cpu",
                seed=0,
                overrides=dict(TINY),
                num_threads=1,
                log_every=2,
            )
        )
    return root


@pytest.fixture
def env(ckpt_root, monkeypatch, tmp_path):
    monkeypatch.setenv("DISVIZ_CHECKPOINTS", str(ckpt_root))
    monkeypatch.setenv("DISVIZ_RUNS", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)  # no ./checkpoints here: only the tiny ones are found
    return ckpt_root


def _app() -> AppTest:
    return AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)


def _page(name: str, **state) -> AppTest:
    at = AppTest.from_file(str(REPO / "pages" / name), default_timeout=TIMEOUT)
    for k, v in state.items():
        at.session_state[k] = v
    return at


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_app_opens_on_explore_with_sidebar_and_device(env):
    at = _app().run()
    _ok(at)
    assert at.title[0].value == "Explore the latent space"
    pick = at.sidebar.selectbox(key="ckpt_pick")
    assert any("tiny-betavae" in o for o in pick.options) and any("tiny-qlae" in o for o in pick.options)
    assert any("Compute device" in c.value for c in at.sidebar.caption)


def test_explore_slider_changes_decoded_image_and_reset_restores_it(env):
    at = _app().run()
    h0 = at.session_state["explore_decoded_hash"]
    z0 = at.session_state["explore_z"]
    at.slider(key="z0").set_value(2.5).run()
    _ok(at)
    assert at.session_state["explore_z"][0] == pytest.approx(2.5)
    assert at.session_state["explore_decoded_hash"] != h0
    at.button(key="explore_reset").click().run()
    _ok(at)
    assert at.session_state["explore_z"] == pytest.approx(z0, abs=0.02)


def test_explore_sort_mode_changes_row_order(env):
    at = _app().run()
    by_kl = at.session_state["explore_row_order"]
    at.selectbox(key="explore_sort").select("index").run()
    _ok(at)
    assert at.session_state["explore_row_order"] == list(range(len(by_kl)))
    assert by_kl != list(range(len(by_kl)))  # KL order of a trained VAE is not the identity
    at.selectbox(key="explore_mode").select("minmax_interval").run()
    _ok(at)
    assert "minmax_interval" in " ".join(c.value for c in at.caption)


def test_explore_base_by_factor_values_and_bad_upload(env):
    at = _app().run()
    h0 = at.session_state["explore_base_hash"]
    at.radio(key="explore_source").set_value("factor values").run()
    _ok(at)
    h1 = at.session_state["explore_base_hash"]
    assert h1 != h0
    at.selectbox(key="explore_f_1").select(0).run()  # scale class 0
    _ok(at)
    assert at.session_state["explore_base_hash"] != h1
    at.radio(key="explore_source").set_value("upload").run()
    _ok(at)
    assert any("Upload an image" in i.value for i in at.info)


def test_explore_gif_export(env):
    at = _app().run()
    at.button(key="explore_gif").click().run()
    _ok(at)
    assert at.session_state["explore_gif_bytes"][:6] == b"GIF89a"


def test_codebook_page_for_qlae_and_info_for_vae(env):
    at = _page("codebook.py", ckpt=str(env / "tiny-vae-missing")).run()  # unknown path -> first entry (betavae)
    _ok(at)
    assert any("no codebook" in i.value for i in at.info)
    at = _page("codebook.py", ckpt=str((env / "tiny-qlae").resolve())).run()
    _ok(at)
    assert at.session_state["codebook_shape"][0] == 10
    assert at.session_state["codebook_shape"][1] >= 2


def test_metrics_page_shows_stored_report_and_jumps_to_explore(env, tmp_path):
    src = (env / "tiny-betavae").resolve()
    ck = tmp_path / "with-report"
    shutil.copytree(src, ck)
    card = json.loads((ck / "card.json").read_text())
    card["metrics"] = {
        "preset": "fast",
        "n": 500,
        "scores": {"infom": 0.42, "mig": 0.11},
        "details": {"infomec": {"nmi": [[0.1 * ((i + j) % 3) for j in range(10)] for i in range(5)]}},
    }
    card["tracks"] = {
        "diffusion": [
            {"step": 0, "nmi1": [0.1] * 5, "nmi2": [0.0] * 5},
            {"step": 4, "nmi1": [0.3] * 5, "nmi2": [0.1] * 5},
        ]
    }
    (ck / "card.json").write_text(json.dumps(card))
    at = _page("metrics.py", ckpt=str(ck.resolve()), extra_roots=[str(tmp_path)]).run()
    _ok(at)
    scores = at.dataframe[0].value
    assert scores.set_index("score").loc["InfoM (modularity)", "value"] == pytest.approx(0.42)
    assert len(at.session_state["metrics_latent_order"]) == 10
    at.selectbox(key="metrics_jump_pick").select(3).run()
    at.button(key="metrics_jump").click().run()
    assert at.session_state["explore_focus"] == 3


def test_metrics_page_without_report_offers_compute(env):
    at = _page("metrics.py", ckpt=str((env / "tiny-betavae").resolve())).run()
    _ok(at)
    assert any("no stored metric report" in w.value for w in at.warning)
    assert at.button(key="metrics_compute") is not None


def test_compare_page_side_by_side(env):
    at = _page("compare.py").run()
    _ok(at)
    assert len(at.session_state["compare_columns"]) == 2
    assert at.dataframe[-1].value.shape[1] == 2


def test_about_and_other_pages_via_navigation(env):
    at = _app().run()
    for page in ("pages/about.py", "pages/compare.py", "pages/metrics.py", "pages/codebook.py"):
        at.switch_page(page).run()
        _ok(at)


def test_broken_checkpoint_shows_error_and_rest_works(env, tmp_path):
    bad = tmp_path / "extra" / "broken"
    bad.mkdir(parents=True)
    (bad / "card.json").write_text('{"format": "disviz-checkpoint", "format_version": 99}')
    (bad / "model.safetensors").write_bytes(b"junk")
    at = _page("explore.py", ckpt=str(bad.resolve()), extra_roots=[str(tmp_path / "extra")]).run()
    _ok(at)
    assert any("newer than this disviz" in e.value for e in at.error)


def test_empty_checkpoints_points_to_train(monkeypatch, tmp_path):
    monkeypatch.setenv("DISVIZ_CHECKPOINTS", str(tmp_path / "none"))
    monkeypatch.setenv("DISVIZ_RUNS", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    at = _app().run()
    _ok(at)
    assert any("Train" in i.value for i in at.info)


def test_annealing_page_reads_results_from_checkpoints_annealing(env, tmp_path):
    folder = tmp_path / "checkpoints" / "annealing"
    folder.mkdir(parents=True)
    runs = [
        {"factor": f, "beta": [70.0, 30.0, 10.0, 1.0], "kl": [0.0, 0.05 + 0.1 * i, 0.8, 2.0], "ifp": 30.0 - 10 * i}
        for i, f in enumerate(["posX", "shape"])
    ]
    result = {
        "format": "disviz-annealing",
        "format_version": 1,
        "settings": {"dataset": "dsprites"},
        "threshold": 0.1,
        "runs": runs,
        "factors": {f: {"ifps": [r["ifp"] for r in runs if r["factor"] == f]} for f in ("posX", "shape")},
    }
    (folder / "quick.json").write_text(json.dumps(result))
    (folder / "broken.json").write_text("{not json")
    at = _page("annealing.py").run()
    _ok(at)
    assert at.selectbox(key="annealing_pick").value.endswith("broken.json")  # sorted: broken first
    assert at.error, "a broken result file must show an error"
    box = at.selectbox(key="annealing_pick")
    box.select(next(o for o in box.options if o.endswith("quick.json"))).run()
    _ok(at)
    assert not at.error
    assert at.session_state["annealing_factors"] == ["posX", "shape"]


def test_annealing_page_without_results_says_how_to_make_them(env):
    at = _page("annealing.py").run()
    _ok(at)
    assert any("python -m disviz anneal" in i.value for i in at.info)


def test_annealing_page_quick_live_run(env):
    pytest.importorskip("disviz.diagnostics.annealing")
    at = _page("annealing.py").run()
    _ok(at)
    at.number_input(key="annealing_bases").set_value(1)
    at.number_input(key="annealing_steps").set_value(100)
    at.button(key="annealing_run").click().run()
    _ok(at)
    assert not at.error, [e.value for e in at.error]
    assert at.session_state["annealing_live"]["runs"], "the live run returned no runs"
    assert at.session_state["annealing_factors"] == sorted(at.session_state["annealing_live"]["factors"])


def test_latent_space_page_defaults_to_two_informative_latents_and_redraws(env):
    at = _page("latent_space.py", ckpt=str((env / "tiny-betavae").resolve())).run()
    _ok(at)
    x, y = at.selectbox(key="latent_x").value, at.selectbox(key="latent_y").value
    assert x != y
    at.selectbox(key="latent_factor").select(3).run()  # posX colouring: a redraw from the cached codes
    _ok(at)
    assert any("Click a point" in i.value for i in at.info)


def test_explore_takes_a_point_picked_in_the_latent_space(env):
    import numpy as np

    img = np.zeros((64, 64, 1), np.uint8)
    img[10:30, 10:30] = 255
    at = _app()
    at.session_state["explore_picked"] = img
    at.session_state["explore_source"] = "picked point"
    at.run()
    _ok(at)
    import hashlib

    assert at.session_state["explore_base_hash"] == hashlib.sha1(img.tobytes()).hexdigest()[:16]


def test_explore_shows_the_generator_traversal_for_did(monkeypatch, tmp_path):
    from disviz.engine.train import TrainConfig, train

    root = tmp_path / "ck"
    train(
        TrainConfig(
            model="did",
            dataset="dsprites",
            out=root / "tiny-did",
            steps=2,
            batch_size=10,
            device="cpu",
            overrides={"arch": "conv", **TINY},
            num_threads=1,
        )  # fmt: skip
    )
    monkeypatch.setenv("DISVIZ_CHECKPOINTS", str(root))
    monkeypatch.setenv("DISVIZ_RUNS", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    at = _app().run()
    _ok(at)
    assert any("Generator traversal" in h.value for h in at.subheader)
    at.number_input(key="explore_gen_seed").set_value(3).run()
    _ok(at)


def _fake_sweep(ckpt_root: Path, runs: Path) -> Path:
    """A finished 4-trial sweep (two models x two seeds) in runs/sweeps/demo, trials = the tiny checkpoint."""
    from disviz.sweeps.results import SweepResults
    from disviz.sweeps.spec import expand_trials, parse_spec

    spec = parse_spec(
        {"name": "demo", "models": ["betavae", "betatcvae"], "seeds": [0, 1], "metrics": ["mig", "infom", "sap"]},
        out=runs / "sweeps" / "demo",
    )
    results = SweepResults(spec.out, spec, {"command": "python -m disviz sweep demo.toml", "ray": "test"})
    for i, t in enumerate(results.start(expand_trials(spec), resume=False)):
        shutil.copytree(ckpt_root / "tiny-betavae", spec.out / t.id)
        results.update(
            t.id, status="done", wall_s=1.0, scores={"mig": 0.1 * i, "infom": 0.2 + 0.1 * i, "sap": 0.05 * (3 - i)}
        )
    return spec.out


def test_sweeps_page_draws_the_scores_and_opens_a_run_in_explore(env, tmp_path):
    folder = _fake_sweep(env, tmp_path / "runs")
    at = _app().run()
    pick = at.sidebar.selectbox(key="ckpt_pick")
    assert not any("demo" in o for o in pick.options), "sweep trials must not flood the picker"
    at.switch_page("pages/sweeps.py").run()
    _ok(at)
    assert at.title[0].value == "Sweeps"
    assert "demo" in at.selectbox(key="sweeps_pick").value
    table = at.dataframe[0].value
    assert len(table) == 4 and {"mig", "infom", "sap", "status"} <= set(table.columns)
    at.selectbox(key="sweeps_by").select("model").run()
    at.selectbox(key="sweeps_metric").select("infom").run()
    _ok(at)
    trial = "betatcvae-dsprites-s1"
    at.selectbox(key="sweeps_run").select(trial).run()
    at.button(key="sweeps_explore").click().run()
    _ok(at)
    path = str((folder / trial).resolve())
    assert at.session_state["ckpt"] == path and path in at.session_state["sweep_opened"]
    assert at.title[0].value == "Explore the latent space"
    assert at.session_state["ckpt_pick"] == path
    # the app with that session state: the sidebar picker lists the opened trial and keeps it selected
    at = _app()
    for key in ("ckpt", "ckpt_pick", "sweep_opened"):
        at.session_state[key] = [path] if key == "sweep_opened" else path
    at.run()
    _ok(at)
    pick = at.sidebar.selectbox(key="ckpt_pick")
    assert pick.value == path and "[sweep demo]" in pick.format_func(path)


def test_sweeps_page_checks_a_typed_spec_and_refuses_a_bad_one(env):
    at = _page("sweeps.py").run()
    _ok(at)
    assert any("No sweeps found" in i.value for i in at.info)
    at.text_area(key="sweeps_spec").set_value('name = "x"\nmodels = ["nope"]\n').run()
    at.button(key="sweeps_check").click().run()
    assert any("unknown model 'nope'" in e.value for e in at.error)
    at.text_area(key="sweeps_spec").set_value(
        'name = "x"\nmodels = ["betavae"]\nseeds = [0, 1]\nsteps = 5\n[set]\nbase_channels = 4\n'
    ).run()
    at.button(key="sweeps_check").click().run()
    _ok(at)
    assert any("2 trials" in s.value for s in at.success)


def test_a_deep_link_opens_the_named_checkpoint_base_and_slider_values(env):
    at = _app()
    at.query_params.update({"ckpt": str((env / "tiny-betavae").resolve()), "seed": "5", "anchor": "posterior"})
    first = at.run()
    _ok(first)
    n = len(first.session_state["explore_z"])
    linked = [round(0.5 - 0.25 * j, 2) for j in range(n)]
    at = _app()
    at.query_params.update(
        {"ckpt": str((env / "tiny-betavae").resolve()), "seed": "5", **{f"z{j}": str(v) for j, v in enumerate(linked)}}
    )
    at.run()
    _ok(at)
    assert "tiny-betavae" in at.session_state["ckpt"]
    assert at.session_state["explore_seed"] == 5
    assert at.session_state["explore_z"] == pytest.approx(linked, abs=0.06)  # snapped to the sliders' steps
    assert not at.warning


def test_a_bad_or_stale_link_gets_a_message_not_a_traceback(env):
    at = _app()
    at.query_params.update(
        {"ckpt": "checkpoints/gone/forever", "seed": "-3", "z1": "nope", "z99": "1", "mode": "sideways"}
    )
    at.run()
    _ok(at)
    said = " ".join(w.value for w in at.warning) + " ".join(w.value for w in at.sidebar.warning)
    assert "checkpoints/gone/forever" in said and "does not have" in said
    assert "seed -3" in said and "z1 'nope'" in said and "sets z99" in said and "sideways" in said
    assert at.title[0].value == "Explore the latent space"  # the rest of the view opened
