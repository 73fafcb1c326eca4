"""Memory and size budgets, checked before anything large is allocated.

Why: a batch size or image count typed by a user (CLI or app) used to grow the process until the
kernel killed it, taking every app session and job with it. Each check estimates what the request
needs from its shape alone and refuses, naming the limit and how to raise it, when the estimate
exceeds the budget: ``$DISVIZ_MEMORY_LIMIT_GB`` when set, else 80 % of the memory the OS reports
as available. Estimates are deliberately coarse upper bounds (measured factors below); they are
for refusing absurd requests, not for packing memory tightly.
"""

from __future__ import annotations

import os

from disviz.errors import UserError

__all__ = [
    "MAX_BATCH",
    "MAX_STEPS",
    "MAX_RENDER",
    "LimitError",
    "check_batch",
    "check_images",
    "check_parameters",
    "memory_budget",
]

MAX_BATCH = 65_536  # no model here trains usefully beyond this; the app's input maximum too
MAX_STEPS = 100_000_000  # the app's input maximum (the papers train 200k–400k steps)
MAX_RENDER = 100_000  # images in one `data render` grid (a 317×317-tile PNG)
MAX_PARAMETERS = 250_000_000  # ≈ 1 GB of float32 weights; the shipped models have ≤ 15 M
# bytes of training memory per image pixel value, measured on the §0 conv VAEs (fp32, forward +
# backward + Adam temporaries): ≈ 0.5 GB RSS at batch 64 on 1-channel 64×64 → ~120 B per value, ×2 headroom
TRAIN_BYTES_PER_VALUE = 256


class LimitError(UserError):
    """A request would need more memory or items than the budget allows."""


def memory_budget() -> tuple[float, str]:
    """(bytes, where the figure comes from)."""
    env = os.environ.get("DISVIZ_MEMORY_LIMIT_GB", "").strip()
    if env:
        try:
            gb = float(env)
        except ValueError:
            raise LimitError(f"DISVIZ_MEMORY_LIMIT_GB={env!r} is not a number of gigabytes") from None
        if not gb > 0:
            raise LimitError(f"DISVIZ_MEMORY_LIMIT_GB={env!r} must be positive")
        return gb * 1e9, f"DISVIZ_MEMORY_LIMIT_GB={env}"
    available = _available_bytes()
    return 0.8 * available, f"80 % of the {available / 1e9:.1f} GB available"


def _available_bytes() -> float:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8e9  # unknown platform: assume a modest machine


def _refuse(what: str, need: float, hint: str) -> None:
    budget, source = memory_budget()
    if need > budget:
        raise LimitError(
            f"{what} needs about {need / 1e9:.1f} GB, more than the memory budget ({budget / 1e9:.1f} GB: {source}); "
            f"{hint}, or raise the budget with DISVIZ_MEMORY_LIMIT_GB"
        )


def check_batch(
    batch_size: int, channels: int = 1, dataset_size: int | None = None, option: str = "--batch-size"
) -> None:
    """Refuse a training batch that cannot be useful or would not fit in memory."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise LimitError(f"{option} must be a positive integer, got {batch_size!r}")
    if batch_size > MAX_BATCH:
        raise LimitError(f"{option} {batch_size:,} is above the maximum {MAX_BATCH:,}; typical values are 64–256")
    if dataset_size is not None and batch_size > dataset_size:
        raise LimitError(f"{option} {batch_size:,} is larger than the dataset ({dataset_size:,} images)")
    need = batch_size * channels * 64 * 64 * TRAIN_BYTES_PER_VALUE
    _refuse(f"{option} {batch_size:,} ({channels}-channel 64×64 images)", need, f"lower {option}")


def check_images(n: int, channels: int = 1, option: str = "--n", maximum: int = MAX_RENDER) -> None:
    """Refuse rendering more images than a grid can hold or memory can take (uint8 + float copies)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise LimitError(f"{option} must be a positive integer, got {n!r}")
    if n > maximum:
        raise LimitError(f"{option} {n:,} is above the maximum {maximum:,} images for one request")
    _refuse(f"{option} {n:,} images", n * channels * 64 * 64 * 9, f"lower {option}")


def check_parameters(count: int, what: str) -> None:
    """Refuse a model whose weights alone would be absurdly large (hostile or mistyped configs)."""
    if count > MAX_PARAMETERS:
        raise LimitError(
            f"{what} would have {count:,} parameters ({count * 4 / 1e9:.1f} GB of float32), above the maximum "
            f"{MAX_PARAMETERS:,}; check its config (hidden / base_channels / latent_dim)"
        )
    _refuse(f"{what} ({count:,} parameters)", count * 4 * 4, "check its config")  # weights, grads, Adam m and v
