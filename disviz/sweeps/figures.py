"""Figures of a sweep's results table (the Sweeps page): score distributions and metric agreement.

Every trial is drawn as its own point (box + all points): with a handful of seeds the spread of
the points *is* the finding (how much a score moves with the seed alone), which a box or a mean
would hide. Each point carries its trial id in ``customdata`` so a click selects the run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from disviz.app.figures import PALETTE, heatmap
from disviz.metrics.registry import label_of
from disviz.sweeps.results import spearman_matrix, table_columns

__all__ = ["group_choices", "rank_correlation_figure", "score_distribution_figure", "sweep_metrics"]


def sweep_metrics(data: Mapping[str, Any]) -> list[str]:
    """Metric columns of the table that some finished trial has a number for."""
    _, metrics = table_columns(data)
    done = [r for r in data["trials"] if r.get("status") == "done"]
    return [m for m in metrics if any(isinstance((r.get("scores") or {}).get(m), (int, float)) for r in done)]


def group_choices(data: Mapping[str, Any]) -> list[str]:
    """What the distributions can be grouped by: 'model', then every swept hyper-parameter, 'dataset'."""
    hp, _ = table_columns(data)
    datasets = {r.get("dataset") for r in data["trials"]}
    return ["model", *hp] + (["dataset"] if len(datasets) > 1 else [])


def _group_value(row: Mapping[str, Any], by: str) -> str:
    if by in ("model", "dataset"):
        return str(row.get(by))
    value = (row.get("hparams") or {}).get(by)
    return "—" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def score_distribution_figure(data: Mapping[str, Any], metric: str, by: str = "model") -> go.Figure:
    """One box per value of ``by`` with every finished trial as a point, coloured by model.

    Grouped by a hyper-parameter, each model gets its own box at each value (side by side), so a
    β that helps one model and hurts another shows as crossing boxes.
    """
    rows = [r for r in data["trials"] if r.get("status") == "done"]
    models = list(dict.fromkeys(str(r.get("model")) for r in rows))
    fig = go.Figure()
    for i, model in enumerate(models):
        mine = [r for r in rows if str(r.get("model")) == model]
        y = [(r.get("scores") or {}).get(metric) for r in mine]
        keep = [j for j, v in enumerate(y) if isinstance(v, (int, float)) and np.isfinite(v)]
        if not keep:
            continue
        fig.add_trace(
            go.Box(
                x=[_group_value(mine[j], by) for j in keep],
                y=[float(y[j]) for j in keep],
                name=model,
                marker_color=PALETTE[i % len(PALETTE)],
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                customdata=[[mine[j]["trial"], mine[j].get("seed")] for j in keep],
                hovertemplate="%{customdata[0]}<br>seed %{customdata[1]}<br>"
                + label_of(metric)
                + " %{y:.3f}<extra></extra>",
            )
        )
    fig.update_layout(
        boxmode="group",
        height=380,
        margin=dict(l=10, r=10, t=30, b=10),
        yaxis=dict(title=label_of(metric)),
        xaxis=dict(title=by, type="category"),
        legend=dict(orientation="h", y=1.08),
    )
    return fig


def rank_correlation_figure(data: Mapping[str, Any], metrics: Sequence[str] | None = None) -> go.Figure:
    """Spearman rank correlation between metrics over the finished trials (−1 … 1, annotated)."""
    names, mat = spearman_matrix(data, metrics)
    if not names:
        fig = go.Figure()
        fig.add_annotation(
            text="needs at least 3 finished trials whose scores differ",
            showarrow=False,
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
        )
        fig.update_layout(height=200, xaxis=dict(visible=False), yaxis=dict(visible=False))
        return fig
    labels = [label_of(m) for m in names]
    fig = heatmap(mat, labels, labels, zmin=-1.0, zmax=1.0, colorscale="RdBu")
    fig.update_traces(hovertemplate="%{y} vs %{x}: ρ = %{z:.2f}<extra></extra>")
    fig.update_layout(height=max(300, 40 * len(labels) + 120))
    return fig
