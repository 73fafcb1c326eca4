"""Latent space: encodings of data images on two latents, coloured by a factor; per-latent histograms."""

from __future__ import annotations

import streamlit as st

from disviz.app.figures import latent_histograms, latent_scatter, table_csv
from disviz.app.latent_view import informative_pair, picked_point
from pages._shared import download_bytes, require_checkpoint, show_image, teach

N_POINTS = 2000

st.title("Latent space")
teach(
    f"""
Each point is one of {N_POINTS:,} random data images, placed by its encoding on two latents and coloured by one
ground-truth factor. In a **disentangled** model a latent that holds a factor sorts the colours along its axis
(a smooth gradient), and two latents holding two different factors spread the data into a grid. In an
**entangled** model colours mix along every axis. The default pair is the two most informative latents with
different best factors. Click a point to see its image and send it to **Explore** as the base image.

The **histogram strip** shows every latent at once: each latent's values, stacked by ranges of the chosen
factor. A latent whose colours separate left-to-right holds that factor; one whose colours overlap does not.
"""
)

ck = require_checkpoint()
stats = ck.stats(N_POINTS)  # encoded once per checkpoint (shared by every session); the controls only redraw
d, names = stats.codes.shape[1], stats.factor_names
categorical = dict(ck.dataset.categorical)


@st.cache_resource(max_entries=64, show_spinner=False)
def figures(key: str, x: int, y: int, factor: int, _stats: object) -> tuple:
    """Scatter + histogram strip per (checkpoint, latents, factor), built once for every session."""
    labels = categorical.get(names[factor])  # value names of a categorical factor (shape), else None
    return (
        latent_scatter(_stats.codes, _stats.factors, x, y, factor, names[factor], labels),
        latent_histograms(_stats.codes, _stats.factors, factor, names[factor], factor_labels=labels),
    )


def encodings_csv() -> bytes:
    rows = [[i, *stats.factors[i].tolist(), *stats.codes[i].tolist()] for i in range(len(stats.codes))]
    return table_csv(rows, ["sample", *names, *[f"z{j}" for j in range(d)]])


@st.fragment
def view() -> None:
    """The selectors and the two figures they drive: changing one reruns only this."""
    default_x, default_y = informative_pair(stats)
    c = st.columns(3)
    factor = c[0].selectbox("Colour by factor", range(len(names)), format_func=lambda k: names[k], key="latent_factor")
    x = c[1].selectbox("Latent on x", range(d), index=default_x, format_func=lambda j: f"z{j}", key="latent_x")
    y = c[2].selectbox("Latent on y", range(d), index=default_y, format_func=lambda j: f"z{j}", key="latent_y")
    scatter, histograms = figures(ck.key, x, y, factor, stats)
    left, right = st.columns([3, 1])
    with left:
        event = st.plotly_chart(scatter, key="latent_scatter", on_select="rerun", selection_mode=("points", "box"))
    with right:
        points = (event or {}).get("selection", {}).get("points", []) if event else []
        if points:
            index = int(points[0].get("customdata", points[0].get("point_index", 0)))
            picked = picked_point(stats, index)
            show_image(picked["image"], alt=f"point #{index}", caption=f"point #{index}", width=192)
            st.json(picked["factors"])
            if st.button("Use as base image in Explore", key="latent_use", type="primary"):
                st.session_state["explore_picked"] = picked["image"]
                st.session_state["explore_source"] = "picked point"
                st.switch_page("pages/explore.py")
        else:
            st.info("Click a point (or box-select some) to see its image and factor values.")
    st.subheader("Every latent, stacked by the factor")
    st.plotly_chart(histograms, key="latent_hist")


view()
download_bytes("Download the encodings (CSV)", encodings_csv, "encodings.csv", "text/csv", "latent_csv")
