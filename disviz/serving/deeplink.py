"""Deep links: the view a URL names (checkpoint, base image, slider values), parsed and checked.

A teacher sends a link to a view; a reload keeps it. Everything read from a URL is untrusted
text, so each value is parsed here with a bound and a plain-language problem for anything that
does not fit (the page shows those as one warning and opens the rest of the view), never a
traceback. The page path itself is the Streamlit page's own URL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

MAX_SEED = 2**32 - 1  # numpy's default_rng accepts larger, but a link never needs more
MAX_LATENTS = 4096
ANCHORS = ("posterior", "prior")


@dataclass
class ExploreLink:
    """What an Explore URL asks for; ``None`` = not in the link (the page's default applies)."""

    seed: int | None = None
    factors: list[int] | None = None
    z: list[float] | None = None
    anchor: str | None = None
    mode: str | None = None
    problems: list[str] = field(default_factory=list)


def _first(params: Mapping[str, str | Sequence[str]], key: str) -> str | None:
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        value = value[-1] if len(value) else ""
    return value.strip()


def _int_list(text: str, what: str, problems: list[str]) -> list[int] | None:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        problems.append(f"{what} '{text[:40]}' is not a comma-separated list of whole numbers")
        return None
    return values


def parse_explore_link(params: Mapping[str, str | Sequence[str]], modes: Sequence[str]) -> ExploreLink:
    """Read ``seed``, ``factors``, ``z``, ``anchor`` and ``mode`` from query parameters."""
    link = ExploreLink()
    problems = link.problems
    seed = _first(params, "seed")
    if seed is not None:
        try:
            value = int(seed)
        except ValueError:
            problems.append(f"seed '{seed[:40]}' is not a whole number")
        else:
            if 0 <= value <= MAX_SEED:
                link.seed = value
            else:
                problems.append(f"seed {value} is outside 0…{MAX_SEED}")
    factors = _first(params, "factors")
    if factors is not None:
        link.factors = _int_list(factors, "factors", problems)
    z = _first(params, "z")
    if z is not None:
        parts = z.split(",")
        if len(parts) > MAX_LATENTS:
            problems.append(f"z lists {len(parts)} values; a model has at most {MAX_LATENTS} latents")
        else:
            try:
                values = [float(v) for v in parts]
            except ValueError:
                problems.append(f"z '{z[:40]}' is not a comma-separated list of numbers")
            else:
                if all(math.isfinite(v) for v in values):
                    link.z = values
                else:
                    problems.append("z holds a value that is not a finite number")
    anchor = _first(params, "anchor")
    if anchor is not None:
        if anchor in ANCHORS:
            link.anchor = anchor
        else:
            problems.append(f"anchor '{anchor[:40]}' is not one of {', '.join(ANCHORS)}")
    mode = _first(params, "mode")
    if mode is not None:
        if mode in modes:
            link.mode = mode
        else:
            problems.append(f"range mode '{mode[:40]}' is not one of {', '.join(modes)}")
    return link


def check_factors(factors: Sequence[int], sizes: Sequence[int], names: Sequence[str]) -> str | None:
    """Why factor classes do not fit the dataset (None when they do)."""
    if len(factors) != len(sizes):
        return f"the link gives {len(factors)} factor values; this dataset has {len(sizes)} ({', '.join(names)})"
    for value, size, name in zip(factors, sizes, names, strict=True):
        if not 0 <= value < size:
            return f"factor {name} = {value} is outside 0…{size - 1}"
    return None


def format_z(z: Sequence[float]) -> str:
    """Slider values for a URL: short, and exact for the sliders' 0.01-or-coarser steps."""
    return ",".join(f"{float(v):.4g}" for v in z)
