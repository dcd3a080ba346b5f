"""Compatibility with code written for other WorldFlux-style libraries and tools.

1. A family written as a plain ``nn.Module`` (the registration guide's shape) registers, builds,
   trains with the project's Trainer, saves and loads.
2. Plugin manifests as other WorldFlux projects return them: objects with attributes, string
   ``plugin_api_version`` values (``"1"``, ``"0.x-experimental"``).
3. torchrl's ``GymEnv`` passes ``frameskip=`` to ``gym.make`` and drops it only on a ``TypeError``
   saying "unexpected keyword argument 'frameskip'"; dream envs must raise exactly that.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from synthetic import sample_batch
from test_plugins import make_distribution, run_child, warning_for
from torch import nn

import worldflux as wf
from worldflux.core.errors import (
    ConfigError,
    ContractError,
    PluginError,
    RegistryError,
    UnexpectedKeywordError,
)
from worldflux.core.model import ModuleWorldModel
from worldflux.core.plugins import PLUGIN_API_VERSION, PluginManifest
from worldflux.data import EpisodeStore, MinariBatchProvider
from worldflux.data.spaces import ActionLayout, ObservationLayout
from worldflux.dream.cards import load_cards
from worldflux.training import Trainer, TrainerConfig

OBS_DIM, ACTION_DIM = 4, 2


# -- 1. a family written as a plain nn.Module ---------------------------------------------------


@dataclass
class GuideConfig(wf.WorldModelConfig):
    """The guide's config: ``model_type`` as a field, one hyperparameter."""

    model_type: str = "compat-guide"
    custom_param: int = 32


def define_guide_family() -> type[nn.Module]:
    """The registration guide's family, written as it shows: a plain ``nn.Module`` with
    ``__init__(config)`` and encode / transition / update / decode / rollout / loss."""

    @wf.WorldModelRegistry.register("compat-guide", GuideConfig)
    class GuideWorldModel(nn.Module):
        def __init__(self, config: GuideConfig) -> None:
            super().__init__()
            self.config = config
            hidden = config.custom_param
            self.encoder = nn.Linear(config.obs_shape[0], hidden)
            self.dynamics = nn.Linear(hidden + config.action_dim, hidden)
            self.obs_head = nn.Linear(hidden, config.obs_shape[0])
            self.reward_head = nn.Linear(hidden, 1)

        def encode(self, obs: torch.Tensor, deterministic: bool = False) -> wf.State:
            return wf.State({"latent": self.encoder(obs.float())})

        def transition(self, state: wf.State, action: torch.Tensor) -> wf.State:
            features = torch.cat([state["latent"], action], -1)
            return wf.State({"latent": torch.tanh(self.dynamics(features))})

        def update(self, state: wf.State, action: torch.Tensor, obs: torch.Tensor) -> wf.State:
            return self.encode(obs)

        def decode(self, state: wf.State) -> wf.ModelOutput:
            z = state["latent"]
            return wf.ModelOutput(
                {
                    "obs": self.obs_head(z),
                    "reward": self.reward_head(z).squeeze(-1),
                    "continue": torch.ones(z.shape[0], device=z.device),
                }
            )

        def rollout(self, initial_state: wf.State, actions: torch.Tensor) -> wf.Trajectory:
            states, predictions = [initial_state], []
            state = initial_state
            for t in range(actions.shape[0]):
                state = self.transition(state, actions[t])
                states.append(state)
                predictions.append(self.decode(state).predictions)
            return wf.Trajectory(
                states=wf.State.stack(states),
                actions=actions,
                predictions={k: torch.stack([p[k] for p in predictions]) for k in predictions[0]},
            )

        def loss(self, batch: wf.Batch) -> wf.LossOutput:
            state = self.encode(batch.obs[:, 0])
            obs_err, reward_err = [], []
            for t in range(batch.seq_len):
                state = self.transition(state, batch.actions[:, t])
                out = self.decode(state).predictions
                obs_err.append(((out["obs"] - batch.obs[:, t + 1]) ** 2).mean(-1))
                reward_err.append((out["reward"] - batch.rewards[:, t]) ** 2)
            valid = batch.valid
            denom = valid.sum().clamp(min=1.0)
            parts = {
                "obs": (torch.stack(obs_err, 1) * valid).sum() / denom,
                "reward": (torch.stack(reward_err, 1) * valid).sum() / denom,
            }
            total = parts["obs"] + parts["reward"]
            return wf.LossOutput(total, {k: v.detach() for k, v in parts.items()})

    return GuideWorldModel


class MinimalModule(nn.Module):
    """Only the required methods; ``transition`` takes no conditions / deterministic / noise."""

    def __init__(self, config: GuideConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = nn.Linear(config.obs_shape[0], config.custom_param)
        self.dynamics = nn.Linear(config.custom_param + config.action_dim, config.custom_param)
        self.head = nn.Linear(config.custom_param, config.obs_shape[0] + 1)

    def encode(self, obs: torch.Tensor) -> wf.State:
        return wf.State({"latent": self.encoder(obs.float())})

    def transition(self, state: wf.State, action: torch.Tensor) -> wf.State:
        return wf.State({"latent": self.dynamics(torch.cat([state["latent"], action], -1))})

    def update(self, state: wf.State, action: torch.Tensor, obs: torch.Tensor) -> wf.State:
        return self.encode(obs)

    def decode(self, state: wf.State) -> wf.ModelOutput:
        out = self.head(state["latent"])
        ones = torch.ones(out.shape[0])
        return wf.ModelOutput({"obs": out[:, :-1], "reward": out[:, -1], "continue": ones})

    def loss(self, batch: wf.Batch) -> wf.LossOutput:
        pred = self.decode(self.transition(self.encode(batch.obs[:, 0]), batch.actions[:, 0]))
        return wf.LossOutput(((pred.predictions["obs"] - batch.obs[:, 1]) ** 2).mean())


@pytest.fixture(scope="module")
def guide_family() -> Iterator[type[nn.Module]]:
    family = define_guide_family()
    wf.WorldModelRegistry.register("compat-minimal", GuideConfig)(MinimalModule)
    yield family
    wf.WorldModelRegistry.unregister("compat-guide")
    wf.WorldModelRegistry.unregister("compat-minimal")


def provider() -> MinariBatchProvider:
    """Episodes of the synthetic linear system (``tests/synthetic.py``)."""
    steps = 12
    batch = sample_batch(40, steps, seed=0, limit=10.0)
    episodes = [
        {
            "observations": batch.obs[i].numpy(),
            "actions": batch.actions[i].numpy(),
            "rewards": batch.rewards[i].numpy(),
            "terminations": np.zeros(steps, bool),
            "truncations": np.eye(steps, dtype=bool)[-1],
        }
        for i in range(len(batch.obs))
    ]
    store = EpisodeStore.from_episodes(
        episodes, ObservationLayout("vector", (OBS_DIM,)), ActionLayout("continuous", ACTION_DIM)
    )
    return MinariBatchProvider.from_store(store, validation_fraction=0.2, seed=0)


def test_guide_family_registers_as_a_world_model(guide_family: type[nn.Module]) -> None:
    assert issubclass(guide_family, wf.WorldModel) and issubclass(guide_family, ModuleWorldModel)
    assert guide_family.__name__ == "GuideWorldModel"
    entry = wf.WorldModelRegistry.get("compat-guide")
    assert entry.model_cls is guide_family and entry.config_cls is GuideConfig
    torch.manual_seed(0)
    model = wf.create_world_model("compat-guide", obs_shape=(OBS_DIM,), action_dim=ACTION_DIM)
    assert isinstance(model, guide_family) and isinstance(model, wf.WorldModel)
    assert model.model_type == "compat-guide"
    assert model.config.custom_param == 32 and model.config.model_type == "compat-guide"
    # the family's own rollout wins over the default one
    state = model.encode(torch.randn(3, OBS_DIM))
    traj = model.rollout(state, torch.randn(5, 3, ACTION_DIM))
    assert traj.predictions["obs"].shape == (5, 3, OBS_DIM)
    # ... and the contract's keywords reach a transition that does not take them
    nxt = model.transition(state, torch.randn(3, ACTION_DIM), deterministic=True, noise=None)
    assert nxt["latent"].shape == (3, 32)
    with pytest.raises(ConfigError, match="obs_shape and action_dim"):
        wf.create_world_model("compat-guide")


def test_guide_family_trains_saves_and_loads(guide_family: type[nn.Module], tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = wf.create_world_model("compat-guide", obs_shape=(OBS_DIM,), action_dim=ACTION_DIM)
    config = TrainerConfig(
        steps=60, batch_size=16, seq_len=4, lr=3e-3, eval_every=30, eval_batches=2, log_every=30
    )
    trainer = Trainer(model, provider(), config, run_dir=tmp_path / "run", progress=False)
    before = trainer.evaluate()["val/loss"]
    result = trainer.fit()
    after = trainer.history[-1]["val/loss"]
    assert result["stop_reason"] == "completed"
    assert after < 0.7 * before, (before, after)

    saved = tmp_path / "run" / "model"
    loaded = wf.WorldModel.from_pretrained(saved)
    assert type(loaded) is guide_family and loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value.cpu()), key
    again = wf.create_world_model(saved)
    assert isinstance(again, guide_family)


def test_plain_module_gets_the_contract_defaults(guide_family: type[nn.Module]) -> None:
    torch.manual_seed(0)
    model = wf.create_world_model("compat-minimal", obs_shape=(OBS_DIM,), action_dim=ACTION_DIM)
    assert isinstance(model, MinimalModule) and isinstance(model, wf.WorldModel)
    assert model.state_spec() == {"latent": (32,)}  # from encode's state
    assert model.latent_keys() == ("latent",)
    assert model.noise_spec() == {}
    state = model.initial_state(3)
    assert torch.equal(state["latent"], torch.zeros(3, 32))
    actions = torch.randn(4, 3, ACTION_DIM)
    traj = model.rollout(model.encode(torch.randn(3, OBS_DIM)), actions, deterministic=True)
    assert traj.states["latent"].shape == (5, 3, 32)
    assert traj.predictions["reward"].shape == (4, 3)
    # data the family's transition would ignore is refused, naming the argument
    with pytest.raises(ContractError, match="takes no 'noise' argument"):
        model.transition(state, actions[0], noise={"eps": torch.zeros(3, 1)})
    with pytest.raises(ContractError, match="takes no 'conditions' argument"):
        model.transition(state, actions[0], {"goal": torch.zeros(3, 1)})
    assert model.component_specs == {}
    assert model.check_state(state) is not None


def test_incomplete_module_is_refused_naming_what_is_missing() -> None:
    class EncoderOnly(nn.Module):
        def encode(self, obs: torch.Tensor) -> wf.State:
            return wf.State({"z": obs})

    with pytest.raises(RegistryError, match=r"does not define transition, update, decode, loss"):
        wf.WorldModelRegistry.register("compat-incomplete", GuideConfig)(EncoderOnly)

    class TwoArgInit(MinimalModule):
        def __init__(self, config: GuideConfig, scale: float) -> None:
            super().__init__(config)

    with pytest.raises(RegistryError, match=r"__init__ must take the config alone"):
        wf.WorldModelRegistry.register("compat-two-arg", GuideConfig)(TwoArgInit)

    class NotAModule:
        pass

    with pytest.raises(RegistryError, match=r"or an nn.Module subclass.*got NotAModule"):
        wf.WorldModelRegistry.register("compat-not-module", GuideConfig)(NotAModule)
    for name in ("compat-incomplete", "compat-two-arg", "compat-not-module"):
        assert name not in wf.WorldModelRegistry.families()


# -- 2. plugin manifests ------------------------------------------------------------------------


@dataclass(frozen=True)
class ForeignManifest:
    """The manifest object another WorldFlux project's plugins return."""

    plugin_api_version: str
    worldflux_version_range: str
    capabilities: tuple[str, ...] = ()
    experimental: bool = False


@pytest.mark.parametrize(
    "version", [1, "1", " 1 ", "1.0", "1.x", "1-experimental", "1.x-experimental", "1.2.3"]
)
def test_version_strings_with_this_interface_number_are_accepted(version: Any) -> None:
    manifest = PluginManifest.parse(
        {"plugin_api_version": version, "worldflux_version_range": ">=0.1"}
    )
    assert manifest.api_interface == PLUGIN_API_VERSION
    assert manifest.plugin_api_version == version  # what the plugin declared is kept
    assert manifest.incompatibility() is None


@pytest.mark.parametrize("form", ["mapping", "object", "namespace", "manifest"])
def test_manifest_objects_and_mappings_are_accepted(form: str) -> None:
    fields = {
        "plugin_api_version": "1",
        "worldflux_version_range": ">=0.1.0,<2",
        "capabilities": ["model-alias"],
    }
    returned: Any = {
        "mapping": fields,
        "object": ForeignManifest(**{**fields, "capabilities": ("model-alias",)}),
        "namespace": SimpleNamespace(**fields, experimental=True, extra="ignored"),
        "manifest": PluginManifest(**fields),
    }[form]
    manifest = PluginManifest.parse(returned)
    assert manifest.api_interface == PLUGIN_API_VERSION
    assert manifest.incompatibility() is None
    assert manifest.capabilities == ("model-alias",)
    assert manifest.experimental == (form == "namespace")


def test_experimental_zero_x_version_is_incompatible_and_says_why() -> None:
    manifest = PluginManifest.parse(
        ForeignManifest("0.x-experimental", ">=0.1.0,<0.2.0", ("model-alias",), True)
    )
    assert manifest.api_interface == 0
    reason = manifest.incompatibility()
    assert reason is not None
    assert "'0.x-experimental' (interface 0)" in reason
    assert f"provides plugin API version {PLUGIN_API_VERSION}" in reason


@pytest.mark.parametrize("version", ["latest", "x.1", "", True, 1.0, -1, None])
def test_malformed_api_version_names_the_accepted_forms(version: Any) -> None:
    with pytest.raises(PluginError, match="plugin_api_version") as info:
        PluginManifest.parse({"plugin_api_version": version, "worldflux_version_range": ">=0.1"})
    message = str(info.value)
    assert f"got {version!r}" in message
    assert f"supports interface {PLUGIN_API_VERSION}" in message
    assert "'1.x'" in message


def test_manifest_that_is_neither_mapping_nor_object_is_refused() -> None:
    with pytest.raises(PluginError, match="manifest mapping, got int"):
        PluginManifest.parse(1)
    with pytest.raises(PluginError, match=r"missing \['worldflux_version_range'\]"):
        PluginManifest.parse(SimpleNamespace(plugin_api_version="1"))
    with pytest.raises(PluginError, match="experimental: expected a bool"):
        PluginManifest.parse(ForeignManifest("1", ">=0.1", (), "yes"))  # type: ignore[arg-type]


FOREIGN_PLUGIN = """
from dataclasses import dataclass

import torch
from torch import nn

import worldflux as wf


@dataclass(frozen=True)
class Manifest:
    plugin_api_version: str
    worldflux_version_range: str
    capabilities: tuple = ()
    experimental: bool = False


@dataclass
class PlainConfig(wf.WorldModelConfig):
    hidden: int = 8


class PlainFamily(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.net = nn.Linear(config.obs_shape[0], config.hidden)

    def encode(self, obs, deterministic=False):
        return wf.State({"z": self.net(obs)})

    def transition(self, state, action):
        return state

    def update(self, state, action, obs):
        return self.encode(obs)

    def decode(self, state):
        return wf.ModelOutput({"reward": state["z"].sum(-1)})

    def loss(self, batch):
        return wf.LossOutput(self.encode(batch.obs[:, 0])["z"].pow(2).mean())


def register():
    wf.WorldModelRegistry.register(FAMILY, PlainConfig)(PlainFamily)
    return Manifest(VERSION, ">=0.1.0,<0.2.0", ("world_model",), experimental=True)
"""


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    site = tmp_path_factory.mktemp("foreign-site")
    for ep, family, version in [
        ("foreign-one", "foreign-plain", "1"),
        ("foreign-experimental", "foreign-old", "0.x-experimental"),
    ]:
        module = "wfplug_" + ep.replace("-", "_")
        head = f"FAMILY = {family!r}\nVERSION = {version!r}\n"
        make_distribution(
            site, module, head + FOREIGN_PLUGIN, {"worldflux.models": {ep: f"{module}:register"}}
        )
    return run_child(
        [site],
        """
        model = worldflux.create_world_model("foreign-plain", obs_shape=(3,), action_dim=2)
        result["built"] = [type(model).__name__, isinstance(model, worldflux.WorldModel)]
        """,
    )


def test_foreign_plugin_with_object_manifest_loads(foreign: dict[str, Any]) -> None:
    record = foreign["records"]["foreign-one"]
    assert record["status"] == "loaded", record
    assert record["families"] == ["foreign-plain"]
    assert foreign["families"]["foreign-plain"] == "plugin foreign-one"
    assert foreign["built"] == ["PlainFamily", True]


def test_experimental_plugin_is_skipped_with_the_versions(foreign: dict[str, Any]) -> None:
    message = warning_for(foreign, "foreign-experimental")
    assert "skipped" in message and "PluginError" not in message
    assert "plugin API version '0.x-experimental' (interface 0)" in message
    assert f"provides plugin API version {PLUGIN_API_VERSION}" in message
    assert foreign["records"]["foreign-experimental"]["status"] == "skipped"
    assert "foreign-old" not in foreign["families"]


# -- 3. unknown dream keywords are TypeErrors (torchrl's GymEnv) -------------------------------

CARD = load_cards()["dreamer-walker"]


def torchrl_make(env_id: str, frame_skip: int, **kwargs: Any) -> tuple[Any, int]:
    """What torchrl's ``GymEnv._build_env`` does: ``gym.make(id, frameskip=...)``, and on a
    ``TypeError`` naming ``frameskip`` the same call without it (the wrapper then skips frames).
    Returns the env and the wrapper's frame skip."""
    try:
        with warnings.catch_warnings(record=True):
            return gym.make(env_id, frameskip=frame_skip, **kwargs), 1
    except TypeError as err:
        if "unexpected keyword argument 'frameskip'" not in str(err):
            raise
    return gym.make(env_id, **kwargs), frame_skip


def test_unknown_keyword_is_a_type_error_and_a_config_error() -> None:
    # checked before the artifact is loaded: no built card needed
    with pytest.raises(TypeError, match="unexpected keyword argument 'frameskip'") as info:
        gym.make(CARD.id, frameskip=4)
    assert isinstance(info.value, UnexpectedKeywordError)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ValueError)
    with pytest.raises(UnexpectedKeywordError, match="Did you mean 'penalty'"):
        gym.make(CARD.id, penalti=1.0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'frameskip'"):
        gym.make_vec(CARD.id, num_envs=2, frameskip=4)
    with pytest.raises(ConfigError, match="unknown dream settings"):
        wf.make_dream_env(CARD.name, penalti=1.0)


def test_torchrl_style_make_drops_frameskip_and_same_step_vector_env() -> None:
    if not CARD.built:
        pytest.skip(f"{CARD.id}: artifact not built (worldflux build {CARD.name})")
    env, wrapper_skip = torchrl_make(CARD.id, 4, disable_env_checker=True)
    assert wrapper_skip == 4
    obs, _ = env.reset(seed=0)
    assert obs in env.observation_space
    venv = gym.make_vec(CARD.id, num_envs=2, autoreset_mode="SameStep", horizon=2)
    assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    venv.reset(seed=0)
    actions = np.zeros((2, *venv.single_action_space.shape), np.float32)
    venv.step(actions)
    obs, _, terminated, truncated, info = venv.step(actions)
    assert (terminated | truncated).all()  # horizon 2: every env ended and was reset at once
    assert info["_final_obs"].all() and info["final_obs"][0].shape == obs[0].shape
