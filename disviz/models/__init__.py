"""Model registry: ``MODELS``, ``model_names()``, ``config_for(...)``, ``create_model(...)``.

A model is built as ``cls(config, dataset_info)``; ``config_for`` starts from the paper defaults for
the dataset (``config_class.for_dataset``) and applies overrides, casting strings
(``--set key=value``) to the field types. DiD lives in ``disviz.models.did`` and is registered
tolerantly: if that module cannot be imported, the other models still work and asking for
``did`` raises a clear error with the reason (``UNAVAILABLE``).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from disviz.data.base import DatasetInfo
from disviz.models.ae import AE
from disviz.models.base import ConfigError, DisentangledModel, LatentSpec, ModelConfig
from disviz.models.betatcvae import BetaTCVAE
from disviz.models.betavae import BetaVAE
from disviz.models.deft import DEFT
from disviz.models.devae import DeVAE
from disviz.models.qlae import QLAE

__all__ = [
    "MODELS",
    "UNAVAILABLE",
    "ConfigError",
    "DisentangledModel",
    "LatentSpec",
    "ModelConfig",
    "config_for",
    "create_model",
    "make_config",
    "model_names",
]

MODELS: dict[str, type[DisentangledModel]] = {cls.name: cls for cls in (AE, BetaVAE, BetaTCVAE, QLAE, DEFT, DeVAE)}
#: models whose module could not be imported, with the reason
UNAVAILABLE: dict[str, str] = {}
_ORDER = ("ae", "betavae", "betatcvae", "qlae", "deft", "devae", "did")


def _register_optional(name: str, module: str) -> None:
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # a missing or half-written module must not break the other models
        UNAVAILABLE[name] = f"{type(exc).__name__}: {exc}"
        return
    for _, obj in inspect.getmembers(mod, inspect.isclass):
        if issubclass(obj, DisentangledModel) and getattr(obj, "name", None) == name:
            MODELS[name] = obj
            return
    UNAVAILABLE[name] = f"{module} defines no DisentangledModel subclass named {name!r}"


_register_optional("did", "disviz.models.did")


def model_names() -> list[str]:
    """Registered model names in the project's canonical order."""
    return sorted(MODELS, key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n))


def _model_class(name: str) -> type[DisentangledModel]:
    if name in MODELS:
        return MODELS[name]
    if name in UNAVAILABLE:
        raise ConfigError(f"model {name!r} is not available ({UNAVAILABLE[name]}); choose from {model_names()}")
    raise ConfigError(f"unknown model {name!r}; choose from {model_names()}")


def make_config(
    config_class: type[ModelConfig], dataset_info: DatasetInfo, _base: ModelConfig | None = None, **overrides: Any
) -> ModelConfig:
    """``_base`` (a saved config) or the paper defaults for this dataset, with ``overrides`` cast
    and applied, then checked once."""
    base = _base if _base is not None else config_class.for_dataset(dataset_info)
    config = base.replace(**overrides)
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate()
    return config


def config_for(name: str, dataset_info: DatasetInfo, **overrides: Any) -> ModelConfig:
    """Paper defaults of model ``name`` for this dataset, with ``overrides`` applied and checked."""
    return make_config(_model_class(name).config_class, dataset_info, **overrides)


def create_model(name: str, dataset_info: DatasetInfo, **overrides: Any) -> DisentangledModel:
    """Build model ``name`` for ``dataset_info`` (paper defaults + overrides)."""
    return _model_class(name)(config_for(name, dataset_info, **overrides), dataset_info)
