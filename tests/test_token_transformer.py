"""The token family's sequence model: teacher forcing and the key/value cache agree, rows of a
batch stay independent, explicit noise reproduces samples, and it learns a token dynamics."""

from __future__ import annotations

import pytest
import torch

from worldflux.core.errors import ConfigError
from worldflux.models.token.transformer import (
    StepWriter,
    TokenTransformer,
    TransformerConfig,
    sample_token,
)

SMALL = TransformerConfig(
    codes=16, actions=3, tokens_per_frame=4, context_steps=4, embed=32, heads=2
)


def window(batch: int, steps: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, SMALL.codes, (batch, steps + 1, SMALL.tokens_per_frame), generator=g)
    actions = torch.randint(0, SMALL.actions, (batch, steps), generator=g)
    return tokens, actions


def cached_predictions(
    model: TokenTransformer, tokens: torch.Tensor, actions: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The forward pass's outputs computed token by token through the cache (teacher forced)."""
    cache = model.observe(model.empty_cache(len(tokens)), tokens[:, 0])
    logits, rewards, ends = [], [], []
    for t in range(actions.shape[1]):
        h, cache = model.feed(cache, model.action_input(actions[:, t]))
        rewards.append(model.reward_head(h).squeeze(-1))
        ends.append(model.end_head(h).squeeze(-1))
        step = [model.token_head(h)]
        inputs = model.frame_inputs(tokens[:, t + 1])
        for i in range(SMALL.tokens_per_frame):
            h, cache = model.feed(cache, inputs[:, i])
            if i + 1 < SMALL.tokens_per_frame:
                step.append(model.token_head(h))
        logits.append(torch.stack(step, 1))
    return {
        "logits": torch.stack(logits, 1),
        "reward": torch.stack(rewards, 1),
        "end_logit": torch.stack(ends, 1),
    }


def test_bad_configs_and_inputs_are_named() -> None:
    with pytest.raises(ConfigError, match="embed / heads must be an even integer"):
        TokenTransformer(TransformerConfig(embed=30, heads=2))
    with pytest.raises(ConfigError, match="layers: expected an int >= 1"):
        TokenTransformer(TransformerConfig(layers=0))
    model = TokenTransformer(SMALL)
    with pytest.raises(ConfigError, match=r"expected tokens \[B, T\+1, 4\] and actions \[B, T\]"):
        model(torch.zeros(2, 3, 5, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ConfigError, match=r"expected uniform noise \[2, 4\]"):
        model.imagine(model.empty_cache(2), torch.zeros(2, dtype=torch.long), torch.rand(2, 3))
    with pytest.raises(ConfigError, match="temperature: expected >= 0"):
        sample_token(torch.zeros(1, 4), torch.zeros(1), -1.0)


@pytest.mark.parametrize("steps", [3, 6], ids=["within-context", "past-the-context"])
def test_the_cache_reproduces_the_teacher_forced_pass(steps: int) -> None:
    """Also past the context (7 frames = 34 tokens > 20): the ring cache forgets exactly what the
    banded training mask hides."""
    torch.manual_seed(0)
    model = TokenTransformer(SMALL).eval()
    tokens, actions = window(3, steps)
    with torch.no_grad():
        full, cached = model(tokens, actions), cached_predictions(model, tokens, actions)
    for key in ("logits", "reward", "end_logit"):
        torch.testing.assert_close(cached[key], full[key], atol=1e-4, rtol=1e-4)


def test_rows_with_different_histories_stay_independent_and_the_ring_wraps() -> None:
    """A batch row fed a long history (past the cache's capacity) and a fresh row give each what
    they give alone."""
    torch.manual_seed(0)
    model = TokenTransformer(SMALL).eval()
    tokens, actions = window(2, 6, seed=1)
    noise = torch.rand(2, SMALL.tokens_per_frame, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        old = model.observe(model.empty_cache(1), tokens[:1, 0])
        for t in range(6):  # 7 frames + 6 actions = 34 tokens > capacity 20
            old = model.observe(
                model.feed(old, model.action_input(actions[:1, t]))[1], tokens[:1, t + 1]
            )
        assert int(old["position"][0]) == 34
        fresh = model.observe(model.empty_cache(1), tokens[1:, 0])
        both = {k: torch.cat([old[k], fresh[k]]) for k in old}
        act = torch.tensor([1, 2])
        together = model.imagine(both, act, noise, temperature=1.0)
        alone = [
            model.imagine(c, act[i : i + 1], noise[i : i + 1]) for i, c in enumerate((old, fresh))
        ]
    for j in range(3):
        torch.testing.assert_close(
            together[j], torch.cat([alone[0][j], alone[1][j]]), atol=1e-5, rtol=1e-5
        )
    assert torch.equal(together[3]["position"], torch.tensor([39, 9]))


def test_the_buffered_step_of_exported_graphs_equals_the_in_place_step() -> None:
    """The step that keeps its tokens beside the cache until flush (traced for export) gives the
    hidden states and caches of the eager in-place step, also once the ring wraps."""
    torch.manual_seed(0)
    model = TokenTransformer(SMALL).eval()
    tokens, actions = window(3, 6, seed=4)
    caches = {mode: model.empty_cache(3) for mode in (True, False)}
    with torch.no_grad():
        for t in range(7):
            hidden = {}
            for mode in (True, False):
                step = StepWriter(model, caches[mode], in_place=mode)
                inputs = list(model.frame_inputs(tokens[:, t]).unbind(1))
                if t:
                    inputs.insert(0, model.action_input(actions[:, t - 1]))
                hidden[mode] = torch.stack([step.feed(x) for x in inputs], 1)
                caches[mode] = step.flush()
            torch.testing.assert_close(hidden[False], hidden[True], atol=1e-5, rtol=1e-5)
    for key in ("keys", "values", "position"):
        torch.testing.assert_close(caches[False][key], caches[True][key], atol=1e-5, rtol=1e-5)
    assert int(caches[True]["position"][0]) == 34  # past the capacity of 20


def test_explicit_noise_reproduces_imagined_frames() -> None:
    torch.manual_seed(0)
    model = TokenTransformer(SMALL).eval()
    tokens, _ = window(4, 0)
    cache = model.observe(model.empty_cache(4), tokens[:, 0])
    act = torch.tensor([0, 1, 2, 0])
    g = torch.Generator().manual_seed(5)
    u1, u2 = torch.rand(4, 4, generator=g), torch.rand(4, 4, generator=g)
    with torch.no_grad():
        a, b, c = (model.imagine(cache, act, u)[0] for u in (u1, u1, u2))
        greedy = model.imagine(cache, act, u1, temperature=0.0)[0]
        again = model.imagine(cache, act, u2, temperature=0.0)[0]
    assert torch.equal(a, b) and not torch.equal(a, c)  # the cache given is never modified
    assert int(cache["position"][0]) == SMALL.tokens_per_frame
    assert torch.equal(greedy, again)  # temperature 0 ignores the noise
    logits = torch.tensor([[0.0, 0.0, 10.0, 0.0]])
    assert int(sample_token(logits, torch.tensor([0.5]), 1.0)) == 2


def test_it_learns_a_token_dynamics_and_imagines_it() -> None:
    """Next frame = every token shifted by the action (mod K), reward 1 for action 1, the
    episode ends when the first token is 0: after 400 Adam steps, teacher-forced next-token
    accuracy > 0.97, rewards within 0.1, ends classified, and greedy imagination follows the true
    dynamics for three steps."""
    torch.manual_seed(0)
    model = TokenTransformer(SMALL)
    opt = torch.optim.Adam(model.parameters(), 3e-3)

    def batch(n: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        actions = torch.randint(0, 3, (n, 3), generator=g)
        first = torch.randint(0, SMALL.codes, (n, 1, SMALL.tokens_per_frame), generator=g)
        shifts = torch.cat([torch.zeros(n, 1, dtype=torch.long), actions.cumsum(1)], 1)
        tokens = (first + shifts[:, :, None]) % SMALL.codes
        return tokens, actions, (actions == 1).float(), (tokens[:, 1:, 0] == 0).float()

    g = torch.Generator().manual_seed(0)
    for _ in range(400):
        tokens, actions, reward, end = batch(64, g)
        out = model(tokens, actions)
        loss = (
            F_ce(out["logits"], tokens[:, 1:])
            + (out["reward"] - reward).pow(2).mean()
            + torch.nn.functional.binary_cross_entropy_with_logits(out["end_logit"], end)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    tokens, actions, reward, end = batch(256, torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(tokens, actions)
        accuracy = (out["logits"].argmax(-1) == tokens[:, 1:]).float().mean()
        cache = model.observe(model.empty_cache(256), tokens[:, 0])
        frames = []
        for t in range(3):
            frame, _, _, cache = model.imagine(cache, actions[:, t], torch.zeros(256, 4), 0.0)
            frames.append(frame)
    assert accuracy > 0.97, accuracy
    assert (out["reward"] - reward).abs().max() < 0.1
    assert ((out["end_logit"] > 0).float() == end).float().mean() > 0.97
    imagined = torch.stack(frames, 1)
    assert (imagined == tokens[:, 1:]).all(-1).float().mean() > 0.9


def F_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits.flatten(0, 2), target.flatten())
