"""Error heads (``worldflux.models.error_heads``): fitted to squared errors by their likelihood,
they estimate the expected error; bad input is refused. (The families' fits after training are
tested with each family.)"""

from __future__ import annotations

import pytest
import torch

import worldflux as wf
from worldflux.models.error_heads import ErrorHeads


def test_error_heads_estimate_the_expected_squared_error() -> None:
    """Fitted to squared errors by their likelihood, each head's ``exp`` is their mean given the
    input: two inputs whose predictions miss by RMS 0.1 and 1.0 get those errors back."""
    torch.manual_seed(0)
    head = ErrorHeads(heads=3, features=8, hidden=32)
    x = torch.cat([torch.zeros(2048, 8), torch.ones(2048, 8)])
    rms = torch.cat([torch.full((2048,), 0.1), torch.full((2048,), 1.0)])
    sq_error = (rms * torch.randn(4096, generator=torch.Generator().manual_seed(1))) ** 2
    assert not bool(head.fitted)
    head.fit(x, sq_error, 1500, torch.Generator().manual_seed(0))
    assert bool(head.fitted)
    torch.testing.assert_close(head.shift, torch.full((8,), 0.5))  # standardised inputs
    with torch.no_grad():
        predicted = torch.exp(0.5 * head(x[[0, -1]]))  # [heads, 2]
    torch.testing.assert_close(predicted, torch.tensor([[0.1, 1.0]] * 3), rtol=0.15, atol=0.0)
    with pytest.raises(
        wf.core.ContractError, match="expected finite squared errors >= 0, got 4096 of 4096"
    ):
        head.fit(x, -sq_error, 1, torch.Generator())
    with pytest.raises(wf.core.ContractError, match="expected x \\[N, 8\\]"):
        head.fit(x[:, :4], sq_error, 1, torch.Generator())
