"""Registry, factory, presets, aliases and component overrides."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from conftest import ACTION_DIM, OBS_DIM, make_batch
from torch import nn
from toy_model import RecordingConditioner, ToyConditioner, ToyConfig, ToyModel

import worldflux as wf
from worldflux.core import ConfigError, ContractError, RegistryError


def make(spec: str = "toy:tiny", **kwargs: Any) -> wf.WorldModel:
    return wf.create_world_model(spec, obs_shape=(OBS_DIM,), action_dim=ACTION_DIM, **kwargs)


def test_family_preset_alias_and_default_preset() -> None:
    tiny = make("toy:tiny")
    assert isinstance(tiny, ToyModel) and tiny.config.latent_dim == 8
    assert make("toy").config.latent_dim == 16  # default preset "small"
    assert make("toy-latent:tiny").config.latent_dim == 8
    assert make("toy:tiny", latent_dim=5).config.latent_dim == 5  # override beats preset


def test_unknown_family_preset_and_kwarg_get_did_you_mean() -> None:
    with pytest.raises(
        RegistryError, match="Unknown world-model family 'tyo'. Did you mean 'toy'?"
    ):
        make("tyo:tiny")
    with pytest.raises(
        RegistryError, match="Unknown preset of family 'toy' 'tiyn'. Did you mean 'tiny'?"
    ):
        make("toy:tiyn")
    with pytest.raises(
        ConfigError, match="Unknown ToyConfig argument 'latnt_dim'. Did you mean 'latent_dim'?"
    ):
        make("toy:tiny", latnt_dim=3)


def test_registering_a_taken_name_fails() -> None:
    with pytest.raises(RegistryError, match="already used by family 'toy'"):

        @wf.WorldModelRegistry.register("toy-latent", ToyConfig)
        class Other(ToyModel):
            pass


def test_registered_family_is_listed() -> None:
    entry = wf.WorldModelRegistry.families()["toy"]
    assert entry.model_cls is ToyModel and entry.aliases == ("toy-latent",)
    assert set(entry.presets) == {"tiny", "small"}


@pytest.fixture
def calls() -> Iterator[list[str]]:
    RecordingConditioner.calls.clear()
    yield RecordingConditioner.calls
    RecordingConditioner.calls.clear()


@pytest.mark.parametrize(
    "spec",
    [
        "toy-recording-conditioner",
        "toy_model:RecordingConditioner",
        RecordingConditioner,
        "instance",
    ],
    ids=["registered-name", "import-path", "class", "instance"],
)
def test_override_reaches_loss_and_rollout(spec: object, calls: list[str]) -> None:
    if spec == "instance":
        spec = RecordingConditioner(
            ToyConfig(obs_shape=(OBS_DIM,), action_dim=ACTION_DIM, **ToyConfig.presets["tiny"])
        )
    model = make(component_overrides={"action_conditioner": spec})
    assert isinstance(model.component("action_conditioner"), RecordingConditioner)
    assert model.component_specs["action_conditioner"] == "toy-recording-conditioner"

    model.loss(make_batch(steps=3))
    assert calls == ["loss"] * 3
    state = model.encode(torch.zeros(2, OBS_DIM))
    model.rollout(state, torch.zeros(4, 2, ACTION_DIM))
    assert calls == ["loss"] * 3 + ["rollout"] * 4


def test_override_changes_behaviour_on_both_paths() -> None:
    torch.manual_seed(0)
    base = make()
    torch.manual_seed(0)
    over = make(component_overrides={"action_conditioner": RecordingConditioner})
    over.load_state_dict(base.state_dict())  # same weights; only the layer's code differs
    b = make_batch(steps=3)
    assert not torch.equal(base.loss(b).loss, over.loss(b).loss)
    s = base.encode(torch.zeros(2, OBS_DIM))
    acts = torch.randn(2, 2, ACTION_DIM)
    assert not torch.equal(
        base.rollout(s, acts, deterministic=True).rewards,
        over.rollout(s, acts, deterministic=True).rewards,
    )


class NotAModule:
    def __init__(self, config: object) -> None:
        pass

    def forward(self, action: torch.Tensor, conditions: object = None) -> torch.Tensor:
        return action


class WrongSignature(nn.Module):
    def __init__(self, config: object) -> None:
        super().__init__()

    def forward(self) -> torch.Tensor:
        return torch.zeros(1)


class NeedsMoreArgs(nn.Module):
    def __init__(self, config: object, width: int) -> None:
        super().__init__()


def test_invalid_overrides_are_rejected_clearly() -> None:
    with pytest.raises(
        ContractError, match="expected a torch.nn.Module subclass implementing ActionConditioner"
    ):
        make(component_overrides={"action_conditioner": NotAModule})
    with pytest.raises(
        ContractError,
        match=r"WrongSignature.forward\(\).* does not accept the arguments of ActionConditioner.forward",
    ):
        make(component_overrides={"action_conditioner": WrongSignature})
    with pytest.raises(ContractError, match=r"must be constructible as NeedsMoreArgs\(config\)"):
        make(component_overrides={"action_conditioner": NeedsMoreArgs})
    with pytest.raises(
        ConfigError,
        match="Unknown component role 'action_condtioner'. Did you mean 'action_conditioner'?",
    ):
        make(component_overrides={"action_condtioner": ToyConditioner})
    with pytest.raises(
        ConfigError, match="registered for role 'action_conditioner', not 'decoder'"
    ):
        make(component_overrides={"decoder": "toy-recording-conditioner"})
    with pytest.raises(RegistryError, match="Unknown component 'no-such'"):
        make(component_overrides={"decoder": "no-such"})
    with pytest.raises(ConfigError, match="Cannot import module 'no_such_pkg.mod'"):
        make(component_overrides={"decoder": "no_such_pkg.mod:Dec"})


def test_rollout_executor_override_is_used() -> None:
    class Reversed(wf.core.AutoregressiveRollout):
        def run(self, model, initial_state, actions, **kwargs):  # type: ignore[no-untyped-def]
            return super().run(model, initial_state, actions.flip(0), **kwargs)

    model = make(component_overrides={"rollout_executor": Reversed})
    s = model.encode(torch.zeros(1, OBS_DIM))
    acts = torch.randn(3, 1, ACTION_DIM)
    assert torch.equal(model.rollout(s, acts).actions, acts.flip(0))


def test_create_world_model_rejects_overrides_for_saved_dirs(tmp_path: Any) -> None:
    make().save_pretrained(tmp_path / "m")
    with pytest.raises(ConfigError, match=r"takes no config overrides, got \['latent_dim'\]"):
        wf.create_world_model(tmp_path / "m", latent_dim=3)
