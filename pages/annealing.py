"""Annealing (IFP): KL-vs-β curves per factor with IFP markers, IFP distributions, a quick live run."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from disviz.app import explore as ex
from disviz.app.figures import annealing_curves, ifp_distribution, table_csv
from disviz.core.errors import UserError
from disviz.diagnostics.annealing import deft_stage_comparison, deft_thresholds, load_annealing_result
from pages._shared import download_bytes, teach

st.title("Annealing test: information freezing points (IFP)")
teach(
    """
A VAE with **one latent** is trained on images where only **one factor** varies (the others fixed at a
random base), while **β is annealed from high to low**. At high β the bottleneck lets no information
through (KL ≈ 0); as β falls, the factor's information suddenly "freezes" into the latent. The
**information freezing point (IFP)** is the β at which the KL first rises above **0.1 nat** (dashed line).

Left to right β *decreases* (training time goes left to right). Factors with large IFPs (dSprites: position)
are learned first under a bottleneck; factors with small IFPs (shape, orientation) need a looser one.
DEFT places its stage thresholds (dotted lines) between these clusters — which only means something when the
IFPs are measured on the **same likelihood scale** as DEFT's β (64×64 images, loss summed over pixels), and the
**recipe** (how the VAE is optimised while β falls) moves IFPs too. Both are named above each result.
"""
)


@st.cache_resource(max_entries=16, show_spinner="Reading the annealing result…")
def _load_cached(path: str, mtime: float) -> dict:
    """One parse per result file version (typed and bounded by the loader), shared read-only by every session."""
    return load_annealing_result(Path(path))


@st.fragment
def curves_panel(curves: dict, threshold: float, marks: dict, key: str) -> None:
    """The runs-per-factor slider and the curves it drives: moving it reruns only this."""
    max_runs = st.slider("Runs shown per factor", 1, 20, 6, key=f"{key}_max")
    st.plotly_chart(
        annealing_curves(curves, threshold=threshold, max_per_factor=max_runs, beta_marks=marks), key=f"{key}_curves"
    )


def show(result: dict, key: str) -> None:
    curves, ifps, threshold = ex.annealing_view(result)
    if not curves and not ifps:
        st.warning("This result holds no annealing runs.")
        return
    st.session_state["annealing_factors"] = sorted(set(curves) | set(ifps))
    settings = result.get("settings") or {}
    st.markdown(
        f"**Scale:** {settings.get('scale', 'not recorded (older result)')} · "
        f"**recipe:** {settings.get('recipe', 'equilibrium (older result)')} · "
        f"**β(0)** = 1 + {settings.get('beta_max', '?')}"
        + (f" — {settings['beta_max_note']}" if settings.get("beta_max_note") else "")
    )
    marks: dict[str, float] = {}
    comparison = None
    if result.get("mode") == "factors" and settings.get("dataset"):
        thresholds, source = deft_thresholds(settings["dataset"])
        if thresholds:
            marks = {f"DEFT β{k}={b:g}": b for k, b in enumerate(thresholds)}
            comparison = deft_stage_comparison(result, thresholds)
            st.caption(f"Dotted lines: DEFT's stage thresholds, from {source}.")
    st.subheader("KL vs β per factor")
    curves_panel(curves, threshold, marks, key)
    st.subheader("IFP distribution per factor")
    st.plotly_chart(ifp_distribution(ifps, beta_marks=marks), key=f"{key}_ifps")
    if comparison is not None:
        (st.success if comparison["agree"] else st.warning)(
            f"**DEFT's thresholds vs these IFPs:** {comparison['text']}"
        )
    rows, order = ex.annealing_summary(result)
    if rows:
        st.markdown(f"**Ordering (high → low IFP; braces: not separable, Mann–Whitney p ≥ 0.05):** {order}")
        st.dataframe(rows, hide_index=True, key=f"{key}_summary")
        download_bytes(
            "Download the table (CSV)", lambda: table_csv(rows), "ifp_summary.csv", "text/csv", f"{key}_summary_csv"
        )
        st.caption(
            "Linear-response bound: the β below which the collapsed one-latent VAE becomes unstable, computed "
            "from each sweep's images alone; a trained VAE reaches its IFP at or below it."
        )
    with st.expander("Settings of this run"):
        st.json({k: v for k, v in result.items() if not isinstance(v, (list, dict)) or k in ("config", "settings")})


files = ex.annealing_files()
tab_saved, tab_live = st.tabs(["Shipped results", "Run a quick test"])
with tab_saved:
    if not files:
        st.info(
            "No shipped annealing results in `checkpoints/annealing/`. Run one with "
            "`python -m disviz anneal --dataset dsprites --out checkpoints/annealing/dsprites.json`, "
            "or a quick one in the next tab."
        )
    else:
        pick = st.selectbox("Result", [str(f) for f in files], key="annealing_pick")
        try:
            shown = _load_cached(pick, Path(pick).stat().st_mtime)
            show(shown, "saved")
            twins = ex.recipe_twins(Path(pick), files)
            if len(twins) > 1:
                st.subheader("The same test under each recipe")
                st.caption(
                    "Same sweeps (dataset, seed, bases), same network and scale; only the optimisation recipe "
                    "differs. The gap is how much a measured IFP depends on how the VAE is trained."
                )
                twin_results = {r: _load_cached(str(f), Path(f).stat().st_mtime) for r, f in twins.items()}
                st.dataframe(ex.recipe_comparison(twin_results), hide_index=True)
        except (UserError, OSError) as exc:
            st.error(str(exc))

with tab_live:
    from disviz.data import dataset_names
    from disviz.diagnostics.annealing import run_annealing

    c = st.columns(4)
    names = dataset_names()
    dataset = c[0].selectbox(
        "Dataset", names, index=names.index("dsprites") if "dsprites" in names else 0, key="annealing_ds"
    )
    bases = c[1].number_input("Bases per factor", 1, 8, 2, key="annealing_bases")
    steps = c[2].number_input("Steps per run", 100, 8000, 1000, step=100, key="annealing_steps")
    seed = c[3].number_input("Seed", 0, 10_000, 0, key="annealing_seed")
    st.caption(
        "A quick, small run: a few bases and steps (the reference uses 8,000 steps; the shipped results use "
        "8 bases). Below ~1,000 steps the VAE is still learning the mean image while β falls, so IFPs are noisy."
    )
    if st.button("Run annealing test", key="annealing_run", type="primary"):
        bar = st.progress(0.0, text="Annealing…")

        def progress(fraction: float, message: str) -> None:
            bar.progress(min(max(float(fraction), 0.0), 1.0), text=message or "Annealing…")

        try:
            st.session_state["annealing_live"] = run_annealing(
                dataset, bases=int(bases), steps=int(steps), seed=int(seed), progress=progress
            )
        except UserError as exc:
            st.error(str(exc))
        bar.empty()
    live = st.session_state.get("annealing_live")
    if live:
        show(live, "live")
