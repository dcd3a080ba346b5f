"""JEPA-style latent world model: encoder, EMA target and predictor in embedding space (``jepa``)."""

from .model import JEPAConfig, JEPAModel

__all__ = ["JEPAConfig", "JEPAModel"]
