"""One metric report for a trained model: encode n samples, run every metric, add reconstruction quality.

Presets (docs/metrics.md#evaluate-and-its-presets): 'paper' uses the published sample counts (10k encodings + a 5k test
set for DCI/SAP, FactorVAE 10k/5k votes of 64 on 10k variance samples, BetaVAE 10k/5k points of
64 pairs); 'fast' (the app) follows
disent's fast mode (FactorVAE 700/350 votes on 1k variance samples; BetaVAE 350/175 points, our
choice as disent has no fast BetaVAE; DCI/SAP test set n/2).
DCI uses the RandomForest estimator in both (see dci.py; 100 trees as tripod in "paper", 30 in "fast",
bootstrap max_samples=0.5 of the n training samples per tree in both);
pass ``dci_estimator="gbt"`` for the reference GradientBoosting. Every setting is stored in the report.
FactorVAE/BetaVAE votes use pool sampling by default (drawn from the n / n_test encodings, no new
images; an approximation, see factorvae.py); ``sampling="fresh"`` renders and encodes new images per
vote as disentanglement_lib does (~1M / ~1.9M images at the paper counts, GPU-sized).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from disviz.core.errors import MetricError
from disviz.metrics._util import to_jsonable, versions
from disviz.metrics.betavae_score import betavae_score
from disviz.metrics.dci import dci
from disviz.metrics.factorvae import factorvae_score
from disviz.metrics.infomec import infomec
from disviz.metrics.mig import mig
from disviz.metrics.nmi import nmi_diffusion
from disviz.metrics.sap import sap

PRESETS: dict[str, dict[str, int]] = {
    "paper": {
        "factorvae_train": 10_000,
        "factorvae_eval": 5_000,
        "factorvae_variance": 10_000,
        "betavae_train": 10_000,
        "betavae_eval": 5_000,
        "dci_trees": 100,
    },
    "fast": {
        "factorvae_train": 700,
        "factorvae_eval": 350,
        "factorvae_variance": 1_000,
        "betavae_train": 350,
        "betavae_eval": 175,
        "dci_trees": 30,
    },
}

Progress = Callable[[float, str], None]


def score_latents(
    z: np.ndarray,
    classes: np.ndarray,
    z_test: np.ndarray,
    classes_test: np.ndarray,
    factor_sizes: list[int],
    discrete: bool,
    seed: int = 0,
    dci_estimator: str = "random_forest",
    progress: Progress | None = None,
    dci_trees: int = 100,
    span: tuple[float, float] = (0.0, 1.0),
) -> tuple[dict[str, Any], dict[str, Any], dict[str, float]]:
    """(scores, details, timings) of the latent-only metrics on z [N, D] x classes [N, K] (+ a test set)."""
    details: dict[str, Any] = {}
    timings: dict[str, float] = {}
    both_z, both_c = np.concatenate([z, z_test]), np.concatenate([classes, classes_test])
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("infomec", lambda: infomec(z, classes, discrete=discrete, seed=seed)),
        (
            "dci",
            lambda: dci(
                z,
                classes,
                dci_estimator,
                test_latents=z_test,
                test_factors=classes_test,
                seed=seed,
                n_estimators=dci_trees,
            ),
        ),
        ("mig", lambda: mig(z, classes)),
        ("sap", lambda: sap(both_z, both_c, test_fraction=z_test.shape[0] / both_z.shape[0], seed=seed)),
        ("nmi_diffusion", lambda: nmi_diffusion(z, classes, factor_sizes)),
    ]
    for i, (name, fn) in enumerate(steps):
        if progress:
            progress(span[0] + (span[1] - span[0]) * i / len(steps), f"computing {name}")
        t0 = time.perf_counter()
        details[name] = fn()
        timings[name] = time.perf_counter() - t0
    scores = {
        "infom": details["infomec"]["infom"],
        "infoc": details["infomec"]["infoc"],
        "infoe": details["infomec"]["infoe"],
        "dci_disentanglement": details["dci"]["disentanglement"],
        "dci_completeness": details["dci"]["completeness"],
        "dci_informativeness": details["dci"]["informativeness"],
        "mig": details["mig"]["mig"],
        "sap": details["sap"]["sap"],
    }
    return scores, details, timings


def check_eval_request(n: object, seed: object, option: str = "--n", seed_option: str = "--seed") -> None:
    """What ``evaluate`` accepts, checked before anything is encoded (and by sweep specs before they
    start): 20 <= n <= MAX_EVAL_SAMPLES within the memory budget, and a seed every generator takes."""
    from disviz.core.limits import EVAL_BYTES_PER_SAMPLE, MAX_EVAL_SAMPLES, check_count, check_seed

    if isinstance(n, int) and not isinstance(n, bool) and 0 < n < 20:
        raise MetricError(f"evaluate needs {option} >= 20 samples (got {n}); the metrics are meaningless below that")
    # n encodings + n/2 test encodings
    check_count(n, option, maximum=MAX_EVAL_SAMPLES, bytes_each=1.5 * EVAL_BYTES_PER_SAMPLE, unit="samples")
    check_seed(seed, seed_option)


def _model_encoder(model: Any, device: Any, batch: int = 256) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    from disviz.data.base import to_tensor_batch

    def encode(images: np.ndarray) -> np.ndarray:  # images: uint8 [N, 64, 64, C]
        out = []
        with torch.no_grad():
            for s in range(0, images.shape[0], batch):
                x = to_tensor_batch(images[s : s + batch], device)  # x: [B, C, 64, 64]
                out.append(model.encode(x).float().cpu().numpy())  # [B, D]
        return np.concatenate(out)

    return encode


def evaluate(
    model: Any,
    dataset: Any,
    n: int = 10_000,
    seed: int = 0,
    preset: str = "paper",
    progress: Progress | None = None,
    device: Any = None,
    dci_estimator: str = "random_forest",
    counts: dict[str, int] | None = None,
    sampling: str = "pool",
) -> dict[str, Any]:
    """Encode ``n`` samples (+ n/2 test samples), run every metric, add reconstruction error and PSNR.

    Reconstruction error is per image, like the papers: summed BCE for binary data, summed
    squared error for RGB; PSNR = mean over images of 10·log10(1 / per-image pixel MSE).
    ``counts`` overrides the preset's FactorVAE/BetaVAE sample counts (keys of PRESETS).
    ``sampling="pool"`` (default) draws the FactorVAE/BetaVAE votes from the n encodings (train)
    and the n/2 test encodings (eval) instead of rendering ~1-2M fresh images: an approximation
    (votes reuse points; per-vote distribution = fresh sampling for uniform factors); the
    FactorVAE global variance then comes from the n encodings. ``"fresh"`` = disentanglement_lib.
    Returns a JSON-able dict (matrices as nested lists).
    """
    import torch
    import torch.nn.functional as F

    if sampling not in ("pool", "fresh"):
        raise MetricError(f"unknown sampling {sampling!r}; choose 'pool' or 'fresh'")
    if preset not in PRESETS:
        raise MetricError(f"unknown preset {preset!r}; choose 'paper' or 'fast'")
    check_eval_request(n, seed)
    if device is None:
        params = list(model.parameters())
        device = params[0].device if params else torch.device("cpu")
    was_training = model.training
    model.eval()
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    report_progress = progress or (lambda f, m: None)
    rng = np.random.default_rng(seed)
    n_test = max(n // 2, 2)
    classes_all = dataset.sample_factors(n + n_test, rng)  # [N + T, K]
    encode = _model_encoder(model, device)
    binary = bool(dataset.info().binary)

    # --- encode + reconstruct (one pass over the data) -----------------------------------
    t0 = time.perf_counter()
    zs, recon, psnr = [], [], []
    batch = 256
    with torch.no_grad():
        for s in range(0, n + n_test, batch):
            report_progress(0.3 * s / (n + n_test), "encoding samples")
            x = to_tensor(dataset.images_from_factors(classes_all[s : s + batch]), device)  # [B, C, 64, 64]
            z = model.encode(x)  # [B, D]
            zs.append(z.float().cpu().numpy())
            if s < n:
                logits = model.decode(z)  # [B, C, 64, 64]
                if binary:
                    err = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
                else:
                    err = ((torch.sigmoid(logits) - x) ** 2).sum((1, 2, 3))
                mse = ((torch.sigmoid(logits) - x) ** 2).mean((1, 2, 3)).clamp_min(1e-10)
                recon.append(err.float().cpu().numpy())
                psnr.append((10 * torch.log10(1.0 / mse)).float().cpu().numpy())
    z_all = np.concatenate(zs)
    timings["encode"] = time.perf_counter() - t0
    z, z_test = z_all[:n], z_all[n:]
    classes, classes_test = classes_all[:n], classes_all[n:]
    info = dataset.info()
    discrete = getattr(model, "representation", "mean") == "quantised"

    unknown = set(counts or {}) - set(PRESETS[preset])
    if unknown:
        raise MetricError(f"unknown count keys {sorted(unknown)}; use {sorted(PRESETS[preset])}")
    counts = {**PRESETS[preset], **(counts or {})}
    scores, details, t_lat = score_latents(
        z,
        classes,
        z_test,
        classes_test,
        list(info.factor_sizes),
        discrete,
        seed,
        dci_estimator,
        report_progress,
        dci_trees=counts["dci_trees"],
        span=(0.3, 0.7),
    )
    timings.update(t_lat)
    report_progress(0.7, "computing FactorVAE score")
    t0 = time.perf_counter()
    pools = {"sampling": sampling, "pool": (z, classes), "eval_pool": (z_test, classes_test)}
    details["factorvae"] = factorvae_score(
        dataset,
        encode,
        counts["factorvae_train"],
        counts["factorvae_eval"],
        counts["factorvae_variance"],
        seed=seed,
        **pools,
    )
    timings["factorvae"] = time.perf_counter() - t0
    report_progress(0.85, "computing BetaVAE score")
    t0 = time.perf_counter()
    details["betavae"] = betavae_score(
        dataset, encode, counts["betavae_train"], counts["betavae_eval"], seed=seed, **pools
    )
    timings["betavae"] = time.perf_counter() - t0
    scores["factorvae"] = details["factorvae"]["factorvae"]
    scores["betavae"] = details["betavae"]["betavae"]
    rec = np.concatenate(recon)
    scores["reconstruction"] = float(rec.mean())
    scores["psnr"] = float(np.concatenate(psnr).mean())
    timings["total"] = time.perf_counter() - t_start
    if was_training:
        model.train()
    report_progress(1.0, "done")
    return to_jsonable(
        {
            "preset": preset,
            "n": n,
            "n_test": n_test,
            "seed": seed,
            "model": getattr(model, "name", type(model).__name__),
            "representation": getattr(model, "representation", "mean"),
            "dataset": info.name,
            "factor_names": list(info.factor_names),
            "factor_sizes": list(info.factor_sizes),
            "latent_names": [f"z{j}" for j in range(z.shape[1])],
            "scores": scores,
            "details": details,
            "settings": {
                "preset": preset,
                "dci_estimator": dci_estimator,
                "dci_params": details["dci"]["settings"]["estimator_params"],
                "intervention_sampling": sampling,
                "intervention_sampling_note": "pool: FactorVAE/BetaVAE votes drawn from the n (train) / n_test (eval) "
                "encodings, variance from the n encodings; an approximation (votes reuse points, per-vote "
                "distribution = fresh for uniform factors)"
                if sampling == "pool"
                else "fresh: newly rendered and encoded images per vote (disentanglement_lib)",
                "infomec_variant": details["infomec"]["settings"]["variant"],
                "infomec_discrete": discrete,
                "mig_bins": 20,
                "reconstruction": "summed BCE per image" if binary else "summed squared error per image",
                **{k: v for k, v in counts.items()},
            },
            "versions": versions(),
            "timings": timings,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )


def evaluate_checkpoint(
    path: str | os.PathLike[str],
    n: int = 10_000,
    seed: int = 0,
    preset: str = "paper",
    device: Any = "auto",
    sampling: str = "pool",
    data_path: str | None = None,
    data_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
    store: bool = True,
) -> dict[str, Any]:
    """``evaluate`` a checkpoint folder and (``store``) write the report into its card.

    What ``python -m disviz evaluate`` and each sweep trial run. The folder's writer lock is held
    for the whole evaluation: a training run on it (which holds the lock) makes this a clear error
    instead of a report of old weights stored into a newer card; the weights' digest is checked
    again before storing for the same reason.
    """
    from disviz.core.device import pick_device
    from disviz.core.errors import CheckpointError
    from disviz.data import load_dataset
    from disviz.engine.checkpoints import MODEL_FILE, checkpoint_lock, load_checkpoint, read_card, update_card

    read_card(path)  # a missing path, a file or a folder without a card: one clear error, no lock taken
    if not (Path(path) / MODEL_FILE).is_file():
        raise CheckpointError(f"{path} has no {MODEL_FILE}; the checkpoint is incomplete, retrain or copy it again")
    check_eval_request(n, seed)
    device = pick_device(device) if isinstance(device, str) else device
    with checkpoint_lock(path, purpose="evaluate"):
        weights_hash = weights_digest(path)
        model, card = load_checkpoint(path, device=device)
        ds_card = card.get("dataset") or {}
        if "name" not in ds_card:
            raise MetricError(f"{path}: card.json has no dataset name; cannot rebuild the evaluation data")
        options = dict(ds_card.get("options") or {})
        options.update(data_options or {})
        dataset = load_dataset(ds_card["name"], data_path, **options)
        report = evaluate(
            model, dataset, n=n, seed=seed, preset=preset, progress=progress, device=device, sampling=sampling
        )
        report["checkpoint"] = {"step": int(card.get("steps", 0)), "weights_sha256": weights_hash}
        if store:
            if weights_digest(path) != weights_hash:
                raise MetricError(f"{path}: the weights changed during the evaluation; not stored, run it again")
            update_card(path, metrics=report)
    return report


def to_tensor(images: np.ndarray, device: Any) -> Any:
    """uint8 [N, 64, 64, C] -> float [N, C, 64, 64] in [0, 1] (the data package's converter)."""
    from disviz.data.base import to_tensor_batch

    return to_tensor_batch(images, device)


SCORE_LABELS = [
    ("infom", "InfoM"),
    ("infoc", "InfoC"),
    ("infoe", "InfoE"),
    ("dci_disentanglement", "DCI D"),
    ("dci_completeness", "DCI C"),
    ("dci_informativeness", "DCI I"),
    ("mig", "MIG"),
    ("sap", "SAP"),
    ("factorvae", "FactorVAE"),
    ("betavae", "BetaVAE"),
    ("reconstruction", "recon error"),
    ("psnr", "PSNR dB"),
]


def format_report(report: dict[str, Any]) -> str:
    """A readable table of the headline scores and timings."""
    lines = [
        f"{report['model']} on {report['dataset']}  preset={report['preset']} n={report['n']} seed={report['seed']}"
    ]
    for key, label in SCORE_LABELS:
        v = report["scores"].get(key)
        lines.append(f"  {label:<14} {'n/a' if v is None else f'{v:.4f}'}")
    lines.append("  timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in report["timings"].items()))
    return "\n".join(lines)


def weights_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a checkpoint's weights file: which weights a report measured."""
    h = hashlib.sha256()
    with open(Path(path) / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class OracleSource:
    """Synthetic factor source for benchmarks/tests: observations are a fixed map of the factors.

    ``mix`` [K, D] maps factor classes to latents (plus Gaussian noise), so the intervention
    metrics run with no model and no rendering.
    """

    def __init__(self, factor_sizes: list[int], mix: np.ndarray, noise: float = 0.0, seed: int = 0):
        self.factor_sizes = list(factor_sizes)
        self.mix = np.asarray(mix, dtype=np.float64)
        self.noise = noise
        self._rng = np.random.default_rng(seed)

    def sample_factors(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        rng = np.random.default_rng(rng)
        return np.stack([rng.integers(0, s, size=n) for s in self.factor_sizes], axis=1).astype(np.int64)

    def images_from_factors(self, classes: np.ndarray) -> np.ndarray:
        z = classes.astype(np.float64) @ self.mix
        return z + self.noise * self._rng.standard_normal(z.shape) if self.noise else z
