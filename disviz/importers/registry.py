"""The import formats, format detection, and ``import_model``: source file -> disviz checkpoint folder.

One entry per format: a name, a one-line description, and a converter ``(source, dataset) ->
(model, facts)``. ``IMPORTED_MODELS`` (``importers.models``) are the model classes the imports produce; ``load_checkpoint``
knows them (they are not in ``disviz.models.MODELS`` because they cannot be trained, so the Train page
and sweeps never offer them).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from disviz.data.base import GroundTruthDataset
from disviz.importers.base import ImportedModel, file_sha256, measure_ranges, verify_model
from disviz.importers.errors import ModelImportError
from disviz.importers.models import IMPORTED_MODELS
from disviz.importers.safe_pickle import is_torchscript_archive, open_torch_archive

__all__ = ["FORMATS", "IMPORTED_MODELS", "ImportFormat", "detect_format", "import_model"]

#: size limit of a source file (a 64×64 model of any method here is < 100 MB)
MAX_SOURCE_BYTES = 4 * 1024**3


@dataclass(frozen=True)
class ImportFormat:
    name: str
    description: str
    convert: Callable[[Path, GroundTruthDataset], tuple[ImportedModel, dict[str, Any]]]


def _convert_disent(path: Path, dataset: GroundTruthDataset) -> tuple[ImportedModel, dict[str, Any]]:
    from disviz.importers import disent

    with open_torch_archive(path) as archive:
        return disent.convert(archive, dataset.info())


def _convert_erow(path: Path, dataset: GroundTruthDataset) -> tuple[ImportedModel, dict[str, Any]]:
    from disviz.importers import erow

    with open_torch_archive(path) as archive:
        return erow.convert(archive, dataset.info())


def _convert_qlae(path: Path, dataset: GroundTruthDataset) -> tuple[ImportedModel, dict[str, Any]]:
    from disviz.importers import qlae

    return qlae.convert(path, dataset.info())


def _convert_torchscript(path: Path, dataset: GroundTruthDataset) -> tuple[ImportedModel, dict[str, Any]]:
    from disviz.importers import torchscript

    return torchscript.convert(path, dataset.info())


FORMATS: dict[str, ImportFormat] = {
    f.name: f
    for f in (
        ImportFormat("disent", "nmichlo/disent Lightning checkpoint (.ckpt) of an AE / VAE framework", _convert_disent),
        ImportFormat(
            "erow",
            "the DEFT / DeVAE authors' Lightning checkpoint (erow/disentanglement_lib: VAEs, DEFT, DeVAE)",
            _convert_erow,
        ),
        ImportFormat(
            "qlae",
            "the QLAE authors' JAX / equinox model.eqx (kylehkhsu/latent_quantization) with its run's config.yaml",
            _convert_qlae,
        ),
        ImportFormat(
            "torchscript",
            "your own TorchScript encoder + decoder (or one module with encode/decode), named by a .toml file",
            _convert_torchscript,
        ),
    )
}


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format of ``path`` from its content (never by running it); ModelImportError if unknown."""
    path = Path(path)
    if path.suffix.lower() == ".toml":
        return "torchscript"
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ModelImportError(f"cannot read {path} ({exc.strerror or exc})") from None
    if magic == b"\x93NUM":  # a sequence of .npy records: equinox's tree_serialise_leaves
        return "qlae"
    if magic[:2] == b"PK":
        try:
            with zipfile.ZipFile(path) as zf:
                if is_torchscript_archive(zf):
                    raise ModelImportError(
                        f"{path} is a TorchScript module: import the .toml file that names it and its dataset "
                        "(see README: Open a model trained elsewhere)"
                    )
        except zipfile.BadZipFile as exc:
            raise ModelImportError(f"{path} is truncated or not a valid zip archive ({exc})") from None
        from disviz.importers.disent import looks_like_disent
        from disviz.importers.erow import looks_like_erow

        with open_torch_archive(path) as archive:
            if looks_like_disent(archive.obj):
                return "disent"
            if looks_like_erow(archive.obj):
                return "erow"
            keys = sorted(map(str, archive.obj))[:8] if isinstance(archive.obj, dict) else type(archive.obj).__name__
        raise ModelImportError(f"{path}: a torch checkpoint of no known format (top-level keys {keys}); pass --format")
    raise ModelImportError(
        f"{path}: unknown file type; known formats: {', '.join(FORMATS)} (a Lightning .ckpt, a QLAE model.eqx, "
        "or a .toml for TorchScript)"
    )


def import_model(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    dataset: str,
    fmt: str | None = None,
    *,
    data_path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    source_name: str | None = None,
) -> Path:
    """Convert ``source`` into the checkpoint folder ``out`` for dataset ``dataset``; returns ``out``.

    Everything is checked before anything is written, and the folder is written atomically by
    ``save_checkpoint``, so a failure leaves no folder behind. ``source_name`` is what the card
    records as the file's name (the app's uploads live in a temp file).
    """
    from disviz.data import load_dataset
    from disviz.engine.checkpoints import is_checkpoint, save_checkpoint

    source, out = Path(source), Path(out)
    if not source.is_file():
        raise ModelImportError(f"{source} is not a file; pass the checkpoint file to import")
    size = source.stat().st_size
    if size > MAX_SOURCE_BYTES:
        raise ModelImportError(
            f"{source} is {size / 1e9:.1f} GB, above the {MAX_SOURCE_BYTES / 1e9:.0f} GB import limit"
        )
    if out.exists() and not overwrite:
        if not out.is_dir() or any(out.iterdir()):
            what = "a checkpoint" if is_checkpoint(out) else "not empty"
            raise ModelImportError(f"{out} exists and is {what}; choose a new --out folder (or --overwrite)")
    if fmt is None:
        fmt = detect_format(source)
    if fmt not in FORMATS:
        raise ModelImportError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    ds = load_dataset(dataset, path=data_path)
    model, facts = FORMATS[fmt].convert(source, ds)
    model.eval()
    verify_model(model, ds)
    measure_ranges(model, ds, skip=frozenset(facts.pop("ranges_given", ())))
    steps = int(facts.pop("steps", 0) or 0)
    card = {
        "model": model.name,
        "config": model.config.to_dict(),
        "dataset": ds.info().to_dict(),
        "steps": steps,
        "train": {"dataset_path": str(data_path) if data_path else None},
        "imported": {
            "format": fmt,
            "source": source_name or source.name,
            "source_sha256": file_sha256(source),
            "source_bytes": size,
            "imported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **facts,
        },
    }
    return save_checkpoint(out, model, card)
