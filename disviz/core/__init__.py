"""Base helpers every layer may use: error classes, size limits, output paths, devices, run paths.

Nothing here imports the rest of disviz, so any module can depend on it without creating a cycle.
"""
