"""The app's pages, in one list: app.py builds the navigation from it and About lists it.

Not a page (st.navigation registers pages explicitly). One entry per page: its file, title,
icon, navigation section and the one line About says about it, so a new page cannot be
missing from either.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageEntry:
    file: str
    title: str
    icon: str
    section: str
    blurb: str
    default: bool = False


PAGES = (
    PageEntry("pages/explore.py", "Explore", ":material/explore:", "Explore",
              "move latent sliders around a base image, read the traversal grid (rows = latents), interpolate, "
              "export PNG / GIF; the address bar holds the view, so a link reopens it", default=True),
    PageEntry("pages/latent_space.py", "Latent space", ":material/scatter_plot:", "Explore",
              "2,000 encoded images on two latents coloured by a factor, per-latent histograms; click a point "
              "to use its image in Explore"),
    PageEntry("pages/codebook.py", "Codebook (QLAE)", ":material/grid_view:", "Explore",
              "every latent × codebook value of a QLAE, the values and how often each is used"),
    PageEntry("pages/metrics.py", "Metrics", ":material/monitoring:", "Evaluate",
              "NMI / DCI matrices, every score with its settings, diffusion curves; click a latent to see it"),
    PageEntry("pages/annealing.py", "Annealing (IFP)", ":material/device_thermostat:", "Evaluate",
              "the β at which each factor's information freezes into a one-latent VAE, DEFT's thresholds "
              "beside them, a quick live run"),
    PageEntry("pages/compare.py", "Compare", ":material/compare:", "Evaluate",
              "two to four checkpoints side by side on the same image, with their scores"),
    PageEntry("pages/sweeps.py", "Sweeps", ":material/stacked_bar_chart:", "Evaluate",
              "score distributions over models, hyper-parameters and seeds, metric rank correlations; "
              "start a sweep"),
    PageEntry("pages/train.py", "Train", ":material/model_training:", "Train",
              "train any model in the background, watch its curves, stop or continue it"),
    PageEntry("pages/lessons.py", "Lessons", ":material/menu_book:", "Learn",
              "six guided lessons whose every statement is computed from the shipped models"),
    PageEntry("pages/about.py", "About", ":material/school:", "Learn",
              "what disentanglement is, the methods, and this list"),
)  # fmt: skip
