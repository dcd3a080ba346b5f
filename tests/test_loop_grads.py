"""Deferred weight gradients of Linear layers in a recurrent loop equal plain autograd's."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import worldflux as wf
import worldflux.models.rssm.model as rssm_model
from worldflux.models.loop_grads import deferred_weight_grads


def _loop_grads(deferred: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    cell = nn.Linear(5 + 8, 8)
    head = nn.Linear(8, 3, bias=False)
    xs = torch.randn(6, 4, 5, requires_grad=True)  # [T, B, in]
    h = torch.zeros(4, 8)
    outs = []
    layers = [cell, head] if deferred else []
    with deferred_weight_grads(layers):
        for x in xs:
            h = torch.tanh(cell(torch.cat([x, h], -1)))
            outs.append(head(h))
    loss = torch.stack(outs[1:]).pow(2).sum()  # the first step's head output is unused
    loss.backward()
    named = {**dict(cell.named_parameters(prefix="cell")), **dict(head.named_parameters("head"))}
    assert xs.grad is not None
    return xs.grad, {k: p.grad for k, p in named.items() if p.grad is not None}


def test_a_recurrent_loop_gets_the_same_gradients() -> None:
    x_plain, plain = _loop_grads(False)
    x_deferred, deferred = _loop_grads(True)
    assert set(plain) == set(deferred) == {"cell.weight", "cell.bias", "head.weight"}
    for k in plain:
        torch.testing.assert_close(deferred[k], plain[k], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x_deferred, x_plain, rtol=1e-5, atol=1e-6)
    lin = nn.Linear(2, 2)
    with torch.no_grad(), deferred_weight_grads([lin]):  # nothing to defer: plain forward
        assert "forward" not in vars(lin)
    assert "forward" not in vars(lin)  # the class's forward is back after the block


@pytest.mark.parametrize("spec", ["dreamerv3:tiny", "planet:tiny"])
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_rssm_loss_gradients_match_plain_autograd(
    spec: str, bf16: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    model = wf.create_world_model(spec, obs_shape=(7,), action_dim=3)
    b, t = 4, 12
    batch = wf.Batch(
        torch.randn(b, t + 1, 7),
        torch.rand(b, t, 3) * 2 - 1,
        torch.randn(b, t),
        torch.zeros(b, t, dtype=torch.bool),
        torch.zeros(b, t, dtype=torch.bool),
    )

    def grads() -> tuple[dict[str, torch.Tensor], set[str]]:
        model.zero_grad()
        torch.manual_seed(1)  # the same latent samples
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model.loss(batch).loss
        seen, todo = set(), [loss.grad_fn]
        nodes: set[str] = set()
        while todo:  # the names of the backward graph's nodes
            node = todo.pop()
            if node is not None and id(node) not in seen:
                seen.add(id(node))
                nodes.add(type(node).__name__)
                todo.extend(n for n, _ in node.next_functions)
        loss.backward()
        named = model.named_parameters()
        return {k: p.grad.clone() for k, p in named if p.grad is not None}, nodes

    monkeypatch.setattr(rssm_model, "DEFER_MIN_WEIGHTS", 1)  # the tiny layers too
    assert rssm_model._loop_linears(model.component("dynamics_model"))
    deferred, deferred_nodes = grads()
    assert "_AnchorBackward" in deferred_nodes  # the loop's weight gradients were deferred
    monkeypatch.setattr(rssm_model, "_loop_linears", lambda dynamics: [])
    plain, plain_nodes = grads()
    assert "_AnchorBackward" not in plain_nodes
    assert set(deferred) == set(plain)
    for k in plain:
        scale = plain[k].abs().max().clamp(min=1e-8)
        err = float((deferred[k] - plain[k]).abs().max() / scale)
        # fp32: the same sums in another order; bf16: autocast's rounding of each product
        assert err < (0.05 if bf16 else 1e-4), (k, err)
