"""Prepare trained checkpoint folders for shipping in the repository.

Training keeps ``optimizer.safetensors`` / ``optimizer.json`` (Adam state + RNG state) so an
interrupted run can be resumed bit-exactly. The shipped folders do not need them (the app only
loads weights and card), and they triple the size, so this script rewrites each folder with the
weights only, in the storage dtype given (``float16`` halves the size; ``load_checkpoint`` casts
back to float32). The card is kept as it is, apart from ``storage_dtype`` and a ``shipped`` note.

    python checkpoints/ship.py [--dtype float16] checkpoints/dsprites/betavae ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from disviz.core.errors import CheckpointError
from disviz.engine.checkpoints import load_checkpoint, save_checkpoint


def ship(path: Path, dtype: str, campaign: str | None = None) -> int:
    """Rewrite ``path`` without optimiser state, weights stored as ``dtype``; returns its size in bytes.

    ``campaign``: the training-campaign entry this folder belongs to; ``campaign.sh`` continues such a
    folder in a fresh clone from these weights with a fresh optimiser (recorded on the card)."""
    model, card = load_checkpoint(path, "cpu")
    card = dict(card)
    card["shipped"] = {"storage_dtype": dtype, "optimizer_state": "dropped (retrain with reproduce.sh)"}
    if campaign:
        card["shipped"]["campaign"] = campaign
        card["shipped"]["optimizer_state"] = "dropped; campaign.sh continues from these weights with a fresh optimiser"
    save_checkpoint(path, model, card, optimizers=None, dtype=dtype)
    for name in ("optimizer.safetensors", "optimizer.json"):  # save_checkpoint carries foreign files over
        (path / name).unlink(missing_ok=True)
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--dtype", default="float16", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--campaign", default=None, help="mark the folder as this campaign entry (campaign.sh)")
    args = parser.parse_args(argv)
    total = 0
    for folder in args.folders:
        try:
            size = ship(folder, args.dtype, args.campaign)
        except CheckpointError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        total += size
        print(f"{folder}: {size / 1e6:.2f} MB")
    print(f"total {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
