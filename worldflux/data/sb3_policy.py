"""Loading stable-baselines3 policies without unpickling.

An SB3 ``.zip`` stores its weights with ``torch.save`` (read here with ``weights_only=True``) and
some settings as cloudpickle blobs, which ``PPO.load`` would execute. This loader rebuilds the
policy from the readable parts only: the policy class (from a whitelist of SB3's own MLP and CNN
policy classes), plain-JSON ``policy_kwargs`` (an activation class only when known by name, see
:mod:`worldflux.rl.activations`), the spaces of the environment, and ``policy.pth``.

Observation normalisation used in training (SB3's ``VecNormalize``) is saved beside the zip as
``<name>.obs_norm.json`` (``{"mean", "var", "clip_obs", "epsilon"}``) by
:func:`save_sb3_policy` and applied by :class:`SB3Policy`.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from ..core.errors import ConfigError, WorldFluxError


class UnsafePolicyFileError(WorldFluxError, ValueError):
    """A policy file cannot be loaded without executing code stored in it, or is malformed."""


def policy_name(observation_space: gym.Space[Any], normalize: bool, owner: str) -> str:
    """SB3's policy for ``observation_space``: ``"CnnPolicy"`` for images (3-d uint8 in
    ``[0, 255]``), else ``"MlpPolicy"``. Images refuse ``normalize`` (the CNN policy scales
    pixels itself; VecNormalize would standardise them per pixel)."""
    from stable_baselines3.common.preprocessing import is_image_space

    if not is_image_space(observation_space):
        return "MlpPolicy"
    if normalize:
        raise ConfigError(
            f"{owner} has image observations, which the CNN policy scales itself: expected "
            "normalize=false, got normalize=true."
        )
    return "CnnPolicy"


def _policy_classes() -> dict[str, type]:
    from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy
    from stable_baselines3.dqn.policies import CnnPolicy as DQNCnnPolicy
    from stable_baselines3.dqn.policies import DQNPolicy
    from stable_baselines3.sac.policies import SACPolicy
    from stable_baselines3.td3.policies import TD3Policy

    classes = (ActorCriticPolicy, SACPolicy, TD3Policy, DQNPolicy, ActorCriticCnnPolicy)
    return {**{cls.__name__: cls for cls in classes}, "CnnPolicy": DQNCnnPolicy}


def _policy_observation_space(saved: tuple[int, ...] | None, space: gym.Space[Any]) -> Any:
    """The observation space the policy was built for: ``space``, or for an image env
    ``(H, W, C)`` whose policy saw channel-first frames ``(C, H, W)`` (SB3 transposes images
    for its CNNs, ``VecTransposeImage``), the transposed space."""
    from stable_baselines3.common.preprocessing import is_image_space
    from stable_baselines3.common.vec_env import VecTransposeImage

    if (
        saved is not None
        and isinstance(space, gym.spaces.Box)
        and is_image_space(space, check_channels=True)  # 3-d uint8 in [0, 255]
        and saved == (space.shape[2], space.shape[0], space.shape[1])
    ):
        return VecTransposeImage.transpose_space(space)
    return space


def _norm_path(path: Path) -> Path:
    return path.with_name(path.stem + ".obs_norm.json")


def _shape_of(serialized: Any) -> tuple[int, ...] | None:
    """The shape recorded in the readable part of a serialized space, if any."""
    shape = serialized.get("_shape") if isinstance(serialized, dict) else None
    if isinstance(shape, list):
        return tuple(int(x) for x in shape)
    if isinstance(shape, str):
        return tuple(int(x) for x in re.findall(r"\d+", shape))
    return None


def load_sb3_policy(path: str | Path, env: gym.Env[Any, Any]) -> Any:
    """Rebuild the policy saved in an SB3 zip for ``env``'s spaces; never unpickles.

    Raises:
        UnsafePolicyFileError: unknown policy class, pickled ``policy_kwargs``, missing parts,
            or spaces that differ from ``env``'s.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"policy file {path} does not exist.")
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
            weights = archive.read("policy.pth")
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise UnsafePolicyFileError(f"{path}: not a stable-baselines3 model zip ({exc}).") from None
    cls_info = data.get("policy_class", {})
    match = re.search(r"<function (\w+)\.__init__", str(cls_info.get("__init__", "")))
    classes = _policy_classes()
    if match is None or match.group(1) not in classes:
        found = match.group(1) if match else "unknown"
        raise UnsafePolicyFileError(
            f"{path}: policy class {found!r} is not one of the supported SB3 policies "
            f"{sorted(classes)} (SB3's MLP and CNN policies; loading others would execute "
            "pickled code)."
        )
    kwargs = _readable_policy_kwargs(path, data.get("policy_kwargs", {}) or {})
    obs_space = _policy_observation_space(
        _shape_of(data.get("observation_space")), env.observation_space
    )
    for key, space in (("observation_space", obs_space), ("action_space", env.action_space)):
        saved = _shape_of(data.get(key))
        if saved is not None and space.shape is not None and saved != tuple(space.shape):
            raise UnsafePolicyFileError(
                f"{path}: saved {key} has shape {saved}, the environment's has {space.shape}."
            )
    if data.get("use_sde"):
        kwargs["use_sde"] = True
    try:
        policy = classes[match.group(1)](obs_space, env.action_space, lambda _: 0.0, **kwargs)
    except (TypeError, ValueError, KeyError, AttributeError, AssertionError) as exc:
        # e.g. a JSON table where SB3 expects a class (activation_fn = {...}), or unknown keys
        raise UnsafePolicyFileError(
            f"{path}: its policy_kwargs {json.dumps(kwargs)[:300]} do not build the "
            f"{match.group(1)} ({type(exc).__name__}: {exc}); expected plain values such as "
            "net_arch = [64, 64] (classes cannot be stored safely, so none are loaded)."
        ) from None
    state = _read_weights(path, weights)
    try:
        policy.load_state_dict(state)
    except RuntimeError as exc:
        raise UnsafePolicyFileError(
            f"{path}: weights do not fit the policy for this env ({exc})."
        ) from None
    policy.set_training_mode(False)
    return policy


#: classes SB3 records as text in pickled policy_kwargs that inference does not need
_TRAINING_ONLY = ("optimizer_class",)


def _readable_policy_kwargs(path: Path, kwargs: Any) -> dict[str, Any]:
    """``policy_kwargs`` from the readable part of a saved zip: plain JSON as it is; when SB3
    pickled them (a class among them), the readable copies of its items, with an activation
    class known by name (:mod:`worldflux.rl.activations`) mapped back to it and the optimiser
    class (unused for inference) left out. Any other class is refused, never unpickled."""
    from ..rl.activations import ACTIVATIONS, activation_from_saved

    if not isinstance(kwargs, dict):
        raise UnsafePolicyFileError(
            f"{path}: policy_kwargs: expected a table, got {type(kwargs).__name__}."
        )
    if ":serialized:" not in kwargs:
        return dict(kwargs)
    readable: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key.startswith(":") or key in _TRAINING_ONLY:
            continue
        if key == "activation_fn" and isinstance(value, str):
            cls = activation_from_saved(value)
            if cls is None:
                raise UnsafePolicyFileError(
                    f"{path}: policy_kwargs.activation_fn is {value[:120]}, not one of the "
                    f"activations known by name {sorted(ACTIVATIONS)}; other classes would have "
                    "to be unpickled, which can execute code stored in the file."
                )
            readable[key] = cls
        elif isinstance(value, str) and re.match(r"<(class|function) ", value):
            raise UnsafePolicyFileError(
                f"{path}: policy_kwargs.{key} is pickled ({value[:120]}); only activation_fn "
                f"(one of {sorted(ACTIVATIONS)}) and plain JSON values can be loaded safely."
            )
        else:
            readable[key] = value
    return readable


def _read_weights(path: Path, weights: bytes) -> dict[str, torch.Tensor]:
    """``policy.pth`` of an SB3 zip as a state dict of tensors, read with torch's tensors-only
    loader; anything else in it (pickled objects) is refused, never executed."""
    try:
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, ... for foreign data
        # torch's own message suggests weights_only=False, i.e. running the file: not quoted
        raise UnsafePolicyFileError(
            f"{path}: policy.pth holds more than tensors and plain containers (torch's "
            f"tensors-only reader refused it: {type(exc).__name__}). It is not loaded: reading "
            "it would mean unpickling, which can execute code stored in the file. Expected "
            "weights saved by stable-baselines3's model.save()."
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise UnsafePolicyFileError(
            f"{path}: policy.pth: expected a state dict of named tensors, got "
            f"{type(state).__name__}."
        )
    return state


def save_obs_norm(
    path: str | Path, mean: np.ndarray, var: np.ndarray, clip_obs: float, epsilon: float
) -> None:
    """Write the observation normalisation beside an SB3 zip (atomically)."""
    target = _norm_path(Path(path))
    tmp = target.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {"mean": mean.tolist(), "var": var.tolist(), "clip_obs": clip_obs, "epsilon": epsilon}
        )
    )
    tmp.replace(target)


def save_sb3_policy(model: Any, path: str | Path, obs_norm: dict[str, Any] | None = None) -> None:
    """Write the SB3 ``model`` to the zip ``path`` for acting, without its optimisers' states
    (``*optimizer.pth``: Adam's moments would double or triple the file), with ``obs_norm`` (see
    :func:`vecnormalize_obs_norm`) beside it. Both files are written atomically, the
    normalisation first: a zip never exists without it. SB3's own ``load`` refuses the file (no
    optimiser); :func:`load_sb3_policy` reads it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if obs_norm is not None:
        n = obs_norm
        save_obs_norm(target, n["mean"], n["var"], n["clip_obs"], n["epsilon"])
    staged = target.with_name(f".{target.stem}.tmp.zip")
    model.save(staged)
    kept = target.with_name(f".{target.stem}.kept.zip")
    with zipfile.ZipFile(staged) as src, zipfile.ZipFile(kept, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if not item.filename.endswith("optimizer.pth"):
                dst.writestr(item, src.read(item.filename))
    staged.unlink()
    kept.replace(target)


def vecnormalize_obs_norm(venv: Any) -> dict[str, Any] | None:
    """The observation normalisation of an SB3 ``VecNormalize`` (copies), or None when ``venv``
    is not one or does not normalise observations."""
    from stable_baselines3.common.vec_env import VecNormalize

    if not isinstance(venv, VecNormalize) or not venv.norm_obs:
        return None
    rms = venv.obs_rms
    assert not isinstance(rms, dict)
    return {
        "mean": rms.mean.copy(),
        "var": rms.var.copy(),
        "clip_obs": venv.clip_obs,
        "epsilon": venv.epsilon,
    }


def load_obs_norm(path: str | Path) -> dict[str, Any] | None:
    """The normalisation saved beside ``path``, or None when there is none."""
    target = _norm_path(Path(path))
    if not target.is_file():
        return None
    data = json.loads(target.read_text())
    return {
        "mean": np.asarray(data["mean"], dtype=np.float64),
        "var": np.asarray(data["var"], dtype=np.float64),
        "clip_obs": float(data["clip_obs"]),
        "epsilon": float(data["epsilon"]),
    }
