"""What a sweep's spec and its results table share: the error class, the trial statuses and how a
value is written into ids and table cells."""

from __future__ import annotations

from typing import Any

from disviz.core.errors import UserError

__all__ = ["FINISHED", "NODE_KEYS", "STATUSES", "SweepError", "format_value"]

STATUSES = ("pending", "queued", "running", "done", "nan", "failed")
FINISHED = ("done", "nan")
NODE_KEYS = ("node", "node_ip", "node_id")  # the machine that ran a trial (sweeps.runner.node_info)


class SweepError(UserError):
    """A sweep spec or sweep folder that cannot be used (printed as one line by the CLI)."""


def format_value(value: Any) -> str:
    """A value in a trial id or a CSV cell: floats as %g, lists joined with '_'."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "_".join(format_value(v) for v in value)
    return str(value)
