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
from typing import Any

from disviz.core.errors import UserError

__all__ = [
    "MAX_ANNEAL_RUNS",
    "MAX_BATCH",
    "MAX_EVAL_SAMPLES",
    "MAX_JSON_BYTES",
    "MAX_RENDER",
    "MAX_SEED",
    "MAX_STEPS",
    "MAX_TRIALS",
    "LimitError",
    "check_batch",
    "check_count",
    "check_file_claim",
    "check_images",
    "check_memory",
    "check_parameters",
    "check_seed",
    "memory_budget",
    "parse_toml",
    "read_text_bounded",
]

MAX_BATCH = 65_536  # no model here trains usefully beyond this; the app's input maximum too
MAX_STEPS = 100_000_000  # the app's input maximum (the papers train 200k–400k steps)
MAX_RENDER = 100_000  # images in one `data render` grid (a 317×317-tile PNG)
MAX_PARAMETERS = 250_000_000  # ≈ 1 GB of float32 weights; the shipped models have ≤ 15 M
MAX_EVAL_SAMPLES = 1_000_000  # evaluate --n: 100× the papers' 10,000 (kNN MI and forests grow faster than n)
MAX_ANNEAL_RUNS = 10_000  # factors × bases of one annealing test (the reference uses 5 × 50)
MAX_TRIALS = 10_000  # trials of one sweep (a day of one-minute trials on 8 workers)
MAX_JSON_BYTES = 64_000_000  # any JSON file read whole (cards, results, annealing results ≈ 1 MB)
MAX_SEED = 2**32 - 1  # numpy's legacy range: every generator here (random, numpy, torch) takes it
MAX_INFLATE_RATIO = 500  # uncompressed / compressed bytes of a file member read whole (deflate's
# ceiling is ≈ 1,030; the real dSprites .npz inflates ≈ 115×, 3dshapes.h5 ≈ 23×)
# bytes per encoded sample of one evaluation (n + n/2 of them): classes, latents, reconstruction errors and
# the metrics' working copies (kNN distances, forest bootstraps); `evaluate --preset fast` on the shipped
# dSprites β-VAE peaked at 541 MB (n = 1,000) and 583 MB (n = 8,000): ≈ 6 kB per n = 4 kB per sample, ×2 headroom
EVAL_BYTES_PER_SAMPLE = 8_000
JSON_BYTES_PER_BYTE = 10  # parsed JSON as Python objects: a 500 MB annealing result took 2.5 GB (issue 32), ×2
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


def check_memory(what: str, need: float, hint: str) -> None:
    """Refuse ``what`` when its estimated ``need`` (bytes) exceeds the memory budget; ``hint`` says how to ask for less."""
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
    check_memory(f"{option} {batch_size:,} ({channels}-channel 64×64 images)", need, f"lower {option}")


def check_images(n: int, channels: int = 1, option: str = "--n", maximum: int = MAX_RENDER) -> None:
    """Refuse rendering more images than a grid can hold or memory can take (uint8 + float copies)."""
    check_count(n, option, maximum=maximum, bytes_each=channels * 64 * 64 * 9, unit="images")


def check_parameters(count: int, what: str) -> None:
    """Refuse a model whose weights alone would be absurdly large (hostile or mistyped configs)."""
    if count > MAX_PARAMETERS:
        raise LimitError(
            f"{what} would have {count:,} parameters ({count * 4 / 1e9:.1f} GB of float32), above the maximum "
            f"{MAX_PARAMETERS:,}; check its config (hidden / base_channels / latent_dim)"
        )
    check_memory(f"{what} ({count:,} parameters)", count * 4 * 4, "check its config")  # weights, grads, Adam m and v


def check_count(
    n: object, option: str, *, maximum: int, bytes_each: float, unit: str = "items", minimum: int = 1
) -> int:
    """The one rule for every count a user or a file asks for (images, samples, bases, trials, rows).

    ``n`` must be an integer in [minimum, maximum] and ``n × bytes_each`` must fit the memory budget,
    all checked before anything is allocated; returns ``n``.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum:,}"
        raise LimitError(f"{option} must be {what}, got {n!r}")
    if n > maximum:
        raise LimitError(f"{option} {n:,} is above the maximum {maximum:,} {unit} for one request; ask for fewer")
    check_memory(f"{option} {n:,} {unit}", n * bytes_each, f"lower {option}")
    return n


def check_seed(seed: object, option: str = "--seed") -> int:
    """A seed every generator here accepts: an integer in [0, 2**32 − 1] (Python, numpy and torch
    disagree beyond that: numpy's legacy seed and torch's int64 refuse or wrap other values)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise LimitError(f"{option} must be an integer from 0 to {MAX_SEED:,} (2**32 − 1), got {seed!r}")
    return seed


def check_file_claim(
    what: str, claimed: float, holds: float | None = None, compressed: float | None = None, in_memory: bool = True
) -> None:
    """Refuse data whose header claims more than its file can hold or than memory can take.

    ``claimed``: bytes the header says the data has (what a reader would allocate); ``holds``: bytes
    actually stored for it (a stored member, allocated chunks), None when unknown; ``compressed``:
    bytes on disk when the data is read through a decompressor (a zip bomb inflates ≈ 1,000×);
    ``in_memory``: the reader holds it all at once (else it is streamed or memory-mapped).
    """
    fix = "the file is damaged or not what it claims; use the original file"
    if holds is not None and claimed > holds:
        raise LimitError(f"{what}: the header claims {claimed:,.0f} bytes but the file holds {holds:,.0f}; {fix}")
    if compressed is not None and claimed > MAX_INFLATE_RATIO * max(compressed, 1.0):
        raise LimitError(
            f"{what}: {compressed:,.0f} compressed bytes would inflate to {claimed:,.0f} "
            f"({claimed / max(compressed, 1.0):,.0f}×, above the {MAX_INFLATE_RATIO}× any real dataset needs); {fix}"
        )
    if in_memory:
        check_memory(what, claimed, "use a smaller file")


def read_text_bounded(path: str | os.PathLike[str], what: str, maximum: int = MAX_JSON_BYTES) -> str:
    """The text of a file read whole (JSON, TOML), refused before reading when it is larger than
    ``maximum`` bytes or its parsed form would not fit the memory budget. OSError / UnicodeDecodeError
    pass through for the caller's own message."""
    size = os.stat(path).st_size
    if size > maximum:
        raise LimitError(
            f"{what} {path} is {size / 1e6:,.1f} MB, above the maximum {maximum / 1e6:,.0f} MB for such a file; "
            "it is damaged or not a disviz file"
        )
    check_memory(f"{what} {path} ({size / 1e6:,.1f} MB)", size * JSON_BYTES_PER_BYTE, "use a smaller file")
    with open(path, encoding="utf-8") as f:
        return f.read(maximum + 1)


def parse_toml(text: str, where: str, error: type[UserError] = UserError) -> dict[str, Any]:
    """TOML text -> dict with the standard library's tomllib (Python 3.11+; ``tomli`` on 3.10);
    a syntax error is one ``error`` line naming ``where``."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise error("TOML files need Python 3.11+ (tomllib) or `pip install tomli`") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{where}: not valid TOML ({exc})") from None
