"""Compute-device selection shared by training, the app and the diagnostics."""

from __future__ import annotations

import torch

from disviz.core.errors import UserError


def pick_device(preference: str | None = "auto") -> torch.device:
    """'auto' -> CUDA, then Apple MPS, then CPU; otherwise the named device, checked."""
    pref = (preference or "auto").lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if pref.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    if pref == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("--device mps was asked for but Apple MPS is not available; use --device cpu or auto")
    try:
        return torch.device(pref)
    except RuntimeError as exc:
        raise UserError(f"unknown device {preference!r}; use auto, cpu, cuda or mps") from exc


def describe(device: torch.device) -> str:
    """Human-readable device name for the app's sidebar and the CLI."""
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple MPS"
    return f"CPU ({torch.get_num_threads()} threads)"
