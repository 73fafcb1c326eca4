"""Explore: latent sliders around a base image, the traversal grid, interpolation, GIF export.

Cost per interaction decides how many students one server holds: a slider step reruns only the
slider fragment (one decode, one ~1 kB inline PNG); the traversal grid, G(c) grid and
interpolation come from caches shared by every session (keyed by checkpoint + inputs); downloads
are made when their button is pressed; the interpolation runs only while its panel is open.
"""

from __future__ import annotations

import base64

import numpy as np
import streamlit as st

from disviz.app import explore as ex
from disviz.app.figures import compose_grid, label_rows
from disviz.serving.counters import count
from disviz.serving.deeplink import check_factors, parse_explore_link
from disviz.serving.images import data_uri
from pages._shared import (
    download_bytes,
    image_hash,
    png_of,
    require_checkpoint,
    show_image,
    show_uri,
    teach,
    well_reconstructed_seed,
)

DECODED_ALT = "decoded from the sliders"  # the bench and the browser tests find the decoded image by it
POOR_RECONSTRUCTION = 0.5  # unexplained variance above which Explore says the model does not redraw the base

st.title("Explore the latent space")
teach(
    """
Each **slider** is one latent dimension of the model. The **base image** is encoded into a latent code
(the sliders start there); moving a slider changes one coordinate and the decoder draws the result.
In a *disentangled* model each latent changes exactly one factor of variation (position, scale, shape…).

The **traversal grid** shows every latent at once: row = latent, columns = values across its range, the
middle column is the base code. Rows are sorted by their KL (how much information the latent carries, in
nats) or by their mutual information with the true factors, and each row says which factor it mostly
encodes. Latents with ~0 KL are *collapsed* (unused) and draw the same image in every column.

**Range modes** (as in disentanglement_lib / disent): `std_gaussian` walks the prior's quantiles (±3σ),
`fitted_gaussian` a Gaussian fitted to the data's codes, `fixed_interval` [-2, 2], `conf_interval`
mean ± 2σ of the codes, `minmax_interval` the data's min/max. QLAE latents are quantised: their sliders
step through the codebook values. Plain autoencoders have no prior, so they use the data range.

**Links.** The address bar always holds this view (checkpoint, base image, slider values): copy it to
send someone exactly what you see; a reload keeps it.
"""
)

count("explore_page_runs")
ck = require_checkpoint()
model, card, dataset = ck.model, ck.card, ck.dataset
info = dataset.info()
stats = ck.stats()
specs = model.latent_specs()
quantised = all(s.kind == "quantised" for s in specs)
variational = stats.kl is not None
modes = list(ex.RANGE_MODES)
best_seed, unexplained_by_seed, _ = well_reconstructed_seed(ck.path, ck.mtime)

# --- deep link: applied once per session, before the widgets it sets are drawn ------------------
if not st.session_state.get("explore_link_read"):
    st.session_state["explore_link_read"] = True
    link = parse_explore_link(st.query_params.to_dict(), modes)
    problems = list(link.problems)
    if link.factors is not None:
        why = check_factors(link.factors, info.factor_sizes, info.factor_names)
        if why:
            problems.append(why)
        else:
            st.session_state["explore_source"] = "factor values"
            for k, value in enumerate(link.factors):
                st.session_state[f"explore_f_{k}"] = value
    elif link.seed is not None:
        st.session_state["explore_source"] = "random"
        st.session_state["explore_seed"] = link.seed
        st.session_state["explore_seed_for"] = ck.key  # a linked seed is the user's choice, not the default
    if link.anchor:
        st.session_state["explore_anchor_mode"] = link.anchor
    if link.mode and not quantised:
        st.session_state["explore_mode"] = link.mode
    outside = sorted(j for j in link.sliders if j >= len(specs))
    if outside:
        problems.append(f"the link sets z{outside[0]}; this model has latents z0…z{len(specs) - 1}")
    if link.sliders:
        st.session_state["explore_link_sliders"] = {j: v for j, v in link.sliders.items() if j < len(specs)}
    if problems:
        st.session_state["explore_link_problems"] = problems
if st.session_state.get("explore_link_problems"):
    st.warning(
        "Parts of this link could not be used, so their defaults are shown: "
        + "; ".join(st.session_state["explore_link_problems"])
        + "."
    )

# --- base image -----------------------------------------------------------------------------
# The first view's base is the data image (of seeds 0…15) this model reconstructs best, re-chosen
# when another checkpoint is opened, until the user picks a seed.
if st.session_state.get("explore_seed_for") not in (ck.key, "user") or "explore_seed" not in st.session_state:
    st.session_state["explore_seed"] = best_seed
    st.session_state["explore_seed_for"] = ck.key


def _seed_chosen() -> None:
    st.session_state["explore_seed_for"] = "user"


st.subheader("Base image")
c1, c2 = st.columns([2, 1])
with c1:
    sources = ["random", "factor values", "upload"]
    picked = st.session_state.get("explore_picked")
    if picked is not None and picked.shape[-1] == info.channels:
        sources.append("picked point")  # chosen on the Latent space page
    if st.session_state.get("explore_source") not in sources:
        st.session_state["explore_source"] = "random"
    source = st.radio("Base image from", sources, horizontal=True, key="explore_source")
    base = None
    if source == "picked point":
        base = picked
    elif source == "random":
        seed = st.number_input(
            "Random seed",
            min_value=0,
            max_value=2**32 - 1,
            step=1,
            key="explore_seed",
            on_change=_seed_chosen,
            help=f"Opens on seed {best_seed}: of data seeds 0–15, the image this model reconstructs best.",
        )
        base = dataset.sample(1, np.random.default_rng(int(seed)))[0][0]
    elif source == "factor values":
        cols = st.columns(min(len(info.factor_names), 6))
        classes = []
        values = getattr(dataset, "factor_values", None)
        for k, (name, size) in enumerate(zip(info.factor_names, info.factor_sizes, strict=True)):
            vals = values[k] if values is not None and len(values) > k else None

            def fmt(i: int, vals=vals) -> str:
                return (
                    f"{i}: {vals[i]:.3g}"
                    if vals is not None and np.issubdtype(np.asarray(vals).dtype, np.number)
                    else str(i)
                )

            with cols[k % len(cols)]:
                classes.append(
                    st.selectbox(name, list(range(size)), index=size // 2, format_func=fmt, key=f"explore_f_{k}")
                )
        base = dataset.images_from_factors(np.asarray([classes]))[0]
    else:
        up = st.file_uploader("Upload an image (PNG/JPEG, ≤ 10 MB)", type=["png", "jpg", "jpeg", "bmp", "gif", "webp"])
        if up is not None:
            try:
                base = ex.load_upload(up.getvalue(), info.channels, name=up.name)
            except ex.UploadError as exc:
                st.error(str(exc))
        if base is None:
            st.info("Upload an image to use it as the base; until then a random data image is used.")
            base = dataset.sample(1, np.random.default_rng(0))[0][0]
with c2:
    anchor_mode = st.radio(
        "Traverse around",
        ["posterior", "prior"],
        horizontal=True,
        key="explore_anchor_mode",
        help="posterior: the encoding of the base image; prior: the zero code (QLAE: the codebook value nearest 0)",
    )
    encoded = ex.encode(model, base[None])  # encoded: [1, D]
    recon = ex.decode(model, encoded)[0]
    unexplained, psnr = ex.quality_of(base[None], recon[None])  # the reconstruction above, not a second decode
    show_image(
        compose_grid(np.stack([base, recon])[None], gutter=2, scale=2),
        alt="base image and its reconstruction",
        caption=f"base · reconstruction (PSNR {psnr[0]:.1f} dB, {100 * unexplained[0]:.0f} % of its variance lost)",
    )
    if unexplained[0] > POOR_RECONSTRUCTION and callable(getattr(model, "generate", None)):
        st.warning(
            f"E(x) → G does not reconstruct this image ({100 * unexplained[0]:.0f} % of its variance lost): this "
            "model's encoder E does not invert its generator G on real images. The sliders and the first grid show "
            "what G draws around E(x); the G(c) grid below shows the generator on its own prior."
        )
    elif unexplained[0] > POOR_RECONSTRUCTION:
        st.caption(
            "⚠ The model does not redraw this image well: the sliders and the grid show what the decoder draws "
            "near this code, not this image."
        )

anchor = encoded[0].copy()
base_hash = image_hash(base)
st.session_state["explore_base_hash"] = base_hash
if anchor_mode == "prior":
    anchor = np.zeros_like(anchor)
    for s in specs:
        if s.kind == "quantised" and s.values:
            anchor[s.index] = ex.nearest_value(s.values, 0.0)

# --- range mode -----------------------------------------------------------------------------------
if quantised:
    mode = "codebook"
    st.caption("Range: **codebook values** (QLAE latents are quantised; no interpolation between values).")
else:
    default_mode = "std_gaussian" if variational else "minmax_interval"
    if st.session_state.get("explore_mode") not in modes:
        st.session_state["explore_mode"] = default_mode
    mode = st.selectbox("Range mode", modes, key="explore_mode", format_func=lambda m: f"{m} — {ex.RANGE_MODES[m]}")
    if not variational and mode in ("std_gaussian", "fixed_interval"):
        st.caption("This model has no prior: the range falls back to `minmax_interval` (the data's min/max).")

sliders = [ex.slider_spec(s, mode if not quantised else "std_gaussian", stats.codes) for s in specs]
labels = ex.row_labels(stats, range(len(specs)))
focus = st.session_state.get("explore_focus")

# slider state follows the base code: reset when the checkpoint, base or anchor changed
anchor_id = f"{ck.key}|{base_hash}|{anchor_mode}|{mode}"


def _snap(j: int, value: float) -> float:
    sp = sliders[j]
    if sp.values:
        return ex.nearest_value(sp.values, value)
    return float(np.clip(round(value / sp.step) * sp.step, sp.low, sp.high))


def reset_sliders() -> None:
    for j in range(len(specs)):
        st.session_state[f"z{j}"] = _snap(j, float(anchor[j]))


if st.session_state.get("explore_anchor_id") != anchor_id:
    st.session_state["explore_anchor_id"] = anchor_id
    reset_sliders()
    linked = st.session_state.pop("explore_link_sliders", None)  # a deep link's slider values, once
    for j, value in (linked or {}).items():
        st.session_state[f"z{j}"] = _snap(j, value)

# the URL names this view (the sliders add their own values, z0=…, through their binding)
url_view = {"anchor": anchor_mode}
if source == "random":
    url_view["seed"] = str(int(st.session_state["explore_seed"]))
elif source == "factor values":
    url_view["factors"] = ",".join(str(int(st.session_state[f"explore_f_{k}"])) for k in range(len(info.factor_names)))
if not quantised:
    url_view["mode"] = mode
for gone in ("seed", "factors"):
    if gone not in url_view and gone in st.query_params:
        del st.query_params[gone]
st.query_params.update(url_view)


@st.fragment
def latent_panel() -> None:
    """The only code a slider step runs: read the sliders, one decode, one small inline image."""
    count("explore_slider_runs")
    st.subheader("Latent sliders")
    if focus is not None and 0 <= int(focus) < len(specs):
        st.info(f"Highlighted from the Metrics page: **{labels[int(focus)]}**")
    st.button("Reset to encoded", on_click=reset_sliders, key="explore_reset")
    left, right = st.columns([3, 2])
    z = anchor.copy()
    with left:
        cols = st.columns(2)
        for j, sp in enumerate(sliders):
            label = ("⭐ " if focus is not None and int(focus) == j else "") + labels[j]
            with cols[j % 2]:
                if sp.values:
                    z[j] = st.select_slider(
                        label, options=sp.values, key=f"z{j}", format_func=lambda v: f"{v:.2f}", bind="query-params"
                    )
                else:  # bound to the URL (z<j>=…): the browser updates the address bar itself on a move
                    z[j] = st.slider(
                        label, sp.low, sp.high, step=sp.step, key=f"z{j}", format="%.2f", bind="query-params"
                    )
    img = ex.decode(model, z[None])[0]
    st.session_state["explore_z"] = z.tolist()
    st.session_state["explore_decoded_hash"] = image_hash(img)
    with right:
        show_image(img, alt=DECODED_ALT, caption=DECODED_ALT, width=320)


latent_panel()


# --- traversal grid (cached for every session; the page only sends it) ---------------------------
def _tiles(
    anchor_t: tuple[float, ...], order_t: tuple[int, ...], mode: str, steps: int, row_kind: str, model, stats
) -> np.ndarray:
    """Decoded tiles [R, S, 64, 64, C] of the grid and the GIF (the same rows and columns in both).

    row_kind 'latent': rows vary latents around the anchor (its own value in the centre column);
    'code': rows vary a generator's code dimensions over the prior's own range (no data statistics).
    """
    model_specs = model.latent_specs()
    if row_kind == "code":
        vals = [ex.traversal_values(model_specs[j], "minmax_interval", None, steps) for j in order_t]
    else:
        walk = mode if mode != "codebook" else "std_gaussian"
        vals = [ex.traversal_values(model_specs[j], walk, stats.codes, steps) for j in order_t]
        if mode != "codebook":  # the centre column is the anchor itself
            for r, j in enumerate(order_t):
                vals[r][len(vals[r]) // 2] = anchor_t[j]
    return ex.traversal_tiles(model, np.asarray(anchor_t), list(order_t), vals)


@st.cache_data(max_entries=64, show_spinner=False)
def traversal_grid(
    key: str,
    anchor_t: tuple[float, ...],
    order_t: tuple[int, ...],
    mode: str,
    steps: int,
    scale: int,
    row_kind: str,
    _model: object,
    _stats: ex.LatentStats,
) -> str:
    """The labelled traversal grid as a PNG data URI (one string per view, shared across sessions).

    Rows of kind 'latent' are labelled with the factor each latent mostly encodes; 'code' rows
    (a generator's own traversal) c0, c1, … with the prior's range.
    """
    count("traversal_grid_builds")
    model_specs = _model.latent_specs()
    if row_kind == "code":
        row_names = [f"c{j} · prior [{model_specs[j].low:g}, {model_specs[j].high:g}]" for j in order_t]
    else:
        row_names = ex.row_labels(_stats, order_t)
    tiles = _tiles(anchor_t, order_t, mode, steps, row_kind, _model, _stats)
    grid = compose_grid(tiles, gutter=2, scale=scale)
    return data_uri(label_rows(grid, row_names, 64 * scale, 2, width=230))


@st.cache_data(max_entries=16, show_spinner="Making the GIF…")
def traversal_gif(
    key: str,
    anchor_t: tuple[float, ...],
    order_t: tuple[int, ...],
    mode: str,
    steps: int,
    fps: int,
    _model: object,
    _stats: ex.LatentStats,
) -> bytes:
    return ex.traversal_gif(_tiles(anchor_t, order_t, mode, steps, "latent", _model, _stats), fps=fps, scale=1)


st.subheader("Traversal grid")
g1, g2, g3, g4 = st.columns(4)
sort_opts = {
    "kl": "KL (largest first)" if variational else "code variance",
    "mi": "MI with factors",
    "index": "latent index",
}
sort_by = g1.selectbox("Sort rows by", list(sort_opts), format_func=sort_opts.get, key="explore_sort")
steps = g2.slider("Steps", 3, 15, 9, step=2, key="explore_steps", disabled=quantised)
hide = g3.toggle(
    "Hide collapsed latents", value=False, key="explore_hide", help="KL < 0.01 nat (VAEs) or constant codes"
)
scale = g4.select_slider("Zoom", [1, 2, 3], value=2, key="explore_zoom")

order = ex.sort_latents(stats, sort_by)
if focus is not None and int(focus) in order:
    order.remove(int(focus))
    order.insert(0, int(focus))
if hide:
    active = (stats.kl > 0.01) if variational else (stats.codes.std(axis=0) > 1e-3)
    order = [j for j in order if active[j]] or order
st.session_state["explore_row_order"] = order
st.caption(
    f"Range mode: **{mode}** · centre column = the {'base encoding' if anchor_mode == 'posterior' else 'prior mean'}"
    " · row labels: the factor with the largest normalised MI on 256 data images (20 bins, bias-corrected); "
    "the Metrics page's matrix uses its own estimator and sample, so its numbers differ"
)
anchor_t = tuple(np.round(anchor, 4).tolist())
grid_uri = traversal_grid(ck.key, anchor_t, tuple(order), mode, int(steps), int(scale), "latent", model, stats)
show_uri(grid_uri, alt="traversal grid")
download_bytes("Download the grid (PNG)", lambda: png_of(grid_uri), "traversal.png", "image/png", "explore_png")

if callable(getattr(model, "generate", None)):  # a generative model (DiD): its own samples G(c) as well
    st.subheader("Generator traversal: G(c), one code dimension at a time")
    st.caption(
        "The grid above moves each latent around E(x), the encoding of the base image, and decodes through G. "
        "Here every dimension of the code c starts at a draw from the prior U(−1, 1) and each row sweeps one "
        "dimension over the prior's whole range, −1 to 1: what the generator itself draws. Rows are the "
        "generator's code dimensions c0, c1, … (not the encoder's factor labels). A row that changes one factor "
        "of the image means that code dimension controls one factor; identical rows mean G ignores it."
    )
    g_seed = st.number_input("Prior sample seed", min_value=0, value=0, step=1, key="explore_gen_seed")
    c0 = ex.prior_sample(specs, int(g_seed))
    g_uri = traversal_grid(
        ck.key,
        tuple(np.round(c0, 4).tolist()),
        tuple(range(len(specs))),
        "prior",
        int(steps),
        int(scale),
        "code",
        model,
        stats,
    )
    show_uri(g_uri, alt="generator traversal")
    download_bytes(
        "Download G(c) grid (PNG)", lambda: png_of(g_uri), "generator_traversal.png", "image/png", "explore_gen_png"
    )

with st.expander("GIF export"):
    fps = st.slider("Frames per second", 2, 20, 8, key="explore_fps")
    if st.button("Make GIF of this traversal", key="explore_gif"):
        st.session_state["explore_gif_bytes"] = traversal_gif(
            ck.key, anchor_t, tuple(order), mode, int(steps), int(fps), model, stats
        )
    gif = st.session_state.get("explore_gif_bytes")
    if gif:
        uri = "data:image/gif;base64," + base64.b64encode(gif).decode("ascii")
        show_uri(uri, alt="traversal GIF", caption="every row animated together (triangle wave, loops)")
        download_bytes("Download traversal.gif", lambda: gif, "traversal.gif", "image/gif", "explore_gif_dl")


# --- interpolation (computed only while its panel is open) ------------------------------------------
@st.cache_data(max_entries=64, show_spinner=False)
def interpolation(key: str, seed_a: int, seed_b: int, n: int, _model: object, _dataset: object) -> str:
    img_a = _dataset.sample(1, np.random.default_rng(seed_a))[0][0]
    img_b = _dataset.sample(1, np.random.default_rng(seed_b))[0][0]
    frames = ex.interpolate(_model, img_a, img_b, n)
    return data_uri(compose_grid(np.concatenate([img_a[None], frames, img_b[None]])[None], gutter=2, scale=2))


interp_panel = st.expander("Interpolation between two images", key="explore_interp_open", on_change="rerun")
with interp_panel:
    if interp_panel.open:
        i1, i2, i3 = st.columns(3)
        sa = i1.number_input("Image A seed", min_value=0, value=1, key="explore_ia")
        sb = i2.number_input("Image B seed", min_value=0, value=2, key="explore_ib")
        n_int = i3.slider("Steps", 3, 12, 8, key="explore_isteps")
        interp_uri = interpolation(ck.key, int(sa), int(sb), int(n_int), model, dataset)
        show_uri(interp_uri, alt="interpolation", caption="A · decoded path from code(A) to code(B) · B")
        download_bytes(
            "Download the interpolation (PNG)",
            lambda: png_of(interp_uri),
            "interpolation.png",
            "image/png",
            "explore_interp_png",
        )
