"""User-facing error classes.

Every error a user can cause (a missing file, a bad option, a broken checkpoint) derives from
``UserError``: the CLI prints its message as one line and the app shows it in the page.
The message must say what is wrong *and* how to fix it.
"""

from __future__ import annotations


class UserError(RuntimeError):
    """Base of all errors caused by input rather than by a bug."""


class DatasetError(UserError):
    """A dataset could not be built or read (missing / malformed file, bad option)."""


class CheckpointError(UserError):
    """A checkpoint folder is missing, malformed, or from an incompatible version."""


class TrainingError(UserError):
    """Training cannot continue (NaN loss, bad configuration, busy output folder)."""


class MetricError(UserError):
    """Metric input is unusable (wrong shapes, NaN, too few samples)."""
