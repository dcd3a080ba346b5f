"""State, Batch and the other payloads: validation errors name key, expected and given."""

from __future__ import annotations

import pytest
import torch

import worldflux as wf
from worldflux.core import ContractError


def test_state_missing_key_names_key_and_present_keys() -> None:
    state = wf.State({"stoch": torch.zeros(2, 4)})
    with pytest.raises(ContractError, match=r"missing key\(s\) \['deter'\].*got \['stoch'\]"):
        state.require({"deter": (8,), "stoch": (4,)})
    with pytest.raises(ContractError, match="missing key 'deter'"):
        state["deter"]


def test_state_shape_error_names_expected_and_given() -> None:
    state = wf.State({"deter": torch.zeros(2, 7)})
    with pytest.raises(ContractError, match=r"deter: expected shape \[B=2, 8\], got \[2, 7\]"):
        state.require({"deter": (8,)})


def test_state_rejects_mixed_batch_sizes_and_non_tensors() -> None:
    with pytest.raises(ContractError, match="share the batch size"):
        wf.State({"a": torch.zeros(2, 3), "b": torch.zeros(3, 3)})
    with pytest.raises(ContractError, match="expected a torch.Tensor, got list"):
        wf.State({"a": [1, 2]})  # type: ignore[dict-item]


def test_state_stack_index_cat() -> None:
    s = wf.State({"z": torch.arange(6.0).reshape(3, 2)})
    stacked = wf.State.stack([s, s])
    assert stacked["z"].shape == (2, 3, 2)
    assert torch.equal(s.index(1)["z"], torch.tensor([[2.0, 3.0]]))
    assert wf.State.cat([s, s]).batch_size == 6


def _batch(**changes: torch.Tensor) -> wf.Batch:
    fields = {
        "obs": torch.zeros(4, 6, 3),
        "actions": torch.zeros(4, 5, 2),
        "rewards": torch.zeros(4, 5),
        "terminations": torch.zeros(4, 5, dtype=torch.bool),
        "truncations": torch.zeros(4, 5, dtype=torch.bool),
    }
    fields.update(changes)
    return wf.Batch(**fields)


def test_batch_actions_without_action_dim_is_rejected() -> None:
    with pytest.raises(
        ContractError, match=r"Batch.actions: expected shape \[B, T, A\], got \[4, 5\]"
    ):
        _batch(actions=torch.zeros(4, 5))


def test_batch_obs_must_have_one_more_step_than_actions() -> None:
    with pytest.raises(
        ContractError, match=r"Batch.obs: expected shape \[B=4, T\+1=6, \*\], got \[4, 5, 3\]"
    ):
        _batch(obs=torch.zeros(4, 5, 3))


def test_batch_rewards_and_flags_shapes_and_dtypes() -> None:
    with pytest.raises(ContractError, match=r"Batch.rewards: expected shape \[B=4, T=5\]"):
        _batch(rewards=torch.zeros(4, 6))
    with pytest.raises(
        ContractError,
        match="Batch.terminations: expected a bool or float tensor, got dtype torch.int64",
    ):
        _batch(terminations=torch.zeros(4, 5, dtype=torch.long))
    with pytest.raises(ContractError, match="Batch.actions: expected a floating-point tensor"):
        _batch(actions=torch.zeros(4, 5, 2, dtype=torch.long))


def test_batch_continue_target_ignores_truncations() -> None:
    term = torch.zeros(4, 5, dtype=torch.bool)
    term[0, 2] = True
    trunc = torch.zeros(4, 5, dtype=torch.bool)
    trunc[1, 4] = True
    b = _batch(terminations=term, truncations=trunc)
    expected = torch.ones(4, 5)
    expected[0, 2] = 0.0
    assert torch.equal(b.continues, expected)
    assert torch.equal(b.valid, torch.ones(4, 5))


def test_batch_validate_against_model_shapes() -> None:
    b = _batch()
    b.validate((3,), 2)
    with pytest.raises(ContractError, match=r"expected observation shape \[4\].*got \[3\]"):
        b.validate((4,), 2)
    with pytest.raises(ContractError, match=r"expected shape \[B, T, A=3\], got \[4, 5, 2\]"):
        b.validate((3,), 3)


def test_image_batches_may_be_uint8() -> None:
    b = _batch(obs=torch.zeros(4, 6, 3, 8, 8, dtype=torch.uint8))
    b.validate((3, 8, 8), 2)


def test_model_output_shapes_and_probability_check() -> None:
    out = wf.ModelOutput(
        {"obs": torch.zeros(2, 3), "reward": torch.zeros(2), "continue": torch.ones(2)}
    )
    assert out.validate().continue_prob.shape == (2,)
    with pytest.raises(
        ContractError, match=r"ModelOutput.reward: expected shape \[B=2\], got \[2, 1\]"
    ):
        wf.ModelOutput({"obs": torch.zeros(2, 3), "reward": torch.zeros(2, 1)})
    with pytest.raises(ContractError, match="logits instead of probabilities"):
        wf.ModelOutput({"continue": torch.tensor([3.0, -1.0])}).validate()
    with pytest.raises(ContractError, match="no 'reward' prediction"):
        _ = wf.ModelOutput({"obs": torch.zeros(2, 3)}).reward


def test_trajectory_is_time_major_and_checked() -> None:
    traj = wf.Trajectory(
        states=wf.State({"z": torch.zeros(4, 2, 5)}),
        actions=torch.zeros(3, 2, 1),
        predictions={"reward": torch.zeros(3, 2)},
    )
    assert (traj.horizon, traj.batch_size) == (3, 2)
    with pytest.raises(
        ContractError, match=r"states\['z'\]: expected shape \[T\+1=4, B=2, \*\], got \[3, 2, 5\]"
    ):
        wf.Trajectory(
            states=wf.State({"z": torch.zeros(3, 2, 5)}),
            actions=torch.zeros(3, 2, 1),
            predictions={},
        )


def test_loss_output_requires_scalar() -> None:
    with pytest.raises(
        ContractError, match=r"expected a 0-dim tensor, got Tensor with shape \[3\]"
    ):
        wf.LossOutput(torch.zeros(3))
    with pytest.raises(ContractError, match="components\\['kl'\\]"):
        wf.LossOutput(torch.zeros(()), {"kl": torch.zeros(2)})


def test_action_and_condition_payloads() -> None:
    with pytest.raises(
        ContractError, match=r"ActionPayload.tensor: expected shape \[B, A\], got \[5\]"
    ):
        wf.ActionPayload(torch.zeros(5))
    with pytest.raises(ContractError, match=r"expected shape \[B=2, A=3\], got \[2, 4\]"):
        wf.ActionPayload(torch.zeros(2, 4)).validate(3, 2)
    cond = wf.ConditionPayload({"goal": torch.zeros(2, 3)})
    with pytest.raises(ContractError, match="missing key 'task'"):
        cond["task"]
    with pytest.raises(ContractError, match="ConditionPayload.task"):
        wf.ConditionPayload({"goal": torch.zeros(2, 3), "task": torch.zeros(3, 1)})
    with pytest.raises(ContractError, match="WorldModelInput.obs: expected a torch.Tensor"):
        wf.WorldModelInput([1.0, 2.0])  # type: ignore[arg-type]
