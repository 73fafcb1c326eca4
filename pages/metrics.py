"""Metrics: NMI and DCI matrices, the score table, diffusion curves; compute on demand."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from disviz.app import explore as ex
from disviz.app.figures import argmax_order, diffusion_figure, heatmap, matrix_csv, table_csv
from disviz.core.errors import UserError
from pages._shared import download_bytes, get_model, require_checkpoint, teach

st.title("Metrics")
teach(
    """
**NMI matrix**: normalised mutual information between each true factor (rows) and each latent (columns),
0 = independent, 1 = the latent determines the factor. Latents are reordered by the factor they share most
information with, so a disentangled model shows a **block diagonal**: one bright cell per column and per row.
Click a cell to open that latent's traversal on the Explore page.

**DCI importance**: how much a predictor of each factor relies on each latent. **Scores**: InfoM/E/C
(modularity, explicitness, compactness), DCI disentanglement/completeness/informativeness, MIG (gap between
the two most informative latents per factor), SAP, the FactorVAE and BetaVAE classifier scores, and the
reconstruction error. Scores depend on estimators and sample counts: they are listed under *Settings*.

**Diffusion curves** (if tracked during training): per factor, NMI1 is the information in the best latent
and NMI2 in the second best. Information that *diffuses* over several latents shows as NMI2 rising; DEFT's
stages (vertical lines) are meant to stop that.
"""
)

ck = require_checkpoint()
card, info = ck.card, ck.dataset.info()
report = card.metrics
factors = list(info.factor_names)

if report is None:
    st.warning("This checkpoint has no stored metric report yet.")
    c1, c2, c3 = st.columns(3)
    preset = c1.selectbox("Preset", ["fast", "paper"], key="metrics_preset", help="fast: fewer samples, for the UI")
    n = c2.number_input("Samples", min_value=500, max_value=100_000, value=2_000, step=500, key="metrics_n")
    if c3.button("Compute metrics", key="metrics_compute", type="primary"):
        from disviz.engine.evaluate import evaluate

        bar = st.progress(0.0, text="Computing metrics…")

        def progress(fraction: float, message: str) -> None:
            bar.progress(min(max(float(fraction), 0.0), 1.0), text=message or "Computing metrics…")

        try:
            model, _ = get_model(ck.path, ck.mtime)
            report = evaluate(model, ck.dataset, n=int(n), seed=0, preset=preset, progress=progress)
            from disviz.engine.card import update_card

            update_card(ck.path, metrics=report)
        except UserError as exc:
            st.error(str(exc))
            st.stop()
        bar.empty()
        st.cache_data.clear()
        st.toast("Metrics stored in the checkpoint card")
        st.rerun()


def matrix_download(title: str, matrix, name: str) -> None:
    """A CSV download of a factors × latents matrix (rows: factors, columns: z0 … in latent order)."""
    cols = [f"z{j}" for j in range(matrix.shape[1])]
    download_bytes(
        f"Download {title} (CSV)",
        lambda: matrix_csv(matrix, factors, cols, "factor"),
        f"{name}.csv",
        "text/csv",
        f"metrics_{name}_csv",
    )


@st.cache_resource(max_entries=32, show_spinner=False)
def heatmap_figure(key: str, which: str, _matrix, _factors: tuple[str, ...], colorscale: str) -> object:
    """A report's matrix as a heatmap, latents in argmax order; built once per checkpoint for every session."""
    order = argmax_order(_matrix)
    return heatmap(_matrix[:, order], list(_factors), [f"z{j}" for j in order], colorscale=colorscale)


if report is not None:
    nmi = ex.report_matrix(report, "nmi", len(factors))
    imp = ex.report_matrix(report, "importance", len(factors))
    tab1, tab2 = st.columns(2)
    with tab1:
        st.subheader("NMI: factors × latents")
        if nmi is not None:
            st.session_state["metrics_latent_order"] = argmax_order(nmi)
            fig = heatmap_figure(ck.key, "nmi", nmi, tuple(factors), "Blues")
            event = st.plotly_chart(fig, key="metrics_nmi", on_select="rerun", selection_mode="points")
            matrix_download("NMI", nmi, "nmi")
            points = (event or {}).get("selection", {}).get("points", []) if isinstance(event, dict) else []
            if not points and event is not None and hasattr(event, "selection"):
                points = event.selection.get("points", [])
            if points:
                label = str(points[0].get("x", ""))
                if label.startswith("z") and label[1:].isdigit():
                    st.session_state["explore_focus"] = int(label[1:])
                    st.switch_page("pages/explore.py")
            bins = (report.settings or {}).get("mig_bins", "?")
            n_used = f"{report.n:,}" if report.n is not None else "?"
            st.caption(
                f"Click a cell to open that latent's traversal. Estimator: the one MIG uses, on this report's "
                f"{n_used} samples — {bins} equal-width bins per latent, plug-in I(z; v) / H(v). "
                "Explore's row labels use 256 samples and subtract a shuffled-factor baseline (bias correction), "
                "so the same cell can read differently there."
            )
        else:
            st.info("The report has no NMI matrix.")
    with tab2:
        st.subheader("DCI importance")
        if imp is not None:
            m = imp / max(float(imp.max()), 1e-12) if imp.max() > 1 else imp
            st.plotly_chart(heatmap_figure(ck.key, "dci", m, tuple(factors), "Oranges"), key="metrics_dci")
            matrix_download("DCI importance", imp, "dci_importance")
        else:
            st.info("The report has no DCI importance matrix.")
    st.subheader("Scores")
    rows = ex.score_table(report)
    df = pd.DataFrame({"score": [r[0] for r in rows], "value": [r[1] for r in rows]})
    st.dataframe(df, hide_index=True, key="metrics_scores")
    download_bytes(
        "Download scores (CSV)",
        lambda: table_csv(rows, ["score", "value"]),
        "scores.csv",
        "text/csv",
        "metrics_scores_csv",
    )
    with st.expander("Settings used"):
        st.json(ex.report_settings(report) or {"note": "the report records no settings"})

    @st.fragment
    def jump_panel() -> None:
        """Picking a latent reruns only this; the button leaves for Explore."""
        c = st.columns(4)
        focus_pick = c[0].selectbox(
            "Open latent in Explore",
            list(range(ck.model.latent_dim)),
            format_func=lambda j: f"z{j}",
            key="metrics_jump_pick",
        )
        if c[1].button("Open traversal", key="metrics_jump"):
            st.session_state["explore_focus"] = int(focus_pick)
            st.switch_page("pages/explore.py")

    jump_panel()

st.subheader("Information diffusion (NMI1 / NMI2 during training)")
records = card.diffusion()
if records:
    st.plotly_chart(diffusion_figure(records, factors, ex.stage_starts(card)), key="metrics_diffusion")
    st.caption("solid: NMI1 (best latent) · dotted: NMI2 (second best) · dashed lines: DEFT stage starts")
else:
    st.info(
        "Not tracked for this checkpoint: train with `--track-diffusion N` (or the Train page option) to record it."
    )
