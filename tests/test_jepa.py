"""The JEPA family: the contract without an observation decoder (vectors and images, history
windows), no collapse of the embedding while it learns, a predictor that beats copying the last
embedding, goal-reaching by planning in the embedding on the two rooms, persistence and the EMA
target."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import worldflux as wf
from worldflux.core import ConfigError, ContractError
from worldflux.data import EpisodeStore, MinariBatchProvider
from worldflux.data.spaces import ActionLayout, ObservationLayout
from worldflux.dream import LatentObservation, LearnedSimulator, ResetStates, make_dream_env
from worldflux.envs.two_rooms import TwoRoomsEnv
from worldflux.eval.fidelity import spearman
from worldflux.models import JEPAModel
from worldflux.planners import MPCPolicy, MPPIPlanner
from worldflux.training import Trainer, TrainerConfig


class WideEncoder(torch.nn.Module):
    """An override encoder whose output size (8) is not the preset's embed_dim (16)."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.net = torch.nn.Linear(int(config.obs_shape[0]), 8)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(obs.float())
        return out


def tiny(obs_shape: tuple[int, ...] = (2,), **overrides: Any) -> JEPAModel:
    torch.manual_seed(0)
    model = wf.create_world_model("jepa:tiny", obs_shape=obs_shape, action_dim=2, **overrides)
    assert isinstance(model, JEPAModel)
    return model


def random_walks(
    episodes: int, steps: int, seed: int, observation: Literal["state", "pixels"] = "state"
) -> list[dict[str, np.ndarray]]:
    """Goal-free random walks in the two rooms (positions, or frames with ``"pixels"``)."""
    env = TwoRoomsEnv(observation, task="explore")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed * 100_000 + i)
        observations, actions = [obs], []
        for _ in range(steps):
            action = rng.uniform(-1, 1, 2).astype(np.float32)
            observations.append(env.step(action)[0])
            actions.append(action)
        out.append(
            {
                "observations": np.stack(observations),
                "actions": np.stack(actions),
                "rewards": np.zeros(steps, np.float32),
                "terminations": np.zeros(steps, bool),
                "truncations": np.eye(steps, dtype=bool)[-1],
            }
        )
    return out


@pytest.fixture(scope="module")
def trained() -> tuple[JEPAModel, list[dict[str, float]]]:
    """``jepa:tiny`` trained by the Trainer (1,000 steps of 64 x 5) on 300 random walks of 50
    steps; also the validation history (every 250 steps)."""
    store = EpisodeStore.from_episodes(
        random_walks(300, 50, 0),
        ObservationLayout("vector", (2,)),
        ActionLayout("continuous", 2),
    )
    data = MinariBatchProvider.from_store(store, validation_fraction=0.2, seed=0)
    model = tiny()
    cfg = TrainerConfig(
        steps=1000,
        batch_size=64,
        seq_len=5,
        lr=1e-3,
        grad_clip=10.0,
        eval_every=250,
        eval_batches=2,
        checkpoint_every=0,
        log_every=250,
        seed=0,
    )
    trainer = Trainer(model, data, cfg, progress=False)
    trainer.fit()
    model.eval()
    return model, trainer.history


# -- the contract -----------------------------------------------------------------------------------
@pytest.mark.parametrize("obs_shape", [(2,), (1, 64, 64)], ids=["vector", "image"])
@pytest.mark.parametrize("history", [1, 3])
def test_contract_shapes_and_history_window(obs_shape: tuple[int, ...], history: int) -> None:
    model = tiny(obs_shape, history=history)
    assert not model.decodes_observations and model.latent_keys() == ("z",)
    if len(obs_shape) == 3:
        obs = torch.randint(0, 256, (4, *obs_shape), dtype=torch.uint8)
    else:
        obs = torch.randn(4, *obs_shape)
    state = model.encode(obs)
    assert state["z"].shape == (4, 16)
    nxt = model.transition(state, torch.zeros(4, 2))
    out = model.decode(nxt)
    assert out.reward.shape == (4,) and out.continue_prob.shape == (4,)
    assert (
        out.uncertainty is not None
        and out.uncertainty.shape == (4,)
        and "obs" not in out.predictions
    )
    if history > 1:
        assert nxt["past"].shape == (4, history - 1, 16)
        # three different observations in turn: the window holds them oldest first
        frames = [obs, obs.flip(0), torch.roll(obs, 1, 0)]
        z = [model.encode(f)["z"] for f in frames]
        window = model.update(
            model.update(state, torch.zeros(4, 2), frames[1]), torch.ones(4, 2), frames[2]
        )
        torch.testing.assert_close(window["z"], z[2])
        for k, past in enumerate(z[:2][-(history - 1) :]):
            torch.testing.assert_close(window["past"][:, k], past)
        # a transition predicts from that window: changing its oldest entry changes the step
        changed = wf.State({**window.tensors, "past": window["past"] + 1.0})
        assert not torch.allclose(
            model.transition(changed, torch.zeros(4, 2))["z"],
            model.transition(window, torch.zeros(4, 2))["z"],
        )
    actions = torch.randn(3, 4, 2)
    trajectory = model.rollout(state, actions)  # time-major
    stepped = state
    for a in actions:
        stepped = model.transition(stepped, a)
    torch.testing.assert_close(trajectory.states["z"][-1], stepped["z"])
    assert trajectory.uncertainty is not None and trajectory.uncertainty.shape == (3, 4)


def test_bad_configs_and_inputs_name_expected_and_given() -> None:
    with pytest.raises(ConfigError, match=r"history: expected >= 1, got 0"):
        tiny(history=0)
    with pytest.raises(ConfigError, match=r"uncertainty_heads: expected 0 \(none\) or >= 2"):
        tiny(uncertainty_heads=1)
    with pytest.raises(ConfigError, match=r"expected a vector \(O,\) or an image \(C, H, W\)"):
        tiny((4, 4))
    with pytest.raises(ConfigError, match=r"expected images of at least 16 x 16"):
        tiny((1, 8, 8))
    with pytest.raises(ConfigError, match=r"rollout_steps: expected >= 0"):
        tiny(rollout_steps=-1)
    with pytest.raises(ConfigError, match=r"expected embeddings \[B, embed_dim=16\]"):
        tiny(component_overrides={"observation_encoder": WideEncoder})
    with pytest.raises(ContractError, match="expected no noise"):
        model = tiny()
        model.transition(
            model.encode(torch.zeros(1, 2)), torch.zeros(1, 2), noise={"x": torch.zeros(1)}
        )


# -- learning ---------------------------------------------------------------------------------------
def test_embedding_does_not_collapse(trained: tuple[JEPAModel, list[dict[str, float]]]) -> None:
    """VICReg's variance term keeps every logged validation point spread out: per-dimension
    std near 1 and an effective rank well above 1 (collapse drives them to 0 and 1)."""
    _, history = trained
    assert len(history) == 4
    for point in history:
        assert point["val/embed_std"] > 0.7, point
        assert point["val/embed_rank"] > 3.0, point


def test_embedding_distances_rank_distances_in_a_room(
    trained: tuple[JEPAModel, list[dict[str, float]]],
) -> None:
    """The temporal smoothness term makes embedding distance grow with the distance between
    positions, also far apart, which goal planning needs. Over 400 random pairs in the right
    room, those more than 0.6 apart: Spearman 0.91 measured (0.23 with ``smooth_coef=0``, whose
    embedding only orders nearby positions)."""
    model, _ = trained
    rng = np.random.default_rng(1)
    a = np.stack([rng.uniform(0.15, 0.95, 400), rng.uniform(-0.95, 0.95, 400)], 1)
    b = np.stack([rng.uniform(0.15, 0.95, 400), rng.uniform(-0.95, 0.95, 400)], 1)
    with torch.no_grad():
        za = model.encode(torch.as_tensor(a, dtype=torch.float32))["z"]
        zb = model.encode(torch.as_tensor(b, dtype=torch.float32))["z"]
    embedded = (za - zb).norm(dim=1).numpy()
    true = np.linalg.norm(a - b, axis=1)
    far = true > 0.6
    assert spearman(embedded[far], true[far]) > 0.7


def test_image_embedding_spreads_with_the_data_statistics_and_does_not_collapse() -> None:
    """Two-rooms frames differ only by the moving dot: scaled by 1/255 alone a fresh CNN maps
    them to nearly one embedding (VICReg's variance term cannot pull them apart from there);
    standardised with the data's mean frame and channel spread they start spread out, and
    training keeps them spread (validation std near 1, rank well above 1)."""
    store = EpisodeStore.from_episodes(
        random_walks(40, 20, 3, observation="pixels"),
        ObservationLayout("image", (1, 64, 64)),
        ActionLayout("continuous", 2),
    )
    data = MinariBatchProvider.from_store(store, validation_fraction=0.2, seed=0)
    model = tiny(obs_shape=(1, 64, 64))
    frames = torch.as_tensor(store.obs[:: max(len(store.obs) // 64, 1)])
    encoder = model.component("observation_encoder")
    with torch.no_grad():
        raw = encoder(frames).std(0).mean().item()
        model.set_data_statistics(data.stats.to_dict())
        standardised = encoder(frames).std(0).mean().item()
    assert standardised > 10 * raw, (raw, standardised)
    torch.testing.assert_close(
        model.target_encoder.image_mean, torch.as_tensor(data.stats.image_mean)
    )
    cfg = TrainerConfig(
        steps=150, batch_size=16, seq_len=4, lr=1e-3, grad_clip=10.0, eval_every=150,
        eval_batches=2, checkpoint_every=0, log_every=150, seed=0,
    )  # fmt: skip
    trainer = Trainer(model, data, cfg, progress=False)
    trainer.fit()
    point = trainer.history[-1]
    assert point["val/embed_std"] > 0.5, point
    assert point["val/embed_rank"] > 3.0, point


def test_predictor_beats_copying_the_last_embedding(
    trained: tuple[JEPAModel, list[dict[str, float]]],
) -> None:
    """Open-loop k-step predictions on fresh random walks, against the encoded observations,
    beat the copy-last-embedding baseline at k = 1 and 5 (measured: about 6x and 5x)."""
    model, _ = trained
    episodes = random_walks(100, 20, 7)
    obs = torch.tensor(np.stack([e["observations"] for e in episodes]))  # [N, 21, 2]
    act = torch.tensor(np.stack([e["actions"] for e in episodes]))  # [N, 20, 2]
    with torch.no_grad():
        z = model.encode(obs.flatten(0, 1))["z"].view(100, 21, -1)
        for k in (1, 5):
            predicted, copied = [], []
            for t in range(21 - k):
                state = model.encode(obs[:, t])
                for j in range(k):
                    state = model.transition(state, act[:, t + j])
                predicted.append(((state["z"] - z[:, t + k]) ** 2).sum(-1).mean())
                copied.append(((z[:, t] - z[:, t + k]) ** 2).sum(-1).mean())
            ratio = float(torch.stack(copied).mean() / torch.stack(predicted).mean())
            assert ratio > 3.0, (k, ratio)


def test_planning_in_the_embedding_reaches_goals_that_random_actions_do_not(
    trained: tuple[JEPAModel, list[dict[str, float]]],
) -> None:
    """MPPI towards the encoded goal observation (8 start-goal pairs 0.8-1.2 apart in one room,
    100 steps): the model learned from goal-free random walks only (measured: 8 of 8; 6 of 8
    without the temporal smoothness term)."""
    model, _ = trained
    env = gym.make("WorldFlux/TwoRooms-State-v0")
    rng = np.random.default_rng(0)
    pairs = []
    while len(pairs) < 8:
        start, goal = rng.uniform(-0.95, 0.95, 2), rng.uniform(-0.95, 0.95, 2)
        if np.sign(start[0]) == np.sign(goal[0]) and 0.8 < np.linalg.norm(start - goal) < 1.2:
            pairs.append({"start": start, "goal": goal})
    planner = MPPIPlanner(model, horizon=8, num_samples=128, num_elites=16, iterations=3, seed=0)
    policy = MPCPolicy(model, planner, env.action_space)

    def reached(planned: bool) -> int:
        count = 0
        for options in pairs:
            obs, _ = env.reset(seed=0, options=options)
            policy.set_goal(env.unwrapped.goal_observation())
            state, done, info = None, False, {}
            while not done:
                if planned:
                    action, state = policy.predict(obs, state)
                else:
                    action = rng.uniform(-1, 1, 2).astype(np.float32)
                obs, _, terminated, truncated, info = env.step(action)
                done = terminated or truncated
            count += bool(info["success"])
        return count

    assert reached(planned=True) >= 5
    assert reached(planned=False) <= 2


def test_goal_conditioned_latent_dream_rewards_the_embedding_distance(
    trained: tuple[JEPAModel, list[dict[str, float]]],
) -> None:
    """``goal_reward=True``: the agent sees ``[z, z_goal]`` and earns ``-||z' - z_goal||``; goals
    come from the dataset or the reset option; both env checkers pass; the vector env on ONNX
    Runtime matches the single env on torch; a policy of it deploys on the real env through ``LatentObservation(goal=)``
    with the same features."""
    model, _ = trained
    real = gym.make("WorldFlux/TwoRooms-State-v0")
    walks = random_walks(4, 20, 9)
    states = np.concatenate([w["observations"] for w in walks]).astype(np.float32)
    sim = LearnedSimulator(
        model=model,
        observation_space=real.observation_space,
        action_space=real.action_space,
        reset_states=ResetStates(start=states[::21], any=states),
        defaults={"horizon": 30},
        source_env="WorldFlux/TwoRooms-State-v0",
    )
    env = make_dream_env(sim, observation="latent", goal_reward=True)
    assert env.observation_space.shape == (32,)  # jepa:tiny's 16-dim embedding, twice
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(env, warn=True)

    def embed(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model.encode(torch.as_tensor(obs[None]))["z"][0].numpy()

    start, goal = np.array([-0.5, 0.2], np.float32), np.array([-0.1, -0.4], np.float32)
    obs, _ = env.reset(seed=0, options={"obs": start, "goal": goal})
    np.testing.assert_allclose(obs, np.concatenate([embed(start), embed(goal)]), atol=1e-5)
    nxt, reward, _, _, info = env.step(np.array([0.5, -0.5], np.float32))
    np.testing.assert_allclose(nxt[16:], embed(goal), atol=1e-5)
    distance = float(np.linalg.norm(nxt[:16] - nxt[16:]))
    assert reward == pytest.approx(-distance, rel=1e-5)
    assert info["wf.goal_distance"] == pytest.approx(distance, rel=1e-5)
    # goals drawn from the dataset: a dataset state's embedding, per env as in a single env
    drawn, _ = env.reset(seed=3)
    venv = make_dream_env(sim, num_envs=3, observation="latent", goal_reward=True, backend="onnx")
    v_obs, _ = venv.reset(seed=3)
    np.testing.assert_allclose(v_obs[0], drawn, atol=1e-4)  # ONNX Runtime's vector env
    v_next, v_reward, *_ = venv.step(np.full((3, 2), 0.3, np.float32))
    one_next, one_reward, *_ = env.step(np.full(2, 0.3, np.float32))
    np.testing.assert_allclose(v_next[0], one_next, atol=1e-4)
    assert v_reward[0] == pytest.approx(one_reward, abs=1e-4)
    with torch.no_grad():
        pool = model.encode(torch.as_tensor(states))["z"].numpy()
    assert np.abs(pool - drawn[16:]).max(1).min() < 1e-5
    # deployment: the real env's start and goal give the dream's features
    deployed = LatentObservation(
        real,
        sim,
        goal=lambda e: e.unwrapped.goal_observation(),  # type: ignore[attr-defined]
    )
    assert deployed.observation_space == env.observation_space
    seen, _ = deployed.reset(seed=0, options={"start": start, "goal": goal})
    np.testing.assert_allclose(seen, obs, atol=1e-5)
    with pytest.raises(ConfigError, match="expected observation='latent'"):
        make_dream_env(sim, goal_reward=True)
    with pytest.raises(ConfigError, match="this dream has no goals"):
        make_dream_env(sim, observation="latent").reset(options={"goal": goal})


# -- persistence and the target ----------------------------------------------------------------------
def test_save_load_round_trip(tmp_path: Path) -> None:
    model = tiny(history=2)
    model.set_data_statistics({"obs_mean": np.ones(2), "obs_std": np.full(2, 2.0)})
    model.save_pretrained(tmp_path / "m")
    loaded = wf.create_world_model(str(tmp_path / "m"))
    obs = torch.randn(3, 2)
    torch.testing.assert_close(loaded.encode(obs)["z"], model.encode(obs)["z"])
    step = loaded.transition(loaded.encode(obs), torch.ones(3, 2))
    torch.testing.assert_close(
        step["z"], model.transition(model.encode(obs), torch.ones(3, 2))["z"]
    )
    assert isinstance(loaded, JEPAModel) and bool(loaded.statistics_set)
    saved = model.target_encoder.state_dict()
    for key, value in loaded.target_encoder.state_dict().items():
        torch.testing.assert_close(value, saved[key])


def test_after_update_moves_the_target_encoder_by_tau() -> None:
    model = tiny(tau=0.25)
    online = model.component("observation_encoder")
    before = [p.detach().clone() for p in model.target_encoder.parameters()]
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    model.after_update()
    for old, new, source in zip(
        before, model.target_encoder.parameters(), online.parameters(), strict=True
    ):
        torch.testing.assert_close(new, old + 0.25 * (source - old))
    assert not any(p.requires_grad for p in model.target_encoder.parameters())


def test_every_loss_weight_and_the_rollout_span_reach_the_loss() -> None:
    """Raising a weight by one adds exactly its component; ``rollout_steps`` shortens the
    open-loop rollout (its error changes), teacher forcing untouched."""
    g = torch.Generator().manual_seed(0)
    batch = wf.Batch(
        obs=torch.randn(8, 5, 2, generator=g),
        actions=torch.rand(8, 4, 2, generator=g) * 2 - 1,
        rewards=torch.randn(8, 4, generator=g),
        terminations=torch.zeros(8, 4),
        truncations=torch.zeros(8, 4),
    )
    base = tiny().loss(batch)
    for coef, part in (
        ("rollout_coef", "rollout"),
        ("var_coef", "variance"),
        ("cov_coef", "covariance"),
        ("smooth_coef", "smoothness"),
        ("reward_coef", "reward"),
        ("termination_coef", "termination"),
    ):
        default = getattr(tiny().config, coef)
        raised = tiny(**{coef: default + 1.0}).loss(batch)
        torch.testing.assert_close(
            raised.loss - base.loss, base.components[part], rtol=1e-4, atol=1e-6
        )
    short = tiny(rollout_steps=1).loss(batch)
    torch.testing.assert_close(short.components["prediction"], base.components["prediction"])
    assert not torch.isclose(short.components["rollout"], base.components["rollout"])
