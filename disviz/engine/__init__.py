"""The engine: what a run is (``runspec``), building a model (``build``), the typed card (``card``),
checkpoint folders (``folders``, ``checkpoints``), training (``train``) and evaluating (``evaluate``).

Used by the CLI, the sweeps and the app alike; it never imports the app or the sweeps.
"""
