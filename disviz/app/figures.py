"""Figures for the app: uint8 image grids (one image per grid) and plotly charts.

Why one composed image: every ``st.image`` goes through Streamlit's media manager, so dozens of
tiles per rerun are slow; a grid is composed server-side with 1-2 px gutters and upscaled by an
integer factor with nearest neighbour (the browser never blurs the 64 px tiles).
Plotly figures follow the field's conventions: metric matrices on a fixed
0-1 scale with values annotated, β decreasing left to right with a 0.1 nat threshold line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

__all__ = [
    "annealing_curves",
    "compose_grid",
    "codebook_usage_figure",
    "codebook_values_figure",
    "diffusion_figure",
    "heatmap",
    "label_rows",
    "ifp_distribution",
    "argmax_order",
    "latent_histograms",
    "latent_scatter",
    "matrix_csv",
    "png_bytes",
    "table_csv",
    "to_rgb",
    "upscale",
]

PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]


# --- images ------------------------------------------------------------------------------------
def to_rgb(images: np.ndarray) -> np.ndarray:
    """uint8 [..., H, W, 1 or 3] -> [..., H, W, 3] (binary dSprites shown as grey)."""
    images = np.asarray(images)
    if images.shape[-1] == 3:
        return images
    if images.shape[-1] == 1:
        return np.repeat(images, 3, axis=-1)
    raise ValueError(f"expected 1 or 3 channels, got shape {images.shape}")


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour integer upscale of [H, W, C] (keeps pixels sharp)."""
    if factor < 1:
        raise ValueError("upscale factor must be >= 1")
    if factor == 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def compose_grid(tiles: np.ndarray, gutter: int = 2, scale: int = 1, background: int = 255) -> np.ndarray:
    """Tiles [R, S, H, W, C] uint8 -> one RGB image [R*(H*scale)+(R-1)*g, S*(W*scale)+(S-1)*g, 3].

    Tiles are upscaled by ``scale`` (nearest) before placing; ``gutter`` px of ``background`` between
    them (none around the border). Also accepts [N, H, W, C] as a single row.
    """
    tiles = np.asarray(tiles)
    if tiles.ndim == 4:
        tiles = tiles[None]
    if tiles.ndim != 5:
        raise ValueError(f"expected tiles [R, S, H, W, C], got shape {tiles.shape}")
    if tiles.dtype != np.uint8:
        raise ValueError(f"tiles must be uint8, got {tiles.dtype}; clip to [0, 1] and scale by 255 first")
    if gutter < 0:
        raise ValueError("gutter must be >= 0")
    tiles = to_rgb(tiles)
    r, s, h, w, _ = tiles.shape
    if scale > 1:
        tiles = tiles.repeat(scale, axis=2).repeat(scale, axis=3)
        h, w = h * scale, w * scale
    out = np.full((r * h + (r - 1) * gutter, s * w + (s - 1) * gutter, 3), background, dtype=np.uint8)
    for i in range(r):
        for j in range(s):
            y, x = i * (h + gutter), j * (w + gutter)
            out[y : y + h, x : x + w] = tiles[i, j]
    return out


# --- matrices ----------------------------------------------------------------------------------
def argmax_order(matrix: np.ndarray) -> list[int]:
    """Column order putting latents (columns of factors x latents) by their argmax factor, then by value.

    A well-disentangled model then shows a block diagonal.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.size == 0:
        return []
    best = np.argmax(m, axis=0)
    top = m.max(axis=0)
    return [int(j) for j in sorted(range(m.shape[1]), key=lambda j: (best[j], -top[j]))]


def heatmap(
    matrix: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str = "",
    zmin: float = 0.0,
    zmax: float = 1.0,
    colorscale: str = "Blues",
) -> go.Figure:
    """Annotated heatmap on a fixed colour scale (rows = factors, columns = latents)."""
    m = np.asarray(matrix, dtype=np.float64)
    text = [[("" if not np.isfinite(v) else f"{v:.2f}") for v in row] for row in m]
    fig = go.Figure(
        go.Heatmap(
            z=m,
            x=list(col_labels),
            y=list(row_labels),
            zmin=zmin,
            zmax=zmax,
            colorscale=colorscale,
            text=text,
            texttemplate="%{text}",
            hovertemplate="%{y} × %{x}: %{z:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        height=max(260, 45 * len(row_labels) + 120),
        margin=dict(l=10, r=10, t=40 if title else 10, b=10),
        yaxis=dict(autorange="reversed"),
        xaxis=dict(type="category"),
    )
    return fig


# --- IFP annealing ----------------------------------------------------------------------------
def _factor_color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def annealing_curves(
    curves: Mapping[str, Sequence[Mapping[str, Any]]],
    threshold: float = 0.1,
    max_per_factor: int = 8,
    beta_marks: Mapping[str, float] | None = None,
) -> go.Figure:
    """KL-vs-β per factor: ``curves[factor]`` = list of {'beta': [...], 'kl': [...], 'ifp': float|None}.

    β decreases left to right (reversed log axis), a dashed line at ``threshold`` nats, and a
    marker at each run's IFP. ``beta_marks`` ({label: β}, e.g. DEFT's stage thresholds) are drawn
    as vertical lines on the same β axis.
    """
    fig = go.Figure()
    for i, (factor, runs) in enumerate(curves.items()):
        color = _factor_color(i)
        for r, run in enumerate(list(runs)[:max_per_factor]):
            beta, kl = np.asarray(run.get("beta", []), float), np.asarray(run.get("kl", []), float)
            if beta.size == 0:
                continue
            fig.add_trace(
                go.Scatter(
                    x=beta,
                    y=kl,
                    mode="lines",
                    line=dict(color=color, width=1.2),
                    opacity=0.7,
                    name=factor,
                    legendgroup=factor,
                    showlegend=r == 0,
                    hovertemplate=f"{factor}: β=%{{x:.3g}}, KL=%{{y:.3f}}<extra></extra>",
                )
            )
            ifp = run.get("ifp")
            if ifp is not None and np.isfinite(ifp):
                y = float(np.interp(np.log(ifp), np.log(beta[::-1]), kl[::-1])) if beta[0] > beta[-1] else threshold
                fig.add_trace(
                    go.Scatter(
                        x=[ifp],
                        y=[y],
                        mode="markers",
                        marker=dict(color=color, size=9, symbol="diamond", line=dict(color="black", width=1)),
                        legendgroup=factor,
                        showlegend=False,
                        hovertemplate=f"{factor} IFP: β=%{{x:.3g}}<extra></extra>",
                    )
                )
    fig.add_hline(y=threshold, line=dict(color="black", dash="dash"), annotation_text=f"{threshold} nat")
    _add_beta_marks(fig, beta_marks)
    fig.update_layout(
        xaxis=dict(title="β (decreasing →)", type="log", autorange="reversed"),
        yaxis=dict(title="KL (nats)"),
        height=420,
        margin=dict(l=10, r=10, t=30, b=10),
        legend=dict(title="factor"),
    )
    return fig


def _add_beta_marks(fig: go.Figure, marks: Mapping[str, float] | None) -> None:
    """Vertical dotted lines at the given βs on a log β axis. Shapes take data values there, while
    annotations take log10 values (plotly's convention for log axes)."""
    for label, beta in (marks or {}).items():
        if beta is None or not np.isfinite(beta) or beta <= 0:
            continue
        fig.add_shape(
            type="line", x0=beta, x1=beta, y0=0, y1=1, yref="paper", line=dict(color="#555", dash="dot", width=1.5)
        )
        fig.add_annotation(
            x=float(np.log10(beta)),
            y=1.0,
            yref="paper",
            yanchor="bottom",
            text=label,
            showarrow=False,
            font=dict(size=10, color="#333"),
        )


def ifp_distribution(ifps: Mapping[str, Sequence[float]], beta_marks: Mapping[str, float] | None = None) -> go.Figure:
    """Per-factor distribution of IFPs (violin + points) on a reversed log β axis; ``beta_marks``
    as in ``annealing_curves``."""
    fig = go.Figure()
    for i, (factor, values) in enumerate(ifps.items()):
        v = np.asarray([x for x in values if x is not None and np.isfinite(x) and x > 0], float)
        if v.size == 0:
            continue
        fig.add_trace(
            go.Violin(
                x=v,
                name=factor,
                orientation="h",
                line_color=_factor_color(i),
                points="all",
                box_visible=True,
                meanline_visible=False,
                hoveron="points",
            )
        )
    _add_beta_marks(fig, beta_marks)
    fig.update_layout(
        xaxis=dict(title="IFP β (decreasing →)", type="log", autorange="reversed"),
        height=max(260, 70 * len(ifps) + 100),
        showlegend=False,
        margin=dict(l=10, r=10, t=30, b=10),
    )
    return fig


# --- diffusion --------------------------------------------------------------------------------
def diffusion_figure(
    records: Sequence[Mapping[str, Any]],
    factor_names: Sequence[str],
    stage_steps: Sequence[int] = (),
) -> go.Figure:
    """NMI1 (solid) and NMI2 (dotted) per factor vs training step; DEFT stage starts as vertical lines.

    records: [{'step': int, 'nmi1': [K] or {factor: v}, 'nmi2': ...}, ...].
    """
    steps = [int(r.get("step", 0)) for r in records]
    fig = go.Figure()
    for k, name in enumerate(factor_names):
        for key, dash in (("nmi1", "solid"), ("nmi2", "dot")):
            ys = []
            for r in records:
                v = r.get(key)
                if isinstance(v, Mapping):
                    ys.append(v.get(name, np.nan))
                elif isinstance(v, Sequence) and len(v) > k:
                    ys.append(v[k])
                else:
                    ys.append(np.nan)
            fig.add_trace(
                go.Scatter(
                    x=steps,
                    y=ys,
                    mode="lines+markers",
                    line=dict(color=_factor_color(k), dash=dash),
                    name=f"{name} {key.upper()}",
                    legendgroup=name,
                )
            )
    for i, s in enumerate(stage_steps):
        fig.add_vline(x=s, line=dict(color="grey", dash="dash"), annotation_text=f"stage {i + 2}")
    fig.update_layout(
        xaxis=dict(title="training step"),
        yaxis=dict(title="NMI", range=[0, 1]),
        height=380,
        margin=dict(l=10, r=10, t=30, b=10),
    )
    return fig


# --- codebook ---------------------------------------------------------------------------------
def codebook_values_figure(values: Sequence[Sequence[float]]) -> go.Figure:
    """Codebook values per latent as a strip (one row of dots per latent)."""
    fig = go.Figure()
    for j, vals in enumerate(values):
        fig.add_trace(
            go.Scatter(
                x=list(vals),
                y=[f"z{j}"] * len(vals),
                mode="markers",
                marker=dict(size=10, color=_factor_color(j)),
                showlegend=False,
                hovertemplate=f"z{j}: %{{x:.3f}}<extra></extra>",
            )
        )
    fig.update_layout(
        xaxis=dict(title="codebook value"),
        yaxis=dict(autorange="reversed", type="category"),
        height=max(220, 28 * len(values) + 80),
        margin=dict(l=10, r=10, t=10, b=10),
    )
    return fig


def codebook_usage_figure(usage: np.ndarray, values: Sequence[Sequence[float]]) -> go.Figure:
    """Usage frequency of each codebook value per latent (latents x value index heatmap, 0-1)."""
    usage = np.asarray(usage, dtype=np.float64)
    cols = [f"v{i}" for i in range(usage.shape[1])]
    fig = heatmap(usage, [f"z{j}" for j in range(usage.shape[0])], cols, zmin=0.0, zmax=1.0, colorscale="Greens")
    custom = [[(f"{v[i]:.2f}" if i < len(v) else "") for i in range(usage.shape[1])] for v in values]
    fig.update_traces(customdata=custom, hovertemplate="%{y}, value %{customdata}: %{z:.1%} of data<extra></extra>")
    fig.update_layout(xaxis=dict(title="codebook value index (sorted)"))
    return fig


def label_rows(grid: np.ndarray, labels: Sequence[str], row_height: int, gutter: int, width: int = 220) -> np.ndarray:
    """Prepend a white panel (at least ``width`` px) with one text label per grid row (drawn with Pillow).

    Keeps the grid one image (labels cannot drift out of line with their rows in the browser).
    """
    from PIL import Image, ImageDraw, ImageFont

    size = int(min(28, max(12, row_height // 4)))  # readable when the browser shrinks a wide grid
    longest = max((len(str(t)) for t in labels), default=0)
    width = max(width, int(longest * size * 0.55) + 8)
    panel = Image.new("RGB", (width, grid.shape[0]), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    for i, text in enumerate(labels):
        y = i * (row_height + gutter) + row_height // 2 - size // 2
        draw.text((4, max(0, y)), str(text), fill=(20, 20, 20), font=font)
    return np.concatenate([np.asarray(panel, dtype=np.uint8), grid], axis=1)


# --- latent space view ------------------------------------------------------------------------------
def latent_scatter(
    codes: np.ndarray,
    factors: np.ndarray,
    x: int,
    y: int,
    factor: int,
    factor_name: str,
    factor_labels: Sequence[str] | None = None,
) -> go.Figure:
    """Encodings of data images on latents ``x`` × ``y``, coloured by factor ``factor``.

    codes: [N, D]; factors: [N, K] classes. Each point's ``customdata`` is its row index, so a
    click (Streamlit's selection event) can find the image. Hover shows the factor's value. A
    categorical factor (``factor_labels`` given, e.g. shape) gets one colour and legend entry per
    value; an ordered one a continuous colour bar.
    """
    c = np.asarray(factors)[:, factor]
    labels = list(factor_labels) if factor_labels is not None else None
    hover = np.asarray(
        [
            f"#{i}<br>{factor_name} = {labels[v] if labels else v}<br>z{x} = {codes[i, x]:.2f}, z{y} = {codes[i, y]:.2f}"
            for i, v in enumerate(c)
        ]
    )
    index = np.arange(len(c))
    fig = go.Figure()
    if labels:
        for v, name in enumerate(labels):
            sel = c == v
            fig.add_trace(
                go.Scatter(
                    x=codes[sel, x],
                    y=codes[sel, y],
                    mode="markers",
                    name=f"{factor_name} = {name}",
                    marker=dict(color=_factor_color(v), size=6, opacity=0.75),
                    customdata=index[sel],
                    text=hover[sel],
                    hovertemplate="%{text}<extra></extra>",
                )
            )
    else:
        fig.add_trace(
            go.Scatter(
                x=codes[:, x],
                y=codes[:, y],
                mode="markers",
                marker=dict(
                    color=c, colorscale="Viridis", size=6, opacity=0.75, colorbar=dict(title=factor_name, thickness=12)
                ),
                customdata=index,
                text=hover,
                hovertemplate="%{text}<extra></extra>",
            )
        )
    fig.update_layout(
        xaxis_title=f"z{x}",
        yaxis_title=f"z{y}",
        height=480,
        margin=dict(l=10, r=10, t=10, b=10),
        dragmode="select",  # a drag box-selects points (a click selects one)
    )
    return fig


def latent_histograms(
    codes: np.ndarray,
    factors: np.ndarray,
    factor: int,
    factor_name: str,
    groups: int = 5,
    bins: int = 30,
    factor_labels: Sequence[str] | None = None,
) -> go.Figure:
    """One small histogram per latent, stacked by the factor's value (binned into ≤ ``groups`` ranges;
    a categorical factor: one stack per named value), so "which latent holds which factor" shows as
    colour sorted along the latent's axis."""
    from plotly.subplots import make_subplots

    d = codes.shape[1]
    c = np.asarray(factors)[:, factor]
    n_values = int(c.max()) + 1 if len(c) else 1
    labels = list(factor_labels) if factor_labels is not None else None
    if labels:
        n_values = len(labels)
    k = n_values if labels else min(groups, n_values)
    group = (c * k) // max(n_values, 1)  # [N] in 0..k-1, contiguous ranges of the factor
    cols = min(d, 5)
    rows = -(-d // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"z{j}" for j in range(d)], horizontal_spacing=0.03)
    colours = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"]
    for j in range(d):
        lo, hi = float(codes[:, j].min()), float(codes[:, j].max())
        size = (hi - lo) / bins if hi > lo else 1.0
        for g in range(k):
            sel = codes[group == g, j]
            first, last = g * n_values // k, (g + 1) * n_values // k - 1
            fig.add_trace(
                go.Histogram(
                    x=sel,
                    xbins=dict(start=lo, end=hi + size, size=size),
                    marker_color=_factor_color(g) if labels else colours[g * (len(colours) - 1) // max(k - 1, 1)],
                    name=(
                        f"{factor_name} = {labels[g]}"
                        if labels
                        else f"{factor_name} {first}–{last}"
                        if last > first
                        else f"{factor_name} {first}"
                    ),
                    legendgroup=str(g),
                    showlegend=j == 0,
                ),
                row=j // cols + 1,
                col=j % cols + 1,
            )
    fig.update_layout(barmode="stack", height=170 * rows + 60, margin=dict(l=10, r=10, t=30, b=10), bargap=0)
    fig.update_yaxes(showticklabels=False)
    return fig


# --- exports --------------------------------------------------------------------------------------
def png_bytes(image: np.ndarray) -> bytes:
    """An image grid (uint8 [H, W] or [H, W, C]) as PNG bytes for a download button."""
    import io

    from PIL import Image

    arr = np.asarray(image, dtype=np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def matrix_csv(matrix: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], corner: str = "") -> bytes:
    """A labelled matrix (e.g. factors × latents) as CSV bytes: first row the column labels."""
    import csv
    import io

    m = np.asarray(matrix, dtype=np.float64)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([corner, *col_labels])
    for name, row in zip(row_labels, m, strict=True):
        w.writerow([name, *("" if not np.isfinite(v) else f"{v:.6g}" for v in row)])
    return buf.getvalue().encode("utf-8")


def table_csv(
    rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]], header: Sequence[str] | None = None
) -> bytes:
    """Rows (dicts, or sequences with ``header``) as CSV bytes."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    if rows and isinstance(rows[0], Mapping):
        keys = list(header or rows[0].keys())
        w.writerow(keys)
        for r in rows:
            w.writerow(["" if r.get(k) is None else r.get(k) for k in keys])  # type: ignore[union-attr]
    else:
        if header:
            w.writerow(header)
        for r in rows:
            w.writerow(["" if v is None else v for v in r])  # type: ignore[union-attr]
    return buf.getvalue().encode("utf-8")


# --- lessons ---------------------------------------------------------------------------------------
def beta_sweep_figure(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """One β-VAE sweep, every run a point: reconstruction vs MIG (colour = β), then MIG and reconstruction vs β."""
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=("reconstruction vs MIG", "MIG vs β", "reconstruction vs β"),
        horizontal_spacing=0.08,
    )
    betas = sorted({float(r["β"]) for r in rows})
    for i, beta in enumerate(betas):
        sel = [r for r in rows if float(r["β"]) == beta]
        hover = [f"β = {beta:g}, seed {r['seed']}" for r in sel]
        common = dict(
            mode="markers", marker=dict(color=_factor_color(i), size=10), legendgroup=f"{beta:g}", hovertext=hover
        )
        fig.add_trace(
            go.Scatter(x=[r["reconstruction"] for r in sel], y=[r["MIG"] for r in sel], name=f"β = {beta:g}", **common),
            1,
            1,
        )
        fig.add_trace(go.Scatter(x=[beta] * len(sel), y=[r["MIG"] for r in sel], showlegend=False, **common), 1, 2)
        fig.add_trace(
            go.Scatter(x=[beta] * len(sel), y=[r["reconstruction"] for r in sel], showlegend=False, **common), 1, 3
        )
    fig.update_xaxes(title_text="reconstruction error (nats / image)", row=1, col=1)
    fig.update_xaxes(title_text="β", type="log", row=1, col=2)
    fig.update_xaxes(title_text="β", type="log", row=1, col=3)
    fig.update_yaxes(title_text="MIG", row=1, col=1)
    fig.update_yaxes(title_text="MIG", row=1, col=2)
    fig.update_yaxes(title_text="reconstruction error", row=1, col=3)
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def metric_curve(
    steps: Sequence[int], values: Sequence[float], stage_steps: Sequence[int] = (), name: str = "MIG"
) -> go.Figure:
    """One score over training (e.g. MIG from the diffusion track), with DEFT's stage starts as vertical lines."""
    fig = go.Figure(go.Scatter(x=list(steps), y=list(values), mode="lines+markers", name=name))
    for i, s in enumerate(stage_steps):
        fig.add_vline(x=s, line=dict(color="grey", dash="dash"), annotation_text=f"stage {i + 2}")
    fig.update_layout(
        xaxis=dict(title="training step"), yaxis=dict(title=name), height=300, margin=dict(l=10, r=10, t=30, b=10)
    )
    return fig
