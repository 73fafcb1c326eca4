"""Disentanglement metrics: pure numpy functions latents [N, D] x factor classes [N, K] -> dict.

``registry`` names them, their scores, labels and presets; ``disviz.engine.evaluate`` runs them all
on a trained model. Nothing here imports a model, a checkpoint or the data package.
"""

from disviz.metrics.betavae_score import betavae_score
from disviz.metrics.dci import completeness, dci, disentanglement
from disviz.metrics.factorvae import factorvae_score
from disviz.metrics.infomec import infomec
from disviz.metrics.mig import mig
from disviz.metrics.nmi import nmi_diffusion
from disviz.metrics.sap import sap

__all__ = [
    "betavae_score",
    "completeness",
    "dci",
    "disentanglement",
    "factorvae_score",
    "infomec",
    "mig",
    "nmi_diffusion",
    "sap",
]
