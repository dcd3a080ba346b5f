"""Activations by name in agent recipes, and SB3 zips that use them loading without unpickling."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from worldflux.core.errors import ConfigError
from worldflux.data.sb3_policy import load_sb3_policy
from worldflux.rl.activations import LayerNormReLU, activation_from_saved, resolve_policy_kwargs


def test_layer_norm_relu_normalises_each_row_without_parameters() -> None:
    x = torch.randn(4, 3, 16) * 50 + 7
    y = LayerNormReLU()(x)
    z = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5)
    assert y.shape == x.shape
    assert torch.allclose(y, z.clamp(min=0), atol=1e-5)
    assert list(LayerNormReLU().parameters()) == []


def test_resolve_policy_kwargs_maps_names_and_refuses_unknown_ones() -> None:
    hyper = {"learning_rate": 1e-3, "policy_kwargs": {"net_arch": [8], "activation_fn": "tanh"}}
    resolved = resolve_policy_kwargs(hyper)
    assert resolved["policy_kwargs"] == {"net_arch": [8], "activation_fn": nn.Tanh}
    assert hyper["policy_kwargs"]["activation_fn"] == "tanh"  # the recipe keeps the name
    assert resolve_policy_kwargs({"gamma": 0.9}) == {"gamma": 0.9}
    with pytest.raises(ConfigError, match=r"expected one of .*layer_norm_relu.*got 'swish'"):
        resolve_policy_kwargs({"policy_kwargs": {"activation_fn": "swish"}})
    assert activation_from_saved("<class 'torch.nn.modules.activation.ReLU'>") is nn.ReLU
    assert activation_from_saved("<class 'os.system'>") is None


@pytest.mark.parametrize(
    ("algo", "env_id", "activation"),
    [("SAC", "Pendulum-v1", "layer_norm_relu"), ("PPO", "CartPole-v1", "relu")],
)
def test_saved_policy_with_a_named_activation_loads_safely(
    tmp_path: Path, algo: str, env_id: str, activation: str
) -> None:
    import stable_baselines3 as sb3

    env = gym.make(env_id)
    hyper = resolve_policy_kwargs(
        {"policy_kwargs": {"net_arch": [16], "activation_fn": activation}}
    )
    model = getattr(sb3, algo)("MlpPolicy", env, seed=0, **hyper)
    path = tmp_path / "model.zip"
    model.save(path)
    saved = json.loads(zipfile.ZipFile(path).read("data"))["policy_kwargs"]
    assert ":serialized:" in saved  # SB3 pickled the class; the loader reads its text only
    policy = load_sb3_policy(path, env)
    obs = np.stack([env.observation_space.sample() for _ in range(8)])
    expected, _ = model.predict(obs, deterministic=True)
    got, _ = policy.predict(obs, deterministic=True)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    if activation == "layer_norm_relu":
        assert any(isinstance(m, LayerNormReLU) for m in policy.modules())
