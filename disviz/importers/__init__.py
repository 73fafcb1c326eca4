"""Open models trained elsewhere: convert a file from another library into a disviz checkpoint folder.

``import_model(source, out, dataset, fmt=None)`` is the one entry point (the CLI's ``import`` and the
app's sidebar panel call it). One module per format (``disent``, ``erow`` for the DEFT / DeVAE authors' code, ``qlae`` for the QLAE
authors' JAX code, ``torchscript``), the safe unpickler
every pickled checkpoint goes through (``safe_pickle``), and the registry of formats
(``registry``). See README: "Open a model trained elsewhere".
"""

from __future__ import annotations

from disviz.importers.errors import ModelImportError, UnsafeCheckpointError
from disviz.importers.registry import FORMATS, IMPORTED_MODELS, detect_format, import_model

__all__ = ["FORMATS", "IMPORTED_MODELS", "ModelImportError", "UnsafeCheckpointError", "detect_format", "import_model"]
