"""Agents in imagination: recipe parsing, and end to end on Pendulum (random data -> ensemble world
model -> dream env -> SAC trained only in the dream -> scored on the real Pendulum-v1)."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import rollouts

import worldflux  # noqa: F401  (registers the cards)
from worldflux.core.errors import ConfigError
from worldflux.data.collect import SB3Policy
from worldflux.dream.cards import load_cards
from worldflux.rl import (
    AgentRecipe,
    Evaluation,
    agent_eval,
    find_agent_recipe,
    read_agent_recipe,
    train_agent,
)
from worldflux.rl.behaviour import BehaviourSettings
from worldflux.rl.evaluate import real_env_episodes
from worldflux.rl.recipes import agents_dir
from worldflux.rl.replay import ReplaySettings
from worldflux.rl.train import EVAL_SEED, FINAL_SEED
from worldflux.training.run import train_run

#: the dream-trained agent must beat a random policy on the real Pendulum by this much return
#: (random: about -1,200 over 200 steps; a swing-up policy: -150 to -400)
PENDULUM_MARGIN = 400.0


def write_recipe(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


def test_shipped_recipes_parse() -> None:
    paths = sorted(agents_dir().glob("*.toml"))
    assert paths, "no agent recipes in agents/"
    cards = {c.id for c in load_cards().values()} | set(load_cards())
    for path in paths:
        recipe = read_agent_recipe(path)
        assert recipe.env in cards, (path.name, recipe.env)
    assert find_agent_recipe(paths[0].stem).name == paths[0].stem


def test_regularised_recipe_is_the_offline_dream_method() -> None:
    """agents/ppo-regularised-ensemble-walker.toml says `worldflux offline` uses its settings."""
    from worldflux.rl.offline import BEHAVIOUR, DREAM_SETTINGS, REGULARISED_PPO_SETTINGS

    recipe = find_agent_recipe("ppo-regularised-ensemble-walker")
    assert recipe.algorithm == "ppo" and recipe.n_envs == 16 and recipe.normalize
    assert recipe.dream == DREAM_SETTINGS
    # the shipped dream learned from the mixed dataset; the recipe clones the medium behaviour
    assert recipe.behaviour == dataclasses.replace(
        BEHAVIOUR, dataset="worldflux/walker2d/medium-v0"
    )
    assert recipe.hyperparameters == {**REGULARISED_PPO_SETTINGS, "gamma": 0.99}


BASE = 'env = "WorldFlux/Dreamer-Walker-v0"\nbudget = 1000\n'
BAD_RECIPES = [
    (BASE + 'algorithm = "ppp"\n', r"algorithm 'ppp'.*Did you mean 'ppo'"),
    (BASE + "n_env = 4\n", r"key of agent recipe.*'n_env'.*Did you mean 'n_envs'"),
    (BASE + "[evaluation]\nevry = 10\n", r"'evry'.*Did you mean 'every'"),
    ('env = "x"\n', "missing key 'budget'"),
    ('env = "x"\nbudget = -5\n', "budget: expected an integer >= 1"),
    (BASE + '[dream]\ntermination = "never"\n', "dream setting termination"),
    (BASE + "[behaviour]\nclone_step = 10\n", r"'clone_step'.*Did you mean 'clone_steps'"),
    (
        BASE + "[behaviour]\nregularise_steps = -1\n",
        r"recipe.toml: \[behaviour\] regularise_steps: expected an integer >= 0, got -1",
    ),
    (BASE + "[behaviour]\nlearning_rate = 0\n", r"learning_rate: expected a number > 0, got 0"),
    (BASE + "behaviour = 3\n", r"\[behaviour\] must be a table, got int 3"),
    (BASE + "[behaviour]\ndataset = 3\n", r"\[behaviour\] dataset: expected a Minari dataset id"),
    (
        BASE + '[dream]\nobservation = "latent"\n[behaviour]\nclone_steps = 10\n',
        "cannot feed a latent-observation policy",
    ),
    (
        BASE + "[replay]\nreal_fraction = 0.05\n",
        r"\[replay\] mixes dataset transitions.*expected algorithm one of \('sac', 'td3'\), got 'ppo'",
    ),
    (
        BASE + 'algorithm = "sac"\n[replay]\nreal_fraction = 1.0\n',
        r"recipe.toml: \[replay\] real_fraction: expected a number in \[0, 1\), got 1.0",
    ),
    (
        BASE + 'algorithm = "sac"\n[replay]\ndataset = "a/b-v0"\n',
        r"\[replay\] dataset is set but real_fraction is not",
    ),
    (BASE + "[replay]\nreal_fractions = 0.1\n", r"'real_fractions'.*Did you mean 'real_fraction'"),
    (BASE + '[evaluation]\nactions = "greedy"\n', r"evaluation.actions.*'greedy'"),
    (BASE + "policy_average = 1.0\n", r"policy_average.*expected a number in \[0, 1\), got 1.0"),
    (BASE + 'policy_average = "ema"\n', r"policy_average.*got 'ema'"),
    ("env = \n", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "message"), BAD_RECIPES)
def test_recipe_errors_are_clear(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read_agent_recipe(write_recipe(tmp_path, text))


def test_unknown_recipe_names_get_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"agent recipe 'no-such'"):
        find_agent_recipe("no-such")


@pytest.fixture(scope="module")
def pendulum_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An ensemble world model of Pendulum-v1 trained on 30k random-policy steps."""
    root = tmp_path_factory.mktemp("pendulum")
    mp = pytest.MonkeyPatch()
    mp.setenv("MINARI_DATASETS_PATH", str(root / "minari"))
    rollouts.write_random_dataset("test/pendulum/random-v0", "Pendulum-v1", 30_000)
    run = root / "run"
    train_run(
        run,
        model="ensemble:tiny",
        dataset="test/pendulum/random-v0",
        trainer={"steps": 1500, "batch_size": 256, "seq_len": 1, "lr": 1e-3, "eval_every": 500},
        progress=False,
        fidelity=False,
    )
    yield run
    mp.undo()


@pytest.mark.slow
def test_sac_trained_in_the_dream_beats_random_on_the_real_pendulum(
    pendulum_run: Path, tmp_path: Path
) -> None:
    recipe = AgentRecipe(
        name="pendulum-sac",
        env=str(pendulum_run),
        algorithm="sac",
        budget=6000,
        n_envs=1,
        seed=0,
        backend="onnx",
        normalize=False,
        dream={"horizon": 200},
        hyperparameters={
            "learning_rate": 1e-3,
            "learning_starts": 500,
            "batch_size": 128,
            "policy_kwargs": {"net_arch": [64, 64]},
        },
        evaluation=Evaluation(env="Pendulum-v1", every=3000, episodes=4, final_episodes=10),
    )
    summary = train_agent(recipe, tmp_path / "agent", progress=False)
    final = summary["final"]
    assert final["real"]["mean"] > final["random_real"]["mean"] + PENDULUM_MARGIN, final
    out = tmp_path / "agent"
    for name in (
        "agent.json",
        "model.zip",
        "reality_gap.md",
        "reality_gap.png",
        "logs/progress.csv",
    ):
        assert (out / name).is_file(), name
    assert [row["step"] for row in summary["evaluations"]] == [3000, 6000, 6000]
    assert "eval/real_return_mean" in (out / "logs" / "progress.csv").read_text()
    saved = json.loads((out / "agent.json").read_text())
    assert saved["final"]["real"]["returns"] == final["real"]["returns"]
    # the saved model scores the same on the real env when loaded back (without unpickling)
    again = agent_eval(out / "model.zip", "Pendulum-v1", episodes=10, seed=recipe.seed + 20_000)
    np.testing.assert_allclose(again["real"]["returns"], final["real"]["returns"], atol=1e-3)


def test_agent_cli_lists_and_checks_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    from worldflux.cli import DEMO_RECIPES, main

    assert main(["agent", "list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in DEMO_RECIPES)
    assert main(["agent", "train"]) == 2
    assert "expected a recipe name" in capsys.readouterr().err
    assert main(["agent", "eval", "--env", "Pendulum-v1"]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["agent", "train", "ppo-dreamer-walkr"]) == 2
    assert "Did you mean" in capsys.readouterr().err


def test_demo_runs_end_to_end_on_a_tiny_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The machinery of `worldflux demo` (the real run takes minutes): both recipes, the table
    and the plot."""
    import worldflux.cli as cli

    monkeypatch.setattr(cli, "DEMO_SEEDS", (0,))
    assert cli.main(["demo", "--budget", "2048", "--out", str(tmp_path), "--quiet"]) == 0
    table = (tmp_path / "demo.md").read_text()
    assert all(name in table for name in cli.DEMO_RECIPES)
    assert (tmp_path / "demo.png").is_file()
    for name in cli.DEMO_RECIPES:
        assert (tmp_path / f"{name}-seed0" / "reality_gap.png").is_file()


def test_agent_cli_flags_and_latent_policy_evaluation(
    pendulum_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`agent train` honours --budget, --seed and --out; `agent eval` scores a latent-observation
    policy through the dream it trained in, exactly as training's final evaluation did."""
    from worldflux.cli import main

    recipe = write_recipe(
        tmp_path,
        f"""
env = "{pendulum_run}"
algorithm = "ppo"
budget = 1_000_000
seed = 0
n_envs = 4
backend = "onnx"
normalize = false
[dream]
observation = "latent"
horizon = 50
[hyperparameters]
n_steps = 64
[evaluation]
env = "Pendulum-v1"
every = 0
episodes = 2
final_episodes = 3
""",
    )
    out = tmp_path / "latent-agent"
    args = ["agent", "train", str(recipe), "--budget", "256", "--seed", "7", "--out", str(out)]
    assert main([*args, "--quiet"]) == 0
    summary = json.loads((out / "agent.json").read_text())
    assert summary["recipe"]["budget"] == 256 and summary["recipe"]["seed"] == 7
    assert [row["step"] for row in summary["evaluations"]] == [256]
    capsys.readouterr()
    model = str(out / "model.zip")
    seed = str(7 + 20_000)  # the final evaluation's seeds
    assert main(["agent", "eval", "--model", model, "--env", "Pendulum-v1", "--episodes", "3",
                 "--seed", seed, "--dream", str(pendulum_run)]) == 0  # fmt: skip
    scored = json.loads(capsys.readouterr().out)
    final = summary["final"]
    np.testing.assert_allclose(scored["real"]["returns"], final["real"]["returns"], atol=1e-3)
    assert len(scored["dream"]["returns"]) == 3
    with pytest.raises(ConfigError, match="only be scored in the dream it trained in"):
        agent_eval(model, "Pendulum-v1", dream="WorldFlux/Ensemble-Walker-v0")


def test_on_policy_budget_rounds_to_whole_rollouts_and_logs_show_progress_lines(
    pendulum_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PPO takes whole rollouts: the budget is rounded up once and said so, so the progress
    count ends at its total; where stdout is not a terminal (a log file), progress comes as lines."""
    import worldflux.rl.train as train_module
    from worldflux.cli import main

    monkeypatch.setattr(train_module, "PROGRESS_EVERY_S", 0.0)
    recipe = write_recipe(
        tmp_path,
        f"""
env = "{pendulum_run}"
algorithm = "ppo"
budget = 200
n_envs = 4
backend = "onnx"
[dream]
horizon = 50
[hyperparameters]
n_steps = 32
[evaluation]
env = "Pendulum-v1"
every = 0
final_episodes = 2
""",
    )
    out = tmp_path / "rounded"
    assert main(["agent", "train", str(recipe), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "budget 200 dream steps, rounded up to 256" in printed
    assert "256/256 dream steps (100%)" in printed
    assert "/256 dream steps" in printed and "257/" not in printed
    summary = json.loads((out / "agent.json").read_text())
    assert [row["step"] for row in summary["evaluations"]] == [256]
    assert f"torch: {summary['torch_threads']} CPU threads" in printed


def test_listings_align_their_columns(capsys: pytest.CaptureFixture[str]) -> None:
    """`agent list` (long recipe names) and `collect --list-recipes` print aligned columns."""
    from worldflux.cli import main

    for args in (["agent", "list"], ["collect", "--list-recipes"]):
        assert main(args) == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) > 2
        second = {line.index(line.split()[1], len(line.split()[0])) for line in lines}
        assert len(second) == 1, lines


def test_mopo_style_sac_on_a_mixed_buffer_beats_random_on_the_real_pendulum(
    pendulum_run: Path, tmp_path: Path
) -> None:
    """MBPO/MOPO: 10-step branches from dataset states, penalised reward, a quarter of every
    batch from the dataset's own transitions."""
    recipe = AgentRecipe(
        name="pendulum-mopo",
        env=str(pendulum_run),
        algorithm="sac",
        budget=8 * 4000,
        n_envs=8,
        seed=0,
        backend="onnx",
        normalize=False,
        dream={"reset": "any", "horizon": 10, "penalty": 1.0},
        hyperparameters={
            "learning_rate": 1e-3,
            "learning_starts": 400,
            "batch_size": 128,
            "policy_kwargs": {"net_arch": [64, 64]},
        },
        replay=ReplaySettings(real_fraction=0.25),
        evaluation=Evaluation(env="Pendulum-v1", every=10_000, episodes=4, final_episodes=10),
    )
    summary = train_agent(recipe, tmp_path / "agent", progress=False)
    final = summary["final"]
    assert final["real"]["mean"] > final["random_real"]["mean"] + PENDULUM_MARGIN, final
    # the dream alone picks a checkpoint: the periodic ones and the final policy, scored on the
    # same dream episodes; selected.zip holds it, and its real score is that of the final episodes
    selection = summary["selection"]
    steps = [c["step"] for c in selection["candidates"]]
    assert steps == [10_000, 20_000, 30_000, 32_000]
    best = max(selection["candidates"], key=lambda c: c["dream"])
    assert (selection["step"], selection["dream"]) == (best["step"], best["dream"])
    # by the model's mean transitions (the ensemble samples Gaussian noise)
    assert selection["by"] == "mean dream return on the evaluation episodes"
    periodic = {e["step"]: e["dream_estimates"]["mean"] for e in summary["evaluations"][:-1]}
    assert all(periodic[c["step"]] == c["dream"] for c in selection["candidates"][:-1])
    probe = gym.make("Pendulum-v1")
    chosen = SB3Policy.from_file(tmp_path / "agent" / "selected.zip", probe)
    again = real_env_episodes("Pendulum-v1", chosen, 10, FINAL_SEED)
    assert again.mean == pytest.approx(selection["real"]["mean"], rel=1e-6)
    # every periodically evaluated policy is kept, for acting only, and acts as it was scored
    for evaluation in summary["evaluations"][:-1]:
        saved = tmp_path / "agent" / evaluation["policy"]
        assert saved.name == f"step-{evaluation['step']}.zip"
        with zipfile.ZipFile(saved) as archive:
            assert not [n for n in archive.namelist() if n.endswith("optimizer.pth")]
        kept = real_env_episodes("Pendulum-v1", SB3Policy.from_file(saved, probe), 4, EVAL_SEED)
        assert kept.mean == pytest.approx(evaluation["real"]["mean"], rel=1e-6)
    # offline policy selection: the mean-transition and pessimistic estimates beside the raw
    # dream return; the penalty changes rewards only, so the same seeds give the raw return less
    # the uncertainty
    scored = summary["evaluations"][-1]
    assert set(scored["dream_estimates"]) == {"mean", "penalised", "halted"}
    assert scored["dream_estimates"]["penalised"] < scored["dream"]["mean"]
    assert summary["replay"] == {
        "dataset": "test/pendulum/random-v0",
        "transitions": 30_000,
        "real_fraction": 0.25,
    }


def test_return_estimates_ignore_the_agents_training_noise_scale(pendulum_run: Path) -> None:
    """An agent trained in the model's mean transitions is still scored on one scale with the
    others: the raw estimate samples the model's noise, the mean estimate does not."""
    from worldflux.dream.make import load_simulator
    from worldflux.rl.train import _Scorer

    recipe = AgentRecipe(
        name="mean-trained",
        env=str(pendulum_run),
        algorithm="sac",
        budget=1000,
        dream={"reset": "any", "horizon": 5, "penalty": 2.0, "noise_scale": 0.0},
    )
    scorer = _Scorer(recipe, load_simulator(str(pendulum_run)), "Pendulum-v1")
    raw = scorer.estimates[""]
    assert (raw["noise_scale"], raw["penalty"], raw["reset"], raw["horizon"]) == (
        1.0, 0.0, "start", 200
    )  # fmt: skip
    assert scorer.estimates["mean"]["noise_scale"] == 0.0
    scorer.close()


def test_replay_uses_the_named_dataset_and_refuses_custom_buffers(
    pendulum_run: Path, tmp_path: Path
) -> None:
    def recipe(replay: ReplaySettings, **hyperparameters: Any) -> AgentRecipe:
        return AgentRecipe(
            name="pendulum-replay",
            env=str(pendulum_run),
            algorithm="sac",
            budget=64,
            n_envs=8,
            backend="onnx",
            normalize=False,
            dream={"reset": "any", "horizon": 5},
            hyperparameters={"learning_starts": 32, "batch_size": 16, **hyperparameters},
            replay=replay,
            evaluation=Evaluation(env="Pendulum-v1", every=0, episodes=1, final_episodes=1),
        )

    rollouts.write_random_dataset("test/pendulum/replay-other-v0", "Pendulum-v1", 500, n_envs=2)
    other = ReplaySettings(real_fraction=0.5, dataset="test/pendulum/replay-other-v0")
    summary = train_agent(recipe(other), tmp_path / "other", progress=False)
    assert summary["replay"] == {
        "dataset": "test/pendulum/replay-other-v0",
        "transitions": 500,
        "real_fraction": 0.5,
    }
    for key, value in (("optimize_memory_usage", True), ("replay_buffer_kwargs", {"a": 1})):
        with pytest.raises(ConfigError, match=f"set {key}; expected none of"):
            recipe(other, **{key: value})


def test_behaviour_warm_start_and_regularisation_run_in_training(
    pendulum_run: Path, tmp_path: Path
) -> None:
    recipe = AgentRecipe(
        name="pendulum-ppo-behaviour",
        env=str(pendulum_run),
        budget=512,
        n_envs=4,
        backend="onnx",
        dream={"horizon": 50},
        hyperparameters={"n_steps": 64, "batch_size": 64},
        behaviour=BehaviourSettings(clone_steps=300, regularise_steps=3),
        evaluation=Evaluation(env="Pendulum-v1", every=0, episodes=2, final_episodes=2),
    )
    summary = train_agent(recipe, tmp_path / "agent", progress=False)
    behaviour = summary["behaviour"]
    assert behaviour["dataset"] == "test/pendulum/random-v0"
    assert behaviour["transitions"] == 30_000
    # random actions in [-2, 2] have variance 4/3: cloning their mean leaves about that much
    assert 0.9 < behaviour["clone_loss"] < 1.8
    log = (tmp_path / "agent" / "logs" / "progress.csv").read_text()
    assert "train/behaviour_loss" in log.splitlines()[0]


def test_training_does_not_depend_on_the_evaluation_schedule(
    pendulum_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Periodic evaluations leave the random streams of training alone: the same recipe and
    seed train the same agent whether it is scored along the way or not, even when an
    evaluation draws from the global generators."""
    import random

    import torch

    from worldflux.rl import train as train_module

    scored_real = train_module._Scorer.real

    def noisy_real(self: Any, *args: Any, **kwargs: Any) -> Any:
        random.random(), np.random.random(), torch.rand(1)
        return scored_real(self, *args, **kwargs)

    monkeypatch.setattr(train_module._Scorer, "real", noisy_real)

    def run(every: int) -> dict[str, Any]:
        recipe = AgentRecipe(
            name=f"pendulum-ppo-every{every}",
            env=str(pendulum_run),
            budget=768,
            n_envs=4,
            backend="onnx",
            dream={"horizon": 50},
            hyperparameters={"n_steps": 64, "batch_size": 64},
            evaluation=Evaluation(env="Pendulum-v1", every=every, episodes=2, final_episodes=3),
        )
        return train_agent(recipe, tmp_path / f"every{every}", progress=False)

    quiet, scored = run(0), run(256)
    assert len(scored["evaluations"]) == 4
    assert scored["final"]["real"]["returns"] == quiet["final"]["real"]["returns"]
    assert scored["final"]["dream"]["returns"] == quiet["final"]["dream"]["returns"]


def test_policy_average_is_scored_and_saved_without_changing_training(
    pendulum_run: Path, tmp_path: Path
) -> None:
    """The averaged actor is what the checkpoints and model.zip hold; the critics, trained by
    the same updates, come out bit for bit as without averaging."""
    import torch

    from worldflux.data.sb3_policy import load_sb3_policy

    def run(decay: float) -> tuple[dict[str, Any], Any, Any]:
        recipe = AgentRecipe(
            name=f"pendulum-average-{decay}",
            env=str(pendulum_run),
            algorithm="sac",
            budget=160,
            n_envs=8,
            backend="onnx",
            normalize=False,
            policy_average=decay,
            dream={"reset": "any", "horizon": 5},
            hyperparameters={"learning_starts": 32, "batch_size": 16},
            evaluation=Evaluation(env="Pendulum-v1", every=80, episodes=1, final_episodes=1),
        )
        out = tmp_path / f"decay-{decay}"
        summary = train_agent(recipe, out, progress=False)
        env = gym.make("Pendulum-v1")
        final = load_sb3_policy(out / "model.zip", env)
        first = load_sb3_policy(out / "checkpoints" / "step-80.zip", env)
        env.close()
        return summary, final, first

    plain, plain_final, plain_first = run(0.0)
    averaged, avg_final, avg_first = run(0.9)
    assert plain["policy_average"] is None
    assert averaged["policy_average"] == {"decay": 0.9, "updates": 20}  # one per vector step
    for ours, theirs in zip(
        avg_final.critic.parameters(), plain_final.critic.parameters(), strict=True
    ):
        assert torch.equal(ours, theirs)
    for ours, theirs in ((avg_final, plain_final), (avg_first, plain_first)):
        differ = [not torch.equal(a, b) for a, b in zip(
            ours.actor.parameters(), theirs.actor.parameters(), strict=True)]  # fmt: skip
        assert any(differ)


def test_td3_warm_start_moves_the_target_actor_too(pendulum_run: Path) -> None:
    import stable_baselines3 as sb3
    import torch

    from worldflux.dream.make import load_simulator, make_dream_env
    from worldflux.rl.train import _behaviour

    sim = load_simulator(pendulum_run)
    venv = make_dream_env(sim, num_envs=2, vectorization="sb3", backend="onnx", horizon=20)
    model = sb3.TD3("MlpPolicy", venv, seed=0, policy_kwargs={"net_arch": [32, 32]})
    settings = BehaviourSettings(clone_steps=20, regularise_steps=1, learning_rate=0.0123)
    recipe = AgentRecipe(env=str(pendulum_run), budget=1, behaviour=settings)
    before = [p.clone() for p in model.policy.actor.parameters()]
    _, regulariser = _behaviour(recipe, sim, model, venv)
    assert regulariser is not None
    assert regulariser.optimizer.param_groups[0]["lr"] == 0.0123
    actor, target = model.policy.actor, model.policy.actor_target
    assert any(not torch.equal(a, b) for a, b in zip(actor.parameters(), before, strict=True))
    for a, t in zip(actor.parameters(), target.parameters(), strict=True):
        assert torch.equal(a, t)
    # [behaviour] dataset replaces the dream's own dataset as the source of actions
    elsewhere = BehaviourSettings(clone_steps=1, dataset="test/pendulum/elsewhere-v0")
    with pytest.raises(FileNotFoundError, match="test/pendulum/elsewhere-v0"):
        _behaviour(
            AgentRecipe(env=str(pendulum_run), budget=1, behaviour=elsewhere), sim, model, venv
        )
    venv.close()


def test_agent_seeds_on_ray_match_the_serial_runs(
    pendulum_run: Path, tmp_path: Path, local_ray: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`agent train --seeds`: one run per seed and the returns over seeds in results.json; the
    same seeds give the same agents as parallel Ray tasks as one after another."""
    from worldflux.cli import main

    recipe = write_recipe(
        tmp_path,
        f"""
env = "{pendulum_run}"
algorithm = "ppo"
budget = 256
n_envs = 4
backend = "onnx"
[dream]
horizon = 50
[hyperparameters]
n_steps = 64
batch_size = 64
[evaluation]
env = "Pendulum-v1"
every = 0
final_episodes = 2
""",
    )
    runs = {}
    for name, flags in (("serial", []), ("ray", ["--ray", "--workers", "2"])):
        out = tmp_path / name
        argv = ["agent", "train", str(recipe), "--seeds", "3", "5", "--out", str(out), "--quiet"]
        assert main([*argv, *flags]) == 0
        runs[name] = json.loads((out / "results.json").read_text())
        assert json.loads((out / "seed5" / "agent.json").read_text())["recipe"]["seed"] == 5
    serial, parallel = runs["serial"], runs["ray"]
    assert [r["seed"] for r in parallel["runs"]] == [3, 5] and parallel["summary"]["seeds"] == 2
    assert parallel["sweep"]["launcher"] == "ray" and serial["sweep"] == {"launcher": "serial"}
    for key in ("real_return", "dream_return"):
        np.testing.assert_allclose(
            [r[key] for r in parallel["runs"]], [r[key] for r in serial["runs"]], rtol=1e-5
        )
    assert "| 5 |" in (tmp_path / "ray" / "results.md").read_text()
    capsys.readouterr()
    for flags, message in (
        (["--seeds", "1", "--seed", "2"], "expected --seed or --seeds, got both"),
        (["--ray"], "expected --seeds with them"),
        (["--seeds", "1", "--workers", "2"], "--workers: expected with --ray"),
    ):
        assert main(["agent", "train", str(recipe), *flags]) == 2
        assert message in capsys.readouterr().err


#: real Breakout cut at 200 steps: an untrained policy that never fires would play 27,000
SHORT_BREAKOUT = "WorldFluxTest/Breakout64-200-v0"


def image_dream(tmp_path: Path) -> Path:
    """An untrained tiny diffusion dream of 64 x 64 Breakout frames whose episodes end with
    probability about 0.12 per step; its real env is :data:`SHORT_BREAKOUT`."""
    import gymnasium as gym
    import torch
    from gymnasium import spaces

    import worldflux as wf
    from worldflux.dream import LearnedSimulator, ResetStates

    torch.manual_seed(0)
    model = wf.create_world_model("diffusion:tiny", obs_shape=(3, 64, 64), action_dim=4)
    head = model.end_net.mlp[-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-2.0)
    pool = np.random.default_rng(0).integers(0, 256, (4, 3, 64, 64), dtype=np.uint8)
    if SHORT_BREAKOUT not in gym.registry:
        gym.register(
            SHORT_BREAKOUT,
            entry_point="worldflux.envs.atari:AtariEnv",
            kwargs={"game": "Breakout"},
            max_episode_steps=200,
        )
    sim = LearnedSimulator(
        model=model.eval(),
        observation_space=spaces.Box(0, 255, (64, 64, 3), np.uint8),
        action_space=spaces.Discrete(4),
        reset_states=ResetStates(start=pool, any=pool),
        source_env=SHORT_BREAKOUT,
    )
    return sim.save_artifact(tmp_path / "art", onnx=False)


def test_ppo_in_an_image_dream_takes_a_cnn_policy_and_is_scored_on_the_real_game(
    tmp_path: Path,
) -> None:
    """Image observations get SB3's CnnPolicy (and refuse VecNormalize); the agent trains in
    the dream, is scored on the real game, and its saved model loads back without unpickling."""
    pytest.importorskip("ale_py")
    art = image_dream(tmp_path)
    recipe = AgentRecipe(
        name="breakout-ppo",
        env=str(art),
        algorithm="ppo",
        budget=64,
        n_envs=2,
        backend="torch",
        normalize=False,
        hyperparameters={"n_steps": 32, "batch_size": 32, "n_epochs": 1},
        evaluation=Evaluation(every=0, episodes=1, final_episodes=1),
    )
    summary = train_agent(recipe, tmp_path / "agent", progress=False)
    assert summary["final"]["real"]["lengths"][0] > 0
    assert 0 < summary["final"]["dream"]["lengths"][0] < 200
    saved = json.loads((tmp_path / "agent" / "agent.json").read_text())
    assert saved["final"]["real"]["returns"] == summary["final"]["real"]["returns"]
    again = agent_eval(tmp_path / "agent" / "model.zip", SHORT_BREAKOUT, episodes=1)
    assert 0 < again["real"]["lengths"][0] <= 200
    sampled = [  # drawn from the policy's distribution, reproducibly by seed
        agent_eval(
            tmp_path / "agent" / "model.zip", SHORT_BREAKOUT, episodes=1, seed=3, actions="sampled"
        )["real"]
        for _ in range(2)
    ]
    assert sampled[0] == sampled[1]
    with pytest.raises(ConfigError, match="actions.*'best'"):
        agent_eval(tmp_path / "agent" / "model.zip", SHORT_BREAKOUT, actions="best")
    with pytest.raises(ConfigError, match="image observations.*expected normalize=false"):
        train_agent(dataclasses.replace(recipe, normalize=True), tmp_path / "n", progress=False)
