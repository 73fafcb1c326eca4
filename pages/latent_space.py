"""Latent space: encodings of data images on two latents, coloured by a factor; per-latent histograms."""

from __future__ import annotations

import streamlit as st

from disviz.figures import latent_histograms, latent_scatter, table_csv, upscale
from disviz.latent_view import informative_pair, picked_point
from pages._shared import require_checkpoint, teach

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
stats = ck.stats(N_POINTS)  # encoded once per checkpoint (cached); the controls below only redraw
d, names = stats.codes.shape[1], stats.factor_names
default_x, default_y = informative_pair(stats)
c = st.columns(3)
factor = c[0].selectbox("Colour by factor", range(len(names)), format_func=lambda k: names[k], key="latent_factor")
x = c[1].selectbox("Latent on x", range(d), index=default_x, format_func=lambda j: f"z{j}", key="latent_x")
y = c[2].selectbox("Latent on y", range(d), index=default_y, format_func=lambda j: f"z{j}", key="latent_y")

left, right = st.columns([3, 1])
with left:
    event = st.plotly_chart(
        latent_scatter(stats.codes, stats.factors, x, y, factor, names[factor]),
        key="latent_scatter",
        on_select="rerun",
        selection_mode=("points", "box"),
    )
with right:
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    if points:
        index = int(points[0].get("customdata", points[0].get("point_index", 0)))
        picked = picked_point(stats, index)
        st.image(upscale(picked["image"], 3), caption=f"point #{index}")
        st.json(picked["factors"])
        if st.button("Use as base image in Explore", key="latent_use", type="primary"):
            st.session_state["explore_picked"] = picked["image"]
            st.session_state["explore_source"] = "picked point"
            st.switch_page("pages/explore.py")
    else:
        st.info("Click a point (or box-select some) to see its image and factor values.")

st.subheader("Every latent, stacked by the factor")
st.plotly_chart(latent_histograms(stats.codes, stats.factors, factor, names[factor]), key="latent_hist")
rows = [[i, *stats.factors[i].tolist(), *stats.codes[i].tolist()] for i in range(len(stats.codes))]
st.download_button(
    "Download the encodings (CSV)",
    table_csv(rows, ["sample", *names, *[f"z{j}" for j in range(d)]]),
    file_name="encodings.csv",
    mime="text/csv",
    key="latent_csv",
)
