"""Activation functions of stable-baselines3 policies by name.

SB3 takes a class for ``policy_kwargs["activation_fn"]``; a recipe (TOML, ``agent.json``) can
only hold a name. :func:`resolve_policy_kwargs` turns the name into the class before SB3 builds
the policy, and :func:`activation_from_saved` maps the class that SB3 records in a saved zip
(as readable text beside a pickled copy) back to it, so saved policies load without unpickling.

``layer_norm_relu`` normalises every hidden layer's pre-activations (layer norm without learned
scale or shift) before the ReLU. Layer normalisation in the critic keeps its values bounded when
it bootstraps from actions the data does not cover (Ball et al., 2023, "Efficient Online
Reinforcement Learning with Offline Data"), where an offline critic otherwise diverges.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from ..core.errors import ConfigError


class LayerNormReLU(nn.Module):
    """``relu(layer_norm(x))`` over the last dimension, without parameters.

    Shapes: ``(..., features) -> (..., features)``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(nn.functional.layer_norm(x, x.shape[-1:]))


#: names a recipe may give as ``policy_kwargs.activation_fn``
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
    "layer_norm_relu": LayerNormReLU,
}


def resolve_policy_kwargs(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """A copy of SB3 keyword arguments with ``policy_kwargs.activation_fn`` given by name
    replaced by its class.

    Raises:
        ConfigError: the name is not one of :data:`ACTIVATIONS`.
    """
    kwargs = hyperparameters.get("policy_kwargs")
    if not isinstance(kwargs, dict) or "activation_fn" not in kwargs:
        return dict(hyperparameters)
    name = kwargs["activation_fn"]
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ConfigError(
            f"policy_kwargs.activation_fn: expected one of {sorted(ACTIVATIONS)}, got {name!r}."
        )
    return {**hyperparameters, "policy_kwargs": {**kwargs, "activation_fn": ACTIVATIONS[name]}}


def activation_from_saved(text: str) -> type[nn.Module] | None:
    """The activation class whose readable form SB3 saved (``"<class 'torch.nn....ReLU'>"``),
    or None when it is not one of :data:`ACTIVATIONS`."""
    match = re.fullmatch(r"<class '([\w.]+)'>", text.strip())
    if match is None:
        return None
    for cls in ACTIVATIONS.values():
        if match.group(1) == f"{cls.__module__}.{cls.__qualname__}":
            return cls
    return None
