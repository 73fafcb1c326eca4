"""The one interface every ground-truth dataset implements.

A dataset is a full factorial grid of factor classes; flat indices are row-major over
``factor_sizes`` with the last factor fastest (the dSprites / Shapes3D file ordering), so
``index`` and ``factors`` are pure arithmetic and never need the images.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from disviz.core.errors import DatasetError

__all__ = ["BatchSampler", "DatasetError", "DatasetInfo", "GroundTruthDataset", "to_tensor_batch"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about its data (stored in checkpoint cards)."""

    name: str
    channels: int  # 1 (binary) or 3 (RGB)
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    binary: bool  # True -> Bernoulli likelihood is exact (dSprites); False -> RGB
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "channels": self.channels,
            "factor_names": list(self.factor_names),
            "factor_sizes": list(self.factor_sizes),
            "binary": self.binary,
            "options": dict(self.options),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetInfo:
        return cls(
            name=str(d["name"]),
            channels=int(d["channels"]),
            factor_names=tuple(d["factor_names"]),
            factor_sizes=tuple(int(s) for s in d["factor_sizes"]),
            binary=bool(d["binary"]),
            options=dict(d.get("options", {})),
        )


class GroundTruthDataset:
    """Base class: subclasses set the class attributes and implement ``_render``.

    Subclasses must set ``name``, ``factor_names``, ``factor_sizes``, ``factor_values``,
    ``channels`` and ``binary`` (instance or class attributes), and implement
    ``_render(classes [N, K] int64) -> uint8 [N, 64, 64, C]``.
    Variants with a per-image random nuisance (colour, noise) draw it from a generator
    seeded by the flat index, so ``images(i)`` is deterministic.
    """

    name: str = "base"
    factor_names: list[str]
    factor_sizes: tuple[int, ...]
    factor_values: list[np.ndarray]
    channels: int = 1
    binary: bool = True
    options: dict[str, Any]
    #: value names of the categorical factors, by factor name (e.g. dSprites' shape: square, ellipse,
    #: heart); factors not listed are ordered quantities, drawn with a continuous colour scale
    categorical: dict[str, tuple[str, ...]] = {}

    # --- grid arithmetic -------------------------------------------------------------
    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    @property
    def _bases(self) -> np.ndarray:
        sizes = np.asarray(self.factor_sizes, dtype=np.int64)
        return np.concatenate([np.cumprod(sizes[::-1])[::-1][1:], [1]]).astype(np.int64)

    def __len__(self) -> int:
        return int(np.prod(np.asarray(self.factor_sizes, dtype=np.int64)))

    def info(self) -> DatasetInfo:
        return DatasetInfo(
            name=self.name,
            channels=int(self.channels),
            factor_names=tuple(self.factor_names),
            factor_sizes=tuple(int(s) for s in self.factor_sizes),
            binary=bool(self.binary),
            options=dict(getattr(self, "options", {}) or {}),
        )

    def index(self, classes: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
        """Factor classes [N, K] -> flat indices int64 [N]."""
        classes = np.atleast_2d(np.asarray(classes, dtype=np.int64))
        if classes.shape[1] != self.num_factors:
            raise ValueError(f"{self.name}: expected classes with {self.num_factors} columns, got {classes.shape}")
        sizes = np.asarray(self.factor_sizes, dtype=np.int64)
        if np.any(classes < 0) or np.any(classes >= sizes):
            raise ValueError(f"{self.name}: factor classes out of range for sizes {tuple(sizes)}")
        return classes @ self._bases

    def factors(self, indices: np.ndarray | Sequence[int] | int) -> np.ndarray:
        """Flat indices [N] -> factor classes int64 [N, K]."""
        idx = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        if np.any(idx < 0) or np.any(idx >= len(self)):
            raise IndexError(f"{self.name}: index out of range [0, {len(self)})")
        sizes = np.asarray(self.factor_sizes, dtype=np.int64)
        return (idx[:, None] // self._bases[None, :]) % sizes[None, :]

    def sample_factors(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """n random factor configurations, int64 [n, K] (uniform unless a dataset overrides it)."""
        rng = np.random.default_rng(rng)
        return np.stack([rng.integers(0, s, size=n) for s in self.factor_sizes], axis=1).astype(np.int64)

    def sample_indices(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """n random flat indices int64 [n], drawn from the same distribution as ``sample_factors``.

        Uniform datasets skip the classes round trip; datasets with a non-uniform joint
        (correlated variants) override ``sample_factors`` and this follows automatically.
        """
        rng = np.random.default_rng(rng)
        if type(self).sample_factors is GroundTruthDataset.sample_factors:
            return rng.integers(0, len(self), size=n, dtype=np.int64)
        return self.index(self.sample_factors(n, rng))

    def sweep(self, factor: int | str, base: np.ndarray | Sequence[int]) -> np.ndarray:
        """All flat indices where only ``factor`` varies, the others fixed at ``base`` [K]."""
        k = self.factor_names.index(factor) if isinstance(factor, str) else int(factor)
        classes = np.repeat(np.asarray(base, dtype=np.int64)[None, :], self.factor_sizes[k], axis=0)
        classes[:, k] = np.arange(self.factor_sizes[k])
        return self.index(classes)

    # --- images ----------------------------------------------------------------------
    def images(self, indices: np.ndarray | Sequence[int] | int) -> np.ndarray:
        """Flat indices [N] -> uint8 images [N, 64, 64, C] (0..255)."""
        return self._render(self.factors(indices))

    def images_from_factors(self, classes: np.ndarray) -> np.ndarray:
        """Factor classes [N, K] -> uint8 images [N, 64, 64, C]."""
        return self.images(self.index(classes))

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(images uint8 [n, 64, 64, C], classes int64 [n, K]) for n uniform random items."""
        classes = self.sample_factors(n, rng)
        return self.images_from_factors(classes), classes

    def observations_from_factors(self, classes: np.ndarray) -> np.ndarray:
        """disentanglement_lib's name for ``images_from_factors``."""
        return self.images_from_factors(classes)

    def batch_sampler(self, batch_size: int, device: Any = "cpu", seed: int = 0) -> BatchSampler:
        """Infinite iterator of float batches [B, C, 64, 64]; datasets return faster subclasses."""
        return BatchSampler(self, batch_size, device, seed)

    def _render(self, classes: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


def to_tensor_batch(images: np.ndarray, device: Any = "cpu") -> Any:
    """uint8 [N, 64, 64, C] -> float32 torch tensor [N, C, 64, 64] in [0, 1] on ``device``.

    The uint8 -> float conversion happens on the device (4x less host->device traffic).
    """
    import torch

    t = torch.from_numpy(np.ascontiguousarray(images)).to(device, non_blocking=True)
    return t.permute(0, 3, 1, 2).float().div_(255.0)


class BatchSampler:
    """Infinite iterator of random training batches as float tensors [B, C, 64, 64].

    Subclasses / datasets may provide a faster ``_fast_batch(indices)`` (e.g. from a
    bit-packed cache); the default renders through ``images``.
    """

    def __init__(self, dataset: GroundTruthDataset, batch_size: int, device: Any = "cpu", seed: int = 0):
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.device = device
        self.rng = np.random.default_rng(seed)

    def next_indices(self) -> np.ndarray:
        return self.dataset.sample_indices(self.batch_size, self.rng)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        idx = self.next_indices()
        return to_tensor_batch(self.dataset.images(idx), self.device)
