"""``python -m disviz import SOURCE --out FOLDER --dataset NAME [--format F]``: open a model trained elsewhere.

Only argument handling: the conversion lives in ``disviz.importers`` (shared with the app's
sidebar panel).
"""

from __future__ import annotations

import argparse

__all__ = ["cmd_import"]


def cmd_import(args: argparse.Namespace) -> int:
    """Convert SOURCE into the checkpoint folder --out and print what was written."""
    from disviz.engine.card import load_card
    from disviz.engine.checkpoints import checkpoint_summary
    from disviz.importers import import_model

    out = import_model(
        args.source, args.out, args.dataset, args.format, data_path=args.data_path, overwrite=args.overwrite
    )
    card = load_card(out)
    imported = card.imported or {}
    print(f"imported {imported.get('format')} model {args.source} -> {out}")
    print(f"  {checkpoint_summary(card)}")
    print(f"  source sha256 {imported.get('source_sha256')}")
    print(f"  next: python -m disviz evaluate {out}   (or open it in the app)")
    return 0
