"""The engine: the typed checkpoint card, checkpoints on disk, building models, training and evaluating.

Used by the CLI, the sweeps and the app alike; it never imports the app or the sweeps.
"""
