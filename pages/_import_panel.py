"""Sidebar panel "Open a model trained elsewhere": a file on the server or an upload -> an imported
checkpoint under ``runs/imported/<name>``, opened in the picker.

The conversion is ``disviz.importers.import_model`` (the same checks as ``python -m disviz import``);
this module only draws the widgets. The import runs in the button's callback, before the page
reruns, so the new checkpoint can be selected in the picker on the same click.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import streamlit as st

from disviz.core.errors import UserError

__all__ = ["import_panel"]

_AUTO = "detect from the file"
_MSG = "imp_message"


def import_panel() -> None:
    """The expander with source, format, dataset and name; call inside ``st.sidebar``."""
    from disviz.data import dataset_names
    from disviz.importers import FORMATS

    with st.expander("Open a model trained elsewhere"):
        st.caption(
            "A disent or DEFT / DeVAE authors' Lightning `.ckpt`, a QLAE `model.eqx` (its run's `config.yaml` beside it), "
            "or your TorchScript modules with their `.toml` "
            "(README: *Open a model trained elsewhere*). Nothing in the file is run."
        )
        source = st.radio("Source", ["file on the server", "upload"], key="imp_source", horizontal=True)
        if source == "upload":
            st.file_uploader(
                "Checkpoint (or a .toml and the .pt files it names, or model.eqx and config.yaml)",
                key="imp_upload",
                accept_multiple_files=True,
                type=["ckpt", "pt", "pth", "toml", "eqx", "yaml"],
            )
        else:
            st.text_input("Path", key="imp_path", placeholder="/path/to/model.ckpt or spec.toml")
        st.selectbox(
            "Format",
            [_AUTO, *FORMATS],
            key="imp_format",
            help="; ".join(f"{k}: {f.description}" for k, f in FORMATS.items()),
        )
        st.selectbox("Dataset it was trained on", dataset_names(), key="imp_dataset")
        st.text_input("Name", key="imp_name", placeholder="default: the file's name")
        st.button("Import", key="imp_go", on_click=_run_import)
        kind, text = st.session_state.get(_MSG, (None, None))
        if kind == "error":
            st.error(text)
        elif kind == "success":
            st.success(text)


def _run_import() -> None:
    """Button callback: import, select the result in the picker, or store one error line."""
    from disviz.app.jobs import validate_run_name
    from disviz.core.paths import runs_root
    from disviz.importers import import_model

    st.session_state[_MSG] = (None, None)
    tmp = None
    try:
        if st.session_state.get("imp_source") == "upload":
            files = st.session_state.get("imp_upload") or []
            if not files:
                raise UserError("choose a file to upload first")
            tmp = Path(tempfile.mkdtemp(prefix="disviz-import-"))
            for f in files:  # a .toml names its .pt files by relative path: keep them side by side
                (tmp / Path(f.name).name).write_bytes(f.getvalue())
            # the file that names the others: a .toml (TorchScript) or a model.eqx (its config.yaml beside it)
            main = [p for p in tmp.iterdir() if p.suffix in (".toml", ".eqx")]
            src = main[0] if main else tmp / Path(files[0].name).name
        else:
            path = (st.session_state.get("imp_path") or "").strip()
            if not path:
                raise UserError("type the path of the file to import")
            src = Path(path).expanduser()
        name = validate_run_name((st.session_state.get("imp_name") or "").strip() or src.stem)
        out = runs_root() / "imported" / name
        fmt = st.session_state.get("imp_format")
        done = import_model(
            src, out, st.session_state["imp_dataset"], None if fmt == _AUTO else fmt, source_name=src.name
        )
    except UserError as exc:
        st.session_state[_MSG] = ("error", str(exc))
        return
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    from pages._shared import CKPT_KEY, entries

    entries.clear()  # list the new folder now, not after the picker's cache expires
    picked = str(done.resolve())
    st.session_state["ckpt_pick"] = picked
    st.session_state[CKPT_KEY] = picked
    st.session_state[_MSG] = ("success", f"Imported into {done}; it is open now (labelled [imported] in the picker).")
