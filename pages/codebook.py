"""Codebook (QLAE): every latent x every codebook value decoded around a base image; values; usage."""

from __future__ import annotations

import numpy as np
import streamlit as st

from disviz.app import explore as ex
from disviz.app.figures import codebook_usage_figure, codebook_values_figure, compose_grid, label_rows
from disviz.serving.images import data_uri
from pages._shared import download_bytes, png_of, require_checkpoint, show_uri, teach

st.title("Codebook (QLAE)")
teach(
    """
A **QLAE** (quantised latent autoencoder) snaps each latent to one of a few scalar **codebook values**
learned per latent. The grid decodes the base image's code with latent *j* (row) set to each of its
codebook values (columns, sorted): a disentangled QLAE changes one factor per row, in discrete steps.
Below: the codebook values of each latent, and how often each value is used on a data sample (a value
nobody uses is dead; a latent that uses one value only carries no information).
"""
)

ck = require_checkpoint()
model, dataset = ck.model, ck.dataset
specs = model.latent_specs()
if not specs or any(s.kind != "quantised" for s in specs):
    st.info(
        f"This checkpoint is a **{ck.card.model}** model: it has no codebook. "
        "Pick a QLAE checkpoint in the sidebar (or train one on the Train page)."
    )
    st.stop()

stats = ck.stats()
labels = ex.row_labels(stats, range(len(specs)))


@st.cache_data(max_entries=64, show_spinner=False)
def codebook_view(key: str, seed: int, _model: object, _dataset: object) -> tuple[str, str, list[int]]:
    """(base image URI, labelled grid URI, grid shape) per (checkpoint, seed), shared by every session."""
    base = _dataset.sample(1, np.random.default_rng(seed))[0][0]
    anchor = ex.encode(_model, base[None])[0]
    tiles, _ = ex.codebook_grid(_model, anchor)
    scale = 2 if tiles.shape[1] <= 12 else 1
    grid = label_rows(compose_grid(tiles, gutter=2, scale=scale), labels, 64 * scale, 2, width=230)
    return data_uri(compose_grid(base[None, None], gutter=0, scale=2)), data_uri(grid), list(tiles.shape[:2])


@st.fragment
def grid_panel() -> None:
    """The seed and the grid it drives: a new seed reruns only this."""
    seed = st.number_input("Base image seed", min_value=0, max_value=2**32 - 1, value=0, step=1, key="codebook_seed")
    base_uri, grid_uri, shape = codebook_view(ck.key, int(seed), model, dataset)
    c1, c2 = st.columns([1, 6])
    with c1:
        show_uri(base_uri, alt="base image", caption="base image")
    with c2:
        show_uri(
            grid_uri, alt="codebook grid", caption="rows: latents · columns: that latent's codebook values (sorted)"
        )
        download_bytes("Download the grid (PNG)", lambda: png_of(grid_uri), "codebook.png", "image/png", "codebook_png")
    st.session_state["codebook_shape"] = shape


grid_panel()

values = [sorted(s.values or []) for s in specs]  # the grid's columns, in the same order
st.subheader("Codebook values per latent")
st.plotly_chart(codebook_values_figure(values), key="codebook_values")
st.subheader("Usage of each value on data")
usage = ex.codebook_usage(stats.codes, values)
st.caption(f"Fraction of {len(stats.codes)} random data images whose code uses each value.")
st.plotly_chart(codebook_usage_figure(usage, values), key="codebook_usage")
dead = int((usage == 0).sum() - sum(usage.shape[1] - len(v) for v in values))
if dead:
    st.caption(f"{dead} codebook value(s) are never used on this sample.")
