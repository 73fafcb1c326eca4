"""disviz app entry point (placeholder until the app issue lands)."""

import streamlit as st

st.set_page_config(page_title="disviz", layout="wide")
st.title("disviz")
st.write("Interactive latent exploration for disentangled representation learning.")
