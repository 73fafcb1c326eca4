"""The one batch encoder: images -> a model's codes, a batch at a time, with a hook for extras.

Why one: evaluate, the diffusion tracker and the app all encode many images; each did it in its
own loop. ``each`` lets a caller use the batch it already has on the device (evaluate decodes it
for the reconstruction error, the diffusion tracker reads DeVAE's per-space codes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch

from disviz.data.base import to_tensor_batch

__all__ = ["Images", "encode_batches", "model_device"]


class Images(Protocol):
    """uint8 images [N, 64, 64, C] or anything that slices like them (rendered on demand)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: slice) -> np.ndarray: ...


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model's parameters live (the CPU for a model without any)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.inference_mode()
def encode_batches(
    model: Any,
    images: Images,
    batch_size: int = 512,
    device: torch.device | str | None = None,
    each: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> np.ndarray:
    """``model.encode`` of uint8 images [N, 64, 64, C] -> float32 codes [N, D].

    ``each(start, x, z)`` is called for every batch with the images x [B, C, 64, 64] on the device
    and their codes z [B, D], before the next batch is read.
    """
    dev = torch.device(device) if device is not None else model_device(model)
    out = []
    for start in range(0, len(images), batch_size):
        x = to_tensor_batch(images[start : start + batch_size], dev)  # [B, C, 64, 64]
        z = model.encode(x)  # [B, D]
        if each is not None:
            each(start, x, z)
        out.append(z.float().cpu().numpy())
    if not out:
        return np.zeros((0, int(model.latent_dim)), dtype=np.float32)
    return np.concatenate(out)
