"""The model classes the imports produce, by name: what ``load_checkpoint`` needs to open an
imported folder (kept apart from ``registry``, which writes checkpoints, so loading never imports it)."""

from __future__ import annotations

from disviz.importers.base import ImportedModel
from disviz.importers.disent import DisentModel
from disviz.importers.erow import ErowModel
from disviz.importers.qlae import QLAEModel
from disviz.importers.torchscript import TorchScriptModel

__all__ = ["IMPORTED_MODELS"]

IMPORTED_MODELS: dict[str, type[ImportedModel]] = {
    cls.name: cls for cls in (DisentModel, ErowModel, QLAEModel, TorchScriptModel)
}
