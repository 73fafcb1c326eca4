"""Encode / decode and what a sample of encodings says about each latent.

Images cross this module's boundary as uint8 ``[N, 64, 64, C]`` (the dataset format); latents as
float64 numpy ``[N, D]``. Every decode is one batched no-grad forward pass. The statistics
(KL, normalised MI with the factors) only sort and label traversal rows; the Metrics page shows
the metrics package's own estimators.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from disviz.data.base import GroundTruthDataset, to_tensor_batch
from disviz.metrics._util import entropies, histogram_discretize, label_encode, mutual_info_matrix
from disviz.models.encoding import encode_batches, model_device

__all__ = [
    "LatentStats",
    "decode",
    "encode",
    "latent_stats",
    "normalised_mi",
    "quality_of",
    "reconstruction_quality",
    "row_labels",
    "sort_latents",
]


def encode(model: Any, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """uint8 images [N, 64, 64, C] -> representation [N, D] (float64 numpy)."""
    return encode_batches(model, images, batch_size).astype(np.float64)


@torch.inference_mode()
def decode(model: Any, z: np.ndarray) -> np.ndarray:
    """Latents [N, D] -> uint8 images [N, 64, 64, C]; one batched forward pass."""
    dev = model_device(model)
    zt = torch.as_tensor(np.asarray(z, dtype=np.float32), device=dev)  # zt: [N, D]
    probs = torch.sigmoid(model.decode(zt).float()).clamp_(0, 1)  # probs: [N, C, 64, 64]
    return (probs * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def reconstruction_quality(model: Any, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: the unexplained fraction of its pixel variance, and the PSNR (dB) of its reconstruction.

    The fraction ||x - x̂||² / ||x - mean(x)||² is the ranking rule for "an image this model
    reconstructs well": plain MSE would prefer the smallest sprites (little foreground to get
    wrong); dividing by the image's own variance asks how much of *its* content came back.
    """
    return quality_of(images, decode(model, encode(model, images)))


def quality_of(images: np.ndarray, reconstructions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``reconstruction_quality`` from reconstructions already decoded (uint8, same shape as ``images``)."""
    x = images.astype(np.float64) / 255.0  # x: [N, 64, 64, C]
    xr = reconstructions.astype(np.float64) / 255.0
    sq = ((x - xr) ** 2).reshape(len(x), -1)
    var = ((x - x.reshape(len(x), -1).mean(axis=1)[:, None, None, None]) ** 2).reshape(len(x), -1)
    unexplained = sq.sum(axis=1) / np.maximum(var.sum(axis=1), 1e-12)
    psnr = 10.0 * np.log10(1.0 / np.maximum(sq.mean(axis=1), 1e-12))
    return unexplained, psnr


# --- statistics on data ------------------------------------------------------------------------
@dataclass
class LatentStats:
    """What sliders, sorting and labels need, from a sample of the data.

    codes: [N, D] representations; factors: [N, K] classes; kl: [D] mean KL per latent in nats
    (None for non-variational models); nmi: [D, K] normalised MI latent x factor.
    """

    codes: np.ndarray
    factors: np.ndarray
    factor_names: list[str]
    kl: np.ndarray | None
    nmi: np.ndarray
    images: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 64, 64, 1), np.uint8))


def normalised_mi(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> np.ndarray:
    """[D, K] I(z_j; v_k) / H(v_k) with z discretised into ``bins`` equal-width bins.

    Only used to sort and label traversal rows; the Metrics page shows the metrics module's own
    estimators, and this shares their discretiser and plug-in MI (``disviz.metrics._util``).
    Normalising by H(v_k) follows MIG. The small-sample bias is removed by subtracting the MI
    with a shuffled copy of the factors (a permutation baseline): plug-in MI is biased upwards by
    ~(bins-1)(|V|-1)/2N nats on small samples, so without it a collapsed latent reads ~0.3, not 0.
    Constant factors (H = 0) give a zero column.
    """
    d, k = np.shape(codes)[1], np.shape(factors)[1]
    if d == 0 or k == 0:
        return np.zeros((d, k))
    zd = histogram_discretize(codes, bins)  # zd: [N, D] bin ids
    v = label_encode(np.asarray(factors))  # v: [N, K]
    hv = entropies(v)  # hv: [K] nats
    shuffled = np.random.default_rng(0).permutation(len(v))
    gain = mutual_info_matrix(zd, v) - mutual_info_matrix(zd, v[shuffled])  # gain: [D, K]
    informative = hv > 0
    return np.where(informative, np.clip(gain / np.where(informative, hv, 1.0), 0.0, 1.0), 0.0)


@torch.inference_mode()
def latent_stats(model: Any, dataset: GroundTruthDataset, n: int = 512, seed: int = 0) -> LatentStats:
    """Encode ``n`` random data images; per-latent KL and NMI with the factors."""
    images, classes = dataset.sample(n, np.random.default_rng(seed))
    codes = encode(model, images)
    kl = None
    x = to_tensor_batch(images[: min(n, 256)], model_device(model))
    kl_t = model.kl_per_latent(x)
    if kl_t is not None:
        kl = kl_t.float().cpu().numpy().astype(np.float64)
    nmi = normalised_mi(codes, classes)
    return LatentStats(codes, classes, list(dataset.info().factor_names), kl, nmi, images)


def sort_latents(stats: LatentStats, by: str = "kl") -> list[int]:
    """Latent order for the traversal grid: 'kl' (mean KL, largest first) or 'mi' (max NMI).

    Models without KL (AE, QLAE) sort by the variance of their codes under 'kl'.
    """
    if by == "mi":
        key = stats.nmi.max(axis=1) if stats.nmi.size else np.zeros(stats.codes.shape[1])
    elif by == "kl":
        key = stats.kl if stats.kl is not None else stats.codes.var(axis=0)
    elif by == "index":
        return list(range(stats.codes.shape[1]))
    else:
        raise ValueError(f"unknown sort {by!r}; use kl, mi or index")
    return [int(i) for i in np.argsort(-np.asarray(key), kind="stable")]


def row_labels(stats: LatentStats, order: Sequence[int]) -> list[str]:
    """'z3 · posX · KL 2.10' per latent: its number, the factor it mostly encodes, its KL (or NMI)."""
    out = []
    for j in order:
        parts = [f"z{j}"]
        if stats.kl is not None and stats.kl[j] < 0.01:
            parts.append("collapsed")
        elif stats.nmi.size:
            k = int(np.argmax(stats.nmi[j]))
            parts.append(f"{stats.factor_names[k]} ({stats.nmi[j, k]:.2f})" if stats.nmi[j, k] > 0.05 else "no factor")
        if stats.kl is not None:
            parts.append(f"KL {stats.kl[j]:.2f}")
        out.append(" · ".join(parts))
    return out
