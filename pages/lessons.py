"""Lessons: short guided tours of the methods' ideas, with live widgets on the shipped checkpoints.

Every sentence about a shipped model is computed when the page loads (disviz/lessons.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from disviz import explore as ex
from disviz import lessons
from disviz.diagnostics.annealing import deft_stage_comparison, deft_thresholds, ordering_text
from disviz.figures import argmax_order, compose_grid, heatmap, ifp_distribution, label_rows, png_bytes
from pages._shared import _version, entries, get_model, get_stats

st.title("Lessons")
st.caption("Five short lessons on the shipped dSprites models. Every number below is read or computed now.")

# the sidebar's cached catalogue (cards read once, not on every rerun), shipped folder only
shipped = [e for e in entries(("checkpoints",), _version()) if e.card and not e.error]
dsprites = {Path(e.path).name: e for e in shipped if (e.card.get("dataset") or {}).get("name") == "dsprites"}
cards = {name: e.card for name, e in dsprites.items()}
if not dsprites:
    st.info("The lessons use the shipped checkpoints in `./checkpoints/dsprites/`; none were found here.")
    st.stop()

pick = st.radio("Lesson", range(len(lessons.LESSONS)), format_func=lambda i: f"{i + 1}. {lessons.LESSONS[i]}",
                key="lesson_pick")  # fmt: skip


def traversal(name: str, steps: int = 7) -> np.ndarray:
    """The labelled traversal grid of a shipped model around a fixed data image."""
    e = dsprites[name]
    model, _ = get_model(str(e.path), e.mtime)
    stats = get_stats(str(e.path), e.mtime, 256)
    base = stats.images[0]
    anchor = ex.encode(model, base[None])[0]
    order = ex.sort_latents(stats, "kl")
    mode = "std_gaussian" if stats.kl is not None else "minmax_interval"
    specs = model.latent_specs()
    vals = [ex.traversal_values(specs[j], mode, stats.codes, steps) for j in order]
    tiles = ex.traversal_tiles(model, anchor, order, vals)
    return label_rows(compose_grid(tiles, gutter=2), ex.row_labels(stats, order), 64, 2, width=220)


if pick == 0:
    st.markdown(
        """
A **traversal** changes one latent at a time and decodes. If the model is disentangled, each row changes one
factor of the image (position, size, shape, rotation) and nothing else; an entangled model moves several at
once, or nothing. Below: the shipped dSprites models with the highest and the lowest MIG (the mutual-information
gap, a disentanglement score). Compare the rows: which change exactly one thing?
"""
    )
    pair = lessons.contrast_pair(cards)
    if pair is None:
        st.info("Fewer than two shipped dSprites models have a stored metric report.")
    else:
        st.markdown(pair["text"])
        c = st.columns(2)
        for col, name in zip(c, (pair["best"], pair["worst"]), strict=True):
            grid = traversal(name)
            col.markdown(f"**{name}** (MIG {pair['scores'][name]:.3f})")
            col.image(grid)
            col.download_button("PNG", png_bytes(grid), f"{name}_traversal.png", "image/png", key=f"lesson1_{name}")
        st.caption("Row labels: the factor each latent shares most information with (normalised MI) and its KL.")

elif pick == 1:
    st.markdown(
        """
A β-VAE multiplies the KL term by β. A larger β squeezes the information bottleneck: the model keeps only the
most useful, independent directions (more disentangled) but draws blurrier images (higher reconstruction
error). DeVAE and DEFT try to get the disentanglement without paying the full price. Here are the shipped
models' stored scores; β is the (largest) β in each model's config.
"""
    )
    res = lessons.beta_tradeoff(cards)
    st.markdown(res["text"])
    if res["rows"]:
        fig = go.Figure(
            go.Scatter(
                x=[r["reconstruction"] for r in res["rows"]],
                y=[r["MIG"] for r in res["rows"]],
                text=[r["model"] for r in res["rows"]],
                mode="markers+text",
                textposition="top center",
            )
        )
        fig.update_layout(xaxis_title="reconstruction error (nats per image)", yaxis_title="MIG", height=380)
        st.plotly_chart(fig, key="lesson2_scatter")
        st.dataframe(res["rows"], hide_index=True, key="lesson2_table")

elif pick == 2:
    st.markdown(
        """
Train a one-latent VAE on images where only one factor varies and lower β slowly: at some β the factor's
information suddenly **freezes** into the latent — its *information freezing point* (IFP). Factors that change
many pixels (position) freeze at high β, subtle ones (shape, rotation) at low β. DEFT trains groups of latents
in stages with decreasing β, meaning to catch one family of factors per stage. Do its thresholds fall between
the measured IFPs? Only if both are on the same scale (64×64 images, loss summed over pixels).
"""
    )
    files = [f for f in ex.annealing_files() if f.stem == "dsprites"] or [
        f for f in ex.annealing_files() if f.stem.startswith("dsprites")
    ]
    if not files:
        st.info("No shipped dSprites annealing result in `checkpoints/annealing/`.")
    else:
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

elif pick == 3:
    st.markdown(
        """
QLAE replaces each continuous latent by a **scalar codebook**: latent *j* can only take one of a few learned
values. With few values per latent, the cheapest way to encode the data is to give each latent one factor
(modularity), and each factor can be read off its latent by a simple classifier (explicitness). The paper's
claim is in InfoMEC terms: higher InfoM and InfoE than an autoencoder and β-VAE. Here is what the shipped
models measured, and the QLAE's codebook grid (row = latent, columns = its codebook values).
"""
    )
    qlae = cards.get("qlae")
    others = {n: c for n, c in cards.items() if n in ("ae", "betavae")}
    res = lessons.quantisation_gain(qlae, others)
    st.markdown(res["text"])
    if res["rows"]:
        st.dataframe(res["rows"], hide_index=True, key="lesson4_table")
    if "qlae" in dsprites:
        e = dsprites["qlae"]
        model, _ = get_model(str(e.path), e.mtime)
        stats = get_stats(str(e.path), e.mtime, 256)
        tiles, values = ex.codebook_grid(model, ex.encode(model, stats.images[:1])[0])
        st.image(compose_grid(tiles, gutter=2), caption="QLAE codebook grid (rows: latents)")

else:
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
    else:
        best = max(names, key=lambda n: lessons.scores_of(cards[n]).get("mig", -1))
        name = st.selectbox("Model", names, index=names.index(best), key="lesson5_model")
        report = cards[name].get("metrics") or {}
        factors = list(report.get("factor_names") or (cards[name].get("dataset") or {}).get("factor_names") or [])
        nmi = ex.find_matrix(report, ("nmi", "mutual_info", "mi_matrix"), len(factors))
        if nmi is None:
            st.info("This report holds no NMI matrix.")
        else:
            order = argmax_order(nmi)
            st.plotly_chart(heatmap(nmi[:, order], factors, [f"z{j}" for j in order]), key="lesson5_nmi")
            reading = lessons.matrix_reading(nmi, factors)
            st.markdown(f"**{name}:** " + reading["text"])
            st.dataframe(reading["rows"], hide_index=True, key="lesson5_rows")
