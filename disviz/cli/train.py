"""``python -m disviz train`` and ``python -m disviz bench train``: arguments in, progress out.

The engine (``disviz.engine.train``) knows nothing of argparse or terminals; this module turns the
arguments into a ``TrainConfig``, draws the event stream as a text progress bar and prints the
benchmark table the engine's measurements fill.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from disviz.cli import stop_cleanly_on_signals
from disviz.core.device import pick_device
from disviz.core.limits import MAX_STEPS, check_batch, check_count
from disviz.engine import train as engine
from disviz.engine.train import (
    TrainConfig,
    TrainEvent,
    engine_ips,
    parse_key_values,
    plain_loop_ips,
    read_train_settings,
    train,
)

__all__ = ["ProgressBar", "cmd_bench", "cmd_train"]


def _fmt_time(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class ProgressBar:
    """Text progress bar on stderr: step/total, loss, img/s, stage, ETA."""

    def __init__(self, stream: Any = None, width: int = 24):
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last_print = 0.0

    def __call__(self, ev: TrainEvent) -> None:
        if ev.kind == "step":
            now = time.monotonic()
            if not self.tty and now - self.last_print < 5.0 and ev.step != ev.total:
                return  # logs / pipes: a line every 5 s
            self.last_print = now
            frac = ev.step / max(ev.total, 1)
            filled = int(frac * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            eta = (ev.total - ev.step) * ev.data.get("batch_size", 0) / ev.images_per_s if ev.images_per_s else 0.0
            stage = f" stage {ev.stage}" if ev.stage is not None else ""
            loss = ev.losses.get("loss", float("nan"))
            line = (
                f"[{bar}] {ev.step}/{ev.total} loss {loss:.4g} {ev.images_per_s:,.0f} img/s{stage} ETA {_fmt_time(eta)}"
            )
            if self.tty:
                self.stream.write("\r" + line.ljust(100))
            else:
                self.stream.write(line + "\n")
            self.stream.flush()
        elif ev.kind in ("start", "checkpoint", "eval", "done", "stopped", "error", "warning"):
            if self.tty and ev.kind != "start":
                self.stream.write("\n")
            text = {
                "start": f"training {ev.message}",
                "checkpoint": f"checkpoint at step {ev.step} -> {ev.message}",
                "eval": f"{ev.message} at step {ev.step}: "
                + ", ".join(f"{k}={v:.3g}" for k, v in ev.data.get("record", {}).items() if isinstance(v, float)),
                "done": ev.message,
                "stopped": ev.message,
                "error": f"error: {ev.message}",
                "warning": f"warning at step {ev.step}: {ev.message}",
            }[ev.kind]
            if ev.kind != "error":  # the CLI prints user errors itself
                self.stream.write(text + "\n")
            self.stream.flush()


def cmd_train(args: argparse.Namespace) -> int:
    """``python -m disviz train ...``"""
    cfg = TrainConfig(
        model=args.model,
        dataset=args.dataset,
        out=args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        device=args.device,
        seed=args.seed,
        overrides=parse_key_values(args.set, "--set"),
        dataset_options=parse_key_values(args.data_option, "--data-option"),
        dataset_path=args.data_path or None,  # load_dataset falls back to $DISVIZ_DATA itself
        save_every=args.save_every,
        track_diffusion=args.track_diffusion,
        resume=args.resume or args.reset_optimizer,
        reset_optimizer=args.reset_optimizer,
        time_limit_s=args.time_limit * 60.0 if args.time_limit is not None else None,
        stop_at=args.stop_at,
        amp=args.amp,
    )
    events: list[TrainEvent] = []

    def callback(ev: TrainEvent) -> None:
        if ev.kind in ("done", "stopped"):
            events.append(ev)
        if not args.no_progress:
            bar(ev)

    bar = ProgressBar()
    stop_cleanly_on_signals()  # kill / Ctrl-C: save this step, exit 130, --resume goes on
    out = train(cfg, callback=callback)
    if args.no_progress and events:
        print(events[-1].message, file=sys.stderr)
    print(out)
    return 130 if events and events[-1].kind == "stopped" else 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``python -m disviz bench train``: engine vs a plain PyTorch loop, same network, same run.

    Rounds alternate (plain, engine, plain, engine, ...) so background load hits both alike;
    each figure is the best round. On CPU an extra row shows the opt-in bf16 autocast
    (``TrainConfig(amp="bf16")``), which is not the default there (docs/methods.md#training-engine).
    """
    device = pick_device(args.device)
    steps = int(args.steps)
    bs = int(args.batch_size)
    rounds = 2
    warmup = max(5, steps // 5)
    ds = engine._load_dataset(args.dataset, None, {})  # fail early on a bad name (the engine's own loader)
    check_batch(bs, ds.info().channels, len(ds))  # the plain loop allocates before the engine would check
    check_count(steps, "--steps", maximum=MAX_STEPS, bytes_each=0, unit="steps")
    print(
        f"bench train: model={args.model} dataset={args.dataset} batch={bs} steps={steps} (+{warmup} warm-up), "
        f"best of {rounds} alternating rounds, device={device}"
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    variants: dict[str, dict[str, Any]] = {"disviz engine": {}}
    if device.type == "cpu":
        variants["disviz engine + bf16 (opt-in)"] = {"amp": "bf16"}
    results: dict[str, float] = {"plain PyTorch loop": 0.0, **{k: 0.0 for k in variants}}
    settings = ""
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            plain = plain_loop_ips(args.model, args.dataset, steps, bs, device, warmup, 0)
            results["plain PyTorch loop"] = max(results["plain PyTorch loop"], plain)
            for name, extra in variants.items():
                cfg = TrainConfig(
                    model=args.model,
                    dataset=args.dataset,
                    out=Path(tmp) / f"{len(extra)}-{r}",
                    steps=steps + warmup,
                    batch_size=bs,
                    device=str(device),
                    save_every=10**9,
                    log_every=5,
                    log_kl=False,
                    save_optimizer=False,
                    **extra,
                )
                results[name] = max(results[name], engine_ips(cfg, warmup))
                if not extra:
                    settings = ", ".join(
                        f"{k}={v}" for k, v in read_train_settings(cfg.out).items() if k != "sampler_rng"
                    )
    plain = results["plain PyTorch loop"]
    for name, ips in results.items():
        ratio = "" if name.startswith("plain") else f"   {ips / plain:5.2f}x plain"
        print(f"  {name:<30} {ips:10,.1f} images/s{ratio}")
    print(f"  engine settings: {settings}")
    return 0
