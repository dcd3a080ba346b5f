"""WorldModelConfig: typed fields, did-you-mean for unknown names, JSON round trip."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import pytest

import worldflux as wf
from worldflux.core import ConfigError


@dataclass
class DemoConfig(wf.WorldModelConfig):
    hidden: int = 32
    lr: float = 1e-3
    kind: Literal["gru", "lstm"] = "gru"
    layers: tuple[int, ...] = (64, 64)
    name: str | None = None
    layer_norm: bool = True


def test_unknown_field_gets_did_you_mean() -> None:
    with pytest.raises(
        ConfigError, match="Unknown DemoConfig field 'hiden'. Did you mean 'hidden'?"
    ):
        DemoConfig.from_dict({"hiden": 3})


def test_types_are_checked_with_expected_and_given() -> None:
    with pytest.raises(ConfigError, match=r"DemoConfig.hidden: expected int, got '8' \(str\)"):
        DemoConfig(hidden="8")  # type: ignore[arg-type]
    with pytest.raises(
        ConfigError, match=r"DemoConfig.kind: expected one of \['gru', 'lstm'\], got 'rnn'"
    ):
        DemoConfig(kind="rnn")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="DemoConfig.layer_norm: expected bool"):
        DemoConfig(layer_norm=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="DemoConfig.obs_shape: expected positive sizes"):
        DemoConfig(obs_shape=(0, 3))


def test_json_round_trip_restores_tuples_and_floats() -> None:
    cfg = DemoConfig(obs_shape=(3, 8, 8), action_dim=4, lr=1, layers=(16, 8), name="x")
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    again = DemoConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert again.obs_shape == (3, 8, 8) and again.layers == (16, 8)


def test_replace_validates() -> None:
    cfg = DemoConfig(obs_shape=(3,), action_dim=2)
    assert cfg.replace(hidden=7).hidden == 7
    with pytest.raises(ConfigError, match="Did you mean 'layers'"):
        cfg.replace(layer=(1,))


def test_require_io() -> None:
    with pytest.raises(ConfigError, match="obs_shape and action_dim must be given"):
        DemoConfig().require_io()
