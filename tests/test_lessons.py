"""Lessons teach what their data says: oracle cases for every computed statement, and the page on the
shipped checkpoints (lesson 1 only picks models that reconstruct; lesson 2 reads one family)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from disviz.app import lessons
from disviz.engine.card import Card

REPO = Path(__file__).resolve().parent.parent


def card(mig: float | None = None, recon: float | None = None, **extra) -> Card:
    scores = {k: v for k, v in (("mig", mig), ("reconstruction", recon)) if v is not None}
    return Card.from_dict({"metrics": {"scores": scores}, **extra})


def test_a_model_that_does_not_reconstruct_is_never_the_entangled_example():
    cards = {"clean": card(0.4, 30), "ae": card(0.02, 10), "broken": card(0.001, 1342), "mid": card(0.2, 45)}
    ok, bar = lessons.reconstructing(cards)
    assert bar == pytest.approx(50) and ok == {"clean": True, "ae": True, "broken": False, "mid": True}
    pair = lessons.contrast_pair(cards)
    assert (pair["best"], pair["worst"]) == ("clean", "ae")
    assert "broken" in pair["left_out"] and "do not reconstruct" in pair["text"]
    assert lessons.contrast_pair({"a": card(0.1, 10), "b": card(0.2, 1000)}) is None  # one usable model


def _results(rows, other_models=()):
    trials = [
        {"model": "betavae", "status": "done", "seed": s, "hparams": {"beta": b}, "trial": f"betavae-b{b}-s{s}",
         "scores": {"mig": m, "reconstruction": r}}
        for b, s, m, r in rows
    ]  # fmt: skip
    trials += [{"model": m, "status": "done", "seed": 0, "hparams": {"beta": 4}, "scores": {"mig": 1, "reconstruction": 1}}
               for m in other_models]  # fmt: skip
    trials.append({"model": "betavae", "status": "queued", "seed": 0, "hparams": {"beta": 99}, "scores": {}})
    return {"trials": trials}


def test_the_beta_lesson_reads_one_family_and_states_the_measured_correlations():
    rows = lessons.beta_sweep_rows(
        _results(
            [(1, 0, 0.05, 20), (1, 1, 0.07, 21), (4, 0, 0.2, 30), (4, 1, 0.18, 33), (16, 0, 0.3, 60)], ["betatcvae"]
        )
    )
    assert {r["model"] for r in rows} == {"betavae"} and len(rows) == 5  # other models and unfinished runs left out
    res = lessons.beta_sweep_tradeoff(rows)
    assert res["rho"]["beta_recon"] > 0.9 and res["rho"]["beta_mig"] > 0.8 and res["rho"]["recon_mig"] > 0.8
    assert "the trade-off shows" in res["text"] and "β = 16 (seed 0)" in res["text"]
    flipped = [{**r, "reconstruction": 100 - r["reconstruction"]} for r in rows]
    assert "no trade-off here" in lessons.beta_sweep_tradeoff(flipped)["text"]
    assert lessons.beta_sweep_tradeoff(rows[:2])["rho"] is None


def test_the_qlae_lesson_says_who_leads_on_which_dataset():
    q = Card.from_dict({"metrics": {"scores": {"infom": 0.73, "infoe": 0.9}}})
    b = Card.from_dict({"metrics": {"scores": {"infom": 0.5, "infoe": 0.8}}})
    res = lessons.quantisation_gain(q, {"betavae": b}, "Shapes3D")
    assert res["leads"] and res["text"].startswith("On Shapes3D") and "above betavae" in res["text"]
    res = lessons.quantisation_gain(b, {"other": q}, "dSprites")
    assert res["leads"] is False and "not above other" in res["text"]
    assert not any("help" in t.lower() for t in lessons.LESSONS)  # no title claims a result


def test_the_diffusion_story_finds_the_peak_and_its_stage():
    track = [
        {"step": 1000 * (i + 1), "mig": m, "stage": st} for i, (m, st) in enumerate([(0.1, 0), (0.32, 2), (0.2, 3)])
    ]
    story = lessons.diffusion_story(
        Card.from_dict({"model": "deft", "config": {"betas": [70, 30, 12, 1]}, "tracks": {"diffusion": track}}), "deft"
    )
    assert story["peak"] == 1
    assert "0.320 at step 2,000 (stage 3 of 4, β = 12)" in story["text"] and "(stage 4 of 4, β = 1)" in story["text"]
    assert "0.120 of it was lost" in story["text"]
    assert lessons.diffusion_story(Card.from_dict({"tracks": {}}), "x") is None


def test_the_lessons_page_on_the_shipped_models(monkeypatch):
    from streamlit.testing.v1 import AppTest

    from disviz.engine.card import load_card

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("DISVIZ_CHECKPOINTS", raising=False)
    at = AppTest.from_file(str(REPO / "pages" / "lessons.py"), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    shipped = {
        p.name: load_card(p) for p in (REPO / "checkpoints" / "dsprites").iterdir() if (p / "card.json").is_file()
    }
    ok, _ = lessons.reconstructing(shipped)
    pair = at.session_state["lesson1_pair"]
    assert all(ok[name] for name in pair) and "did" not in pair
    for i in range(1, len(lessons.LESSONS)):
        at.radio(key="lesson_pick").set_value(i).run()
        assert not at.exception, (i, [e.value for e in at.exception])
        if i == 1:
            assert at.session_state["lesson2_models"] == ["betavae"]
