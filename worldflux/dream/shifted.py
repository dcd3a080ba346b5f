"""Is a dream honest away from its data? The dream against the real environment under policies
other than the behaviour policy.

A fidelity report on logged actions only shows how well a model replays its dataset. An agent
trained in a dream acts differently, so this report drives the dream and the real environment
with the same policies (uniform random actions, the behaviour policy with Gaussian action noise,
the behaviour policy itself, and any other policy at hand) and compares:

* **open loop**: from the same real start states, under the same action sequences (those the
  policy took in the real environment), the model's k-step observation error in units of each
  dimension's dataset std (pixel range for images) and its reward error, over the episodes still
  running at step k;
* **one step**: every real transition of those rollouts (up to the largest k) replayed from its
  real observation; the observation error per transition and how well the model's uncertainty
  ranks those errors (Spearman), where the model has one;

  both use the model's deterministic prediction, as the held-out report
  (:mod:`worldflux.eval.fidelity`) does, so that sampling noise, which no epistemic uncertainty
  can foresee, does not blur them (simulators without a torch model: the dream's sampled steps);
* **closed loop**: the policy run in the dream (its default settings: resets, termination,
  halt) and in the real environment, up to the real environment's time limit: episode lengths
  (median, 10th and 90th percentiles), returns and the share of episodes that terminate.

Shapes: E = episodes, K = the largest horizon, O = the observation shape (model layout).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from .._optional import torch_available
from ..core.errors import ConfigError
from ..data.spaces import action_layout, observation_layout
from ..eval.fidelity import spearman, without_nan
from ..files import save_figure_atomic, write_text_atomic
from .noise import counter_noise

if TYPE_CHECKING:
    from .simulator import Backend, LearnedSimulator

Policy = Callable[[np.ndarray], np.ndarray]
DEFAULT_HORIZONS = (1, 5, 15, 50)
DEFAULT_NOISE = (0.1, 0.3)


@dataclass
class ShiftPolicy:
    """A named batched policy ``[N, *obs] -> [N, *action]`` (the real env's spaces)."""

    name: str
    act: Policy
    description: str = ""


@dataclass
class EpisodeStats:
    """First episodes of E environments: ``lengths [E]``, ``returns [E]``, ``terminated [E]``
    (ended by termination, not by the time limit)."""

    lengths: np.ndarray
    returns: np.ndarray
    terminated: np.ndarray

    def summary(self) -> dict[str, float]:
        q10, q50, q90 = np.percentile(self.lengths, [10, 50, 90])
        return {
            "episodes": len(self.lengths),
            "length_median": float(q50),
            "length_p10": float(q10),
            "length_p90": float(q90),
            "return_mean": float(self.returns.mean()),
            "return_std": float(self.returns.std()),
            "termination_rate": float(self.terminated.mean()),
        }


@dataclass
class PolicyShift:
    """Everything measured for one policy."""

    name: str
    description: str
    open_loop: dict[int, dict[str, float]]
    one_step: dict[str, float]
    real: EpisodeStats
    dream: EpisodeStats

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "open_loop": {str(k): v for k, v in self.open_loop.items()},
            "one_step": self.one_step,
            "real": {**self.real.summary(), "lengths": self.real.lengths.tolist()},
            "dream": {**self.dream.summary(), "lengths": self.dream.lengths.tolist()},
        }


@dataclass
class ShiftedPolicyReport:
    """The dream against the real environment under several policies (see module docstring)."""

    env_id: str
    horizons: list[int]
    episodes: int
    settings: dict[str, Any]
    policies: list[PolicyShift]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "env_id": self.env_id,
            "horizons": self.horizons,
            "episodes": self.episodes,
            "settings": self.settings,
            "policies": [p.to_dict() for p in self.policies],
            "notes": self.notes,
        }

    def to_markdown(self) -> str:
        lines = [
            f"Dream vs real {self.env_id} under shifted policies ({self.episodes} episodes per "
            f"policy and world; dream settings {json.dumps(self.settings, sort_keys=True)}).",
            "",
            "Closed loop (first episodes, up to the real time limit):",
            "",
            "| policy | real length median (p10-p90) | dream length median (p10-p90) | "
            "dream / real length | real return | dream return | real terminated | "
            "dream terminated |",
            "|---|---|---|---:|---:|---:|---:|---:|",
        ]
        for p in self.policies:
            r, d = p.real.summary(), p.dream.summary()
            lines.append(
                f"| {p.name} | {r['length_median']:.0f} ({r['length_p10']:.0f}-"
                f"{r['length_p90']:.0f}) | {d['length_median']:.0f} ({d['length_p10']:.0f}-"
                f"{d['length_p90']:.0f}) | {d['length_median'] / r['length_median']:.2f} | "
                f"{r['return_mean']:.1f} ± {r['return_std']:.1f} | {d['return_mean']:.1f} ± "
                f"{d['return_std']:.1f} | {r['termination_rate']:.0%} | "
                f"{d['termination_rate']:.0%} |"
            )
        ks = " | ".join(f"k={k}" for k in self.horizons)
        lines += [
            "",
            "Open loop from the same real states under the same actions: observation nRMSE "
            "(episodes still running at k); one-step nRMSE over every real transition and the "
            "Spearman correlation of the model's uncertainty with that error:",
            "",
            f"| policy | {ks} | one-step nRMSE | uncertainty Spearman | transitions |",
            "|---|" + "---:|" * (len(self.horizons) + 3),
        ]
        for p in self.policies:
            cells = " | ".join(
                f"{_fmt(p.open_loop[k]['obs_nrmse'])} (n={p.open_loop[k]['n']:.0f})"
                for k in self.horizons
            )
            o = p.one_step
            lines.append(
                f"| {p.name} | {cells} | {_fmt(o['obs_nrmse'])} | {_fmt(o['spearman'])} | "
                f"{o['n']:.0f} |"
            )
        lines += ["", *(f"* {p.name}: {p.description}" for p in self.policies)]
        lines += [f"\n{note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def save(self, directory: Path, stem: str = "shifted") -> list[Path]:
        """Write ``<stem>.json``, ``<stem>.md`` and ``<stem>.png``; return the paths."""
        directory.mkdir(parents=True, exist_ok=True)
        paths = [directory / f"{stem}.json", directory / f"{stem}.md", directory / f"{stem}.png"]
        write_text_atomic(
            paths[0], json.dumps(without_nan(self.to_dict()), indent=2, allow_nan=False) + "\n"
        )
        write_text_atomic(paths[1], self.to_markdown())
        self.plot(paths[2])
        return paths

    def plot(self, path: Path) -> None:
        """Left: open-loop nRMSE against k per policy; right: episode lengths, real and dream."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
        for i, p in enumerate(self.policies):
            ax0.plot(
                self.horizons,
                [p.open_loop[k]["obs_nrmse"] for k in self.horizons],
                "o-",
                color=f"C{i}",
                label=p.name,
            )
        ax0.set_xscale("log")
        ax0.set_xlabel("k (steps ahead, open loop)")
        ax0.set_ylabel("observation nRMSE")
        ax0.legend(fontsize=8)
        ax0.set_title("dream error from real states", fontsize=10)
        data, labels, colors = [], [], []
        for i, p in enumerate(self.policies):
            data += [p.real.lengths, p.dream.lengths]
            labels += [f"{p.name}\nreal", "dream"]
            colors += ["0.6", f"C{i}"]
        box = ax1.boxplot(data, patch_artist=True, whis=(10, 90), showfliers=False)
        for patch, color in zip(box["boxes"], colors, strict=True):
            patch.set_facecolor(color)
        ax1.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
        ax1.set_yscale("log")
        ax1.set_ylabel("episode length (p10-p90 whiskers)")
        ax1.set_title("closed-loop episode lengths: real (grey) vs dream", fontsize=10)
        fig.tight_layout()
        save_figure_atomic(fig, path, dpi=90)
        plt.close(fig)


def _fmt(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.3f}"


# -- rollouts ------------------------------------------------------------------------------------
@dataclass
class RealRollouts:
    """E real first episodes of one policy: the first K steps recorded (model layout).

    Attributes:
        obs: ``[E, K + 1, *O]``; rows after an episode's end repeat its last observation.
        actions: ``[E, K, A]`` model-layout actions (one-hot for discrete spaces).
        rewards: ``[E, K]``.
        alive: ``[E, K]`` whether step t happened (the episode had not ended before it).
        episodes: the whole first episodes' statistics.
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    alive: np.ndarray
    episodes: EpisodeStats


def real_rollouts(
    env_id: str, policy: Policy, episodes: int, record: int, seed: int
) -> RealRollouts:
    """Run ``policy`` in ``episodes`` real environments (seeded ``seed + i``) until each has
    finished its first episode, recording its first ``record`` steps."""
    venv = gym.make_vec(env_id, num_envs=episodes, vectorization_mode="sync")
    try:
        obs_layout = observation_layout(venv.single_observation_space)
        act_layout = action_layout(venv.single_action_space)
        obs, _ = venv.reset(seed=seed)
        model_obs = obs_layout.convert(obs)
        rec_obs = np.repeat(model_obs[:, None], record + 1, axis=1)
        rec_act = np.zeros((episodes, record, act_layout.dim), np.float32)
        rec_rew = np.zeros((episodes, record), np.float32)
        alive = np.zeros((episodes, record), bool)
        stats = _first_episodes(venv, policy, obs, rec_obs, rec_act, rec_rew, alive)
        return RealRollouts(rec_obs, rec_act, rec_rew, alive, stats)
    finally:
        venv.close()


def _first_episodes(
    venv: Any,
    policy: Policy,
    obs: np.ndarray,
    rec_obs: np.ndarray | None = None,
    rec_act: np.ndarray | None = None,
    rec_rew: np.ndarray | None = None,
    alive: np.ndarray | None = None,
    max_steps: int = 100_000,
) -> EpisodeStats:
    """Step a gymnasium vector env (``NextStep`` autoreset) with ``policy`` from ``obs`` until
    every environment has ended its first episode; record the first steps where asked."""
    n = venv.num_envs
    obs_layout = observation_layout(venv.single_observation_space)
    act_layout = action_layout(venv.single_action_space)
    returns = np.zeros(n)
    lengths = np.zeros(n, np.int64)
    terminated_first = np.zeros(n, bool)
    running = np.ones(n, bool)
    t = 0
    while running.any():
        if t >= max_steps:
            raise ConfigError(
                f"shifted-policy evaluation: an episode is still running after {max_steps} "
                "steps; give the environment a time limit."
            )
        action = policy(obs)
        next_obs, reward, terminated, truncated, _ = venv.step(action)
        terminated, truncated = np.asarray(terminated), np.asarray(truncated)
        if rec_obs is not None and t < rec_obs.shape[1] - 1:
            assert rec_act is not None and rec_rew is not None and alive is not None
            rec_act[running, t] = act_layout.convert(np.asarray(action))[running]
            rec_rew[running, t] = np.asarray(reward)[running]
            alive[running, t] = True
            rows = np.flatnonzero(running)
            rec_obs[rows, t + 1 :] = obs_layout.convert(next_obs)[rows, None]
        returns += np.where(running, reward, 0.0)
        lengths += running
        terminated_first |= running & terminated
        running &= ~(terminated | truncated)
        obs = next_obs
        t += 1
    return EpisodeStats(lengths, returns, terminated_first)


def dream_open_loop(
    backend: Any, obs0: np.ndarray, actions: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """From observations ``obs0 [E, *O]``, step ``backend`` with ``actions [E, K, A]`` (noise
    from per-row keys drawn from ``seed``): ``(obs [E, K, *O], reward [E, K],
    uncertainty [E, K] or None)``."""
    e, k = actions.shape[:2]
    keys: np.ndarray = np.asarray(
        np.random.default_rng(seed).integers(0, 2**63, size=e, dtype=np.int64), np.uint64
    )
    state = backend.encode(obs0)
    preds, rewards, uncertainty = [], [], []
    for t in range(k):
        noise, _ = counter_noise(backend.noise_spec, keys, np.full(e, t, np.uint64))
        state, res = backend.step(state, actions[:, t].astype(np.float32), noise)
        preds.append(res.obs)
        rewards.append(res.reward)
        if res.uncertainty is not None:
            uncertainty.append(res.uncertainty)
    return (
        np.stack(preds, 1),
        np.stack(rewards, 1),
        np.stack(uncertainty, 1) if uncertainty else None,
    )


def model_open_loop(
    model: Any, obs0: np.ndarray, actions: np.ndarray, batch: int = 4096
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """As :func:`dream_open_loop`, with the torch ``model``'s deterministic prediction."""
    import torch

    outs: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(obs0), batch):
            o = torch.as_tensor(obs0[i : i + batch], device=model.device)
            a = torch.as_tensor(actions[i : i + batch], dtype=torch.float32, device=model.device)
            traj = model.rollout(model.encode(o), a.transpose(0, 1), deterministic=True)
            u = traj.uncertainty
            outs.append(
                (
                    traj.obs.transpose(0, 1).float().cpu().numpy(),
                    traj.rewards.transpose(0, 1).float().cpu().numpy(),
                    None if u is None else u.transpose(0, 1).float().cpu().numpy(),
                )
            )
    obs, rewards, us = zip(*outs, strict=True)
    return (
        np.concatenate(obs),
        np.concatenate(rewards),
        None if us[0] is None else np.concatenate(us),
    )


def _nrmse_rows(err: np.ndarray, scale: np.ndarray | float) -> np.ndarray:
    """Per-row RMSE ``[M]`` of errors ``[M, *O]`` in units of ``scale``."""
    return np.sqrt(np.mean((err / scale).reshape(len(err), -1) ** 2, axis=1))


def measure_policy(
    sim: LearnedSimulator,
    policy: ShiftPolicy,
    *,
    predict: Callable[[np.ndarray, np.ndarray, int], tuple[Any, Any, Any]],
    dream_env: Any,
    episodes: int,
    horizons: Sequence[int],
    scale: np.ndarray | float,
    seed: int,
) -> PolicyShift:
    """Open-loop, one-step and closed-loop measurements of one policy (module docstring)."""
    assert sim.source_env is not None
    k_max = max(horizons)
    real = real_rollouts(sim.source_env, policy.act, episodes, k_max, seed)
    low, high = _action_bounds(sim)
    actions = real.actions if low is None else np.clip(real.actions, low, high)
    pred, reward, _ = predict(real.obs[:, 0], actions, seed)
    open_loop = {}
    for k in horizons:
        valid = real.alive[:, k - 1]
        if not valid.any():
            open_loop[k] = {"obs_nrmse": float("nan"), "reward_rmse": float("nan"), "n": 0.0}
            continue
        err = _nrmse_rows((pred[:, k - 1] - real.obs[:, k])[valid], scale)
        open_loop[k] = {
            "obs_nrmse": float(np.sqrt(np.mean(err**2))),
            "reward_rmse": float(
                np.sqrt(np.mean((reward[:, k - 1] - real.rewards[:, k - 1])[valid] ** 2))
            ),
            "n": float(valid.sum()),
        }
    # one step from every recorded real transition
    rows, steps = np.nonzero(real.alive)
    one_pred, _, one_u = predict(real.obs[rows, steps], actions[rows, steps][:, None], seed + 1)
    errors = _nrmse_rows(one_pred[:, 0] - real.obs[rows, steps + 1], scale)
    one_step = {
        "obs_nrmse": float(np.sqrt(np.mean(errors**2))),
        "spearman": float("nan") if one_u is None else spearman(one_u[:, 0], errors),
        "n": float(len(errors)),
    }
    obs, _ = dream_env.reset(seed=seed)
    dream = _first_episodes(dream_env, policy.act, obs)
    return PolicyShift(policy.name, policy.description, open_loop, one_step, real.episodes, dream)


def _action_bounds(sim: LearnedSimulator) -> tuple[np.ndarray | None, np.ndarray | None]:
    space = sim.action_space
    if isinstance(space, gym.spaces.Box):
        return space.low.astype(np.float32), space.high.astype(np.float32)
    return None, None


def observation_scale(sim: LearnedSimulator) -> np.ndarray | float:
    """Units of the observation errors: 255 for images; for vectors, each dimension's std over
    the simulator's dataset observations (``reset_states.any``, floored at 1e-6)."""
    if observation_layout(sim.observation_space).kind == "image":
        return 255.0
    return np.maximum(sim.reset_states.any.astype(np.float64).std(0), 1e-6)


# -- policies ------------------------------------------------------------------------------------
def behaviour_policy_file(sim: LearnedSimulator) -> Path | None:
    """The behaviour policy (an SB3 zip) of the simulator's dataset recipe, when it has one and
    it exists: the card's recipe, or the recipe that builds the recorded dataset; a mixed
    recipe gives its first part's."""
    from ..data.pipeline import MixSpec
    from ..data.recipes import load_recipes, recipe_spec

    recipes = load_recipes()
    name = None
    card = sim.info.get("card")
    if card is not None:
        from .cards import load_cards

        cards = load_cards()
        name = cards[card].dataset_recipe if card in cards else None
    if name is None:
        dataset = sim.info.get("dataset")
        name = next(
            (n for n, r in recipes["dataset"].items() if r.get("dataset_id") == dataset), None
        )
    if name is None:
        return None
    spec = recipe_spec(name, recipes)
    if isinstance(spec, MixSpec):  # parts are never mixes themselves
        spec = spec.parts[0].spec
    if spec.train is not None and spec.train.save_to is not None:
        path = Path(spec.train.save_to)
    elif spec.policy not in ("random", "train"):
        path = Path(spec.policy)
    else:
        return None
    return path if path.is_file() else None


def default_policies(
    sim: LearnedSimulator,
    *,
    behaviour: str | Path | None = None,
    noise: Sequence[float] = DEFAULT_NOISE,
    extra: dict[str, str | Path] | None = None,
    seed: int = 0,
) -> tuple[list[ShiftPolicy], list[str]]:
    """The policies of the report and notes about them: uniform random actions; with a
    behaviour policy (``behaviour``, else the dataset recipe's), that policy plus action noise at
    each ``noise`` scale (Box: Gaussian, in units of half the action range; Discrete: the
    probability of a uniformly random action) and alone; and each
    of ``extra`` (name -> SB3 zip)."""
    from ..data.collect import RandomPolicy, SB3Policy

    assert sim.source_env is not None
    probe = gym.make(sim.source_env)
    notes: list[str] = []
    try:
        policies = [
            ShiftPolicy("random", RandomPolicy(probe.action_space, seed), "uniform random actions")
        ]
        file = Path(behaviour) if behaviour is not None else behaviour_policy_file(sim)
        if file is None:
            notes.append(
                "No behaviour policy is at hand (none recorded for the dataset): only random "
                "actions and the given policies were compared."
            )
        else:
            discrete = isinstance(probe.action_space, gym.spaces.Discrete)
            for scale in noise:
                what = (
                    f"a uniformly random action with probability {scale:g}"
                    if discrete
                    else f"Gaussian action noise {scale:g} x half the action range"
                )
                policies.append(
                    ShiftPolicy(
                        f"behaviour+noise{scale:g}",
                        SB3Policy.from_file(file, probe, action_noise=scale, seed=seed + 1),
                        f"{file.name}, deterministic, {what}",
                    )
                )
            # Discrete: the policy's own distribution (a deterministic game policy can stall,
            # e.g. never serve the ball, until the time limit)
            policies.append(
                ShiftPolicy(
                    "behaviour",
                    SB3Policy.from_file(file, probe, sample=discrete, seed=seed + 2),
                    f"{file.name}, {'sampled' if discrete else 'deterministic'}",
                )
            )
        for name, path in (extra or {}).items():
            policies.append(
                ShiftPolicy(name, SB3Policy.from_file(path, probe), f"{Path(path).name}")
            )
    finally:
        probe.close()
    return policies, notes


def shifted_policy_report(
    sim: LearnedSimulator,
    *,
    policies: Sequence[ShiftPolicy] | None = None,
    episodes: int = 32,
    horizons: Sequence[int] = DEFAULT_HORIZONS,
    seed: int = 0,
    backend: Backend | None = None,
    **settings: Any,
) -> ShiftedPolicyReport:
    """Compare ``sim``'s dream with its real environment under ``policies`` (default:
    :func:`default_policies`); ``settings`` override the dream's defaults for the closed-loop
    runs (the horizon is the real environment's time limit)."""
    from .make import default_backend, make_dream_env

    if sim.source_env is None:
        raise ConfigError(
            "shifted-policy evaluation needs the real environment: this simulator records no "
            "source_env."
        )
    decoded = sim.onnx.decoded if sim.onnx is not None else sim.torch_model().decodes_observations
    if not decoded:
        raise ConfigError(
            "shifted-policy evaluation compares predicted observations with the real ones; this "
            "model has no observation decoder (a decoder-free family such as TD-MPC2). Its "
            "fidelity report (worldflux train) measures rewards, terminations and latent errors."
        )
    if episodes < 1:
        raise ConfigError(f"episodes: expected >= 1, got {episodes}.")
    if not horizons or min(horizons) < 1:
        raise ConfigError(f"horizons: expected positive step counts, got {list(horizons)}.")
    notes: list[str] = []
    if policies is None:
        policies, notes = default_policies(sim, seed=seed)
    limit = gym.spec(sim.source_env).max_episode_steps
    chosen = backend if backend is not None else default_backend(sim, device="cpu", bf16=False)
    predict: Callable[[np.ndarray, np.ndarray, int], tuple[Any, Any, Any]]
    if torch_available() and (sim.model is not None or sim.folder is not None):
        model = sim.torch_model()
        predict = lambda obs, actions, seed: model_open_loop(model, obs, actions)  # noqa: E731
    else:
        notes.append(
            "Without torch, open-loop and one-step errors come from the dream's sampled steps."
        )
        model_backend = sim.make_backend("onnx")
        predict = lambda obs, actions, seed: dream_open_loop(  # noqa: E731
            model_backend, obs, actions, seed
        )
    closed = {**settings, **({} if limit is None else {"horizon": limit})}
    dream_env = make_dream_env(sim, num_envs=episodes, backend=chosen, **closed)
    scale = observation_scale(sim)
    results = []
    try:
        for policy in policies:
            results.append(
                measure_policy(
                    sim,
                    policy,
                    predict=predict,
                    dream_env=dream_env,
                    episodes=episodes,
                    horizons=sorted(set(horizons)),
                    scale=scale,
                    seed=seed,
                )
            )
    finally:
        dream_env.close()
    effective = {
        k: v
        for k, v in vars(sim.settings(**closed)).items()
        if k
        in (
            "reset",
            "termination",
            "horizon",
            "penalty",
            "noise_scale",
            "halt",
            "continue_threshold",
        )
    }
    notes.append(
        "Observation errors are in units of each dimension's std over the simulator's dataset "
        "observations (pixel range for images). Dream episodes start from dataset episode "
        "starts (reset='start') or as the settings say; real ones from the real reset."
    )
    return ShiftedPolicyReport(
        sim.source_env, sorted(set(horizons)), episodes, effective, results, notes
    )


__all__ = [
    "EpisodeStats",
    "PolicyShift",
    "ShiftPolicy",
    "ShiftedPolicyReport",
    "behaviour_policy_file",
    "default_policies",
    "dream_open_loop",
    "model_open_loop",
    "real_rollouts",
    "shifted_policy_report",
]
