"""One way to build a model, for training and for loading: the config checked once, a shapes-only
probe on the meta device checked against the budgets, then the real allocation.

Why one: a new run, a resume, a sweep's dry run and a checkpoint being opened each built models
their own way; a hostile or mistyped config must be refused the same way before any memory is
allocated, whichever door it came through.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from disviz.core.errors import TrainingError, UserError
from disviz.core.limits import LimitError, check_batch, check_parameters
from disviz.data.base import DatasetInfo
from disviz.models import make_config
from disviz.models.base import ModelConfig

__all__ = ["build_model", "materialise", "model_config", "model_registry"]


def _model_registry() -> Mapping[str, type]:
    from disviz.importers.models import IMPORTED_MODELS  # models converted from other libraries (view only)
    from disviz.models import MODELS

    return {**MODELS, **IMPORTED_MODELS}


def model_registry() -> Mapping[str, type]:
    """Every model class by name: the trainable ones and the imported (view-only) ones."""
    return _model_registry()


def _model_class(name: str, error: type[UserError], where: str, trainable: bool = False) -> type:
    """The class of model ``name``; ``trainable`` leaves out the imported (view-only) ones."""
    from disviz.importers.models import IMPORTED_MODELS
    from disviz.models import UNAVAILABLE

    registry = {k: v for k, v in _model_registry().items() if not (trainable and k in IMPORTED_MODELS)}
    if name not in registry:
        if name in UNAVAILABLE:
            raise error(f"{where}model {name!r} is not available ({UNAVAILABLE[name]}); choose from {sorted(registry)}")
        raise error(f"{where}unknown model {name!r}; this disviz knows {sorted(registry)}")
    return registry[name]


def model_config(
    name: str,
    info: DatasetInfo,
    overrides: Mapping[str, Any] | None = None,
    *,
    base: ModelConfig | Mapping[str, Any] | None = None,
    error: type[UserError] = TrainingError,
    where: str = "",
) -> ModelConfig:
    """Model ``name``'s config, checked once: ``base`` (a saved config) or the paper defaults for
    ``info``, with ``overrides`` cast to the field types. Only a saved config may be an imported model's."""
    cls = _model_class(name, error, where, trainable=base is None)
    try:
        if base is None:
            return make_config(cls.config_class, info, **dict(overrides or {}))
        config = base if isinstance(base, ModelConfig) else cls.config_class.from_dict(dict(base))
        return make_config(cls.config_class, info, _base=config, **dict(overrides or {}))
    except UserError as exc:
        raise error(f"{where}{exc}") from None
    except (TypeError, ValueError) as exc:
        raise error(f"{where}config does not fit model {name!r} ({exc})") from None


def build_model(
    name: str,
    config: ModelConfig,
    info: DatasetInfo,
    *,
    meta: bool = False,
    batch_option: str | None = None,
    error: type[UserError] = TrainingError,
    where: str = "",
) -> torch.nn.Module:
    """Model ``name`` for ``info``: a probe on the meta device first (parameter count, and with
    ``batch_option`` the batch size, against the memory budget), then the real model; with
    ``meta=True`` the probe itself (shapes only, nothing allocated)."""
    cls = _model_class(name, error, where)
    try:
        with torch.device("meta"):  # shapes only: budgets are checked before any allocation
            probe = cls(config, info)
        check_parameters(sum(p.numel() for p in probe.parameters()), f"model {name!r}")
        if batch_option is not None:
            check_batch(int(config.batch_size), info.channels, math.prod(info.factor_sizes), batch_option)
        return probe if meta else cls(config, info)
    except LimitError as exc:
        if where:
            raise error(f"{where}{exc}") from None
        raise
    except UserError:
        raise
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise error(f"{where}cannot build model {name!r}: {exc}") from None


def materialise(probe: torch.nn.Module) -> torch.nn.Module:
    """The real model of a meta-device probe from ``build_model(..., meta=True)``."""
    return type(probe)(probe.config, probe.dataset_info)
