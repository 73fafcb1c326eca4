"""Compare: two to four checkpoints side by side on the same base image."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from disviz.app import explore as ex
from disviz.app.figures import argmax_order, compose_grid, heatmap, label_rows
from disviz.core.errors import UserError
from disviz.serving.images import data_uri
from pages._shared import (
    all_entries,
    dataset_key,
    download_bytes,
    get_dataset,
    get_model,
    get_stats,
    png_of,
    show_uri,
    teach,
)

st.title("Compare checkpoints")
teach(
    """
Pick two to four checkpoints. Each column traverses **the same base image** (same dataset sample) through its
own model, with rows sorted by KL and labelled with the factor each latent mostly encodes, followed by its
scores and its NMI matrix (when the checkpoint has a stored report; compute one on the Metrics page).
Checkpoints trained on different datasets each draw their own dataset's sample with the same seed.
"""
)

found = [e for e in all_entries() if e.error is None]
if len(found) < 2:
    st.info("Compare needs at least two working checkpoints. Train more on the **Train** page.")
    st.stop()
paths = [str(e.path) for e in found]
labels = {str(e.path): e.label for e in found}
default = [p for p in [st.session_state.get("ckpt")] if p in paths] or paths[:1]
default += [p for p in paths if p not in default][: 2 - len(default)]
chosen = st.multiselect(
    "Checkpoints (2–4)", paths, default=default, max_selections=4, format_func=labels.get, key="compare_pick"
)
c1, c2 = st.columns(2)
seed = c1.number_input("Base image seed", min_value=0, value=0, step=1, key="compare_seed")
steps = c2.slider("Steps", 3, 11, 7, step=2, key="compare_steps")
if len(chosen) < 2:
    st.warning("Choose at least two checkpoints.")
    st.stop()


@st.cache_data(max_entries=64, show_spinner=False)
def compare_grid(
    path: str, mtime: float, seed: int, steps: int, _model: object, _dataset: object, _stats: ex.LatentStats
) -> str:
    """One column's labelled traversal (rows by KL) as a data URI, shared by every session."""
    base = _dataset.sample(1, np.random.default_rng(seed))[0][0]
    anchor = ex.encode(_model, base[None])[0]
    specs = _model.latent_specs()
    order = ex.sort_latents(_stats, "kl")
    mode = "std_gaussian" if _stats.kl is not None else "minmax_interval"
    vals = [ex.traversal_values(specs[j], mode, _stats.codes, steps) for j in order]
    tiles = ex.traversal_tiles(_model, anchor, order, vals)
    return data_uri(label_rows(compose_grid(tiles, gutter=2), ex.row_labels(_stats, order), 64, 2, width=200))


entries = {str(e.path): e for e in found}
cols = st.columns(len(chosen))
score_rows: dict[str, list] = {}
for col, path in zip(cols, chosen, strict=True):
    e = entries[path]
    with col:
        st.markdown(f"**{e.path.name}**  \n{labels[path].split(' — ', 1)[-1]}")
        try:
            model, card = get_model(path, e.mtime)
            dataset = get_dataset(dataset_key(card))
            stats = get_stats(path, e.mtime)
        except UserError as exc:
            st.error(str(exc))
            continue
        grid_uri = compare_grid(path, e.mtime, int(seed), int(steps), model, dataset, stats)
        show_uri(grid_uri, alt=f"traversal of {e.path.name}")
        download_bytes(
            "Download the grid (PNG)",
            lambda uri=grid_uri: png_of(uri),
            f"{e.path.name}_traversal.png",
            "image/png",
            key=f"compare_png_{path}",
        )
        report = card.metrics
        score_rows[e.path.name] = [v for _, v in ex.score_table(report)]
        nmi = ex.report_matrix(report, "nmi", len(stats.factor_names))
        if nmi is not None:
            o = argmax_order(nmi)
            st.plotly_chart(heatmap(nmi[:, o], stats.factor_names, [f"z{j}" for j in o]), key=f"compare_nmi_{path}")
        else:
            st.caption("No stored metric report (compute it on the Metrics page).")

if score_rows:
    st.subheader("Scores side by side")
    df = pd.DataFrame(score_rows, index=[title for title, _ in ex.score_table(None)])
    st.dataframe(df, key="compare_scores")
    download_bytes(
        "Download scores (CSV)", lambda: df.to_csv().encode("utf-8"), "compare_scores.csv", "text/csv", "compare_csv"
    )
    st.session_state["compare_columns"] = list(score_rows)
