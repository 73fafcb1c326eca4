"""Dataset registry: ``load_dataset(name, path=None, **options)``.

Procedural datasets need no files. ``dsprites`` (and its variants) and ``shapes3d`` switch to the
real file when ``path`` is given or ``$DISVIZ_DATA`` points at / contains the expected file name;
``smallnorb`` and ``mpi3d`` always need one. Options are the keyword arguments of each dataset's
constructor; strings (``--data-option key=value``) are cast to the default's type and unknown
options are rejected with the list of valid ones.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from disviz.core.errors import DatasetError
from disviz.data.base import BatchSampler, DatasetInfo, GroundTruthDataset

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "DatasetInfo",
    "GroundTruthDataset",
    "BatchSampler",
    "dataset_names",
    "load_dataset",
    "parse_options",
]


@dataclass(frozen=True)
class DatasetSpec:
    """One registry entry: how to build the dataset and what to say about it."""

    name: str
    description: str
    cls: type[GroundTruthDataset]
    real_file: str | None  # "dsprites" | "shapes3d" | "smallnorb" | "mpi3d" | None
    file_required: bool = False

    def option_defaults(self) -> dict[str, Any]:
        """Constructor options and their defaults (``source``/``path``/``folder`` are not options)."""
        sig = inspect.signature(self.cls.__init__)
        return {
            k: p.default
            for k, p in sig.parameters.items()
            if k not in ("self", "source", "path", "folder") and p.default is not inspect.Parameter.empty
        }


def _specs() -> dict[str, DatasetSpec]:
    from disviz.data import dsprites as d
    from disviz.data.files import MPI3D, SmallNORB
    from disviz.data.shapes3d import Shapes3DLike

    specs = [
        DatasetSpec("dsprites", d.DSprites.description, d.DSprites, "dsprites"),
        DatasetSpec("color_dsprites", d.ColorDSprites.description, d.ColorDSprites, "dsprites"),
        DatasetSpec("noisy_dsprites", d.NoisyDSprites.description, d.NoisyDSprites, "dsprites"),
        DatasetSpec("scream_dsprites", d.ScreamDSprites.description, d.ScreamDSprites, "dsprites"),
        DatasetSpec("dsprites_noshape", d.DSpritesNoShape.description, d.DSpritesNoShape, "dsprites"),
        DatasetSpec("correlated_dsprites", d.CorrelatedDSprites.description, d.CorrelatedDSprites, "dsprites"),
        DatasetSpec("correlated_triangles", d.CorrelatedTriangles.description, d.CorrelatedTriangles, None),
        DatasetSpec("toy_squares", d.ToySquares.description, d.ToySquares, "dsprites"),
        DatasetSpec("shapes3d", Shapes3DLike.description, Shapes3DLike, "shapes3d"),
        DatasetSpec("smallnorb", SmallNORB.description, SmallNORB, "smallnorb", file_required=True),
        DatasetSpec("mpi3d", MPI3D.description, MPI3D, "mpi3d", file_required=True),
    ]
    return {s.name: s for s in specs}


DATASETS: dict[str, DatasetSpec] = _specs()


def dataset_names() -> list[str]:
    return list(DATASETS.keys())


def _cast(name: str, key: str, value: Any, default: Any) -> Any:
    if not isinstance(value, str) or isinstance(default, str):
        return value
    try:
        if isinstance(default, bool):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        return type(default)(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{name}: option {key}={value!r} is not a valid {type(default).__name__}") from None


def parse_options(items: list[str] | None) -> dict[str, str]:
    """CLI ``KEY=VALUE`` strings -> dict (values stay strings; ``load_dataset`` casts them)."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise DatasetError(f"--data-option {item!r}: expected KEY=VALUE, e.g. correlation=0.9")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def load_dataset(name: str, path: str | os.PathLike[str] | None = None, **options: Any) -> GroundTruthDataset:
    """Build dataset ``name``; ``path`` (or $DISVIZ_DATA) selects a real file where supported."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of: {', '.join(dataset_names())}")
    spec = DATASETS[name]
    defaults = spec.option_defaults()
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        valid = ", ".join(f"{k} (default {v!r})" for k, v in defaults.items()) or "none"
        raise DatasetError(f"{name}: unknown option(s) {unknown}; valid options: {valid}")
    kwargs = {k: _cast(name, k, v, defaults[k]) for k, v in options.items()}
    if spec.real_file is None:
        if path is not None:
            raise DatasetError(f"{name} is procedural and reads no file; drop --data-path")
        return spec.cls(**kwargs)
    from disviz.data import files

    found = files.resolve_path(spec.real_file, path, spec.file_required)
    if found is None:
        return spec.cls(**kwargs)
    if spec.real_file == "dsprites":
        return spec.cls(source=files.load_dsprites_grid(found), **kwargs)
    if spec.real_file == "shapes3d":
        if kwargs:
            raise DatasetError(f"{name}: options {sorted(kwargs)} only apply to the procedural Shapes3D-like set")
        return files.Shapes3DFile(Path(found))
    if spec.real_file == "smallnorb":
        return files.SmallNORB(Path(found))
    return files.MPI3D(Path(found), **kwargs)
