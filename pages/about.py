"""About: what disentanglement is and how to read each page (teaching)."""

from __future__ import annotations

import streamlit as st

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

**Pages**
- **Explore**: move latent sliders, view the traversal grid (rows = latents), interpolate, export GIFs.
- **Codebook (QLAE)**: every latent × codebook value, and how often values are used.
- **Metrics**: NMI / DCI matrices and scores; click a latent to see its traversal.
- **Annealing (IFP)**: the β at which each factor's information "freezes" into a one-latent VAE.
- **Compare**: several checkpoints side by side on the same image.
- **Train**: train a model in the background and watch its curves.

Each page has a **What am I looking at?** box with the details.
"""
)
n = len(all_entries())
st.caption(f"{n} checkpoint(s) found. The compute device is shown at the bottom of the sidebar.")
