"""Streamlit glue shared by the pages: cached model / dataset / statistics, the sidebar picker.

Not a page (st.navigation lists pages explicitly). All logic lives in disviz.app.explore / figures;
this file only adds Streamlit caching and messages.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # page files also run on their own under AppTest
    sys.path.insert(0, str(_ROOT))

import numpy as np  # noqa: E402
import streamlit as st  # noqa: E402

from disviz.app import explore  # noqa: E402
from disviz.core.errors import UserError  # noqa: E402
from disviz.engine.card import Card  # noqa: E402
from disviz.serving.images import data_uri, img_html  # noqa: E402
from pages._import_panel import import_panel  # noqa: E402

CKPT_KEY = "ckpt"  # session_state: the selected checkpoint path (str)
SWEEP_OPENED = "sweep_opened"  # session_state: sweep trials opened from the Sweeps page (listed in the picker)


@st.cache_resource(show_spinner=False)
def device_name() -> tuple[str, str]:
    from disviz.core.device import describe, pick_device

    dev = pick_device("auto")
    return str(dev), describe(dev)


@st.cache_resource(max_entries=8, show_spinner="Loading checkpoint…")
def get_model(path: str, mtime: float) -> tuple[Any, Card]:
    """One model per (path, mtime), shared by all sessions, eval mode on the GPU when present."""
    model, card = explore.load_model(path, device=device_name()[0])
    model.requires_grad_(False)
    return model, card


@st.cache_resource(max_entries=8, show_spinner=False)
def get_dataset(key: str) -> Any:
    return explore.dataset_for_card(Card.from_dict(json.loads(key)))


def dataset_key(card: Card) -> str:
    """The part of a card that decides its dataset (name, options, real file), as a cache key."""
    train = card.train.to_dict() if card.train else {}
    return json.dumps({"dataset": card.dataset, "train": train}, sort_keys=True, default=str)


@st.cache_resource(max_entries=8, show_spinner="Encoding a data sample…")
def get_stats(path: str, mtime: float, n: int = 256) -> explore.LatentStats:
    """Shared read-only by every session (a resource, not data: no copy per rerun; treat as immutable)."""
    model, card = get_model(path, mtime)
    return explore.latent_stats(model, get_dataset(dataset_key(card)), n=n)


BASE_CANDIDATES = 16  # data seeds Explore considers for its first base image


@st.cache_data(max_entries=32, show_spinner=False)
def well_reconstructed_seed(path: str, mtime: float) -> tuple[int, list[float], list[float]]:
    """The first view's base image: of data seeds 0…15, the one this model reconstructs best.

    Returns (seed, unexplained fraction per seed, PSNR per seed); the rule is in
    ``latents.reconstruction_quality``.
    """
    model, card = get_model(path, mtime)
    dataset = get_dataset(dataset_key(card))
    images = np.concatenate([dataset.sample(1, np.random.default_rng(s))[0] for s in range(BASE_CANDIDATES)])
    unexplained, psnr = explore.reconstruction_quality(model, images)
    return int(np.argmin(unexplained)), unexplained.tolist(), psnr.tolist()


def show_image(img: np.ndarray, alt: str, caption: str | None = None, width: int | None = None) -> None:
    """One image inline (a PNG data URI; see disviz.serving.images for why not st.image)."""
    st.html(img_html(data_uri(img), alt, width=width, caption=caption))


def show_uri(uri: str, alt: str, caption: str | None = None, width: int | None = None) -> None:
    """An already encoded (cached) data URI."""
    st.html(img_html(uri, alt, width=width, caption=caption))


def png_of(uri: str) -> bytes:
    """The PNG bytes inside a data URI (a cached grid's download costs no new encoding)."""
    return base64.b64decode(uri.split(",", 1)[1])


def download_bytes(label: str, make: Callable[[], bytes], file_name: str, mime: str, key: str) -> None:
    """Any download built on click (CSV tables, GIFs)."""
    st.download_button(label, data=make, file_name=file_name, mime=mime, key=key, on_click="ignore")


@st.cache_resource(ttl=3, max_entries=64, show_spinner=False)
def entries(roots: tuple[str, ...], version: int, include: tuple[str, ...] = ()) -> list[explore.CheckpointEntry]:
    """Shared, not copied per rerun (cards hold training histories); re-listed every 3 s, which costs
    only a folder walk because unchanged cards are not parsed again (catalogue's memo)."""
    return explore.list_entries(list(roots), include)


def _version() -> int:
    try:
        from disviz.app.jobs import checkpoints_version

        return int(checkpoints_version())
    except Exception:
        return 0


def all_entries() -> list[explore.CheckpointEntry]:
    roots = explore.checkpoint_roots(st.session_state.get("extra_roots", []))
    opened = tuple(st.session_state.get(SWEEP_OPENED, []))
    return entries(tuple(str(r) for r in roots), _version(), opened)


@dataclass
class Loaded:
    """What a page needs about the selected checkpoint."""

    path: str
    mtime: float
    model: Any
    card: Card
    dataset: Any

    @property
    def key(self) -> str:
        return f"{self.path}@{self.mtime}"

    def stats(self, n: int = 256) -> explore.LatentStats:
        return get_stats(self.path, self.mtime, n)


def _add_folder() -> None:
    folder = st.session_state.get("extra_folder", "").strip()
    if not folder:
        return
    if not Path(folder).is_dir():
        st.session_state["extra_folder_error"] = (
            f"{folder} is not a folder; type the path of a folder holding checkpoints"
        )
        return
    found, complete = explore.scan_folder(folder)
    if not complete:
        st.session_state["extra_folder_error"] = (
            f"Stopped scanning {folder} after {explore.SCAN_LIMITS}: it is too large to search. "
            "Type the folder that holds your checkpoints (or its parent)."
        )
        return
    if not found:
        st.session_state["extra_folder_error"] = f"No checkpoints (folders with a card.json) under {folder}."
        return
    st.session_state.pop("extra_folder_error", None)
    extra = st.session_state.setdefault("extra_roots", [])
    if folder not in extra:
        extra.append(folder)


def _linked_checkpoint(found: list[explore.CheckpointEntry], current: str | None) -> str | None:
    """The checkpoint a link's ``?ckpt=`` names (its path as the picker shows it), or ``current``."""
    wanted = st.query_params.get("ckpt")
    if not wanted:
        return current
    for e in found:
        if explore.display_path(e.path) == wanted or str(e.path) == wanted:
            st.session_state["ckpt_pick"] = str(e.path)
            return str(e.path)
    st.session_state["ckpt_link_problem"] = (
        f"This link opens the checkpoint '{wanted[:120]}', which this server does not have (renamed, removed or "
        "never copied here); showing the default checkpoint instead. Pick one in the list above."
    )
    return current


def sidebar() -> None:
    """The checkpoint picker and the device line (drawn by app.py on every page)."""
    with st.sidebar:
        st.markdown("### Checkpoint")
        found = all_entries()
        if not found:
            st.info("No checkpoints yet. Train one on the **Train** page, or see the README (`make checkpoints`).")
        else:
            paths = [str(e.path) for e in found]
            labels = {str(e.path): e.label for e in found}
            current = st.session_state.get(CKPT_KEY)
            if not st.session_state.get("ckpt_link_read"):  # a deep link's checkpoint, once per session
                st.session_state["ckpt_link_read"] = True
                current = _linked_checkpoint(found, current)
            if current not in paths:
                current = str(explore.default_entry(found).path)
            st.session_state["ckpt_pick"] = st.session_state.get("ckpt_pick", current)
            if st.session_state["ckpt_pick"] not in paths:
                st.session_state["ckpt_pick"] = current
            picked = st.selectbox(
                "Checkpoint",
                paths,
                key="ckpt_pick",
                format_func=lambda p: labels.get(p, p),
                label_visibility="collapsed",
            )
            st.session_state[CKPT_KEY] = picked
            entry = next(e for e in found if str(e.path) == picked)
            st.query_params["ckpt"] = explore.display_path(entry.path)  # the URL names the open checkpoint
            if entry.error:
                st.error("This checkpoint is broken; see the page for details.")
            else:
                st.caption(entry.label.split(" — ", 1)[-1])
        if st.session_state.get("ckpt_link_problem"):
            st.warning(st.session_state["ckpt_link_problem"])
        import_panel()  # "Open a model trained elsewhere" (pages/_import_panel.py)
        st.text_input("Add a checkpoint folder", key="extra_folder", on_change=_add_folder, placeholder="/path/to/runs")
        if st.session_state.get("extra_folder_error"):
            st.warning(st.session_state["extra_folder_error"])
        st.caption(f"Compute device: **{device_name()[1]}**")


def require_checkpoint() -> Loaded:
    """The selected checkpoint, loaded; otherwise a clear message and ``st.stop()`` (other pages still work)."""
    found = all_entries()
    if not found:
        st.info(
            "No checkpoints found in `./checkpoints`, `./runs` or `$DISVIZ_CHECKPOINTS`. "
            "Train one on the **Train** page (or `python -m disviz train ...`), or add a folder in the sidebar."
        )
        st.stop()
    path = st.session_state.get(CKPT_KEY)
    entry = next((e for e in found if str(e.path) == path), None) or explore.default_entry(found)
    if entry.error:
        st.error(f"Cannot open this checkpoint: {entry.error}")
        st.stop()
    try:
        model, card = get_model(str(entry.path), entry.mtime)
        dataset = get_dataset(dataset_key(card))
    except UserError as exc:
        st.error(f"Cannot open {entry.path}: {exc}")
        st.stop()
    return Loaded(str(entry.path), entry.mtime, model, card, dataset)


def image_hash(img: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(img).tobytes()).hexdigest()[:16]


def teach(text: str) -> None:
    with st.expander("What am I looking at?"):
        st.markdown(text)
