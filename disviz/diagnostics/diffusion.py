"""Information-diffusion tracking during training (docs/methods.md#information-diffusion, docs/metrics.md#nmi1-and-nmi2).

``DiffusionTracker`` is a TrainHook: every ``every`` steps it encodes one fixed evaluation batch
(sampled once, so curves move only because the model moves) and records NMI1/NMI2 per factor.
A rising NMI2 means a factor is spreading into a second latent. For DEFT the record carries the
stage so the app can mark stage boundaries; for DeVAE it carries the MIG of every space.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from disviz.data.base import GroundTruthDataset
from disviz.metrics.nmi import mig_from_nmi, nmi_diffusion
from disviz.models.encoding import encode_batches


class DiffusionTracker:
    """TrainHook computing per-factor NMI1/NMI2 on a fixed batch of ``n`` samples."""

    name = "diffusion"

    def __init__(self, dataset: GroundTruthDataset, every: int, n: int = 2000, seed: int = 0, bins: int = 20):
        if int(every) <= 0:
            raise ValueError(f"every must be a positive step interval, got {every!r}")
        self.every = int(every)
        self.bins = bins
        self.factor_names = list(dataset.factor_names)
        self.factor_sizes = list(dataset.factor_sizes)
        self.images, self.classes = dataset.sample(int(n), np.random.default_rng(seed))  # [n,64,64,C], [n,K]

    @torch.no_grad()
    def _encode(self, model: Any, batch: int = 500) -> tuple[np.ndarray, np.ndarray | None]:
        """Fixed batch -> (z [n, D], per-space μ [S, n, D] for DeVAE else None)."""
        spaces = []

        def per_space(start: int, x: torch.Tensor, z: torch.Tensor) -> None:  # x: [b, C, 64, 64]
            mu0, lv0 = model.posterior(x)
            spaces.append(model.spaces(mu0, lv0)[0].float().cpu().numpy())  # [S, b, d]

        has_spaces = hasattr(model, "spaces") and hasattr(model, "posterior")
        z = encode_batches(model, self.images, batch, each=per_space if has_spaces else None)  # [n, D]
        return z, (np.concatenate(spaces, axis=1) if spaces else None)

    def __call__(self, model: Any, step: int) -> dict[str, Any]:
        was_training = model.training
        model.eval()
        try:
            z, spaces = self._encode(model)
        finally:
            model.train(was_training)
        res = nmi_diffusion(z, self.classes, self.factor_sizes, bins=self.bins)
        record: dict[str, Any] = {
            "step": int(step),
            "factors": self.factor_names,
            "nmi1": [float(v) for v in res["nmi1"]],
            "nmi2": [float(v) for v in res["nmi2"]],
            "mig": mig_from_nmi(res["nmi"]),
        }
        stage = model.stage(step) if hasattr(model, "stage") else None
        if stage is not None:
            record["stage"] = int(stage)
        if spaces is not None:
            # Each DeVAE space is a per-dimension positive rescaling of space 0's mean, so the
            # equal-width-bin MIG is (near-)identical across spaces; recorded as the issue asks.
            record["space_mig"] = [
                mig_from_nmi(nmi_diffusion(s, self.classes, self.factor_sizes, bins=self.bins)["nmi"]) for s in spaces
            ]
        return record


def diffusion_curves(records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Tracker records -> arrays for plotting: step [T], nmi1/nmi2 [T, K], mig [T], stage [T] (−1 = none),
    stage_starts (steps where the DEFT stage changes), space_mig [T, S] when present."""
    if not records:
        return {
            "step": np.zeros(0, int),
            "nmi1": np.zeros((0, 0)),
            "nmi2": np.zeros((0, 0)),
            "stage_starts": np.zeros(0, int),
        }
    recs = sorted(records, key=lambda r: int(r.get("step", 0)))
    out: dict[str, np.ndarray] = {
        "step": np.array([int(r.get("step", 0)) for r in recs]),
        "nmi1": np.array([r.get("nmi1", []) for r in recs], dtype=float),
        "nmi2": np.array([r.get("nmi2", []) for r in recs], dtype=float),
        "mig": np.array([r.get("mig", np.nan) for r in recs], dtype=float),
    }
    stage = np.array([r["stage"] if r.get("stage") is not None else -1 for r in recs])
    out["stage"] = stage
    change = np.nonzero((stage[1:] != stage[:-1]) & (stage[1:] >= 0))[0] + 1
    out["stage_starts"] = out["step"][change]
    if all("space_mig" in r for r in recs):
        out["space_mig"] = np.array([r["space_mig"] for r in recs], dtype=float)
    return out
