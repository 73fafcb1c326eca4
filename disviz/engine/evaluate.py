"""One metric report for a trained model: encode n samples, run every metric, add reconstruction quality.

The metrics and their presets are ``disviz.metrics.registry``; this module is what needs a model
or a checkpoint folder. Presets (docs/metrics.md#evaluate-and-its-presets): 'paper' uses the published sample counts (10k encodings + a 5k test
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
from pathlib import Path
from typing import Any

import numpy as np

from disviz.core.errors import MetricError
from disviz.engine.runspec import check_eval_request
from disviz.metrics._util import to_jsonable, versions
from disviz.metrics.registry import METRICS, PRESETS, Progress, score_latents
from disviz.models.encoding import encode_batches, model_device


class _Rendered:
    """The images of factor classes [N, K], rendered a slice at a time (never all in memory)."""

    def __init__(self, dataset: Any, classes: np.ndarray) -> None:
        self.dataset, self.classes = dataset, classes

    def __len__(self) -> int:
        return len(self.classes)

    def __getitem__(self, index: slice) -> np.ndarray:
        return self.dataset.images_from_factors(self.classes[index])  # uint8 [B, 64, 64, C]


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
    device = model_device(model) if device is None else device
    was_training = model.training
    model.eval()
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    report_progress = progress or (lambda f, m: None)
    rng = np.random.default_rng(seed)
    n_test = max(n // 2, 2)
    classes_all = dataset.sample_factors(n + n_test, rng)  # [N + T, K]
    binary = bool(dataset.info().binary)

    def encode(images: np.ndarray) -> np.ndarray:  # uint8 [N, 64, 64, C] -> [N, D]: the intervention metrics' votes
        return encode_batches(model, images, 256, device)

    # --- encode + reconstruct (one pass over the data) -----------------------------------
    recon, psnr = [], []

    def reconstruct(start: int, x: torch.Tensor, z: torch.Tensor) -> None:  # x [B, C, 64, 64], z [B, D]
        report_progress(0.3 * start / (n + n_test), "encoding samples")
        if start >= n:
            return
        logits = model.decode(z)  # [B, C, 64, 64]
        if binary:
            err = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
        else:
            err = ((torch.sigmoid(logits) - x) ** 2).sum((1, 2, 3))
        mse = ((torch.sigmoid(logits) - x) ** 2).mean((1, 2, 3)).clamp_min(1e-10)
        recon.append(err.float().cpu().numpy())
        psnr.append((10 * torch.log10(1.0 / mse)).float().cpu().numpy())

    t0 = time.perf_counter()
    z_all = encode_batches(model, _Rendered(dataset, classes_all), 256, device, each=reconstruct)  # [N + T, D]
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
    pools = {"sampling": sampling, "pool": (z, classes), "eval_pool": (z_test, classes_test)}
    calls = {  # the registry's intervention metrics with the preset's sample counts
        "factorvae": lambda f: f(
            dataset,
            encode,
            counts["factorvae_train"],
            counts["factorvae_eval"],
            counts["factorvae_variance"],
            seed=seed,
            **pools,
        ),
        "betavae": lambda f: f(dataset, encode, counts["betavae_train"], counts["betavae_eval"], seed=seed, **pools),
    }
    interventions = [m for m in METRICS if m.needs == "interventions"]
    for i, m in enumerate(interventions):
        report_progress(0.7 + 0.3 * i / len(interventions), f"computing {m.label}")
        t0 = time.perf_counter()
        details[m.name] = calls[m.name](m.function)
        timings[m.name] = time.perf_counter() - t0
        scores.update({s.key: details[m.name][s.detail] for s in m.scores})
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
    from disviz.engine.card import read_card, update_card
    from disviz.engine.checkpoints import load_checkpoint
    from disviz.engine.folders import MODEL_FILE, checkpoint_lock

    read_card(path)  # a missing path, a file or a folder without a card: one clear error, no lock taken
    if not (Path(path) / MODEL_FILE).is_file():
        raise CheckpointError(f"{path} has no {MODEL_FILE}; the checkpoint is incomplete, retrain or copy it again")
    check_eval_request(n, seed)
    device = pick_device(device) if isinstance(device, str) else device
    with checkpoint_lock(path, purpose="evaluate"):
        weights_hash = weights_digest(path)
        model, card = load_checkpoint(path, device=device)
        if card.dataset_name is None:
            raise MetricError(f"{path}: card.json has no dataset name; cannot rebuild the evaluation data")
        options = {**card.dataset_options, **(data_options or {})}
        dataset = load_dataset(card.dataset_name, data_path, **options)
        report = evaluate(
            model, dataset, n=n, seed=seed, preset=preset, progress=progress, device=device, sampling=sampling
        )
        report["checkpoint"] = {"step": card.steps, "weights_sha256": weights_hash}
        if store:
            if weights_digest(path) != weights_hash:
                raise MetricError(f"{path}: the weights changed during the evaluation; not stored, run it again")
            update_card(path, metrics=report)
    return report


def weights_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a checkpoint's weights file: which weights a report measured."""
    h = hashlib.sha256()
    with open(Path(path) / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
