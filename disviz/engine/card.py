"""The checkpoint card (``card.json``), typed: read, checked and written here and nowhere else.

Why typed: the app, the CLI, sweeps and training all read the card; as a dict each guessed at its
keys. ``Card`` names what a card holds (with ``TrainRecord`` / ``Segment`` for training and
``Report`` for the stored metric report); keys this version does not know are kept in ``extra``
and written back unchanged, so the JSON on disk keeps its format and round-trips exactly (key
order included).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from disviz.core.errors import CheckpointError
from disviz.core.limits import LimitError, read_text_bounded
from disviz.core.outputs import check_path_length
from disviz.engine.folders import CARD_FILE, checkpoint_lock, settle, write_json

__all__ = [
    "CARD_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "Card",
    "Report",
    "Segment",
    "TrainRecord",
    "card_is_ours",
    "load_card",
    "read_card",
    "update_card",
    "write_card",
]

FORMAT = "disviz-checkpoint"
FORMAT_VERSION = 1

R = TypeVar("R", bound="_Record")


@dataclass
class _Record:
    """A JSON object with typed fields. ``None`` means absent (or JSON null where the file had the
    key); keys without a field, and values of the wrong type, stay in ``extra`` as they are."""

    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    _order: tuple[str, ...] = field(default=(), repr=False, compare=False)

    _TYPES: ClassVar[dict[str, type | tuple[type, ...]]] = {}  # JSON type each field must have
    _KEEP_NULL: ClassVar[frozenset[str]] = frozenset()  # written as null when None

    @classmethod
    def _typed_fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.name not in ("extra", "_order")]

    @classmethod
    def _from_json(cls, name: str, value: Any) -> Any:
        """The field's value from its JSON value; a TypeError keeps the value in ``extra``."""
        want = cls._TYPES.get(name)
        if want is not None and value is not None and not isinstance(value, want):
            raise TypeError(name)
        if isinstance(value, bool) and want in (int, float, (int, float)):
            raise TypeError(name)
        return value

    @classmethod
    def from_dict(cls: type[R], d: Mapping[str, Any]) -> R:
        names = set(cls._typed_fields())
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in d.items():
            if key not in names:
                extra[key] = value
                continue
            try:
                kwargs[key] = cls._from_json(key, value)
            except TypeError:
                extra[key] = value
        return cls(**kwargs, extra=extra, _order=tuple(d))

    def drop(self, name: str) -> None:
        """Remove key ``name`` (typed or not): it is absent from the JSON written next."""
        if name in self._typed_fields():
            setattr(self, name, None)
        self.extra.pop(name, None)
        self._order = tuple(k for k in self._order if k != name)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: the file's keys in the file's order, then new fields, then extras."""
        values: dict[str, Any] = {}
        defaults = {f.name: _default(f) for f in dataclasses.fields(self)}
        for name in self._typed_fields():
            v = getattr(self, name)
            if name not in self._order:  # a key the file did not have: written once it holds something
                keep_null = name in self._KEEP_NULL and not self._order
                empty_default = defaults[name] in ({}, []) and v == defaults[name]
                if (v is None and not keep_null) or empty_default:
                    continue
            elif v is None and name in self.extra:  # the file's value did not fit the type: kept as it was
                continue
            values[name] = _to_json(v)
        for key, value in self.extra.items():
            values.setdefault(key, value)
        ordered = {k: values[k] for k in self._order if k in values}
        ordered.update((k, v) for k, v in values.items() if k not in ordered)
        return ordered


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def _to_json(value: Any) -> Any:
    if isinstance(value, _Record):
        return value.to_dict()
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    return value


@dataclass
class Segment(_Record):
    """One training segment (the first run, or a resume): what it ran with."""

    from_step: int = 0
    optimizer: str | None = None  # 'fresh' | 'restored'
    amp: str | None = None
    device: str | None = None
    batch_size: int | None = None
    lr: float | None = None
    started: str | None = None
    to_step: int | None = None

    _TYPES: ClassVar[dict[str, type | tuple[type, ...]]] = {"from_step": int, "to_step": int}


@dataclass
class TrainRecord(_Record):
    """The card's ``train`` entry: totals over all segments and the engine's settings."""

    batch_size: int | None = None
    device: str | None = None
    wall_time_s: float | None = None
    dataset_path: str | None = None
    dataset_options: dict[str, Any] | None = None
    amp: str | None = None
    channels_last: bool | None = None
    optimizer_impl: str | None = None
    compile: bool | None = None
    log_every: int | None = None
    save_every: int | None = None
    images_seen: int | None = None
    segments: list[Segment] | None = None
    resumes: int | None = None
    optimizer_resets: list[int] | None = None
    sampler_rng: dict[str, Any] | None = None
    warnings: list[dict[str, Any]] | None = None

    _TYPES: ClassVar[dict[str, type | tuple[type, ...]]] = {
        "dataset_options": dict,
        "segments": list,
        "sampler_rng": dict,
        "warnings": list,
        "wall_time_s": (int, float),
        "images_seen": int,
        "batch_size": int,
    }
    _KEEP_NULL: ClassVar[frozenset[str]] = frozenset({"dataset_path"})

    @classmethod
    def _from_json(cls, name: str, value: Any) -> Any:
        value = super()._from_json(name, value)
        if name == "segments" and value is not None:
            if not all(isinstance(s, dict) for s in value):
                raise TypeError(name)
            return [Segment.from_dict(s) for s in value]
        return value


@dataclass
class Report(_Record):
    """A stored evaluate report (``disviz.engine.evaluate``); scores are keyed as in the metric registry."""

    preset: str | None = None
    n: int | None = None
    n_test: int | None = None
    seed: int | None = None
    model: str | None = None
    representation: str | None = None
    dataset: str | None = None
    factor_names: list[str] | None = None
    factor_sizes: list[int] | None = None
    latent_names: list[str] | None = None
    scores: dict[str, Any] | None = None
    details: dict[str, Any] | None = None
    settings: dict[str, Any] | None = None
    versions: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    created: str | None = None
    checkpoint: dict[str, Any] | None = None  # the step and weights' SHA-256 it measured

    _TYPES: ClassVar[dict[str, type | tuple[type, ...]]] = {
        "scores": dict,
        "details": dict,
        "settings": dict,
        "timings": dict,
        "checkpoint": dict,
        "factor_names": list,
        "n": int,
    }


@dataclass
class Card(_Record):
    """A checkpoint's card: model, config, dataset, seed, steps, curves, training record, report."""

    model: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    steps: int = 0
    history: dict[str, list[Any]] | None = None  # column -> one value per logged step
    tracks: dict[str, list[dict[str, Any]]] | None = None  # hook name -> records (e.g. 'diffusion')
    versions: dict[str, str] | None = None
    train: TrainRecord | None = None
    format: str | None = None
    format_version: int | None = None
    created: str | None = None
    saved: str | None = None
    storage_dtype: str | None = None
    shipped: dict[str, Any] | None = None
    metrics: Report | None = None
    imported: dict[str, Any] | None = None  # a model trained elsewhere (disviz.importers)
    sweep: dict[str, Any] | None = None  # the trial's row when it ran in a sweep

    _TYPES: ClassVar[dict[str, type | tuple[type, ...]]] = {
        "model": str,
        "config": dict,
        "dataset": dict,
        "steps": int,
        "history": dict,
        "tracks": dict,
        "train": dict,
        "shipped": dict,
        "metrics": dict,
        "imported": dict,
        "sweep": dict,
    }

    @classmethod
    def _from_json(cls, name: str, value: Any) -> Any:
        value = super()._from_json(name, value)
        if name == "train" and value is not None:
            return TrainRecord.from_dict(value)
        if name == "metrics" and value is not None:
            return Report.from_dict(value)
        return value

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        """``dict(card)`` is the card's JSON object (``to_dict``): scripts that edit a card as JSON."""
        return iter(self.to_dict().items())

    @property
    def dataset_name(self) -> str | None:
        return self.dataset.get("name")

    @property
    def factor_names(self) -> list[str]:
        return list(self.dataset.get("factor_names") or [])

    @property
    def dataset_options(self) -> dict[str, Any]:
        return dict(self.dataset.get("options") or {})

    @property
    def scores(self) -> dict[str, Any]:
        """The stored report's scores ({} without a report)."""
        return dict(self.metrics.scores or {}) if self.metrics is not None else {}

    def diffusion(self) -> list[dict[str, Any]]:
        """The information-diffusion records tracked during training ([] when none)."""
        return list((self.tracks or {}).get("diffusion") or [])


# --- the file --------------------------------------------------------------------------------
def read_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``card.json`` of a checkpoint folder as the file holds it, checked for format,
    version and the types of the keys every reader relies on."""
    path = check_path_length(path, "checkpoint folder", error=CheckpointError)
    settle(path)
    if not path.exists():
        raise CheckpointError(
            f"checkpoint folder {path} does not exist; check the path (train one with `python -m disviz train`)"
        )
    if not path.is_dir():
        raise CheckpointError(f"{path} is a file, not a checkpoint folder; pass the folder that holds {CARD_FILE}")
    card_file = path / CARD_FILE
    if not card_file.is_file():
        raise CheckpointError(
            f"{path} has no {CARD_FILE}; it is not a disviz checkpoint folder (or it was copied incompletely)"
        )
    try:
        card = json.loads(read_text_bounded(card_file, "card"))
    except LimitError as exc:
        raise CheckpointError(str(exc)) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{card_file} is not valid JSON ({exc}); restore it from a copy or retrain") from None
    if not isinstance(card, dict):
        raise CheckpointError(f"{card_file} must hold a JSON object, found {type(card).__name__}")
    if card.get("format") != FORMAT:
        raise CheckpointError(
            f"{card_file}: format is {card.get('format')!r}, expected {FORMAT!r}; not a disviz checkpoint"
        )
    version = card.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(
            f"{card_file}: format_version {version!r} is not a valid version (expected {FORMAT_VERSION})"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{card_file}: format_version {version} is newer than this disviz understands ({FORMAT_VERSION}); upgrade disviz"
        )
    steps = card.get("steps", 0)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise CheckpointError(f"{card_file}: 'steps' must be a non-negative integer, found {steps!r}; restore the card")
    for key, typ in (("model", str), ("config", dict), ("dataset", dict)):
        if key in card and not isinstance(card[key], typ):
            raise CheckpointError(
                f"{card_file}: {key!r} must be a JSON {typ.__name__}, found {type(card[key]).__name__}"
            )
    return card


def load_card(path: str | os.PathLike[str]) -> Card:
    """The typed card of a checkpoint folder (``read_card``'s checks first)."""
    return Card.from_dict(read_card(path))


def as_card(card: Card | Mapping[str, Any]) -> Card:
    """A card given as a dict (the importers, tests) as a ``Card``; a ``Card`` as it is."""
    return card if isinstance(card, Card) else Card.from_dict(card)


def write_card(folder: Path, card: Card) -> None:
    """Write ``card.json`` into ``folder`` (fsynced); callers hold the folder's lock."""
    write_json(folder / CARD_FILE, card.to_dict())


def card_is_ours(card_file: Path) -> bool:
    """``card_file`` is a card disviz wrote (its format key), read within the JSON size bound."""
    try:
        card = json.loads(read_text_bounded(card_file, "card"))
    except (OSError, UnicodeDecodeError, ValueError, LimitError):
        return False
    return isinstance(card, dict) and card.get("format") == FORMAT


def update_card(path: str | os.PathLike[str], **fields: Any) -> Card:
    """Set card fields (e.g. ``metrics=report``, a dict or a ``Report``) atomically; returns the new card."""
    path = Path(path)
    with checkpoint_lock(path, purpose="update card"):
        raw = read_card(path)
        for key in ("format", "format_version"):
            if key in fields:
                raise CheckpointError(f"update_card cannot change {key!r}")
        raw.update({k: _to_json(v) for k, v in fields.items()})
        card = Card.from_dict(raw)
        tmp = path / f".{CARD_FILE}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            write_json(tmp, card.to_dict())
            os.replace(tmp, path / CARD_FILE)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
    return card
