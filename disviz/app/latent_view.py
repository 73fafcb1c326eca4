"""The latent-space view: which two latents to show first, and the data behind a picked point.

The page encodes a few thousand data images once per checkpoint (cached) and redraws from these
codes when the user picks other latents or another colouring factor; nothing here re-encodes.
"""

from __future__ import annotations

import numpy as np

from disviz.app.latents import LatentStats

__all__ = ["informative_pair", "picked_point"]


def informative_pair(stats: LatentStats) -> tuple[int, int]:
    """The two latents to plot by default: the most informative one (largest NMI with any factor),
    then the most informative latent whose best factor is a different one (else the runner-up).

    Why different factors: two latents that encode the same factor draw a diagonal line, while two
    that encode different ones spread the data into the grid a disentangled model should show.
    """
    d = stats.codes.shape[1]
    if d < 2:
        return 0, 0
    nmi = stats.nmi if stats.nmi.size else np.zeros((d, 1))
    top = nmi.max(axis=1)  # [D]
    best = nmi.argmax(axis=1)  # [D]
    order = [int(j) for j in np.argsort(-top, kind="stable")]
    first = order[0]
    second = next((j for j in order[1:] if best[j] != best[first] and top[j] > 0), order[1])
    return first, second


def picked_point(stats: LatentStats, index: int) -> dict[str, object]:
    """Image, code and factor classes of sample ``index`` of the view's data."""
    if not 0 <= index < len(stats.codes):
        raise IndexError(f"point {index} is not in the view's {len(stats.codes)} samples")
    return {
        "image": stats.images[index],  # uint8 [64, 64, C]
        "code": stats.codes[index],  # [D]
        "factors": dict(zip(stats.factor_names, (int(v) for v in stats.factors[index]), strict=True)),
    }
