"""The batched dream core: N learned-simulator environments stepped by one backend call.

Everything per environment lives in arrays (episode keys, step counters, elapsed steps) or on the
backend (the model state); the only per-environment Python runs at resets, where each
environment draws its episode key and start state from its own ``np_random``. The faces
(:mod:`~worldflux.dream.env` single env, :mod:`~worldflux.dream.vector` gymnasium VectorEnv,
:mod:`~worldflux.dream.sb3` stable-baselines3 VecEnv) wrap this core.

Shapes: N = environments, K = environments being reset, ``*S`` = the observation space's shape.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
from gymnasium import spaces

from ..core.errors import ConfigError, ContractError
from ..data.spaces import action_layout, observation_layout
from .backend import DreamBackend
from .noise import counter_noise

ResetMode = Literal["start", "any"]
ObservationMode = Literal["decoded", "latent"]
TerminationMode = Literal["sample", "threshold"]
OutOfBounds = Literal["clip", "error"]


class DreamActionError(ContractError, ValueError):
    """An action given to a dream environment has the wrong shape, is not finite, or is outside
    the action space (with ``out_of_bounds="error"``)."""


class DreamStateError(ContractError, RuntimeError):
    """The model produced non-finite values; the state is not used further."""


@dataclass
class DreamSettings:
    """How a dream environment resets, terminates and treats uncertainty.

    Attributes:
        reset: start states drawn from the dataset's episode starts (``"start"``) or from any
            dataset state (``"any"``: short MBPO-style branches). ``reset(options={"obs": ...})``
            overrides both with given observations.
        termination: ``"sample"`` ends an episode with probability ``1 - continue`` (from the
            env's own noise stream); ``"threshold"`` ends it when ``continue < continue_threshold``.
        continue_threshold: see ``termination="threshold"``.
        horizon: truncate episodes after this many steps (None: never).
        out_of_bounds: continuous actions outside the action space are clipped to it
            (``"clip"``, the default, as MuJoCo's own environments accept any action and
            stable-baselines3 clips before stepping) or rejected (``"error"``).
        penalty: MOPO-style reward penalty ``reward - penalty * uncertainty`` (needs a model with
            uncertainty).
        noise_scale: multiplies the model's Gaussian sampling noise (its ``normal`` noise inputs,
            e.g. an ensemble's aleatoric noise or PlaNet's latent noise) before every step: 1
            samples the model's own distribution, 0 its means (uniform noise, such as an
            ensemble's choice of elite or a categorical sample, is unchanged). A learned
            variance that overstates the noise makes sampled episodes drift off the data: the
            Walker2d ensemble's walker fell after 170 steps with it, after 410 without it, and
            after about 480 in reality (behaviour policy).
        halt: MOReL-style halt: the episode terminates when the uncertainty exceeds this
            threshold (None: off; needs a model with uncertainty). Through a simulator or card,
            ``"p90"``/``"p95"``/``"p99"`` name a percentile calibrated on held-out data.
        observation: what the agent sees: ``"decoded"`` observations in the real environment's
            space (default), or the model's ``"latent"`` features (``Box(-inf, inf, (F,))``
            float32; the mode for families without an observation decoder). A policy trained
            on latents runs on the real environment through
            :class:`~worldflux.dream.latent.LatentObservation`.
        goal_reward: goal-conditioned latent dreams (``observation="latent"`` only): every
            episode gets a goal, a dataset state drawn like an ``"any"`` reset, or the reset
            option ``{"goal": observation}``. The agent sees ``[features, goal features]``
            ``[2F]``, and the reward is ``-||features - goal features||`` after each step
            (the distance planners minimise towards a goal), in place of the model's reward.
    """

    reset: ResetMode = "start"
    termination: TerminationMode = "sample"
    continue_threshold: float = 0.5
    horizon: int | None = 1000
    out_of_bounds: OutOfBounds = "clip"
    penalty: float = 0.0
    noise_scale: float = 1.0
    halt: float | None = None
    observation: ObservationMode = "decoded"
    goal_reward: bool = False

    def __post_init__(self) -> None:
        choices = {
            "reset": ("start", "any"),
            "termination": ("sample", "threshold"),
            "out_of_bounds": ("clip", "error"),
            "observation": ("decoded", "latent"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"dream setting {name}: expected one of {allowed}, got {getattr(self, name)!r}."
                )
        for name in ("continue_threshold", "penalty", "noise_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ConfigError(f"dream setting {name}: expected a number, got {value!r}.")
            if not np.isfinite(float(value)):
                raise ConfigError(f"dream setting {name}: expected a finite number, got {value}.")
        if self.horizon is not None and (
            isinstance(self.horizon, bool) or not isinstance(self.horizon, int | np.integer)
        ):
            raise ConfigError(
                f"dream setting horizon: expected an integer >= 1 or None, got {self.horizon!r}."
            )
        if not 0.0 < self.continue_threshold < 1.0:
            raise ConfigError(
                f"dream setting continue_threshold: expected in (0, 1), got {self.continue_threshold}."
            )
        if not isinstance(self.goal_reward, bool | np.bool_):
            raise ConfigError(
                f"dream setting goal_reward: expected True or False, got {self.goal_reward!r}."
            )
        if self.goal_reward and self.observation != "latent":
            raise ConfigError(
                "dream setting goal_reward: goals are given in the model's latent features; "
                f"expected observation='latent', got observation={self.observation!r}."
            )
        if self.horizon is not None and self.horizon < 1:
            raise ConfigError(f"dream setting horizon: expected >= 1 or None, got {self.horizon}.")
        if self.penalty < 0:
            raise ConfigError(f"dream setting penalty: expected >= 0, got {self.penalty}.")
        if self.noise_scale < 0:
            raise ConfigError(f"dream setting noise_scale: expected >= 0, got {self.noise_scale}.")
        if self.halt is not None and (
            isinstance(self.halt, bool) or not isinstance(self.halt, numbers.Real)
        ):
            raise ConfigError(
                f"dream setting halt: expected a number or None (or, through a learned simulator, "
                f"a calibrated percentile such as 'p99'), got {self.halt!r}."
            )
        if self.halt is not None:
            self.halt = float(self.halt)
        if self.halt is not None and not (np.isfinite(float(self.halt)) and self.halt > 0):
            raise ConfigError(
                f"dream setting halt: expected a finite number > 0 or None, got {self.halt}."
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DreamSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown dream settings {unknown}; expected some of {sorted(known)}."
            )
        return cls(**data)


@dataclass
class ResetStates:
    """Observations to start from, in the model's layout (CHW uint8 images / float32 vectors).

    Attributes:
        start: ``[M, *O]`` first observations of dataset episodes.
        any: ``[K, *O]`` observations from anywhere in the dataset.
    """

    start: np.ndarray
    any: np.ndarray


class DreamCore:
    """N dream environments over one backend (see module docstring).

    ``rngs`` (one ``np.random.Generator`` per environment) belong to the faces, which seed them
    the gymnasium way; the core only draws from them at resets.
    """

    def __init__(
        self,
        backend: DreamBackend,
        observation_space: spaces.Space[Any],
        action_space: spaces.Space[Any],
        reset_states: ResetStates,
        settings: DreamSettings,
        num_envs: int,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ConfigError(f"num_envs: expected an integer >= 1, got {num_envs!r}.")
        self.backend = backend
        #: which backend runs the model ("torch", "onnx"; set by whoever made the core)
        self.backend_name = type(backend).__name__
        #: the dataset's (= the real environment's) observation space
        self.data_space = observation_space
        #: what the agent sees: ``data_space``, or the latent Box in latent-observation mode
        self.observation_space = observation_space
        self.action_space = action_space
        self.obs_layout = observation_layout(observation_space)
        self.act_layout = action_layout(action_space)
        if tuple(backend.obs_shape) != self.obs_layout.shape:
            raise ConfigError(
                f"the model expects observations {tuple(backend.obs_shape)}, but the observation "
                f"space gives {self.obs_layout.shape}."
            )
        if backend.action_dim != self.act_layout.dim:
            raise ConfigError(
                f"the model expects {backend.action_dim}-dim actions, but the action space "
                f"{action_space} gives {self.act_layout.dim}."
            )
        for name in ("start", "any"):
            pool = getattr(reset_states, name)
            if pool.ndim != 1 + len(self.obs_layout.shape) or len(pool) == 0:
                raise ConfigError(
                    f"reset states {name!r}: expected a non-empty [M, *{self.obs_layout.shape}] "
                    f"array, got shape {pool.shape}."
                )
        has_uncertainty = self._probe_uncertainty(
            backend, reset_states.start[:1], discrete=self.act_layout.kind == "discrete"
        )
        if (settings.penalty > 0 or settings.halt is not None) and not has_uncertainty:
            raise ConfigError(
                "penalty/halt need a model with uncertainty (e.g. an ensemble); this model has "
                "none. Set penalty=0 and halt=None."
            )
        self.reset_states = reset_states
        self._seen_low, self._seen_high = _seen_band(reset_states)
        self.settings = settings
        self.num_envs = int(num_envs)
        self.has_uncertainty = has_uncertainty
        self.latent = settings.observation == "latent"
        if not self.latent and not backend.decodes_observations:
            raise ConfigError(
                "observation='decoded': this model has no observation decoder (a decoder-free "
                "family such as TD-MPC2 predicts latents, rewards and terminations, never "
                "observations), so its dream cannot show observations; make it with "
                "observation='latent' and deploy the policy with LatentObservation."
            )
        goal_width = 0
        if self.latent:
            width = backend.latent(backend.encode(reset_states.start[:1])).shape[1]
            goal_width = width if settings.goal_reward else 0
            self.observation_space = spaces.Box(-np.inf, np.inf, (width + goal_width,), np.float32)
        #: goal features ``[N, F]`` (``goal_reward`` only; ``[N, 0]`` otherwise)
        self.goals = np.zeros((num_envs, goal_width), np.float32)
        self.rngs: list[np.random.Generator] = [np.random.default_rng() for _ in range(num_envs)]
        self.keys = np.zeros(num_envs, np.uint64)
        self.counters = np.zeros(num_envs, np.uint64)
        self.elapsed = np.zeros(num_envs, np.int64)
        self.state: Any = None
        self._started = np.zeros(num_envs, bool)
        if isinstance(action_space, spaces.Box):
            self._low = action_space.low.astype(np.float32)
            self._high = action_space.high.astype(np.float32)

    @staticmethod
    def _probe_uncertainty(backend: DreamBackend, obs: np.ndarray, discrete: bool) -> bool:
        """Whether the model reports uncertainty (one step from one observation, with action
        0: one-hot for ``discrete`` action spaces, zeros otherwise)."""
        noise = {
            k: np.full((1, *v.shape), 0.5 if v.distribution == "uniform" else 0.0, np.float32)
            for k, v in backend.noise_spec.items()
        }
        action = np.zeros((1, backend.action_dim), np.float32)
        if discrete:
            action[0, 0] = 1.0
        _, res = backend.step(backend.encode(obs), action, noise)
        return res.uncertainty is not None

    # -- observations between the model's layout and the environment's space --------------------
    def to_space(self, obs: np.ndarray) -> np.ndarray:
        """Model-layout observations ``[K, *O]`` -> ``[K, *S]`` in the space's dtype (images:
        rounded and clipped to 0..255, CHW -> HWC)."""
        if self.obs_layout.kind == "image":
            pixels = np.clip(np.rint(obs), 0, 255).astype(np.uint8)
            return np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))
        return obs.astype(self.data_space.dtype, copy=False)

    def from_space(self, obs: np.ndarray, what: str) -> np.ndarray:
        """``[K, *S]`` observations given by a user -> model layout, with checks."""
        space_shape = tuple(self.data_space.shape or ())
        obs = np.asarray(obs)
        if obs.shape[1:] != space_shape:
            raise ConfigError(
                f"{what}: expected observations of shape [K, *{space_shape}], got {obs.shape}."
            )
        if obs.dtype.kind not in "fiu":
            raise ConfigError(f"{what}: expected real numbers, got dtype {obs.dtype}.")
        if np.issubdtype(obs.dtype, np.floating) and not np.isfinite(obs).all():
            raise ConfigError(f"{what}: observations contain NaN or inf.")
        converted = self.obs_layout.convert(obs)
        if self.obs_layout.kind == "vector":
            outside = (converted < self._seen_low) | (converted > self._seen_high)
            if outside.any():
                dims = np.flatnonzero(outside.any(0))[:5].tolist()
                raise ConfigError(
                    f"{what}: observation dimensions {dims} lie far outside anything the model "
                    f"learned from: expected values in [{self._seen_low[dims].tolist()}, "
                    f"{self._seen_high[dims].tolist()}] (the dataset's range widened by its "
                    f"width on each side), got {converted[:, dims].tolist()[:3]}."
                )
        return converted

    # -- actions ---------------------------------------------------------------------------------
    def check_actions(self, actions: Any) -> np.ndarray:
        """Actions ``[N, A]`` (Box) or ``[N]`` (Discrete) -> float32 ``[N, A]`` model input."""
        n = self.num_envs
        arr = np.asarray(actions)
        if self.act_layout.kind == "discrete":
            whole_floats = (
                arr.shape == (n,)
                and np.issubdtype(arr.dtype, np.floating)
                and bool(np.isfinite(arr).all() and (arr == np.round(arr)).all())
            )
            if whole_floats:
                arr = arr.astype(np.int64)
            if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
                raise DreamActionError(
                    f"expected {n} integer actions in [0, {self.act_layout.dim}), got an "
                    f"array of shape {arr.shape} and dtype {arr.dtype}."
                )
            if arr.min() < 0 or arr.max() >= self.act_layout.dim:
                raise DreamActionError(
                    f"expected actions in [0, {self.act_layout.dim}), got values in "
                    f"[{arr.min()}, {arr.max()}]."
                )
            return self.act_layout.convert(arr)
        dim = self.act_layout.dim
        if arr.shape != (n, dim):
            raise DreamActionError(f"expected actions of shape ({n}, {dim}), got {arr.shape}.")
        if arr.dtype.kind not in "fiu":  # bool, complex, object, strings: not an action value
            raise DreamActionError(
                f"expected real-valued actions (a float or integer dtype), got dtype {arr.dtype}."
            )
        wide = arr.astype(np.float64)  # checked before float32 could overflow to inf
        if not np.isfinite(wide).all():
            raise DreamActionError("actions contain NaN or inf.")
        outside = (wide < self._low) | (wide > self._high)
        if outside.any():
            if self.settings.out_of_bounds == "error":
                raise DreamActionError(
                    f"actions outside the action space [{self._low.min()}, {self._high.max()}]: "
                    f"got values in [{wide.min()}, {wide.max()}]."
                )
            wide = np.clip(wide, self._low, self._high)
        return wide.astype(np.float32)

    # -- reset and step ---------------------------------------------------------------------------
    def reset(
        self, index: np.ndarray, obs: np.ndarray | None = None, goal: np.ndarray | None = None
    ) -> np.ndarray:
        """Start new episodes in environments ``index`` ``[K]``; returns their observations
        ``[K, *S]``. ``obs`` (``[K, *S]``) starts them from given observations instead;
        ``goal`` (``[K, *S]``, with ``goal_reward``) gives their goals."""
        index = np.asarray(index, dtype=np.int64)
        k = len(index)
        if obs is not None:
            given = self.from_space(obs, "reset observations")
            if len(given) != k:
                raise ConfigError(
                    f"reset observations: expected {k} (one per environment reset), got {len(given)}."
                )
        if goal is not None:
            if not self.settings.goal_reward:
                raise ConfigError(
                    "reset option 'goal': this dream has no goals; make it with "
                    "observation='latent', goal_reward=True."
                )
            goal_obs = self.from_space(goal, "goal observations")
            if len(goal_obs) != k:
                raise ConfigError(
                    f"goal observations: expected {k} (one per environment reset), got "
                    f"{len(goal_obs)}."
                )
        pool = self.reset_states.start if self.settings.reset == "start" else self.reset_states.any
        draw_goals = self.settings.goal_reward and goal is None
        rows = np.empty(k, np.int64)
        goal_rows = np.empty(k if draw_goals else 0, np.int64)
        for j, i in enumerate(index):
            rng = self.rngs[i]
            self.keys[i] = np.uint64(rng.integers(0, 2**63, dtype=np.int64))
            rows[j] = rng.integers(len(pool))
            if draw_goals:
                goal_rows[j] = rng.integers(len(self.reset_states.any))
        model_obs = given if obs is not None else pool[rows]
        if self.settings.goal_reward:
            if draw_goals:
                goal_obs = self.reset_states.any[goal_rows]
            self.goals[index] = self.backend.latent(self.backend.encode(goal_obs))
        new_state = self.backend.encode(model_obs)
        if self.state is None or (k == self.num_envs and (index == np.arange(k)).all()):
            if k != self.num_envs:
                raise ContractError("the first reset of a dream core must reset every environment.")
            self.state = new_state
        else:
            self.state = self.backend.replace(self.state, index, new_state)
        self.counters[index] = 0
        self.elapsed[index] = 0
        self._started[index] = True
        if self.latent:
            return self._with_goals(self.backend.latent(new_state), index)
        return self.to_space(model_obs)

    def _with_goals(self, features: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
        """Latent features ``[K, F]`` -> what the agent sees: ``[K, 2F]`` with the goals of
        environments ``index`` (all when None) under ``goal_reward``, else unchanged."""
        if not self.settings.goal_reward:
            return features
        goals = self.goals if index is None else self.goals[index]
        return np.concatenate([features, goals], axis=1)

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Step every environment: ``(obs [N, *S], reward [N], terminated [N], truncated [N],
        info)`` with ``info`` arrays ``wf.raw_reward``, ``wf.penalty``, ``wf.halted`` and
        ``wf.uncertainty`` (models with uncertainty)."""
        if not self._started.all():
            raise ContractError("step() before reset(): reset the environment first.")
        model_actions = self.check_actions(actions)
        noise, extra = counter_noise(self.backend.noise_spec, self.keys, self.counters, extra=1)
        if self.settings.noise_scale != 1.0:
            for name, spec in self.backend.noise_spec.items():
                if spec.distribution == "normal":
                    noise[name] *= np.float32(self.settings.noise_scale)
        state, res = self.backend.step(self.state, model_actions, noise)
        # decoder-free models give no obs and only run in latent mode (checked at construction)
        latent = self.backend.latent(state) if self.latent else None
        shown = res.obs if res.obs is not None else latent
        assert shown is not None
        finite = np.isfinite(shown.reshape(self.num_envs, -1)).all(1)
        finite &= np.isfinite(res.reward) & np.isfinite(res.continue_prob)
        if res.uncertainty is not None:
            finite &= np.isfinite(res.uncertainty)
        if not finite.all():
            bad = np.flatnonzero(~finite)[:5].tolist()
            raise DreamStateError(
                f"the model predicted NaN or inf in environments {bad} at steps "
                f"{self.elapsed[bad].tolist()}; the dream cannot continue from such a state."
            )
        self.state = state
        self.counters += np.uint64(1)
        self.elapsed += 1
        s = self.settings
        if s.termination == "sample":
            terminated = extra[:, 0] >= res.continue_prob
        else:
            terminated = res.continue_prob < s.continue_threshold
        raw = res.reward.astype(np.float32)
        info: dict[str, np.ndarray] = {}
        if s.goal_reward:
            assert latent is not None  # goal_reward needs latent observations
            distance = np.linalg.norm(latent - self.goals, axis=1).astype(np.float32)
            info["wf.goal_distance"] = distance
            raw = -distance
        info["wf.raw_reward"] = raw
        penalty = np.zeros_like(raw)
        halted = np.zeros(self.num_envs, bool)
        if res.uncertainty is not None:
            info["wf.uncertainty"] = res.uncertainty
            penalty = (s.penalty * res.uncertainty).astype(np.float32)
            if s.halt is not None:
                halted = res.uncertainty > s.halt
                terminated = terminated | halted
        info["wf.penalty"] = penalty
        info["wf.halted"] = halted
        truncated = (
            self.elapsed >= s.horizon if s.horizon is not None else np.zeros(self.num_envs, bool)
        )
        obs = self._with_goals(latent) if latent is not None else self.to_space(shown)
        reward = raw - penalty
        if not np.isfinite(reward).all():  # e.g. a huge but finite uncertainty times the penalty
            bad = np.flatnonzero(~np.isfinite(reward))[:5].tolist()
            raise DreamStateError(
                f"the penalised reward is not finite in environments {bad} (raw reward "
                f"{raw[bad].tolist()}, penalty {penalty[bad].tolist()}); the dream cannot continue."
            )
        return obs, reward, terminated, truncated, info


def _seen_band(reset_states: ResetStates) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension bounds ``[*O]`` of observations a reset may start from: the range of the
    dataset's states (``start`` and ``any``) widened by its width on each side (at least 0.01).
    Only meaningful for vector observations; images are bounded by their dtype."""
    seen = np.concatenate([reset_states.start, reset_states.any]).astype(np.float64)
    low, high = seen.min(0), seen.max(0)
    width = np.maximum(high - low, 1e-2)
    return low - width, high + width
