"""Sweeps: a small TOML spec -> validated trials -> one results table per sweep.

A sweep trains every combination of models x datasets x hyper-parameters x seeds with the
project's own engine (``disviz.engine.train``) and scores each checkpoint with the ``evaluate`` path, so a
trial folder is an ordinary checkpoint the app can open. This module is the UI- and Ray-free part:
parsing and validating the spec (every mistake is a ``SweepError`` before anything starts),
expanding it into trials with stable ids (a resumed or extended sweep recognises its finished
trials by id). The results table is ``disviz.sweeps.results``.
Execution on Ray lives in ``disviz.sweeps.runner``.

Spec (all keys but ``name`` and ``models`` optional)::

    name = "vae_seeds"                      # folder: <runs root>/sweeps/<name>/ unless out = "..."
                                            # (a relative out is relative to the spec file)
    models = ["betavae", "betatcvae"]
    datasets = ["dsprites"]
    seeds = [0, 1, 2]
    steps = 2000
    batch_size = 64
    metrics = ["mig", "dci_disentanglement", "infom"]   # columns of the table (default: all scores)

    [set]                                   # fixed config fields (any --set key) for every trial
    lr = 0.0005
    [grid]                                  # every combination of these values
    latent_dim = [6, 10]
    [grid.betavae]                          # a model's own grid (its trials only)
    beta = [1.0, 4.0]
    [random]                                # `samples` draws per model from distributions
    samples = 4
    seed = 0
    lr = { dist = "loguniform", low = 1e-4, high = 1e-3 }
    [eval]                                  # the evaluate settings (python -m disviz evaluate)
    n = 2000
    preset = "fast"
    [resources]                             # per trial
    num_cpus = 1
    num_gpus = 0                            # or a fraction (0.25: four trials share a GPU)
    max_retries = 2
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from disviz.core.errors import UserError
from disviz.core.limits import MAX_TRIALS, LimitError, check_count, check_seed, parse_toml, read_text_bounded
from disviz.core.outputs import check_output, check_path_length
from disviz.core.paths import sweeps_root
from disviz.sweeps.common import SweepError, format_value

if TYPE_CHECKING:
    from disviz.engine.runspec import RunSpec

__all__ = [
    "EvalSettings",
    "Resources",
    "SweepSpec",
    "Trial",
    "expand_trials",
    "load_spec",
    "parse_spec",
    "sweep_dir_for",
]

#: pending: not submitted; queued: submitted to Ray (shown as running while its checkpoint folder
#: is locked by the training / evaluation); done: trained and scored; nan: the engine's
#: non-finite-loss stop (not retried: the same config diverges again); failed: crashed more often
#: than max_retries allows (a --resume tries it again)
# one expanded and checked trial (ids, dicts, its table row): a 1,000-trial --dry-run peaked 296 MB against
# 287 MB for a 1-trial one (≈ 9 kB each), ×2 headroom
TRIAL_BYTES = 20_000

TOP_KEYS = {
    "name": "sweep name (folder name)",
    "description": "free text",
    "out": "sweep folder (default <runs root>/sweeps/<name>)",
    "models": "list of model names",
    "datasets": "list of dataset names",
    "seeds": "list of integer seeds",
    "steps": "training steps per trial",
    "batch_size": "batch size",
    "metrics": "score names for the table",
    "set": "fixed config fields",
    "grid": "config fields -> lists of values",
    "random": "config fields -> distributions",
    "eval": "evaluate settings",
    "resources": "per-trial resources",
}
DISTRIBUTIONS = {
    "uniform": ("low", "high"),
    "loguniform": ("low", "high"),
    "int": ("low", "high"),
    "choice": ("values",),
}


@dataclass(frozen=True)
class EvalSettings:
    """The ``evaluate`` options for every trial (``python -m disviz evaluate --n --preset --seed --sampling``)."""

    n: int = 2000
    preset: str = "fast"
    seed: int = 0
    sampling: str = "pool"


@dataclass(frozen=True)
class Resources:
    """What one trial asks of Ray, and how faults are handled."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    threads: int = 0  # torch threads; 0 = max(1, int(num_cpus))
    max_retries: int = 2  # re-runs (from the last checkpoint) after a crash
    device: str = "auto"
    amp: str = "auto"
    save_every: int = 500  # checkpoint interval: what a crashed trial resumes from

    @property
    def torch_threads(self) -> int:
        return self.threads or max(1, int(self.num_cpus))


@dataclass(frozen=True)
class Trial:
    """One training + evaluation run of the sweep; ``id`` names its checkpoint folder."""

    id: str
    model: str
    dataset: str
    seed: int
    steps: int | None
    batch_size: int | None
    hparams: dict[str, Any]  # the swept values (grid + random draws)
    overrides: dict[str, Any]  # hparams + the fixed [set] fields: TrainConfig.overrides

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def run_spec(self) -> RunSpec:
        """The run this trial trains (the same object the CLI and the Train page build)."""
        from disviz.engine.runspec import RunSpec

        return RunSpec(
            self.model,
            self.dataset,
            overrides=dict(self.overrides),
            steps=self.steps,
            batch_size=self.batch_size,
            seed=self.seed,
        )


@dataclass
class SweepSpec:
    """A validated spec; ``raw`` is the parsed TOML (recorded with the results)."""

    name: str
    out: Path
    models: list[str]
    datasets: list[str]
    seeds: list[int]
    steps: int | None
    batch_size: int | None
    metrics: list[str]
    fixed: dict[str, dict[str, Any]]  # model -> fixed fields
    grid: dict[str, dict[str, list[Any]]]  # model -> field -> values
    random: dict[str, dict[str, dict[str, Any]]]  # model -> field -> distribution
    samples: int
    random_seed: int
    eval: EvalSettings
    resources: Resources
    description: str = ""
    raw: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def trials(self) -> list[Trial]:
        return expand_trials(self)


# --- spec ---------------------------------------------------------------------------------------
def sweep_dir_for(name: str) -> Path:
    """Default folder of sweep ``name``: under the Train page's runs root, so the app finds it."""
    return sweeps_root() / name


def load_spec(path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> SweepSpec:
    """Read and validate a TOML spec file; ``out`` overrides the spec's folder."""
    p = check_path_length(path, "sweep spec", error=SweepError)
    if not p.is_file():
        raise SweepError(f"sweep spec {p} does not exist (or is not a file); give the path of a .toml file")
    try:
        text = read_text_bounded(p, "sweep spec")
    except LimitError as exc:
        raise SweepError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepError(f"{p} cannot be read ({exc})") from None
    raw = parse_toml(text, str(p), error=SweepError)
    if out is None and isinstance(raw.get("out"), str) and not Path(raw["out"]).expanduser().is_absolute():
        out = p.parent / raw["out"]  # a relative 'out' is relative to the spec file (a spec travels with its sweep)
    return parse_spec(raw, where=str(p), out=out)


def _err(where: str, msg: str) -> SweepError:
    return SweepError(f"{where}: {msg}")


def _user_check(where: str, check: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one of the shared validators (limits, evaluate, train) and word its error for this spec."""
    try:
        return check(*args, **kwargs)
    except UserError as exc:
        raise _err(where, str(exc)) from None


def _str_list(raw: Mapping[str, Any], key: str, where: str, default: list[str] | None = None) -> list[str]:
    value = raw.get(key, default)
    if value is None:
        raise _err(where, f"'{key}' is required ({TOP_KEYS[key]}), e.g. {key} = [\"betavae\"]")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _err(where, f"'{key}' must be a list of names, got {value!r}")
    if not value:
        raise _err(where, f"'{key}' is empty; list at least one")
    if len(set(value)) != len(value):
        raise _err(where, f"'{key}' lists a name twice: {value}")
    return list(value)


def _positive_int(value: Any, what: str, where: str, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise _err(where, f"'{what}' must be a positive integer, got {value!r}")
    return value


def _table(raw: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise _err(where, f"'{key}' must be a table ([{key}]), got {type(value).__name__}")
    return value


def _split_per_model(table: dict[str, Any], section: str, models: list[str], where: str) -> dict[str, dict[str, Any]]:
    """[grid] fields for every model plus [grid.<model>] tables -> model -> fields."""
    from disviz.models import model_names

    common = {k: v for k, v in table.items() if not (isinstance(v, dict) and k in model_names())}
    out = {m: dict(common) for m in models}
    for k, v in table.items():
        if isinstance(v, dict) and k in model_names():
            if k not in models:
                raise _err(where, f"[{section}.{k}]: {k!r} is not in models {models}")
            both = set(v) & set(common)
            if both:
                raise _err(where, f"[{section}.{k}] repeats {sorted(both)} from [{section}]; give each once")
            out[k].update(v)
    return out


def parse_spec(raw: Mapping[str, Any], where: str = "spec", out: str | os.PathLike[str] | None = None) -> SweepSpec:
    """Validate a parsed spec (model, dataset, field and metric names, value types, every trial's
    config) and return it; a SweepError names the first problem and how to fix it."""
    from disviz.data import dataset_names
    from disviz.models import model_names

    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise _err(where, f"unknown key(s) {unknown}; known keys: {', '.join(TOP_KEYS)}")
    name = raw.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name or ""):
        raise _err(where, f"'name' must be a short folder name (letters, digits, . _ -), got {name!r}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise _err(where, "'description' must be a string")
    models = _str_list(raw, "models", where)
    for m in models:
        if m not in model_names():
            raise _err(where, f"unknown model {m!r}; choose from {model_names()}")
    datasets = _str_list(raw, "datasets", where, default=["dsprites"])
    for d in datasets:
        if d not in dataset_names():
            raise _err(where, f"unknown dataset {d!r}; choose from {dataset_names()}")
    seeds = raw.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, list) or not seeds:
        raise _err(where, f"'seeds' must be a non-empty list of integers >= 0, got {seeds!r}")
    for s in seeds:
        _user_check(where, check_seed, s, "'seeds'")  # the rule train's --seed applies
    if len(set(seeds)) != len(seeds):
        raise _err(where, f"'seeds' lists a seed twice: {seeds}")
    steps = _positive_int(raw.get("steps"), "steps", where)
    batch_size = _positive_int(raw.get("batch_size"), "batch_size", where)
    from disviz.metrics.registry import score_keys

    known_scores = score_keys()
    metrics = raw.get("metrics", known_scores)
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
        raise _err(where, f"'metrics' must be a non-empty list of score names, got {metrics!r}")
    for m in metrics:
        if m not in known_scores:
            raise _err(where, f"unknown metric {m!r}; choose from {known_scores}")

    fixed = _split_per_model(_table(raw, "set", where), "set", models, where)
    grid = _split_per_model(_table(raw, "grid", where), "grid", models, where)
    rnd_table = dict(_table(raw, "random", where))
    samples = rnd_table.pop("samples", 1)
    random_seed = rnd_table.pop("seed", 0)
    _user_check(
        where, check_count, samples, "[random] samples", maximum=MAX_TRIALS, bytes_each=TRIAL_BYTES, unit="draws"
    )
    _user_check(where, check_seed, random_seed, "[random] seed")
    rand = _split_per_model(rnd_table, "random", models, where)
    for m in models:
        for k, values in grid[m].items():
            if not isinstance(values, list):
                raise _err(where, f"[grid] {k} must be a list of values, e.g. {k} = [{values!r}]")
            if not values:
                raise _err(where, f"[grid] {k} is an empty list; give at least one value (or remove the key)")
        for k, dist in rand[m].items():
            _check_distribution(k, dist, where)
        for a, b, sa, sb in (
            (fixed[m], grid[m], "set", "grid"),
            (fixed[m], rand[m], "set", "random"),
            (grid[m], rand[m], "grid", "random"),
        ):
            both = sorted(set(a) & set(b))
            if both:
                raise _err(where, f"{both} given in both [{sa}] and [{sb}] for {m}; give each field once")
        for k in ("steps", "batch_size"):
            if k in fixed[m] or k in grid[m] or k in rand[m]:
                raise _err(where, f"{k!r} is a top-level key of the spec, not a config field to set or sweep")

    n_trials = (
        len(datasets)
        * len(seeds)
        * sum(math.prod(len(v) for v in grid[m].values()) * (samples if rand[m] else 1) for m in models)
    )  # counted before any trial is expanded
    _user_check(
        where, check_count, n_trials, "the spec's trials", maximum=MAX_TRIALS, bytes_each=TRIAL_BYTES, unit="trials"
    )

    ev = _table(raw, "eval", where)
    eval_settings = _dataclass_from(EvalSettings, ev, "eval", where)
    if eval_settings.preset not in ("paper", "fast"):
        raise _err(where, f"[eval] preset must be 'paper' or 'fast', got {eval_settings.preset!r}")
    if eval_settings.sampling not in ("pool", "fresh"):
        raise _err(where, f"[eval] sampling must be 'pool' or 'fresh', got {eval_settings.sampling!r}")
    from disviz.engine.runspec import check_eval_request

    _user_check(where, check_eval_request, eval_settings.n, eval_settings.seed, "[eval] n", "[eval] seed")
    res = _dataclass_from(Resources, _table(raw, "resources", where), "resources", where)
    if res.num_cpus <= 0 or res.num_gpus < 0 or res.max_retries < 0 or res.threads < 0 or res.save_every <= 0:
        raise _err(
            where,
            "[resources] needs num_cpus > 0, num_gpus >= 0, max_retries >= 0, threads >= 0, save_every > 0",
        )
    if res.num_gpus > 1 and res.num_gpus != int(res.num_gpus):
        raise _err(where, f"[resources] num_gpus above 1 must be a whole number, got {res.num_gpus}")
    if res.amp not in ("auto", "bf16", "off"):
        raise _err(where, f"[resources] amp must be auto, bf16 or off, got {res.amp!r}")

    if "out" in raw and not isinstance(raw["out"], str):
        raise _err(where, "'out' must be a folder path string")
    folder = Path(out) if out is not None else Path(raw["out"]).expanduser() if "out" in raw else sweep_dir_for(name)
    try:
        check_output(folder, "folder", option="sweep folder")
    except UserError as exc:
        raise _err(where, str(exc)) from None
    spec = SweepSpec(
        name=name,
        out=folder,
        models=models,
        datasets=datasets,
        seeds=list(seeds),
        steps=steps,
        batch_size=batch_size,
        metrics=list(metrics),
        fixed=fixed,
        grid=grid,
        random=rand,
        samples=samples if any(rand.values()) else 1,
        random_seed=random_seed,
        eval=eval_settings,
        resources=res,
        description=description,
        raw=json.loads(json.dumps(raw, default=str)),
        source=where,
    )
    _check_trials(spec, where)
    return spec


def _dataclass_from(cls: type, table: dict[str, Any], section: str, where: str) -> Any:
    """A settings dataclass from a TOML table: unknown keys and wrong types are errors."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise _err(where, f"[{section}] unknown key(s) {unknown}; known: {sorted(fields)}")
    defaults = cls()
    values = {}
    for k, v in table.items():
        want = type(getattr(defaults, k))
        ok = isinstance(v, want) and not isinstance(v, bool) if want is not bool else isinstance(v, bool)
        if want is float and isinstance(v, int) and not isinstance(v, bool):
            v, ok = float(v), True
        if not ok:
            raise _err(where, f"[{section}] {k} must be a {want.__name__}, got {v!r}")
        values[k] = v
    return cls(**values)


def _check_distribution(key: str, dist: Any, where: str) -> None:
    if not isinstance(dist, dict) or dist.get("dist") not in DISTRIBUTIONS:
        raise _err(
            where,
            f'[random] {key} must be a table like {{ dist = "loguniform", low = 1e-4, high = 1e-3 }} '
            f"with dist one of {sorted(DISTRIBUTIONS)}, got {dist!r}",
        )
    need = DISTRIBUTIONS[dist["dist"]]
    extra = sorted(set(dist) - {"dist", *need})
    if extra or any(k not in dist for k in need):
        raise _err(where, f"[random] {key}: a {dist['dist']} distribution takes exactly {list(need)}, got {dist}")
    if dist["dist"] == "choice":
        if not isinstance(dist["values"], list) or not dist["values"]:
            raise _err(where, f"[random] {key}: values must be a non-empty list")
        return
    low, high = dist["low"], dist["high"]
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
    if not numbers or not low < high or (dist["dist"] == "loguniform" and low <= 0):
        raise _err(
            where, f"[random] {key}: need numbers low < high (and low > 0 for loguniform), got {low!r}, {high!r}"
        )
    if dist["dist"] == "int" and not all(isinstance(v, int) for v in (low, high)):
        raise _err(where, f"[random] {key}: an int distribution needs integer low and high")


def _draw(dist: dict[str, Any], rng: random.Random) -> Any:
    kind = dist["dist"]
    if kind == "choice":
        return rng.choice(dist["values"])
    if kind == "int":
        return rng.randint(dist["low"], dist["high"])
    if kind == "uniform":
        value = rng.uniform(dist["low"], dist["high"])
    else:
        value = math.exp(rng.uniform(math.log(dist["low"]), math.log(dist["high"])))
    return float(f"{value:.4g}")  # readable ids and table cells; 4 digits is finer than any sweep needs


def trial_id(model: str, dataset: str, hparams: Mapping[str, Any], seed: int) -> str:
    """Stable, readable folder name: ``betavae-dsprites-beta=4-lr=0.0005-s0`` (a hash when long)."""
    parts = [f"{k}={format_value(v)}" for k, v in sorted(hparams.items())]
    slug = re.sub(r"[^A-Za-z0-9._=+-]", "_", "-".join(parts))
    if len(slug) > 60:
        digest = hashlib.sha1(json.dumps(sorted(hparams.items()), default=str).encode()).hexdigest()[:10]
        slug = f"h{digest}"
    return "-".join(p for p in (model, dataset, slug, f"s{seed}") if p)


def expand_trials(spec: SweepSpec) -> list[Trial]:
    """Every (model, dataset, grid combination, random draw, seed), in a stable order."""
    trials: list[Trial] = []
    for model in spec.models:
        grid = spec.grid[model]
        keys = sorted(grid)
        combos = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]
        rng = random.Random(f"{spec.random_seed}:{model}")
        n_draws = spec.samples if spec.random[model] else 1  # a model with nothing to draw runs once
        draws = [{k: _draw(d, rng) for k, d in sorted(spec.random[model].items())} for _ in range(n_draws)]
        for dataset in spec.datasets:
            for combo in combos:
                for draw in draws:
                    hparams = {**combo, **draw}
                    for seed in spec.seeds:
                        trials.append(
                            Trial(
                                id=trial_id(model, dataset, hparams, seed),
                                model=model,
                                dataset=dataset,
                                seed=seed,
                                steps=spec.steps,
                                batch_size=spec.batch_size,
                                hparams=hparams,
                                overrides={**spec.fixed[model], **hparams},
                            )
                        )
    seen: set[str] = set()
    for t in trials:
        if t.id in seen:
            raise SweepError(f"two trials would share the folder {t.id!r}; make the grid / random values distinct")
        seen.add(t.id)
    return trials


def _same_type(default: Any, value: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, list)
    return isinstance(value, type(default))


def _check_trials(spec: SweepSpec, where: str) -> None:
    """Every field is one of the model's config fields with a value of its type, and every trial's
    config passes the model's own checks: mistakes surface here, not in trial 17 an hour later."""
    from disviz.data import load_dataset
    from disviz.engine.build import model_config
    from disviz.engine.runspec import check_model_request

    infos = {}
    for d in spec.datasets:
        try:
            infos[d] = load_dataset(d).info()
        except UserError as exc:
            raise _err(where, f"dataset {d!r} cannot be used: {exc}") from None
    for m in spec.models:
        try:
            defaults = model_config(m, infos[spec.datasets[0]]).to_dict()
        except UserError as exc:
            raise _err(where, str(exc)) from None
        for section, table in (("set", spec.fixed[m]), ("grid", spec.grid[m]), ("random", spec.random[m])):
            for k, v in table.items():
                if k not in defaults:
                    raise _err(where, f"[{section}] {k!r} is not an option of {m}; its options: {sorted(defaults)}")
                values = v if section == "grid" else [v] if section == "set" else []
                if section == "random" and v["dist"] == "choice":
                    values = v["values"]
                for value in values:
                    if not _same_type(defaults[k], value):
                        raise _err(
                            where,
                            f"[{section}] {k} = {value!r} for {m}: expected {type(defaults[k]).__name__} "
                            f"(default {defaults[k]!r})",
                        )
                if section == "random" and v["dist"] != "choice" and not _same_type(defaults[k], v["low"]):
                    raise _err(where, f"[random] {k} for {m}: expected {type(defaults[k]).__name__} bounds")
    checked: set[str] = set()
    for t in expand_trials(spec):
        try:
            run = t.run_spec()
            key = json.dumps([t.model, t.dataset, run.config_overrides()], sort_keys=True, default=str)
            if key in checked:  # seeds do not change the model: check each configuration once
                continue
            checked.add(key)
            # the very checks train applies before it allocates (config, parameters, batch vs memory)
            check_model_request(run, infos[t.dataset], batch_option="batch_size")
        except UserError as exc:
            raise _err(where, f"trial {t.id}: {exc}") from None
