"""Lessons: short guided tours of the methods' ideas on the shipped checkpoints.

Every sentence about a shipped model is computed when the lesson opens (disviz/app/lessons.py); the
lesson picker and the lesson it shows are one fragment, so picking a lesson reruns only that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from disviz.app import explore as ex
from disviz.app import lessons
from disviz.app.figures import (
    argmax_order,
    beta_sweep_figure,
    compose_grid,
    diffusion_figure,
    heatmap,
    ifp_distribution,
    label_rows,
    metric_curve,
)
from disviz.core.errors import UserError
from disviz.diagnostics.annealing import deft_stage_comparison, deft_thresholds, ordering_text
from disviz.engine.card import Card
from disviz.serving.images import data_uri
from disviz.sweeps.results import load_results
from pages._shared import _version, download_bytes, entries, get_model, get_stats, png_of, show_uri

st.title("Lessons")
st.caption(
    f"{len(lessons.LESSONS)} short lessons on the shipped models. Every number below is read or computed now, "
    "and every conclusion is the one the numbers give."
)

# the sidebar's shared catalogue (cards parsed once); seed-0 models shipped at checkpoints/<dataset>/<model>
SHIPPED_ROOT = Path("checkpoints").resolve()
shipped = [
    e
    for e in entries(("checkpoints",), _version())
    if e.card and not e.error and Path(e.path).resolve().parent.parent == SHIPPED_ROOT and (e.card.seed or 0) == 0
]


def by_dataset(name: str) -> dict:
    return {Path(e.path).name: e for e in shipped if e.card.dataset_name == name}


dsprites, shapes3d = by_dataset("dsprites"), by_dataset("shapes3d")
cards = {name: e.card for name, e in dsprites.items()}
if not dsprites:
    st.info("The lessons use the shipped checkpoints in `./checkpoints/dsprites/`; none were found here.")
    st.stop()


@st.cache_data(max_entries=32, show_spinner="Decoding a traversal…")
def traversal_uri(path: str, mtime: float, steps: int = 7) -> str:
    """A shipped model's labelled traversal grid around a fixed data image, as a data URI (shared)."""
    model, _ = get_model(path, mtime)
    stats = get_stats(path, mtime, 256)
    anchor = ex.encode(model, stats.images[:1])[0]
    order = ex.sort_latents(stats, "kl")
    mode = "std_gaussian" if stats.kl is not None else "minmax_interval"
    specs = model.latent_specs()
    vals = [ex.traversal_values(specs[j], mode, stats.codes, steps) for j in order]
    tiles = ex.traversal_tiles(model, anchor, order, vals)
    return data_uri(label_rows(compose_grid(tiles, gutter=2), ex.row_labels(stats, order), 64, 2, width=220))


@st.cache_data(max_entries=8, show_spinner=False)
def codebook_uri(path: str, mtime: float) -> str:
    model, _ = get_model(path, mtime)
    stats = get_stats(path, mtime, 256)
    tiles, _ = ex.codebook_grid(model, ex.encode(model, stats.images[:1])[0])
    return data_uri(compose_grid(tiles, gutter=2))


def nmi_of(card: Card) -> tuple[np.ndarray | None, list[str]]:
    factors = list((card.metrics.factor_names if card.metrics else None) or card.factor_names)
    return ex.report_matrix(card.metrics, "nmi", len(factors)), factors


def lesson_traversals() -> None:
    st.markdown(
        """
A **traversal** changes one latent at a time and decodes. If the model is disentangled, each row changes one
factor of the image (position, size, shape, rotation) and nothing else; an entangled model moves several at
once. Below: a clean model and an entangled one, both chosen among the shipped dSprites models that **redraw
their images well** (a model that does not reconstruct shows a broken decoder, not entanglement).
"""
    )
    pair = lessons.contrast_pair(cards)
    if pair is None:
        st.info("Fewer than two shipped dSprites models reconstruct and have a stored metric report.")
        return
    st.session_state["lesson1_pair"] = [pair["best"], pair["worst"]]
    st.markdown(pair["text"])
    c = st.columns(2)
    for col, name in zip(c, (pair["best"], pair["worst"]), strict=True):
        e = dsprites[name]
        uri = traversal_uri(str(e.path), e.mtime)
        with col:
            st.markdown(f"**{name}** (MIG {pair['scores'][name]:.3f})")
            show_uri(uri, alt=f"traversal of {name}")
            download_bytes("PNG", lambda uri=uri: png_of(uri), f"{name}_traversal.png", "image/png", f"lesson1_{name}")
            nmi, factors = nmi_of(cards[name])
            if nmi is not None:
                st.caption(lessons.matrix_reading(nmi, factors)["text"])
    st.markdown(
        "**What to look for:** follow one row from left to right. In the clean model most active rows change one "
        "thing (only x, only y, only size) while the sprite otherwise stays the same; in the entangled one a row "
        "moves the sprite *and* resizes or reshapes it. The captions count the factors that have a latent of their "
        "own in each model's stored NMI matrix. Row labels: the factor each latent shares most information with "
        "(normalised MI on 256 images) and its KL."
    )


def lesson_beta() -> None:
    st.markdown(
        """
A β-VAE multiplies the KL term by β. A larger β squeezes the information bottleneck: the textbook says the
model keeps fewer, more independent directions (more disentangled) and draws blurrier images (higher
reconstruction error). A trade-off along β can only be seen along β, in one family with everything else
fixed: here a sweep of **β-VAE on dSprites** run with `python -m disviz sweep`, every seed a point.
"""
    )
    folder = Path(lessons.BETA_SWEEP)
    try:
        rows = lessons.beta_sweep_rows(load_results(folder))
    except UserError as exc:
        st.info(f"The β sweep is not available here ({exc}).")
        return
    st.session_state["lesson2_models"] = sorted({r["model"] for r in rows})  # one family only
    res = lessons.beta_sweep_tradeoff(rows)
    st.markdown(res["text"])
    if rows:
        st.plotly_chart(beta_sweep_figure(rows), key="lesson2_sweep")
        st.dataframe(rows, hide_index=True, key="lesson2_table")
    st.caption(f"From {folder}/results.json (10,000 steps per run, scored on 10,000 samples).")


def lesson_ifp() -> None:
    st.markdown(
        """
Train a one-latent VAE on images where only one factor varies and lower β slowly: at some β the factor's
information suddenly **freezes** into the latent — its *information freezing point* (IFP). Factors that change
many pixels (position) tend to freeze at high β, subtle ones (shape, rotation) at low β. DEFT trains groups of
latents in stages with decreasing β, meaning to catch one family of factors per stage. Do its thresholds fall
between the measured IFPs? Only if both are on the same scale (64×64 images, loss summed over pixels).
"""
    )
    files = [f for f in ex.annealing_files() if f.stem == "dsprites"] or [
        f for f in ex.annealing_files() if f.stem.startswith("dsprites")
    ]
    if not files:
        st.info("No shipped dSprites annealing result in `checkpoints/annealing/`.")
        return
    from disviz.diagnostics.annealing import load_annealing_result

    result = load_annealing_result(files[0])
    settings = result.get("settings") or {}
    thresholds, source = deft_thresholds("dsprites")
    comparison = deft_stage_comparison(result, thresholds)
    st.markdown(
        f"Measured ({files[0].name}: scale {settings.get('scale', 'not recorded')}, recipe "
        f"{settings.get('recipe', 'equilibrium')}): **{ordering_text(result)}**."
    )
    _, ifps, _ = ex.annealing_view(result)
    marks = {f"DEFT β{k}={b:g}": b for k, b in enumerate(thresholds)}
    st.plotly_chart(ifp_distribution(ifps, beta_marks=marks), key="lesson3_ifps")
    (st.success if comparison["agree"] else st.warning)(comparison["text"])
    st.caption(f"DEFT's thresholds from {source}.")


def lesson_quantised() -> None:
    st.markdown(
        """
QLAE replaces each continuous latent by a **scalar codebook**: latent *j* can only take one of a few learned
values. With few values per latent, the cheapest way to encode the data is to give each latent one factor
(modularity, InfoM), and each factor can then be read off its latent by a simple classifier (explicitness,
InfoE). The QLAE paper measures this on Shapes3D, MPI3D, Falcor3D and Isaac3D, so Shapes3D comes first here;
dSprites, which the paper does not report, follows as measured.
"""
    )
    for dataset, shipped_here, rivals in (
        ("Shapes3D", shapes3d, ("ae", "betavae")),
        ("dSprites", dsprites, ("ae", "betavae")),
    ):
        here = {n: e.card for n, e in shipped_here.items()}
        res = lessons.quantisation_gain(here.get("qlae"), {n: c for n, c in here.items() if n in rivals}, dataset)
        st.markdown(f"**{dataset}.** " + res["text"])
        if res["rows"]:
            st.dataframe(res["rows"], hide_index=True, key=f"lesson4_table_{dataset}")
    if "qlae" in shapes3d:
        e = shapes3d["qlae"]
        show_uri(codebook_uri(str(e.path), e.mtime), alt="Shapes3D QLAE codebook grid",
                 caption="Shapes3D QLAE codebook grid (rows: latents, columns: that latent's codebook values)")  # fmt: skip


def lesson_matrix() -> None:
    st.markdown(
        """
A metric matrix shows, for each factor (row) and latent (column), how much they share: here the normalised
mutual information (NMI) from the model's stored evaluate report. A disentangled model shows one bright cell
per row and per column (a permuted diagonal; columns are sorted so it lines up). MIG is the gap between the
brightest and second brightest cell of each row, averaged.
"""
    )
    names = sorted(n for n, c in cards.items() if lessons.scores_of(c))
    if not names:
        st.info("No shipped dSprites model has a stored metric report.")
        return
    best = max(names, key=lambda n: lessons.scores_of(cards[n]).get("mig", -1))
    name = st.selectbox("Model", names, index=names.index(best), key="lesson5_model")
    nmi, factors = nmi_of(cards[name])
    if nmi is None:
        st.info("This report holds no NMI matrix.")
        return
    order = argmax_order(nmi)
    st.plotly_chart(heatmap(nmi[:, order], factors, [f"z{j}" for j in order]), key="lesson5_nmi")
    reading = lessons.matrix_reading(nmi, factors)
    st.markdown(f"**{name}:** " + reading["text"])
    st.dataframe(reading["rows"], hide_index=True, key="lesson5_rows")


def lesson_diffusion() -> None:
    st.markdown(
        """
**Information diffusion**: during training, what a factor tells the model can spread from one latent into
several. The diffusion track of a checkpoint records, every few thousand steps, NMI1 (the share of a factor's
information in its best latent, solid) and NMI2 (in its second best, dotted), and MIG. When NMI2 climbs, the
factor is diffusing. DEFT trains in stages of decreasing β (dashed lines) to hold each factor in one group of
latents; DeVAE keeps several latent spaces at different β and passes information between them.
"""
    )
    shown = 0
    for name in ("deft", "devae"):
        card = cards.get(name)
        story = lessons.diffusion_story(card, name) if card else None
        if story is None:
            st.info(f"The shipped dSprites {name} has no diffusion track.")
            continue
        shown += 1
        st.markdown(story["text"])
        stages = ex.stage_starts(card)
        records = card.diffusion()
        factors = card.factor_names or list(records[0].get("factors") or [])
        c1, c2 = st.columns([3, 2])
        c1.plotly_chart(diffusion_figure(records, factors, stages), key=f"lesson6_nmi_{name}")
        c2.plotly_chart(metric_curve(story["steps"], story["mig"], stages), key=f"lesson6_mig_{name}")
    if shown:
        st.caption("Tracks recorded during training (`train --track-diffusion N`, NMI and MIG on 2,000 samples).")


LESSON_VIEWS = (lesson_traversals, lesson_beta, lesson_ifp, lesson_quantised, lesson_matrix, lesson_diffusion)
assert len(LESSON_VIEWS) == len(lessons.LESSONS)


@st.fragment
def lesson_panel() -> None:
    """The lesson picker and the lesson it shows: picking another reruns only this."""
    pick = st.radio(
        "Lesson",
        range(len(lessons.LESSONS)),
        format_func=lambda i: f"{i + 1}. {lessons.LESSONS[i]}",
        key="lesson_pick",
    )
    LESSON_VIEWS[pick]()


lesson_panel()
