"""The ``token`` family (alias ``iris``), an IRIS-like world model: the discrete frame tokeniser
(:mod:`worldflux.models.token.tokenizer`), the causal transformer over frame and action tokens
with its key/value cache for imagination (:mod:`worldflux.models.token.transformer`), and the
family that joins them (:mod:`worldflux.models.token.model`)."""

from .model import TokenConfig, TokenModel

__all__ = ["TokenConfig", "TokenModel"]
