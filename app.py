"""disviz app: the router and the shared sidebar. Run with `make run` (streamlit run app.py).

Pages are registered explicitly with st.navigation (pages/ auto-discovery is then off); each page
is thin and calls disviz.explore / disviz.figures.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from pages._shared import app_icon, sidebar

st.set_page_config(page_title="disviz", page_icon=app_icon(), layout="wide")

HERE = Path(__file__).resolve().parent


def _page(file: str, title: str, icon: str, default: bool = False) -> st.Page | None:
    """A page, or None while its file does not exist yet (another engineer may still be writing it)."""
    if not (HERE / file).is_file():
        return None
    return st.Page(file, title=title, icon=icon, default=default)


sections = {
    "Explore": [
        _page("pages/explore.py", "Explore", ":material/explore:", default=True),
        _page("pages/latent_space.py", "Latent space", ":material/scatter_plot:"),
        _page("pages/codebook.py", "Codebook (QLAE)", ":material/grid_view:"),
    ],
    "Evaluate": [
        _page("pages/metrics.py", "Metrics", ":material/monitoring:"),
        _page("pages/annealing.py", "Annealing (IFP)", ":material/device_thermostat:"),
        _page("pages/compare.py", "Compare", ":material/compare:"),
        _page("pages/sweeps.py", "Sweeps", ":material/stacked_bar_chart:"),
    ],
    "Train": [_page("pages/train.py", "Train", ":material/model_training:")],
    "Learn": [
        _page("pages/lessons.py", "Lessons", ":material/menu_book:"),
        _page("pages/about.py", "About", ":material/school:"),
    ],
}
sections = {name: [p for p in pages if p is not None] for name, pages in sections.items()}
sections = {name: pages for name, pages in sections.items() if pages}

pg = st.navigation(sections)
sidebar()
pg.run()
