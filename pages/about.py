"""About: what disentanglement is and how to read each page (teaching)."""

from __future__ import annotations

import streamlit as st

from pages._registry import PAGES
from pages._shared import all_entries

st.title("About disviz")
st.markdown(
    """
**Disentangled representation learning** looks for latent codes in which each coordinate captures one
*factor of variation* of the data (an object's position, scale, shape, colour…) and nothing else.
disviz trains and inspects such models on datasets whose true factors are known (dSprites and its
variants, a Shapes3D-like set), so what a model learned can be *seen* and *measured*.

| method | idea |
|---|---|
| **AE** | plain autoencoder: a baseline with no pressure to disentangle |
| **β-VAE** | a VAE whose KL term is weighted by β > 1: an information bottleneck per latent |
| **β-TCVAE** | penalises only the total correlation between latents |
| **QLAE** | quantised latents: each latent takes one of a few learned scalar values |
| **DEFT** | β-VAE trained in stages, earlier encoder groups slowed down, so factors freeze in one at a time |
| **DeVAE** | several β bottlenecks sharing information through a latent hierarchy |
| **DiD** | disentanglement via a generator/encoder game (when available) |

Each page has a **What am I looking at?** box with the details.
"""
)
st.markdown("**Pages**\n\n" + "\n".join(f"- **{p.title}** ({p.section}): {p.blurb}." for p in PAGES))
n = len(all_entries())
st.caption(f"{n} checkpoint(s) found. The compute device is shown at the bottom of the sidebar.")
