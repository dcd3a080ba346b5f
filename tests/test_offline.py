"""Offline RL baselines and the `worldflux offline` pipeline on tiny datasets."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import rollouts
import synthetic_envs

from worldflux.core.errors import ConfigError
from worldflux.data.collect import RandomPolicy, rollout_episodes
from worldflux.data.episodes import EpisodeStore
from worldflux.data.spaces import action_layout, observation_layout
from worldflux.rl.baselines import (
    Checkpoints,
    Transitions,
    behaviour_cloning,
    iql,
    return_range_scale,
    td3_bc,
)
from worldflux.rl.behaviour import BehaviourSettings
from worldflux.rl.evaluate import real_env_episodes
from worldflux.rl.offline import offline_run
from worldflux.sweep import Sweep

K = np.array([[-0.8, 0.3], [0.2, -0.6]], dtype=np.float32)


def feedback_policy(obs: np.ndarray) -> np.ndarray:
    """A fixed linear feedback controller for WFTest/Linear-v0 (the behaviour policy)."""
    return np.clip(obs @ K.T + np.array([0.3, -0.2], np.float32), -1.0, 1.0).astype(np.float32)


@pytest.fixture(scope="module")
def linear_data() -> tuple[Transitions, gym.spaces.Box]:
    synthetic_envs.register()
    env = gym.make("WFTest/Linear-v0")
    episodes = rollout_episodes(
        "WFTest/Linear-v0", feedback_policy, steps=4000, n_envs=4, seed=0, progress=False
    )
    store = EpisodeStore.from_episodes(
        episodes, observation_layout(env.observation_space), action_layout(env.action_space)
    )
    assert isinstance(env.action_space, gym.spaces.Box)
    return Transitions.from_store(store, env.action_space), env.action_space


def test_behaviour_cloning_recovers_the_behaviour_policy(
    linear_data: tuple[Transitions, gym.spaces.Box],
) -> None:
    data, space = linear_data
    seen: list[tuple[int, np.ndarray]] = []
    probe_obs = np.zeros((1, 2), np.float32)
    checkpoints = Checkpoints(500, lambda done, pi: seen.append((done, pi(probe_obs))))
    policy = behaviour_cloning(
        data, space, steps=1500, seed=0, progress=False, checkpoints=checkpoints
    )
    assert [done for done, _ in seen] == [500, 1000]  # the final policy is the one returned
    assert not np.array_equal(seen[0][1], policy(probe_obs))  # copies, not the live network
    probe = np.random.default_rng(1).uniform(-0.8, 0.8, (256, 2)).astype(np.float32)
    error = np.sqrt(np.mean((policy(probe) - feedback_policy(probe)) ** 2))
    assert error < 0.05, error  # actions live in [-1, 1]
    cloned = real_env_episodes("WFTest/Linear-v0", policy, 8, seed=7)
    original = real_env_episodes("WFTest/Linear-v0", feedback_policy, 8, seed=7)
    assert abs(cloned.mean - original.mean) < 0.1 * abs(original.mean) + 0.5


def test_td3_bc_runs_and_acts_in_bounds(linear_data: tuple[Transitions, gym.spaces.Box]) -> None:
    data, space = linear_data
    policy = td3_bc(data, space, steps=300, seed=0, progress=False)
    actions = policy(np.zeros((5, 2), np.float32))
    assert actions.shape == (5, 2) and np.all(np.abs(actions) <= 1.0)
    with pytest.raises(ConfigError, match="Box"):
        Transitions.from_store(EpisodeStore.__new__(EpisodeStore), gym.spaces.Discrete(3))


def test_iql_improves_on_random_data() -> None:
    """Uniform random actions on WFTest/Linear-v0 return about 0 (cloning them gives about 0 too);
    the reward favours a = (1, -1) unless that runs x[0] out of bounds, which IQL's advantage
    weighting finds from the same data (about 21 after 1,000 updates)."""
    synthetic_envs.register()
    env = gym.make("WFTest/Linear-v0")
    assert isinstance(env.action_space, gym.spaces.Box)
    episodes = rollout_episodes(
        "WFTest/Linear-v0", RandomPolicy(env.action_space, 0), steps=4000, seed=0, progress=False
    )
    store = EpisodeStore.from_episodes(
        episodes, observation_layout(env.observation_space), action_layout(env.action_space)
    )
    data = Transitions.from_store(store, env.action_space)
    assert abs(float(store.episode_returns().mean())) < 1.0
    policy = iql(
        data,
        env.action_space,
        steps=1000,
        hidden=64,
        reward_scale=return_range_scale(store),
        seed=0,
        progress=False,
    )
    assert real_env_episodes("WFTest/Linear-v0", policy, 16, seed=7).mean > 10.0


def test_offline_pipeline_writes_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    rollouts.write_random_dataset("test/pendulum/offline-v0", "Pendulum-v1", 3000, n_envs=4)
    rollouts.write_random_dataset("test/pendulum/other-v0", "Pendulum-v1", 400, n_envs=2)
    results = offline_run(
        "test/pendulum/offline-v0",
        tmp_path / "out",
        methods=("dream", "dream-pure", "mopo-sac", "bc", "td3bc", "iql"),
        seeds=(0,),
        model="ensemble:tiny",
        model_steps=200,
        agent_steps=1024,
        gradient_steps=100,
        episodes=2,
        checkpoints=1,
        behaviour=BehaviourSettings(clone_steps=50, regularise_steps=2),
        progress=False,
    )
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["env"] == "Pendulum-v1" and saved["reference"]["source"].startswith("random")
    assert saved["random_return_source"] == "measured (20 episodes)"  # none recorded
    methods = ["dream", "dream-pure", "mopo-sac", "bc", "td3bc", "iql"]
    assert [r["method"] for r in saved["runs"]] == methods and list(results["summary"]) == methods
    for row in saved["runs"]:
        assert np.isfinite(row["real_return"]) and np.isfinite(row["normalised"])
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| td3bc | 1 |" in table  # the summary over seeds
    assert f"| td3bc | 0 | {saved['runs'][4]['real_return']:.1f} ± " in table  # each seed
    agent = json.loads((tmp_path / "out" / "dream-seed0" / "agent.json").read_text())
    assert len(agent["evaluations"]) == 2  # one checkpoint, then the final evaluation
    # offline policy selection: every scored policy of every method (baselines' checkpoints
    # scored in the same dream), dream vs real
    policies = saved["selection"]["policies"]
    assert [p["method"] for p in policies] == [m for m in methods for _ in range(2)]
    assert all(a["step"] < b["step"] for a, b in zip(policies[::2], policies[1::2], strict=True))
    assert [p["step"] for p in policies[6:8]] == [51, 100]  # bc: gradient updates
    assert [p["real"] for p in policies[1::2]] == [r["real_return"] for r in saved["runs"]]
    assert all(np.isfinite(p["dream"]) for p in policies)
    # the other estimates, on one scale for every method (the same seeds: the penalty changes
    # rewards only, so each policy's penalised return is below its raw one)
    names = {"mean", "penalised", "halted"}
    assert all(set(p["dream_estimates"]) == names for p in policies)
    assert all(p["dream_estimates"]["penalised"] < p["dream"] for p in policies)
    assert set(saved["selection"]["spearman_estimates"]) == names
    assert "Offline policy selection" in (tmp_path / "out" / "results.md").read_text()
    assert "; penalised dream return " in (tmp_path / "out" / "results.md").read_text()
    # each dream agent's dream-selected policy (its checkpoint or the final one), in the rows
    for row in saved["runs"][:3]:
        chosen = json.loads(
            (tmp_path / "out" / f"{row['method']}-seed0" / "agent.json").read_text()
        )
        assert row["selected"]["step"] == chosen["selection"]["step"]
        assert row["selected"]["real_return"] == chosen["selection"]["real"]["mean"]
        assert saved["summary"][row["method"]]["selected_mean"] == row["selected"]["real_return"]
    assert all("selected" not in row for row in saved["runs"][3:])  # baselines: none
    assert (
        "Dream-selected policies" in table
        and f"(step {saved['runs'][0]['selected']['step']:,})" in table
    )
    assert agent["recipe"]["behaviour"]["clone_steps"] == 50 and agent["behaviour"]["clone_loss"]
    pure = json.loads((tmp_path / "out" / "dream-pure-seed0" / "agent.json").read_text())
    assert pure["behaviour"] is None
    mopo = json.loads((tmp_path / "out" / "mopo-sac-seed0" / "agent.json").read_text())
    assert mopo["replay"] == {
        "dataset": "test/pendulum/offline-v0",
        "transitions": 3000,
        "real_fraction": 0.05,
    }
    assert mopo["recipe"]["algorithm"] == "sac" and mopo["recipe"]["dream"]["reset"] == "any"
    assert mopo["recipe"]["budget"] == 250 + 100 * 50  # learning starts + one update per step
    assert saved["settings"]["real_fraction"] == 0.05
    with pytest.raises(ConfigError, match=r"real_fraction: expected a number in \[0, 1\), got 1.0"):
        offline_run("test/pendulum/offline-v0", tmp_path / "z", real_fraction=1.0)
    with pytest.raises(ConfigError, match=r"policy_average: expected a decay in \[0, 1\), got 1"):
        offline_run("test/pendulum/offline-v0", tmp_path / "z", policy_average=1)
    with pytest.raises(ConfigError, match=r"expected one of them in methods, got \['bc'\]"):
        offline_run("test/pendulum/offline-v0", tmp_path / "z", methods=("bc",), policy_average=0.9)
    with pytest.raises(ConfigError, match="expected a world model of test/pendulum/other-v0"):
        offline_run("test/pendulum/other-v0", tmp_path / "y", model_run=tmp_path / "out" / "model")
    # planning with the ensemble run: within Pendulum's bounds, its uncertainty penalised
    from worldflux.rl.plan import plan_eval

    planned = plan_eval(
        tmp_path / "out" / "model", planner="cem", episodes=1, horizon=2, num_samples=8,
        iterations=1,
    )  # fmt: skip
    assert planned["env"] == "Pendulum-v1" and planned["settings"]["uncertainty_penalty"] == 1.0
    assert planned["settings"]["num_elites"] == 8 and np.isfinite(planned["real"]["mean"])
    with pytest.raises(ConfigError, match="no policy prior"):
        plan_eval(tmp_path / "out" / "model", planner="prior", episodes=1)
    # the mppi method plans with the same world model (reused, not retrained)
    import worldflux.rl.offline as offline

    small = {**offline.ENSEMBLE_PLANNING, "num_samples": 16, "num_elites": 4, "iterations": 1}
    monkeypatch.setattr(offline, "ENSEMBLE_PLANNING", small)
    planned_run = offline_run(
        "test/pendulum/offline-v0", tmp_path / "mpc", methods=("mppi",), episodes=1,
        model_run=tmp_path / "out" / "model", progress=False,
    )  # fmt: skip
    assert [r["method"] for r in planned_run["runs"]] == ["mppi"]
    assert np.isfinite(planned_run["runs"][0]["real_return"])
    assert not (tmp_path / "mpc" / "model").exists()
    # the command line: flags reach the run
    from worldflux.cli import main

    out = tmp_path / "cli"
    assert main(["offline", "test/pendulum/offline-v0", "--out", str(out), "--methods", "bc",
                 "--seeds", "3", "4", "--gradient-steps", "20", "--episodes", "3", "--checkpoints", "2",
                 "--quiet"]) == 0  # fmt: skip
    cli = json.loads((out / "results.json").read_text())
    assert [(r["method"], r["seed"]) for r in cli["runs"]] == [("bc", 3), ("bc", 4)]
    assert cli["summary"]["bc"]["seeds"] == 2
    assert cli["settings"]["gradient_steps"] == 20 and cli["settings"]["episodes"] == 3
    assert cli["settings"]["checkpoints"] == 2 and "selection" not in cli  # no world model
    with pytest.raises(ConfigError, match="offline method 'cql'"):
        offline_run("test/pendulum/offline-v0", tmp_path / "x", methods=("cql",))


def test_offline_cli_defaults_to_the_default_methods(monkeypatch: pytest.MonkeyPatch) -> None:
    import worldflux.rl.offline as offline
    from worldflux.cli import main

    seen: dict[str, object] = {}

    class Stop(Exception):
        pass

    def capture(dataset_id: str, out: str, **kwargs: object) -> None:
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(offline, "offline_run", capture)
    with pytest.raises(Stop):
        main(["offline", "some/dataset-v0"])
    assert seen["methods"] == offline.DEFAULT_METHODS == ("dream", "bc", "td3bc")
    assert seen["tdmpc2_model"] == "tdmpc2:1m"
    assert seen["resume"] is False and seen["sweep"] == Sweep()
    assert "real_fraction" not in seen  # offline_run's default, MOPO_REAL_FRACTION
    with pytest.raises(Stop):
        main(["offline", "some/dataset-v0", "--tdmpc2-model", "tdmpc2:5m", "--resume", "--ray",
              "--workers", "3", "--retries", "2", "--job-threads", "2"])  # fmt: skip
    assert seen["tdmpc2_model"] == "tdmpc2:5m" and seen["resume"] is True
    assert seen["sweep"] == Sweep(ray=True, workers=3, retries=2, threads=2)
    with pytest.raises(Stop):
        main(["offline", "some/dataset-v0", "--methods", "mopo-sac", "--real-fraction", "0.5"])
    assert seen["real_fraction"] == 0.5 and "policy_average" not in seen
    with pytest.raises(Stop):
        main(["offline", "some/dataset-v0", "--methods", "mopo-sac", "--policy-average", "0.999"])
    assert seen["policy_average"] == 0.999
    # ... which the mopo-* recipes mix into every batch, and average their actor by
    recipe = offline.dream_recipe(
        "mopo-sac", 0, "some/run", "Walker2d-v5", 0, 1000, 5, offline.BEHAVIOUR,
        real_fraction=0.5, policy_average=0.999,
    )  # fmt: skip
    assert recipe.replay.real_fraction == 0.5 and recipe.policy_average == 0.999
    default = offline.dream_recipe(
        "mopo-td3", 0, "some/run", "Walker2d-v5", 0, 1000, 5, offline.BEHAVIOUR
    )
    assert default.replay.real_fraction == offline.MOPO_REAL_FRACTION == 0.05
    assert default.policy_average == 0.0


def test_offline_jobs_hand_the_policy_average_to_the_mopo_agents(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from worldflux.rl import offline

    class Stop(Exception):
        pass

    trained: list[object] = []

    def capture(recipe: object, out: object, **kwargs: object) -> None:
        trained.append(recipe)
        raise Stop

    monkeypatch.setattr(offline, "train_agent", capture)
    with pytest.raises(Stop):
        offline.offline_job(
            methods=("mopo-sac",), seed=0, dataset_id="some/dataset-v0", folder=str(tmp_path),
            model_run="some/run", env_id="Walker2d-v5", action_space=None,
            tdmpc2_model="tdmpc2:1m", agent_steps=0, gradient_steps=100, episodes=1,
            checkpoints=0, real_fraction=0.05, policy_average=0.999,
            behaviour=offline.BEHAVIOUR, progress=False,
        )  # fmt: skip
    assert [r.policy_average for r in trained] == [0.999]  # type: ignore[attr-defined]


def test_plan_cli_flags_reach_plan_eval(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import worldflux.rl.plan as plan
    from worldflux.cli import main

    seen: dict[str, object] = {}

    def capture(source: str, **kwargs: object) -> dict[str, object]:
        seen.update(kwargs, source=source)
        return {"ok": True}

    monkeypatch.setattr(plan, "plan_eval", capture)
    argv = ["plan", "runs/x", "--planner", "cem", "--env", "Hopper-v5", "--episodes", "3"]
    argv += ["--seed", "7", "--horizon", "4", "--samples", "32", "--iterations", "2"]
    assert main([*argv, "--uncertainty-penalty", "0.5", "--search", "open", "--goal"]) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True}
    assert seen == {
        "source": "runs/x", "planner": "cem", "env_id": "Hopper-v5", "episodes": 3, "seed": 7,
        "horizon": 4, "num_samples": 32, "iterations": 2, "uncertainty_penalty": 0.5,
        "search": "open", "goal": True,
    }  # fmt: skip
    monkeypatch.undo()  # the real plan_eval checks its arguments before loading anything
    with pytest.raises(ConfigError, match="search: expected 'local' or 'open'"):
        plan.plan_eval("runs/x", search="wide")


def test_the_random_reference_is_the_datasets_recorded_one() -> None:
    from worldflux.rl.offline import _random_reference

    meta = {"worldflux": {"random_return": {"mean": 49.3, "std": 5.0, "episodes": 20}}}
    space = gym.spaces.Box(-1.0, 1.0, (1,))
    assert _random_reference("Pendulum-v1", space, meta) == (49.3, "dataset (20 episodes)")


def test_tdmpc2_methods_train_one_model_and_score_prior_and_planner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``tdmpc2`` and ``tdmpc2-mppi`` share the seed's model (trained once, reused), and score on
    the real env; a dataset whose actions are not Box(-1, 1) is refused before any training."""
    import worldflux.rl.offline as offline

    synthetic_envs.register()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    small = {"num_samples": 16, "num_prior_samples": 4, "num_elites": 4, "iterations": 1}
    monkeypatch.setattr(offline, "TDMPC2_OFFLINE_PLANNING", small)
    rollouts.write_random_dataset("test/linear/offline-v0", "WFTest/Linear-v0", 600, n_envs=4)
    results = offline_run(
        "test/linear/offline-v0",
        tmp_path / "out",
        methods=("tdmpc2", "tdmpc2-mppi"),
        tdmpc2_model="tdmpc2:tiny",
        gradient_steps=30,
        episodes=2,
        progress=False,
    )
    assert [r["method"] for r in results["runs"]] == ["tdmpc2", "tdmpc2-mppi"]
    assert all(np.isfinite(r["real_return"]) for r in results["runs"])
    run = tmp_path / "out" / "tdmpc2-seed0"
    spec = json.loads((run / "run.json").read_text())
    assert spec["model"] == "tdmpc2:tiny" and spec["trainer"]["steps"] == 30
    assert spec["trainer"]["seq_len"] == 3
    assert results["settings"]["tdmpc2_model"] == "tdmpc2:tiny"
    # worldflux plan on the same run: the prior alone, and TD-MPC2's MPPI with small settings
    from worldflux.cli import main
    from worldflux.rl.train import FINAL_SEED  # the seed of the offline runs' final scores

    assert (
        main(["plan", str(run), "--planner", "prior", "--episodes", "2", "--seed", str(FINAL_SEED)])
        == 0
    )
    shown = json.loads(capsys.readouterr().out)
    assert shown["model"] == "tdmpc2" and shown["env"] == "WFTest/Linear-v0"
    assert shown["real"]["mean"] == pytest.approx(results["runs"][0]["real_return"], rel=0, abs=0)
    argv = ["plan", str(run), "--samples", "8", "--iterations", "1", "--horizon", "2"]
    assert main([*argv, "--episodes", "1"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["planner"] == "mppi (TD-MPC2)" and shown["settings"]["horizon"] == 2
    assert shown["settings"]["centre_on_prior"] is True  # the local search by default
    assert main([*argv, "--episodes", "1", "--search", "open"]) == 0
    assert "centre_on_prior" not in json.loads(capsys.readouterr().out)["settings"]
    rollouts.write_random_dataset("test/pendulum/wide-v0", "Pendulum-v1", 200, n_envs=2)
    with pytest.raises(ConfigError, match=r"Box\(-1, 1\) actions"):
        offline_run("test/pendulum/wide-v0", tmp_path / "wide", methods=("tdmpc2",))
    assert not (tmp_path / "wide" / "tdmpc2-seed0").exists()
