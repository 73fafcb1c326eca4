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
    sliders: dict[int, float] = field(default_factory=dict)  # latent index -> slider value (z0=…&z3=…)
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
    """Read ``seed``, ``factors``, ``z0``, ``z1``, …, ``anchor`` and ``mode`` from query parameters.

    The slider values are the sliders' own URL parameters (the page binds each slider to ``z<j>``,
    so the browser updates the address bar on a move without a server round trip).
    """
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
    for key in params:
        if not (key.startswith("z") and key[1:].isdigit()):
            continue
        j, text = int(key[1:]), _first(params, key) or ""
        if j >= MAX_LATENTS:
            problems.append(f"{key}: a model has at most {MAX_LATENTS} latents")
            continue
        try:
            value = float(text)
        except ValueError:
            problems.append(f"{key} '{text[:40]}' is not a number")
            continue
        if math.isfinite(value):
            link.sliders[j] = value
        else:
            problems.append(f"{key} is not a finite number")
    link.anchor = _choice(params, "anchor", ANCHORS, "anchor", problems)
    link.mode = _choice(params, "mode", modes, "range mode", problems)
    return link


def _choice(
    params: Mapping[str, str | Sequence[str]], key: str, allowed: Sequence[str], what: str, problems: list[str]
) -> str | None:
    value = _first(params, key)
    if value is None or value in allowed:
        return value
    problems.append(f"{what} '{value[:40]}' is not one of {', '.join(allowed)}")
    return None


def check_factors(factors: Sequence[int], sizes: Sequence[int], names: Sequence[str]) -> str | None:
    """Why factor classes do not fit the dataset (None when they do)."""
    if len(factors) != len(sizes):
        return f"the link gives {len(factors)} factor values; this dataset has {len(sizes)} ({', '.join(names)})"
    for value, size, name in zip(factors, sizes, names, strict=True):
        if not 0 <= value < size:
            return f"factor {name} = {value} is outside 0…{size - 1}"
    return None
