"""View models of the Streamlit pages: what a page shows, computed without Streamlit.

The pages in ``pages/`` call these modules (``explore`` is the facade most of them use); nothing
below ``disviz.app`` imports it, and it never imports streamlit, so every function is testable.
"""
