"""Token world models (IRIS-like; in progress): so far the discrete frame tokeniser
(:mod:`worldflux.models.token.tokenizer`)."""
