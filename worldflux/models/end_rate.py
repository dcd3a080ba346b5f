"""Undo a termination model's learned end rate when training batches over-sample game ends.

Terminations are rare (Breakout: one step in about 230), so the Trainer's ``end_fraction``
draws windows that hold one. A termination head trained on such batches learns their higher
end rate. A family that supports ``end_fraction`` keeps a scalar buffer ``end_logit_shift``
(added to the termination logit in imagination and filtering, never in the loss) and sets it
from :func:`end_logit_shift` in its ``correct_end_rate(real, drawn)``.
"""

from __future__ import annotations

import math

from ..core.errors import ConfigError


def end_logit_shift(real: float, drawn: float, owner: str) -> float:
    """``logit(real) - logit(drawn)``: the shift that turns a model which learned the batches'
    end rate ``drawn`` into one predicting the data's rate ``real`` (exact when drawing changes
    the odds of an end by one factor everywhere). Both rates must lie in ``(0, 1)``; ``owner``
    names the caller in the error."""
    for name, rate in (("real", real), ("drawn", drawn)):
        if not 0 < rate < 1:
            raise ConfigError(f"{owner}.correct_end_rate: expected {name} in (0, 1), got {rate}.")
    return math.log(real / (1 - real)) - math.log(drawn / (1 - drawn))
