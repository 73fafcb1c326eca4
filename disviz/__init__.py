"""disviz: interactive latent exploration for disentangled representation learning."""

__version__ = "0.1.0"
