"""Command line: ``python -m disviz <command>``.

This module only parses arguments. Each command's handler lives in this package, one module per
command group (``data``, ``train``, ``evaluate``, ``anneal``, ``sweep``, ``import_cmd``, ``app_bench``), and calls the
library, which knows nothing of argparse or terminals. Handlers are named by ``module:function``
strings and imported lazily, so ``--help`` stays fast and torch is only imported by the commands
that need it. Handlers take the argparse namespace and return an exit code. User errors are
raised as ``CLIError`` (or the subsystem's own error classes) and printed as one clear line,
never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence


class CLIError(RuntimeError):
    """A user-facing error: printed without a traceback, exit code 2."""


def stop_cleanly_on_signals() -> None:
    """Make Ctrl-C and SIGTERM (``kill``, the app's sweep Stop, a scheduler) raise KeyboardInterrupt.

    Long commands catch it to save their state and exit with 130. Explicit because a process started
    in the background by a non-interactive shell (``nohup ... &``) inherits SIGINT *ignored*, and Python
    then never raises KeyboardInterrupt: without this, such a run could only be killed, losing the
    steps since its last save.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def _add_data_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-path",
        default=None,
        help="real dataset file (dSprites .npz, 3dshapes.h5, SmallNORB dir, MPI3D .npz); "
        "defaults to $DISVIZ_DATA. Never downloads.",
    )
    p.add_argument(
        "--data-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dataset option, e.g. correlation=0.9 (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m disviz", description="disviz: see what disentangled models learned."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    # --- data (disviz/cli/data.py) ------------------------------------------------------------
    data = sub.add_parser("data", help="inspect and render ground-truth datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser("list", help="list available datasets")
    p.set_defaults(handler="disviz.cli.data:cmd_list")
    p = data_sub.add_parser("info", help="print factors and sizes of a dataset")
    p.add_argument("name")
    _add_data_option(p)
    p.set_defaults(handler="disviz.cli.data:cmd_info")
    p = data_sub.add_parser("render", help="write a grid of random samples as PNG")
    p.add_argument("name")
    p.add_argument("--out", default="grid.png")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--seed", type=int, default=0)
    _add_data_option(p)
    p.set_defaults(handler="disviz.cli.data:cmd_render")
    p = data_sub.add_parser("build", help="build the bit-packed on-disk cache of procedural dSprites")
    p.add_argument("name", nargs="?", default="dsprites")
    p.set_defaults(handler="disviz.cli.data:cmd_build")

    # --- train (disviz/cli/train.py) ----------------------------------------------------------
    p = sub.add_parser("train", help="train a model and write a checkpoint folder")
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--steps", type=int, default=None, help="default: the model config's steps")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda|mps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument(
        "--reset-optimizer",
        action="store_true",
        help="resume from the weights in --out with a fresh optimiser (for shipped, weights-only checkpoints; "
        "the card records the step); only with it may --set lr change on a resume",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="MIN",
        help="stop after MIN minutes, save, and exit with code 130 (continue with --resume)",
    )
    p.add_argument(
        "--stop-at",
        type=int,
        default=None,
        metavar="STEP",
        help="end at STEP although --steps (which fixes schedules, e.g. DEFT's β(t)) is larger",
    )
    p.add_argument(
        "--amp",
        default="auto",
        choices=["auto", "bf16", "off"],
        help="mixed precision: auto = bf16 autocast on CUDA only; bf16 also on CPUs with AVX-512 BF16",
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    p.add_argument("--save-every", type=int, default=1000)
    p.add_argument("--track-diffusion", type=int, default=0, metavar="N", help="compute NMI1/NMI2 every N steps")
    p.add_argument("--no-progress", action="store_true")
    _add_data_option(p)
    p.set_defaults(handler="disviz.cli.train:cmd_train")

    # --- evaluate (disviz/cli/evaluate.py) ----------------------------------------------------
    p = sub.add_parser("evaluate", help="compute all metrics for a checkpoint and store them in its card")
    p.add_argument("checkpoint")
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="paper", choices=["paper", "fast"])
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-store", action="store_true", help="do not write the report into card.json")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--sampling",
        default="pool",
        choices=["pool", "fresh"],
        help="FactorVAE/BetaVAE votes: from the encoded samples (pool, fast) or freshly rendered (reference)",
    )
    _add_data_option(p)
    p.set_defaults(handler="disviz.cli.evaluate:cmd_evaluate")

    # --- anneal (disviz/cli/anneal.py) --------------------------------------------------------
    p = sub.add_parser("anneal", help="run the IFP annealing test")
    p.add_argument("--dataset", required=True)
    p.add_argument("--factors", nargs="*", default=None, help="factor names (default: all)")
    p.add_argument("--bases", type=int, default=8, help="random bases per factor")
    p.add_argument(
        "--steps",
        type=int,
        default=8000,
        help="annealing steps T (default: the reference 8000; shorter T gives learning-limited IFPs, see docs/methods.md#recipes)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--schedule", default="exp", choices=["exp", "linear"])
    p.add_argument("--arch", default="mlp", choices=["mlp", "conv"], help="per-run VAE (default mlp; conv = reference)")
    p.add_argument(
        "--pool",
        type=int,
        default=None,
        help="k×k average pooling (default 1: the models' 64×64 scale; 2 is ≈ 4× lower)",
    )
    p.add_argument(
        "--batch-size", type=int, default=None, help="per-run batch (default: the recipe's: full sweep / reference 64)"
    )
    p.add_argument(
        "--recipe",
        default="equilibrium",
        choices=["equilibrium", "reference", "both"],
        help="optimisation recipe (see docs/methods.md#recipes); both writes OUT and OUT with a _reference suffix",
    )
    p.add_argument("--label-free", action="store_true", help="anneal one multi-latent VAE on the whole dataset")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an AnnealConfig field (e.g. lr=0.0005, warmup=0, antithetic=false: the reference recipe)",
    )
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    _add_data_option(p)
    p.set_defaults(handler="disviz.cli.anneal:cmd_anneal")

    # --- sweep (disviz/cli/sweep.py; Ray is imported only when trials run) --------------------
    p = sub.add_parser(
        "sweep",
        help="train and evaluate models x datasets x hyper-parameters x seeds on Ray (see README: Sweeps)",
    )
    p.add_argument("spec", help="sweep spec (TOML), e.g. checkpoints/sweeps/vae_seeds/spec.toml")
    p.add_argument("--dry-run", action="store_true", help="validate the spec and print its trials; run nothing")
    p.add_argument("--report", action="store_true", help="print the sweep's results table")
    p.add_argument("--resume", action="store_true", help="continue the sweep: skip finished trials, resume the rest")
    p.add_argument("--out", default=None, help="sweep folder (default: the spec's 'out', else runs/sweeps/<name>)")
    p.add_argument(
        "--address", default=None, help="join an existing Ray cluster (e.g. auto or HOST:6379) instead of a local one"
    )
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: this machine's)")
    p.add_argument("--num-gpus", type=int, default=None, help="GPUs of the local Ray (default: detected)")
    p.add_argument("--note", default="", help="how / where it was run, recorded with the results")
    p.set_defaults(handler="disviz.cli.sweep:cmd_sweep")

    # --- import (disviz/cli/import_cmd.py) ----------------------------------------------------
    p = sub.add_parser(
        "import",
        help="turn a model trained elsewhere (disent / DEFT-DeVAE authors' .ckpt, QLAE model.eqx, TorchScript + .toml) into a checkpoint",
    )
    p.add_argument(
        "source",
        help="the file to import: a Lightning .ckpt (disent, erow), a QLAE model.eqx, or a .toml (TorchScript)",
    )
    p.add_argument("--out", required=True, help="checkpoint folder to write (must not exist yet)")
    p.add_argument("--dataset", required=True, help="the dataset the model was trained on (python -m disviz data list)")
    p.add_argument(
        "--format", default=None, help="disent | erow | qlae | torchscript (default: detected from the file)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing folder at --out")
    p.add_argument("--data-path", default=None, help="real dataset file, as for train")
    p.set_defaults(handler="disviz.cli.import_cmd:cmd_import")

    # --- bench (next to each command group's handlers) ----------------------------------------
    bench = sub.add_parser("bench", help="print speed figures")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    p = bench_sub.add_parser("data", help="images/s for lazy rendering and the full dSprites build")
    p.add_argument("--full", action="store_true", help="also time the full 737,280-image dSprites build")
    p.set_defaults(handler="disviz.cli.data:cmd_bench")
    p = bench_sub.add_parser("train", help="images/s of the engine vs a plain PyTorch loop")
    p.add_argument("--model", default="betavae")
    p.add_argument("--dataset", default="dsprites")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.set_defaults(handler="disviz.cli.train:cmd_bench")
    p = bench_sub.add_parser("metrics", help="time each metric on 10,000 samples x 10 latents")
    p.add_argument("--n", type=int, default=10_000)
    p.set_defaults(handler="disviz.cli.evaluate:cmd_bench")
    p = bench_sub.add_parser("anneal", help="time a batched annealing run")
    p.add_argument("--dataset", default="dsprites")
    p.add_argument("--bases", type=int, default=8)
    p.add_argument("--arch", default="mlp", choices=["mlp", "conv"])
    p.add_argument("--device", default="auto")
    p.set_defaults(handler="disviz.cli.anneal:cmd_bench")
    p = bench_sub.add_parser("sweep", help="Ray overhead per trial; N parallel trials vs N sequential")
    p.add_argument("--trials", type=int, default=None, help="N (default: this machine's CPUs)")
    p.add_argument("--steps", type=int, default=30, help="training steps per throughput trial")
    p.add_argument("--rounds", type=int, default=50, help="trivial tasks timed for the overhead")
    p.set_defaults(handler="disviz.cli.sweep:cmd_bench")
    p = bench_sub.add_parser("app", help="server time of a slider move and of the first traversal")
    p.add_argument("--checkpoint", default=None)
    p.set_defaults(handler="disviz.cli.app_bench:cmd_bench")
    p = bench_sub.add_parser(
        "serve", help="N real Chromium sessions on one app server: latency, errors, server CPU and RSS"
    )
    p.add_argument("--sessions", type=int, default=1, help="concurrent browser sessions (students)")
    p.add_argument("--moves", type=int, default=5, help="slider moves per session")
    p.add_argument("--url", default=None, help="target a running app (default: start one on a free port)")
    p.add_argument("--server-pid", type=int, default=None, help="the server's process id (default: found by port)")
    p.add_argument("--page", default="", help="page path to open, e.g. explore (default: the start page)")
    p.add_argument("--slider", default="auto", help="key of the slider to move (default: the first not collapsed)")
    p.add_argument("--think-ms", type=float, default=200, help="pause between a student's moves")
    p.add_argument("--timeout", type=float, default=60, help="seconds before a load or move counts as a timeout")
    p.add_argument("--soak", type=float, default=0, metavar="MIN", help="then keep moving for MIN minutes (RSS)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.set_defaults(handler="disviz.cli.app_bench:cmd_bench_serve")
    return parser


def _resolve(target: str):
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = _resolve(args.handler)
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # user-facing errors print one line; bugs keep their traceback
        if _is_user_error(exc):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


def _is_user_error(exc: BaseException) -> bool:
    from disviz.core.errors import UserError

    return isinstance(exc, (CLIError, UserError))
