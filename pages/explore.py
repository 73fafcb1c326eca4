"""Explore: latent sliders around a base image, the traversal grid, interpolation, GIF export."""

from __future__ import annotations

import numpy as np
import streamlit as st

from disviz import explore as ex
from disviz.figures import compose_grid, label_rows, png_bytes, to_rgb, upscale
from pages._shared import image_hash, require_checkpoint, teach

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
"""
)

ck = require_checkpoint()
model, card, dataset = ck.model, ck.card, ck.dataset
info = dataset.info()
stats = ck.stats()
specs = model.latent_specs()
quantised = all(s.kind == "quantised" for s in specs)
variational = stats.kl is not None

# --- base image -----------------------------------------------------------------------------
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
        seed = st.number_input("Random seed", min_value=0, value=0, step=1, key="explore_seed")
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
    recon = ex.decode(model, ex.encode(model, base[None]))[0]
    st.image(upscale(compose_grid(np.stack([base, recon])[None], gutter=2), 2), caption="base · reconstruction")

anchor = ex.encode(model, base[None])[0]
st.session_state["explore_base_hash"] = image_hash(base)
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
    modes = list(ex.RANGE_MODES)
    mode = st.selectbox(
        "Range mode",
        modes,
        index=modes.index(default_mode),
        key="explore_mode",
        format_func=lambda m: f"{m} — {ex.RANGE_MODES[m]}",
    )
    if not variational and mode in ("std_gaussian", "fixed_interval"):
        st.caption("This model has no prior: the range falls back to `minmax_interval` (the data's min/max).")

sliders = [ex.slider_spec(s, mode if not quantised else "std_gaussian", stats.codes) for s in specs]
labels = ex.row_labels(stats, range(len(specs)))
focus = st.session_state.get("explore_focus")

# slider state follows the base code: reset when the checkpoint, base or anchor changed
anchor_id = f"{ck.key}|{image_hash(base)}|{anchor_mode}|{mode}"


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


@st.fragment
def latent_panel() -> None:
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
                    z[j] = st.select_slider(label, options=sp.values, key=f"z{j}", format_func=lambda v: f"{v:.2f}")
                else:
                    z[j] = st.slider(label, sp.low, sp.high, step=sp.step, key=f"z{j}", format="%.2f")
    img = ex.decode(model, z[None])[0]
    st.session_state["explore_z"] = z.tolist()
    st.session_state["explore_decoded_hash"] = image_hash(img)
    with right:
        st.image(upscale(to_rgb(img), 5), caption="decoded from the sliders")


latent_panel()

# --- traversal grid ---------------------------------------------------------------------------------
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
)


@st.cache_data(max_entries=32, show_spinner=False)
def grid_image(
    key: str, anchor_t: tuple[float, ...], order_t: tuple[int, ...], mode: str, steps: int, scale: int
) -> tuple:
    vals = [
        ex.traversal_values(specs[j], mode if mode != "codebook" else "std_gaussian", stats.codes, steps)
        for j in order_t
    ]
    if mode != "codebook":  # the centre column is the anchor itself
        for r, j in enumerate(order_t):
            vals[r][len(vals[r]) // 2] = anchor_t[j]
    tiles = ex.traversal_tiles(model, np.asarray(anchor_t), list(order_t), vals)
    grid = compose_grid(tiles, gutter=2, scale=scale)
    lab = ex.row_labels(stats, order_t)
    return label_rows(grid, lab, 64 * scale, 2, width=230), tiles


grid, tiles = grid_image(ck.key, tuple(np.round(anchor, 4).tolist()), tuple(order), mode, int(steps), int(scale))
st.image(grid)
st.download_button(
    "Download the grid (PNG)", png_bytes(grid), file_name="traversal.png", mime="image/png", key="explore_png"
)

if callable(getattr(model, "generate", None)):  # a generative model (DiD): its own samples G(c) as well
    st.subheader("Generator traversal: G(c), one code dimension at a time")
    st.caption(
        "The grid above moves each latent around E(x), the encoding of the base image, and decodes through G. "
        "Here the centre column is a code c drawn from the prior (U(−1, 1) per dimension) and each row moves one "
        "dimension of c: what the generator itself draws. A row that changes one factor of the image means that "
        "code dimension controls one factor; identical rows mean G ignores it (or has collapsed)."
    )
    g_seed = st.number_input("Prior sample seed", min_value=0, value=0, step=1, key="explore_gen_seed")
    c0 = ex.prior_sample(specs, int(g_seed))
    g_grid, _ = grid_image(
        ck.key, tuple(np.round(c0, 4).tolist()), tuple(range(len(specs))), "std_gaussian", int(steps), int(scale)
    )
    st.image(g_grid)
    st.download_button(
        "Download G(c) grid (PNG)", png_bytes(g_grid), "generator_traversal.png", "image/png", key="explore_gen_png"
    )

with st.expander("GIF export"):
    fps = st.slider("Frames per second", 2, 20, 8, key="explore_fps")
    if st.button("Make GIF of this traversal", key="explore_gif"):
        st.session_state["explore_gif_bytes"] = ex.traversal_gif(tiles, fps=fps, scale=1)
    gif = st.session_state.get("explore_gif_bytes")
    if gif:
        st.image(gif, caption="every row animated together (triangle wave, loops)")
        st.download_button(
            "Download traversal.gif", gif, file_name="traversal.gif", mime="image/gif", key="explore_gif_dl"
        )

# --- interpolation -------------------------------------------------------------------------------
st.subheader("Interpolation between two images")
i1, i2, i3 = st.columns(3)
sa = i1.number_input("Image A seed", min_value=0, value=1, key="explore_ia")
sb = i2.number_input("Image B seed", min_value=0, value=2, key="explore_ib")
n_int = i3.slider("Steps", 3, 12, 8, key="explore_isteps")
img_a = dataset.sample(1, np.random.default_rng(int(sa)))[0][0]
img_b = dataset.sample(1, np.random.default_rng(int(sb)))[0][0]
frames = ex.interpolate(model, img_a, img_b, int(n_int))
row = np.concatenate([img_a[None], frames, img_b[None]])
interp = compose_grid(row[None], gutter=2, scale=2)
st.image(interp, caption="A · decoded path from code(A) to code(B) · B")
st.download_button(
    "Download the interpolation (PNG)", png_bytes(interp), "interpolation.png", "image/png", key="explore_interp_png"
)
