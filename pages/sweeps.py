"""Sweeps: score distributions over models, hyper-parameters and seeds; metric agreement; open a run.

Reads a sweep folder's results table (disviz.sweeps), draws it with disviz.sweeps.figures, starts
small sweeps as background ``python -m disviz sweep`` processes (disviz.sweeps.jobs).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from disviz.core.errors import UserError
from disviz.core.paths import checkpoint_roots, find_sweeps, runs_root
from disviz.metrics.registry import label_of
from disviz.sweeps.figures import (
    group_choices,
    rank_correlation_figure,
    score_distribution_figure,
    sweep_metrics,
)
from disviz.sweeps.jobs import driver_state, example_spec, start_sweep, stop_sweep, validate_text
from disviz.sweeps.results import flat_rows, load_results, results_csv

OPENED = "sweep_opened"  # = pages._shared.SWEEP_OPENED: sweep trials the sidebar picker lists
TARGETS = {"Explore": "pages/explore.py", "Metrics": "pages/metrics.py"}


def _open(path: str, target: str) -> None:
    """Button callback: list the trial in the sidebar picker, select it, then switch page (next run)."""
    opened = st.session_state.setdefault(OPENED, [])
    if path not in opened:
        opened.append(path)
    st.session_state["ckpt_pick"] = path
    st.session_state["ckpt"] = path
    st.session_state["sweeps_goto"] = TARGETS[target]


def _sweep_label(folder: Path) -> str:
    try:
        data = load_results(folder)
    except UserError:
        return f"{folder} (unreadable)"
    done = sum(1 for r in data["trials"] if r.get("status") == "done")
    return f"{data.get('sweep', folder.name)} — {done}/{len(data['trials'])} done · {folder}"


def _progress(folder: Path) -> dict:
    """The progress bar; returns the table (statuses as live_status reports them)."""
    data = load_results(folder, live=True)
    counts: dict[str, int] = {}
    for r in data["trials"]:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    state = driver_state(folder)
    finished = sum(counts.get(s, 0) for s in ("done", "nan", "failed"))
    text = ", ".join(f"{v} {k}" for k, v in counts.items()) + (f" · driver {state}" if state else "")
    st.progress(finished / max(len(data["trials"]), 1), text=text)
    return data


def _finished(data: dict) -> int:
    return sum(1 for r in data["trials"] if r["status"] in ("done", "nan", "failed"))


@st.fragment(run_every=3)
def _live_progress(folder: Path) -> None:
    """While trials are queued or running: re-read the table every 3 s, redraw the page when one finishes."""
    data = _progress(folder)
    if _finished(data) != st.session_state.get("sweeps_seen"):
        st.rerun()


def start_form() -> None:
    with st.expander("Start a sweep (runs in the background)", expanded=False):
        st.caption(
            "The spec is the same TOML as `python -m disviz sweep SPEC` (see the README's Sweeps section). "
            f"It is saved as `{runs_root()}/sweeps/<name>/spec.toml` and run by a background "
            "`python -m disviz sweep` process on a local Ray; this page follows its results table."
        )
        text = st.text_area("Spec (TOML)", value=example_spec(), height=380, key="sweeps_spec")
        c = st.columns(3)
        cpus = c[0].number_input("CPUs for the local Ray", 1, 256, 1, key="sweeps_cpus")
        resume = c[1].checkbox("Resume an existing sweep of this name", key="sweeps_resume")
        if c[2].button("Check the spec", key="sweeps_check"):
            try:
                spec = validate_text(text)
                st.success(f"{len(spec.trials)} trials -> {spec.out}: " + ", ".join(t.id for t in spec.trials))
            except UserError as exc:
                st.error(str(exc))
        if st.button("Start in the background", type="primary", key="sweeps_start"):
            try:
                proc = start_sweep(text, resume=resume, num_cpus=int(cpus))
            except UserError as exc:
                st.error(str(exc))
            else:
                st.session_state["sweeps_next"] = str(proc.folder)
                st.session_state["sweeps_flash"] = f"Started (pid {proc.pid}); its log is {proc.log}."
                st.rerun()


def main() -> None:
    goto = st.session_state.pop("sweeps_goto", None)
    if goto:
        try:
            st.switch_page(goto)
        except StreamlitAPIException:  # the page runs on its own (tests): no other page registered
            pass
    st.title("Sweeps")
    with st.expander("What am I looking at?"):
        st.markdown(
            """
A **sweep** trains every combination of models, hyper-parameters and seeds and scores each run with the
same `evaluate` as the Metrics page. **Every point is one run.** Points of one model that differ only in the
seed show how far a score moves by chance alone: a gap between two models smaller than that spread is not
a finding. The **rank-correlation matrix** asks whether the metrics agree on which runs are better
(Spearman ρ over the finished runs): +1 same order, 0 unrelated, −1 opposite. Click a point (or pick a run
below) to open it in Explore or Metrics.
"""
        )
    roots = checkpoint_roots(st.session_state.get("extra_roots", []))
    sweeps = [str(p) for p in find_sweeps(roots)]
    if not sweeps:
        st.info(
            "No sweeps found under `checkpoints/sweeps/` or the runs folder. Run one with "
            "`python -m disviz sweep checkpoints/sweeps/dsprites_vae_seeds/spec.toml --out runs/sweeps/mine`, "
            "or start one below."
        )
        start_form()
        return
    if st.session_state.get("sweeps_flash"):
        st.success(st.session_state.pop("sweeps_flash"))
    nxt = st.session_state.pop("sweeps_next", None)
    if nxt is not None:
        nxt = next((s for s in sweeps if Path(s).resolve() == Path(nxt).resolve()), None)
        if nxt is not None:
            st.session_state["sweeps_pick"] = nxt
    if st.session_state.get("sweeps_pick") not in sweeps:
        st.session_state["sweeps_pick"] = sweeps[0]
    pick = st.selectbox("Sweep", sweeps, key="sweeps_pick", format_func=lambda p: _sweep_label(Path(p)))
    folder = Path(pick)
    try:
        data = load_results(folder, live=True)
    except UserError as exc:
        st.error(str(exc))
        start_form()
        return
    st.session_state["sweeps_seen"] = _finished(data)
    live = driver_state(folder) == "running" or any(r["status"] in ("queued", "running") for r in data["trials"])
    if live:
        _live_progress(folder)
    else:
        _progress(folder)
    if data.get("description"):
        st.caption(data["description"])
    run = data.get("run") or {}
    if run:
        st.caption(
            f"Run with `{run.get('command') or 'python -m disviz sweep'}` on {run.get('host', '?')} "
            f"(Ray {run.get('ray', '?')}, {run.get('address', 'local')}, {run.get('cluster_cpus', '?')} CPUs, "
            f"{run.get('cluster_gpus', 0)} GPUs), started {run.get('started', '?')}"
            + (f"; {run['note']}" if run.get("note") else "")
        )
    if driver_state(folder) == "running" and st.button("Stop the sweep (resumable)", key="sweeps_stop"):
        stop_sweep(folder)
        st.info("Stop requested: running trials are cancelled, finished ones kept; resume from the form below.")

    metrics = sweep_metrics(data)
    if not metrics:
        st.info("No finished trials yet; their scores appear here as they arrive.")
    else:
        c = st.columns(2)
        metric = c[0].selectbox("Score", metrics, key="sweeps_metric", format_func=label_of)
        by = c[1].selectbox("Group by", group_choices(data), key="sweeps_by")
        event = st.plotly_chart(
            score_distribution_figure(data, metric, by),
            key="sweeps_dist",
            on_select="rerun",
            selection_mode="points",
        )
        points = (event or {}).get("selection", {}).get("points", []) if event else []
        clicked = str(points[0]["customdata"][0]) if points and points[0].get("customdata") else None
        if clicked and clicked != st.session_state.get("sweeps_clicked"):  # a new click, not the old one again
            st.session_state["sweeps_run"] = st.session_state["sweeps_clicked"] = clicked
        st.subheader("Do the metrics agree? (Spearman rank correlation)")
        st.plotly_chart(rank_correlation_figure(data), key="sweeps_corr")

    header, rows = flat_rows(data)
    st.subheader("Results")
    st.dataframe(pd.DataFrame(rows, columns=header), hide_index=True, key="sweeps_table")
    st.download_button(
        "Download results.csv", results_csv(data), file_name="results.csv", mime="text/csv", key="sweeps_csv"
    )
    done = [r["trial"] for r in data["trials"] if r.get("status") in ("done", "nan") and (folder / r["trial"]).is_dir()]
    if done:
        st.subheader("Open a run")
        if st.session_state.get("sweeps_run") not in done:
            st.session_state["sweeps_run"] = done[0]
        trial = st.selectbox("Run", done, key="sweeps_run")
        path = str((folder / trial).resolve())
        c = st.columns(2)
        c[0].button("Open in Explore", key="sweeps_explore", on_click=_open, args=(path, "Explore"), type="primary")
        c[1].button("Open in Metrics", key="sweeps_metrics", on_click=_open, args=(path, "Metrics"))
    start_form()


main()
