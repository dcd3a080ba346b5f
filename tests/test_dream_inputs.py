"""Dream environments refuse bad input with errors that say what was expected and what came,
and never hand out a non-finite reward (hardening of every face: single, vector, SB3)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_dream import ACT_DIM, OBS_DIM, ensemble_sim, vector_sim

from worldflux.core.errors import ConfigError, ContractError
from worldflux.dream import DreamActionError, LearnedSimulator, make_dream_env
from worldflux.dream.core import DreamStateError


@pytest.fixture(scope="module")
def sim() -> LearnedSimulator:
    return vector_sim()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"penalty": float("nan")}, "penalty: expected a finite number, got nan"),
        ({"penalty": "abc"}, "penalty: expected a number, got 'abc'"),
        ({"halt": float("nan")}, "halt: expected a finite number > 0 or None, got nan"),
        ({"halt": float("inf")}, "halt: expected a finite number > 0 or None, got inf"),
        ({"continue_threshold": None}, "continue_threshold: expected a number, got None"),
        ({"horizon": 2.5}, r"horizon: expected an integer >= 1 or None, got 2.5"),
        ({"num_envs": 2.5}, r"num_envs: expected None or an integer >= 1, got 2.5"),
        ({"num_envs": True}, r"num_envs: expected None or an integer >= 1, got True"),
        ({"device": "cuda:x"}, "device: expected 'cpu', 'cuda' or 'cuda:N', got 'cuda:x'"),
        ({"device": 0}, "device: expected 'cpu', 'cuda' or 'cuda:N', got 0"),
    ],
)
def test_bad_settings_are_refused_when_the_env_is_made(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        make_dream_env(ensemble_sim(), **settings)


def test_bad_seeds_and_reset_options_are_refused_at_once(sim: LearnedSimulator) -> None:
    env = make_dream_env(sim)
    with pytest.raises(ConfigError, match="seed: expected None or an integer >= 0, got -1"):
        env.reset(seed=-1)
    with pytest.raises(ConfigError, match="reset options: expected a dict .* got list"):
        env.reset(options=[("obs", np.zeros(OBS_DIM))])  # type: ignore[arg-type]
    venv = make_dream_env(sim, num_envs=2)
    with pytest.raises(ConfigError, match="got -3"):
        venv.reset(seed=[1, -3])
    sb3 = make_dream_env(sim, num_envs=2, vectorization="sb3")
    with pytest.raises(ConfigError, match="seed: expected None or an integer >= 0, got -1"):
        sb3.seed(-1)  # refused here, not at the next reset


def test_reset_observations_far_from_the_data_are_refused(sim: LearnedSimulator) -> None:
    env = make_dream_env(sim)
    seen = np.concatenate([sim.reset_states.start, sim.reset_states.any])
    inside = seen.max(0) + 0.5 * (seen.max(0) - seen.min(0))  # beyond the data, but near it
    env.reset(seed=0, options={"obs": inside})
    with pytest.raises(ConfigError, match=r"dimensions \[0, 1, 2, 3, 4\] lie far outside"):
        env.reset(seed=0, options={"obs": np.full(OBS_DIM, 1e18)})
    with pytest.raises(ConfigError, match="expected real numbers, got dtype complex128"):
        env.reset(seed=0, options={"obs": np.zeros(OBS_DIM, complex)})


def test_actions_must_be_real_numbers_and_huge_ones_are_clipped_like_large_ones(
    sim: LearnedSimulator,
) -> None:
    env = make_dream_env(sim)
    for bad in (np.zeros(ACT_DIM, complex), np.zeros(ACT_DIM, bool), np.array([None] * ACT_DIM)):
        env.reset(seed=0)
        with pytest.raises(DreamActionError, match=f"got dtype {bad.dtype}"):
            env.step(bad)
    steps = []
    for action in (np.full(ACT_DIM, 1e300), np.full(ACT_DIM, 1e30), np.ones(ACT_DIM)):
        env.reset(seed=3)
        steps.append(env.step(action)[0])
    np.testing.assert_array_equal(steps[0], steps[2])  # clipped to the Box, as documented
    np.testing.assert_array_equal(steps[1], steps[2])


def test_stepping_an_ended_episode_without_reset_is_refused() -> None:
    sim = vector_sim(horizon=2)
    env = make_dream_env(sim, termination="threshold", continue_threshold=1e-6)
    env.reset(seed=0)
    env.step(np.zeros(ACT_DIM))
    assert env.step(np.zeros(ACT_DIM))[3]  # truncated at the horizon
    with pytest.raises(ContractError, match="after the episode ended"):
        env.step(np.zeros(ACT_DIM))
    env.reset(seed=1)
    env.step(np.zeros(ACT_DIM))  # a reset starts over
    venv = make_dream_env(
        sim, num_envs=2, autoreset_mode="Disabled", termination="threshold", continue_threshold=1e-6
    )
    venv.reset(seed=0)
    venv.step(np.zeros((2, ACT_DIM)))
    venv.step(np.zeros((2, ACT_DIM)))
    with pytest.raises(ContractError, match=r"environments \[0, 1\] ended and not reset"):
        venv.step(np.zeros((2, ACT_DIM)))
    venv.reset(options={"reset_mask": np.array([True, True])})
    venv.step(np.zeros((2, ACT_DIM)))


def test_a_penalty_that_overflows_stops_the_dream_instead_of_a_nan_reward() -> None:
    env = make_dream_env(ensemble_sim(), penalty=1e300)
    env.reset(seed=0)
    with pytest.raises(DreamStateError, match="penalised reward is not finite"):
        env.step(np.zeros(ACT_DIM))
