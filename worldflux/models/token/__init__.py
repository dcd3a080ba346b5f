"""Token world models (IRIS-like; in progress, not yet a registered family): the discrete frame
tokeniser (:mod:`worldflux.models.token.tokenizer`) and the causal transformer over frame and
action tokens with its key/value cache for imagination
(:mod:`worldflux.models.token.transformer`)."""
