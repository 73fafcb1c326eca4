"""Errors of the importers: one clear line each (the CLI exits 2, the app shows it)."""

from __future__ import annotations

from disviz.core.errors import CheckpointError

__all__ = ["ModelImportError", "UnsafeCheckpointError"]


class ModelImportError(CheckpointError):
    """A file cannot be imported: unreadable, truncated, unknown architecture, missing keys, bad shapes."""


class UnsafeCheckpointError(ModelImportError):
    """The file asks to run code while loading (os.system, eval, …); it is refused, nothing is run."""
