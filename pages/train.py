"""Train page: start a background training job, watch its curves live, stop it.

The job runs in ``disviz.app.jobs.TrainingManager`` (one process-wide manager, held with
``st.cache_resource``), so it survives reruns, page switches and browser reloads; this page only
reads snapshots in a 1-second fragment. The form is built from the chosen model's config
dataclass (``disviz.engine.build.model_config``), so every method's knobs show with the paper
defaults for the chosen dataset.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from disviz.app.jobs import JobSnapshot, JobSpec, TrainingManager, get_manager
from disviz.core.errors import UserError
from disviz.core.limits import MAX_BATCH, MAX_STEPS
from disviz.core.paths import runs_root
from disviz.engine.runspec import RUN_FIELDS

# Steps and batch size get their own inputs (the run's fields: disviz.engine.runspec.RUN_FIELDS; the
# learning rate is shown first among the hyper-parameters); the rest of ModelConfig's shared fields
# (likelihood, network width) go under "Network and likelihood"; every other field is the method's
# own knob (β, γ, stages, codebook...) and is shown up front.
MAIN_FIELDS = ("lr", "latent_dim")
NETWORK_FIELDS = ("arch",)  # method-specific but architectural
RECON_CHOICES = ["auto", "bernoulli", "gaussian"]
MAX_POINTS = 1500  # curves are thinned to this many points so the browser stays quick


@st.cache_resource
def training_manager() -> TrainingManager:
    return get_manager()


@st.cache_data(show_spinner=False)
def dataset_info(name: str, options: tuple[tuple[str, Any], ...], path: str | None) -> dict[str, Any]:
    from disviz.data import load_dataset

    return load_dataset(name, path=path or None, **dict(options)).info().to_dict()


@st.cache_data(show_spinner=False)
def model_defaults(model: str, info: dict[str, Any]) -> dict[str, Any]:
    """The model's config for this dataset with the papers' defaults, as a plain dict."""
    from disviz.data.base import DatasetInfo
    from disviz.engine.build import model_config

    return dataclasses.asdict(model_config(model, DatasetInfo.from_dict(info)))


def _device_choices() -> list[str]:
    import torch

    out = ["auto", "cpu"]
    if torch.cuda.is_available():
        out.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def _field_widget(name: str, default: Any, key: str) -> Any:
    """One input per config field, by the default's type; returns the widget value."""
    if isinstance(default, bool):
        return st.checkbox(name, value=default, key=key)
    if isinstance(default, int):
        return st.number_input(name, value=default, step=1, key=key)
    if name == "recon" and default in RECON_CHOICES:
        return st.selectbox(name, RECON_CHOICES, index=RECON_CHOICES.index(default), key=key)
    if isinstance(default, (list, tuple)):
        return st.text_input(name, value=", ".join(str(v) for v in default), key=key, help="comma-separated")
    return st.text_input(name, value=repr(default) if isinstance(default, float) else str(default), key=key)


def _changed(default: Any, value: Any) -> bool:
    if isinstance(default, (list, tuple)):
        return value.replace(" ", "") != ",".join(str(v) for v in default).replace(" ", "")
    if isinstance(default, float) and not isinstance(value, float):
        try:
            return not math.isclose(float(value), default, rel_tol=1e-12, abs_tol=0.0)
        except ValueError:
            return True  # not a number: let the config report it
    return value != default


def _grid(names: list[str], defaults: dict[str, Any], prefix: str, ncols: int = 3) -> dict[str, Any]:
    """Widgets in columns; returns only the fields the user changed (strings are cast by the config)."""
    changed: dict[str, Any] = {}
    cols = st.columns(ncols)
    for i, name in enumerate(names):
        with cols[i % ncols]:
            value = _field_widget(name, defaults[name], key=f"{prefix}_{name}")
        if _changed(defaults[name], value):
            changed[name] = value
    return changed


def _thin(df: pd.DataFrame) -> pd.DataFrame:
    if len(df) <= MAX_POINTS:
        return df
    return df.iloc[:: math.ceil(len(df) / MAX_POINTS)]


def _fmt_seconds(s: float | None) -> str:
    return "–" if s is None else str(dt.timedelta(seconds=int(s)))


def _loss_frames(snap: JobSnapshot) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(loss / reconstruction terms, KL terms + per-latent KL) indexed by step."""
    hist = {k: v for k, v in snap.history.items() if k not in ("images_per_s", "stage")}
    df = pd.DataFrame(hist).set_index("step") if hist.get("step") else pd.DataFrame()
    kl_cols = [c for c in df.columns if "kl" in c.lower()]
    losses = df.drop(columns=kl_cols)
    kl = df[kl_cols]
    if snap.kl_history:
        per = pd.DataFrame(snap.kl_history).set_index(0)
        per.columns = [f"KL z{i}" for i in range(per.shape[1])]
        kl = per if kl.empty else kl.join(per, how="outer")
    return _thin(losses), _thin(kl)


def show_job(snap: JobSnapshot, mgr: TrainingManager) -> None:
    """Progress, numbers, curves and the stop button of one job."""
    run = snap.spec.get("run_name", snap.id)
    st.subheader(f"Run `{run}` · {snap.spec.get('model')} on {snap.spec.get('dataset')}")
    text = f"{snap.status} · step {snap.step:,} / {snap.total:,}" if snap.total else f"{snap.status} · starting…"
    st.progress(snap.fraction, text=text)
    c = st.columns(5)
    c[0].metric("Step", f"{snap.step:,}")
    c[1].metric("Loss", f"{snap.losses['loss']:.4g}" if "loss" in snap.losses else "–")
    c[2].metric("Images / s", f"{snap.images_per_s:,.0f}" if snap.images_per_s else "–")
    c[3].metric("Elapsed", _fmt_seconds(snap.elapsed_s))
    c[4].metric("ETA", _fmt_seconds(snap.eta_s) if snap.active else "–")
    if snap.stage is not None:
        st.caption(f"Training stage: **{snap.stage}**")
    if snap.summary:
        st.caption(snap.summary)
    if snap.active:
        st.button(
            "Stop training",
            key=f"stop_{snap.id}",
            on_click=mgr.stop,
            args=(snap.id,),
            help="Stops after the current step and saves a checkpoint you can resume.",
        )
    if snap.checkpoint and not snap.active and Path(snap.checkpoint, "card.json").is_file():
        st.button(
            "Explore this checkpoint",
            key=f"explore_{snap.id}",
            on_click=_open_in_explore,
            args=(snap.checkpoint,),
            help="Select it in the sidebar picker and open the Explore page",
        )
    if snap.status == "done":
        st.success(
            f"Done: {snap.message}. The checkpoint is now in the sidebar picker.", icon=":material/check_circle:"
        )
    elif snap.status == "stopped":
        st.warning(
            f"Stopped: {snap.message or 'stopped'}. Tick *resume* with run name `{run}` to continue it.",
            icon=":material/stop_circle:",
        )
    elif snap.status == "error":
        st.error(f"Training failed: {snap.error}", icon=":material/error:")
    for warning in getattr(snap, "warnings", []):
        st.warning(f"Collapse guard, {warning}", icon=":material/warning:")
    losses, kl = _loss_frames(snap)
    left, right = st.columns(2)
    with left:
        st.markdown("**Loss and reconstruction** (window means)")
        if losses.empty:
            st.caption("No logged steps yet.")
        else:
            st.line_chart(losses, x_label="step")
    with right:
        st.markdown("**KL divergence** (total and per latent, nats)")
        if kl.empty:
            st.caption("This model logs no KL (deterministic codes) or no step is logged yet.")
        else:
            st.line_chart(kl, x_label="step")


def _open_in_explore(checkpoint: str) -> None:
    """Button callback: select the checkpoint in the sidebar picker (app.py's keys), then switch page."""
    path = str(Path(checkpoint).resolve())  # the picker lists resolved paths
    st.session_state["ckpt_pick"] = path
    try:
        from pages._shared import CKPT_KEY

        st.session_state[CKPT_KEY] = path
    except ImportError:  # the page runs on its own (tests): nothing else to select
        pass
    st.session_state["train_goto_explore"] = True


def _finished(job_id: str) -> None:
    """First time this session sees a job end: refresh the checkpoint list (full rerun)."""
    seen: set[str] = st.session_state.setdefault("train_finished_seen", set())
    if job_id in seen:
        return
    seen.add(job_id)
    st.toast(f"Training job {job_id} finished")
    st.rerun()  # full app rerun: the sidebar's cached list is keyed on checkpoints_version()


@st.fragment(run_every=1.0)
def live_monitor(job_id: str) -> None:
    mgr = training_manager()
    try:
        snap = mgr.snapshot(job_id)
    except UserError as exc:
        st.warning(str(exc))
        return
    show_job(snap, mgr)
    if not snap.active:
        _finished(job_id)


def _form(models: list[str], datasets: list[str]) -> JobSpec | None:
    """The training form; returns the JobSpec when Start was clicked and the input is valid."""
    from disviz.data import DATASETS

    c1, c2, c3 = st.columns(3)
    model = c1.selectbox(
        "Model", models, key="train_model", index=models.index("betavae") if "betavae" in models else 0
    )
    dataset = c2.selectbox(
        "Dataset", datasets, key="train_dataset", index=datasets.index("dsprites") if "dsprites" in datasets else 0
    )
    devices = _device_choices()
    device = c3.selectbox("Device", devices, key="train_device", help="auto picks CUDA, then Apple MPS, then CPU")
    spec = DATASETS[dataset]
    st.caption(spec.description)

    data_options: dict[str, Any] = {}
    data_path: str | None = None
    opt_defaults = spec.option_defaults()
    if opt_defaults or spec.real_file:
        with st.expander("Dataset options", expanded=spec.file_required):
            if spec.real_file:
                data_path = st.text_input(
                    "Data file (empty: $DISVIZ_DATA or the procedural version)",
                    key=f"train_dpath_{dataset}",
                    help="A local file; nothing is ever downloaded.",
                ).strip()
            data_options = _grid(list(opt_defaults), opt_defaults, prefix=f"train_dopt_{dataset}")
    try:
        info = dataset_info(dataset, tuple(sorted(data_options.items())), data_path or None)
        defaults = model_defaults(model, info)
    except (UserError, ValueError, TypeError, OSError) as exc:
        st.error(str(exc))
        return None

    prefix = f"train_{model}_{dataset}"
    st.markdown("**Run**")
    r = st.columns(4)
    steps = r[0].number_input(
        "Steps", min_value=1, max_value=MAX_STEPS, value=int(defaults["steps"]), step=1000, key=f"{prefix}_steps"
    )
    batch = r[1].number_input(
        "Batch size", min_value=1, max_value=MAX_BATCH, value=int(defaults["batch_size"]), key=f"{prefix}_batch"
    )
    seed = r[2].number_input("Seed", min_value=0, value=0, step=1, key=f"{prefix}_seed")
    save_every = r[3].number_input(
        "Save every (steps)", min_value=1, value=min(1000, int(steps)), key=f"{prefix}_save_every"
    )
    n = st.columns([3, 1, 1])
    run_name = n[0].text_input(
        "Run name (folder under the runs root)",
        value=training_manager().suggest_run_name(model, dataset),
        key=f"{prefix}_run_name_{st.session_state.get('train_started', 0)}",  # fresh suggestion after a start
        help=f"Checkpoints go to {runs_root().absolute()}/<run name>. Letters, digits, _ - . only.",
    )
    resume = n[1].checkbox("Resume", key=f"{prefix}_resume", help="Continue the checkpoint already in this run folder")
    fresh_optimizer = n[2].checkbox(
        "Fresh optimiser",
        key=f"{prefix}_fresh_optimizer",
        disabled=not resume,
        help="With resume: continue the weights with a new optimiser (shipped, weights-only checkpoints need it); "
        "only then may the learning rate change. The card records the step.",
    )

    from disviz.models.base import ModelConfig

    shared = {f.name for f in dataclasses.fields(ModelConfig)}
    main = [k for k in MAIN_FIELDS if k in defaults]
    network = [k for k in defaults if (k in shared or k in NETWORK_FIELDS) and k not in (*RUN_FIELDS, *MAIN_FIELDS)]
    knobs = [k for k in defaults if k not in shared and k not in NETWORK_FIELDS]
    st.markdown(f"**{model} hyper-parameters** (paper defaults for {dataset})")
    overrides = _grid([*main, *knobs], defaults, prefix=prefix)
    with st.expander("Network and likelihood"):
        overrides.update(_grid(network, defaults, prefix=prefix))

    if not st.button("Start training", key="train_start", type="primary"):
        return None
    try:  # check the options now, so a typo is reported here and not by the worker
        from disviz.data.base import DatasetInfo

        job = JobSpec(
            model,
            dataset,
            run_name,
            steps=int(steps),
            batch_size=int(batch),
            seed=int(seed),
            device=device,
            overrides=overrides,  # lr among them moves to the run's own field
            dataset_options=data_options,
            dataset_path=data_path or None,
            resume=resume,
            reset_optimizer=bool(resume and fresh_optimizer),
            save_every=int(save_every),
        )
        job.model_config(DatasetInfo.from_dict(info))
    except (UserError, ValueError, TypeError) as exc:
        st.error(f"Invalid option: {exc}")
        return None
    return job


def _pick_job(mgr: TrainingManager) -> str | None:
    """The job this session watches: its own, else (after a reload) the newest running one."""
    jobs = mgr.jobs()
    ids = [j.id for j in jobs]
    current = st.session_state.get("train_job")
    if current not in ids:
        active = [j.id for j in jobs if j.active]
        current = active[0] if active else None
        st.session_state["train_job"] = current
    if len(jobs) > 1 or (jobs and current is None):
        labels = {
            j.id: f"{j.spec.get('run_name')} · {j.spec.get('model')}/{j.spec.get('dataset')} · {j.status}" for j in jobs
        }
        if st.session_state.get("train_watch") not in ids:
            st.session_state["train_watch"] = current if current in ids else ids[0]
        current = st.selectbox("Jobs on this server", ids, format_func=labels.get, key="train_watch")
        st.session_state["train_job"] = current
    return current


def main() -> None:
    if st.session_state.pop("train_goto_explore", False):
        try:
            st.switch_page("pages/explore.py")
        except StreamlitAPIException:  # no Explore page registered (the page runs on its own)
            pass
    st.title("Train")
    with st.expander("What am I looking at?"):
        st.markdown(
            """
Training runs **in the background** on this server: you can switch pages or reload the browser and
come back; the job keeps going, and this page finds it again.

- **Loss** is what the optimiser minimises: reconstruction error + (β ×) KL + the method's extra terms
  (total correlation for β-TCVAE, the distillation loss for DiD, the quantisation loss for QLAE...).
- **Reconstruction** (nats per image) falls first: the decoder learns to redraw the data.
- **KL per latent** shows which latents carry information (KL > ~0.1 nat) and which collapsed to the prior.
  In a disentangled model each active latent tracks one factor; DEFT and DeVAE open latents stage by stage,
  so you see their KL curves rise one after another.
- **Stop** saves a checkpoint at the current step; tick *resume* with the same run name to continue.
- The finished checkpoint appears in the **sidebar picker**; open it in Explore or Metrics.

Paper runs take 300k steps (hours on a GPU); a few thousand steps on CPU already show the first latents
switching on.
"""
        )
    mgr = training_manager()
    try:
        from disviz.data import dataset_names
        from disviz.models import model_names

        models, datasets = model_names(), dataset_names()
    except ImportError as exc:
        st.error(f"The model or dataset registry cannot be imported ({exc}); training is unavailable.")
        return

    monitor = st.container()  # the watched job goes on top; filled after the form handled Start
    st.divider()
    st.subheader("New training run")
    job_spec = _form(models, datasets)
    if job_spec is not None:
        try:
            job_id = mgr.start(job_spec)
            st.session_state["train_job"] = st.session_state["train_watch"] = job_id
            st.session_state["train_started"] = st.session_state.get("train_started", 0) + 1
        except UserError as exc:
            st.error(str(exc))

    with monitor:
        job_id = _pick_job(mgr)
        if job_id is None:
            st.info("No training job yet: choose a model and a dataset below and press **Start training**.")
            return
        try:
            snap = mgr.snapshot(job_id)
        except UserError as exc:
            st.warning(str(exc))
            return
        if snap.active:
            live_monitor(job_id)
        else:
            st.session_state.setdefault("train_finished_seen", set()).add(job_id)
            show_job(snap, mgr)


main()
