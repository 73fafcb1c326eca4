"""What every imported model shares: slider ranges, no training, and the import itself
(checks, provenance card, atomic save).

An imported model is an ordinary ``DisentangledModel`` whose weights live in ``model.safetensors``
like any other, so ``load_checkpoint`` and every page treat it as a disviz model. Its card holds an
``imported`` entry (format, source file name and SHA-256, library and version where known) that
the picker shows. Slider ranges are buffers: a VAE's are the prior's ±3, a deterministic code's
are measured on the dataset at import (like the AE's tracked range) unless the source names them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from disviz.core.errors import TrainingError
from disviz.data.base import DatasetInfo, GroundTruthDataset, to_tensor_batch
from disviz.importers.errors import ModelImportError
from disviz.importers.safe_pickle import LazyTensor, TorchArchive
from disviz.models.base import ConfigError, DisentangledModel, LatentSpec, ModelConfig

__all__ = [
    "ImportedConfig",
    "ImportedModel",
    "LATENT_KINDS",
    "file_sha256",
    "load_mapped_weights",
    "measure_ranges",
    "verify_model",
]

LATENT_KINDS = ("gaussian", "deterministic", "quantised", "uniform")
RANGE_SAMPLES = 1_000  # images encoded at import to find a deterministic code's slider range


@dataclass
class ImportedConfig(ModelConfig):
    """Shared fields: what ``encode`` returns (``latent_kind``, per latent in ``latent_kinds`` when
    they differ) and the codebook values of quantised latents."""

    latent_kind: str = "gaussian"
    latent_kinds: list[str] = field(default_factory=list)
    codebooks: list[list[float]] = field(default_factory=list)

    def validate(self) -> None:
        super().validate()
        for kind in [self.latent_kind, *self.latent_kinds]:
            if kind not in LATENT_KINDS:
                raise ConfigError(f"latent kind {kind!r}: use one of {', '.join(LATENT_KINDS)}")
        if self.latent_kinds and len(self.latent_kinds) != self.latent_dim:
            raise ConfigError(f"latent_kinds names {len(self.latent_kinds)} latents, the model has {self.latent_dim}")

    def kinds(self) -> list[str]:
        return list(self.latent_kinds) or [self.latent_kind] * self.latent_dim


class ImportedModel(DisentangledModel):
    """Base of models made by an importer: slider ranges in buffers, inference only."""

    config_class = ImportedConfig

    def __init__(self, config: ImportedConfig, dataset_info: DatasetInfo):
        config.validate()
        super().__init__(config, dataset_info)
        kinds = config.kinds()
        self.representation = (
            "quantised" if set(kinds) == {"quantised"} else ("mean" if set(kinds) == {"gaussian"} else "deterministic")
        )
        d = config.latent_dim
        self.register_buffer("z_low", torch.full((d,), -3.0))  # z_low: [D]
        self.register_buffer("z_high", torch.full((d,), 3.0))  # z_high: [D]

    def latent_specs(self) -> list[LatentSpec]:
        cfg: ImportedConfig = self.config  # type: ignore[assignment]
        lo, hi = self.z_low.float().cpu().tolist(), self.z_high.float().cpu().tolist()
        specs = []
        for j, kind in enumerate(cfg.kinds()):
            values = cfg.codebooks[j] if kind == "quantised" and j < len(cfg.codebooks) else None
            a, b = (min(values), max(values)) if values else (min(lo[j], hi[j]), max(lo[j], hi[j]))
            specs.append(LatentSpec(j, kind, a, b + 1e-6 * (a == b), values=values))
        return specs

    def _not_trainable(self) -> TrainingError:
        return TrainingError(
            f"{self.name} models are imported from another library and cannot be trained in disviz; "
            "train a disviz model of the same method instead"
        )

    def loss(self, x: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        raise self._not_trainable()

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        raise self._not_trainable()  # imported models are for viewing and evaluation


def load_mapped_weights(model: ImportedModel, archive: TorchArchive, theirs: dict[str, Any], network: str) -> None:
    """Load ``theirs`` (the checkpoint's tensors, already renamed to the model's names) into ``model``:
    every name and shape must match (slider-range buffers aside), within the memory budget."""
    where = str(archive.path)
    wanted = {k: v for k, v in model.state_dict().items() if k not in ("z_low", "z_high")}
    missing, extra = sorted(set(wanted) - set(theirs)), sorted(set(theirs) - set(wanted))
    if missing or extra:
        raise ModelImportError(
            f"{where}: tensors do not match {network} (missing {missing[:4]}, unexpected {extra[:4]}); "
            "the file is damaged or the network was modified"
        )
    archive.check_budget([v for v in theirs.values() if isinstance(v, LazyTensor)], f"the weights of {where}")
    loaded = {}
    for k, want in wanted.items():
        lazy = theirs[k]
        if not isinstance(lazy, LazyTensor) or lazy.shape != tuple(want.shape):
            got = lazy.shape if isinstance(lazy, LazyTensor) else type(lazy).__name__
            raise ModelImportError(
                f"{where}: tensor {k!r} has shape {got}, the rebuilt network expects {tuple(want.shape)}"
            )
        loaded[k] = archive.tensor(lazy, k).to(want.dtype)
    model.load_state_dict(loaded, strict=False)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, streamed (a checkpoint may be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _guard(what: str, fn: Callable[[], Any]) -> Any:
    """Run the model on data; a failure is the source's fault (wrong architecture / channels)."""
    try:
        with torch.inference_mode():
            return fn()
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelImportError(f"{what} failed ({first}); the model does not fit this dataset's images") from None


def verify_model(model: ImportedModel, dataset: GroundTruthDataset, n: int = 8) -> None:
    """Encode and decode a few dataset images: shapes must be [n, D] and [n, C, 64, 64], values finite."""
    images, _ = dataset.sample(n, rng=0)
    x = to_tensor_batch(images)  # x: [n, C, 64, 64]
    z = _guard("encoding dataset images", lambda: model.encode(x))
    if tuple(z.shape) != (n, model.latent_dim):
        raise ModelImportError(f"encode returned shape {tuple(z.shape)}, expected ({n}, {model.latent_dim})")
    logits = _guard("decoding latents", lambda: model.decode(z))
    want = (n, dataset.info().channels, 64, 64)
    if tuple(logits.shape) != want:
        raise ModelImportError(
            f"decode returned shape {tuple(logits.shape)}, expected {want} for {dataset.info().name} "
            f"({dataset.info().channels} channel(s)); choose the dataset the model was trained on"
        )
    if not (torch.isfinite(z).all() and torch.isfinite(logits).all()):
        raise ModelImportError("the model produced NaN or inf on dataset images; its weights are damaged")


def measure_ranges(
    model: ImportedModel, dataset: GroundTruthDataset, n: int = RANGE_SAMPLES, skip: frozenset[int] = frozenset()
) -> None:
    """Set the slider range of deterministic / uniform latents (except ``skip``, whose range the
    source named) to the range of the dataset's codes."""
    kinds = model.config.kinds()  # type: ignore[attr-defined]
    if all(k in ("gaussian", "quantised") or j in skip for j, k in enumerate(kinds)):
        return
    images, _ = dataset.sample(n, rng=1)
    codes = []
    for i in range(0, len(images), 250):
        x = to_tensor_batch(images[i : i + 250])  # x: [b, C, 64, 64]
        codes.append(_guard("encoding dataset images", lambda x=x: model.encode(x)).float().numpy())
    z = np.concatenate(codes)  # z: [n, D]
    with torch.no_grad():
        for j, kind in enumerate(kinds):
            if kind in ("deterministic", "uniform") and j not in skip:
                model.z_low[j] = float(z[:, j].min())
                model.z_high[j] = float(z[:, j].max())
