"""The app's one import: every function the pages call, re-exported from where it is defined.

Why a facade: the pages (and their tests) import ``from disviz.app import explore as ex`` and call
``ex.<name>``, so one short import serves a page whatever it shows. The code lives in modules
that each answer one question; library code imports those directly, never this module:

- ``disviz.app.catalogue``: which checkpoints there are, the default one, opening one;
- ``disviz.app.latents``: encode / decode and what a data sample says about each latent;
- ``disviz.app.traversal``: slider ranges, traversal and codebook grids, interpolation, GIFs;
- ``disviz.app.uploads``: uploaded base images;
- ``disviz.app.reports``: scores and matrices in a stored metric report;
- ``disviz.app.annealing_view``: the Annealing page's view of IFP results.

Patching a name here (``monkeypatch.setattr(explore, ...)``) does not reach the code that uses it;
patch the defining module.
"""

from __future__ import annotations

from disviz.app.annealing_view import (
    annealing_files,
    annealing_summary,
    annealing_view,
    recipe_comparison,
    recipe_twins,
)
from disviz.app.catalogue import (
    SCAN_LIMITS,
    CheckpointEntry,
    dataset_for_card,
    default_entry,
    display_path,
    list_entries,
    load_model,
    scan_folder,
)
from disviz.app.latents import (
    LatentStats,
    decode,
    encode,
    latent_stats,
    normalised_mi,
    quality_of,
    reconstruction_quality,
    row_labels,
    sort_latents,
)
from disviz.app.reports import report_matrix, report_settings, score_table, stage_starts
from disviz.app.traversal import (
    RANGE_MODES,
    SliderSpec,
    codebook_grid,
    codebook_usage,
    interpolate,
    nearest_value,
    prior_sample,
    slider_spec,
    traversal_gif,
    traversal_tiles,
    traversal_values,
    triangle_wave,
)
from disviz.app.uploads import MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS, UploadError, load_upload
from disviz.core.paths import checkpoint_roots

__all__ = [
    "MAX_UPLOAD_BYTES",
    "MAX_UPLOAD_PIXELS",
    "RANGE_MODES",
    "SCAN_LIMITS",
    "CheckpointEntry",
    "LatentStats",
    "SliderSpec",
    "UploadError",
    "annealing_files",
    "annealing_summary",
    "annealing_view",
    "checkpoint_roots",
    "codebook_grid",
    "codebook_usage",
    "dataset_for_card",
    "decode",
    "default_entry",
    "display_path",
    "encode",
    "report_matrix",
    "interpolate",
    "latent_stats",
    "list_entries",
    "load_model",
    "load_upload",
    "nearest_value",
    "prior_sample",
    "normalised_mi",
    "recipe_comparison",
    "recipe_twins",
    "report_settings",
    "quality_of",
    "reconstruction_quality",
    "row_labels",
    "scan_folder",
    "score_table",
    "slider_spec",
    "sort_latents",
    "stage_starts",
    "traversal_gif",
    "traversal_tiles",
    "traversal_values",
    "triangle_wave",
]
