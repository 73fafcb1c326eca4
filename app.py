"""disviz app: the router and the shared sidebar. Run with `make run` (streamlit run app.py).

Pages are registered explicitly with st.navigation (pages/ auto-discovery is then off); each page
is thin and calls disviz.app.explore / disviz.app.figures.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from pages._registry import PAGES, PageEntry
from pages._shared import sidebar

# An emoji tab icon: a material-icon favicon is fetched from fonts.gstatic.com (offline, it fails), and
# an image one is a media file the browser fetches again after every rerun (one HTTP request per slider step).
st.set_page_config(page_title="disviz", page_icon="🧭", layout="wide")

HERE = Path(__file__).resolve().parent


def _page(entry: PageEntry) -> st.Page | None:
    """A page, or None while its file does not exist yet (another engineer may still be writing it)."""
    if not (HERE / entry.file).is_file():
        return None
    return st.Page(entry.file, title=entry.title, icon=entry.icon, default=entry.default)


sections: dict[str, list[st.Page]] = {}
for entry in PAGES:
    page = _page(entry)
    if page is not None:
        sections.setdefault(entry.section, []).append(page)

pg = st.navigation(sections)
sidebar()
pg.run()
