"""`worldflux agent train RECIPE`: a stable-baselines3 agent trained only in a dream vector env,
scored periodically in the dream and on the real environment, and a final reality-gap report.

Output folder (written into a staging folder and moved into place at the end)::

    agent.json            recipe, versions, timings, the evaluations and the final scores
    model.zip             the SB3 model (+ model.obs_norm.json with VecNormalize's statistics)
    selected.zip          with periodic evaluations: the policy the dream rates best (offline
                          policy selection; + selected.obs_norm.json), see ``selection`` below
    checkpoints/          with periodic evaluations: every policy evaluated during training,
                          ``step-N.zip`` after N dream steps (+ its obs_norm.json; no optimiser
                          states), named by its evaluation's ``policy``: to score them anew later
    logs/                 SB3 logger output: progress.csv and TensorBoard events (eval/* scalars)
    reality_gap.{md,png}  dream vs real returns: learning curves and the final episodes
    fidelity.{md,png}     the dream env's fidelity report, when its artifact has one

With ``policy_average`` the policies scored, checkpointed, selected and saved act with the Polyak
average of the trained acting weights (:mod:`worldflux.rl.averaging`); training never sees it.
"""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from .._version import __version__
from ..core.errors import ConfigError, unknown_name_message
from ..core.serialization import replace_dir_atomically
from ..data.collect import RandomPolicy, SB3Policy
from ..data.sb3_policy import (
    policy_name,
    save_obs_norm,
    save_sb3_policy,
    vecnormalize_obs_norm,
)
from ..dream.core import DreamCore, ResetStates
from ..dream.latent import LatentObservation
from ..dream.make import load_simulator, make_dream_env
from ..dream.simulator import LearnedSimulator
from ..files import refuse_foreign_folder
from ..training.config import resolve_threads
from .activations import resolve_policy_kwargs
from .averaging import policy_average
from .behaviour import CLONE_LR, BehaviourCloner, BehaviourData, seed_normaliser
from .evaluate import Episodes, first_episodes, real_env_episodes
from .recipes import EVALUATION_ACTIONS, AgentRecipe
from .report import write_reality_gap

#: offsets that keep evaluation seeds apart from training seeds
EVAL_SEED, FINAL_SEED = 10_000, 20_000


def latent_wrapper(sim: LearnedSimulator, backend: str | None) -> Any:
    """``env -> LatentObservation(env, sim)`` on the recipe's backend (torch for ``auto`` or
    none: it filters with the posterior step)."""

    def to_latent(env: Any) -> Any:
        return LatentObservation(env, sim, backend="onnx" if backend == "onnx" else "torch")

    return to_latent


#: the uncertainty percentile at which the ``halted`` estimate ends a dream episode
SELECTION_HALT = "p99"
#: the uncertainty weight of the ``penalised`` estimate (that of the ``mopo-*`` offline methods)
SELECTION_PENALTY = 5.0
#: the estimate of :func:`dream_estimates` that picks the dream-selected policy where the model
#: has it (the raw dream return otherwise)
SELECTION_ESTIMATE = "mean"


def prediction_settings(env_id: str, fallback_horizon: int = 1000) -> dict[str, Any]:
    """Dream settings that predict ``env_id``'s return: from the dataset's episode starts, up to
    its time limit (``fallback_horizon`` without one), raw rewards, no halt, the model's sampled
    transitions (``noise_scale`` 1, whatever an agent trained with)."""
    import gymnasium as gym

    limit = gym.spec(env_id).max_episode_steps
    horizon = limit if limit is not None else fallback_horizon
    return {"reset": "start", "penalty": 0.0, "halt": None, "horizon": horizon, "noise_scale": 1.0}


def samples_gaussian_noise(sim: LearnedSimulator) -> bool:
    """Whether ``sim``'s model draws Gaussian noise in its transitions (an ensemble's aleatoric
    noise, an RSSM's latent noise): then its mean transitions differ from its samples."""
    spec = sim.onnx.noise if sim.onnx is not None else sim.torch_model().noise_spec()
    return any(s.distribution == "normal" for s in spec.values())


def dream_estimates(sim: LearnedSimulator, base: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``base`` dream settings changed for the return estimates recorded beside the raw one, for
    offline policy selection. The same for every policy (whatever it trained with), so that they
    rank policies on one scale.

    ``mean`` (models that sample Gaussian noise): the model's mean transitions
    (``noise_scale=0``); an ensemble still draws an elite per step. A learned variance that
    overstates the step noise makes sampled episodes fall early, so the sampled return
    under-predicts good gaits; the mean transitions rank Walker2d's MOPO checkpoints better
    (``docs/offline-rl.md``). The dream-selected policy is chosen by this estimate where the
    model has one (:data:`SELECTION_ESTIMATE`).

    Pessimistic estimates, for models with uncertainty: ``penalised``: every reward less
    :data:`SELECTION_PENALTY` x the uncertainty (MOPO's penalised return); ``halted``: the
    episode ends where the uncertainty passes its calibrated :data:`SELECTION_HALT` (MOReL's
    halt), so a policy that leaves the data collects no reward beyond (pessimistic where rewards
    are positive, as in locomotion; not where they are negative)."""
    estimates = {}
    if samples_gaussian_noise(sim):
        estimates[SELECTION_ESTIMATE] = {**base, "noise_scale": 0.0}
    if SELECTION_HALT in sim.calibration:
        estimates["penalised"] = {**base, "penalty": SELECTION_PENALTY}
        estimates["halted"] = {**base, "halt": SELECTION_HALT}
    return estimates


def recorded_estimates(evaluation: dict[str, Any]) -> dict[str, float]:
    """The :func:`dream_estimates` returns an ``agent.json`` evaluation recorded (runs written
    before the mean estimate recorded the pessimistic ones as ``dream_pessimistic``)."""
    return dict(evaluation.get("dream_estimates", evaluation.get("dream_pessimistic", {})))


class _Scorer:
    """Scores the current policy in the dream and on the real environment.

    The dream is scored as a prediction of the real return: from the dataset's episode starts,
    up to the real environment's time limit, with raw rewards (no penalty), no halt and the
    model's sampled transitions, whatever short branches, pessimism and noise scale the agent
    trained with; beside it the estimates of
    :func:`dream_estimates` (``dream_estimates``: mean transitions, pessimistic ones). Latent
    policies (``observation = "latent"``) meet the real environment through
    :class:`LatentObservation`.
    """

    def __init__(self, recipe: AgentRecipe, sim: LearnedSimulator, real_env: str) -> None:
        self.recipe, self.sim, self.real_env = recipe, sim, real_env
        self.history: list[dict[str, Any]] = []
        raw = {**recipe.dream, **prediction_settings(real_env, recipe.dream.get("horizon", 1000))}
        self.latent = recipe.dream.get("observation") == "latent"
        self.extra = dream_estimates(sim, raw)
        self.estimates = {"": raw, **self.extra}  # dream settings per estimate
        self._dream_envs: dict[tuple[str, int], Any] = {}

    def dream(self, policy: SB3Policy, episodes: int, seed: int, estimate: str = "") -> Episodes:
        """Episodes in the dream: the raw return (``estimate=""``) or one of the estimates of
        :func:`dream_estimates`."""
        if (estimate, episodes) not in self._dream_envs:
            self._dream_envs[estimate, episodes] = make_dream_env(
                self.sim, num_envs=episodes, backend=self.recipe.backend, **self.estimates[estimate]
            )
        return first_episodes(self._dream_envs[estimate, episodes], policy, seed)

    def estimate_returns(self, policy: SB3Policy, episodes: int, seed: int) -> dict[str, float]:
        """Mean dream return under each estimate of :func:`dream_estimates` (same episodes and
        seeds)."""
        return {k: self.dream(policy, episodes, seed, k).mean for k in self.extra}

    def selection_estimate(self) -> str:
        """The estimate that picks the dream-selected policy (``""``: the raw return)."""
        return SELECTION_ESTIMATE if SELECTION_ESTIMATE in self.extra else ""

    def real(self, policy: Any, episodes: int, seed: int) -> Episodes:
        wrappers = [latent_wrapper(self.sim, self.recipe.backend)] if self.latent else []
        return real_env_episodes(self.real_env, policy, episodes, seed, wrappers=wrappers)

    def close(self) -> None:
        for env in self._dream_envs.values():
            env.close()
        self._dream_envs.clear()


class _DreamSelection:
    """Offline policy selection: keeps the policy whose dream return (the estimate
    :data:`SELECTION_ESTIMATE` where the model has it, else the raw one; the evaluation
    episodes, :data:`EVAL_SEED`) is the highest so far, as a copy of its weights and its
    observation normalisation. Only the dream decides; the real return is recorded for reports."""

    def __init__(self) -> None:
        self.step: int | None = None
        self.dream = -float("inf")
        self.weights: dict[str, Any] = {}
        self.obs_norm: dict[str, Any] | None = None
        self.candidates: list[dict[str, float]] = []

    def offer(self, step: int, dream: float, policy: Any, obs_norm: dict[str, Any] | None) -> None:
        self.candidates.append({"step": step, "dream": dream})
        if self.step is None or dream > self.dream:
            self.step, self.dream = step, dream
            self.weights = copy.deepcopy(policy.state_dict())
            self.obs_norm = obs_norm


def train_agent(
    recipe: AgentRecipe,
    out: str | Path,
    *,
    budget: int | None = None,
    seed: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``recipe``'s agent in its dream env and write the output folder ``out`` (replaced
    atomically). ``budget`` and ``seed`` override the recipe's. Returns the summary that
    ``agent.json`` holds."""
    import stable_baselines3 as sb3
    import torch
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

    if budget is not None:
        recipe.budget = budget
    if seed is not None:
        recipe.seed = seed
    recipe.__post_init__()
    # the Trainer's default (half the CPUs unless OMP_NUM_THREADS is set): on a busy machine
    # spinning intra-op threads can make every update several times slower
    threads, threads_reason = resolve_threads("auto")
    if threads is not None:
        torch.set_num_threads(threads)
    if progress:
        print(f"  torch: {torch.get_num_threads()} CPU threads ({threads_reason})", flush=True)
    sim = load_simulator(recipe.env)
    real_env = recipe.evaluation.env or sim.source_env
    if real_env is None:
        raise ConfigError(
            f"agent recipe {recipe.name}: the dream env has no source environment; set "
            "[evaluation] env to the real environment's id."
        )
    target = Path(out)
    refuse_foreign_folder(target, "agent.json", "agent run")
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    started = time.time()
    closers: list[Any] = []  # closed whatever happens: envs, scorer, the logger's files
    try:
        venv: Any = make_dream_env(
            sim,
            num_envs=recipe.n_envs,
            vectorization="sb3",
            backend=recipe.backend,
            **recipe.dream,
        )
        core = venv.core
        backend_name = core.backend_name
        closers.append(venv)
        venv.seed(recipe.seed)
        venv = VecMonitor(venv)
        policy_class = policy_name(
            venv.observation_space, recipe.normalize, f"agent recipe {recipe.name}: {recipe.env}"
        )
        if recipe.normalize:
            gamma = float(recipe.hyperparameters.get("gamma", 0.99))
            venv = VecNormalize(venv, norm_obs=True, norm_reward=True, clip_obs=10.0, gamma=gamma)
        try:
            model = getattr(sb3, recipe.algorithm.upper())(
                policy_class,
                venv,
                seed=recipe.seed,
                verbose=0,
                **resolve_policy_kwargs(recipe.hyperparameters),
            )
        except TypeError as exc:
            raise ConfigError(
                f"agent recipe {recipe.name}: [hyperparameters] rejected by "
                f"{recipe.algorithm.upper()}: {exc}"
            ) from None
        behaviour, regulariser = _behaviour(recipe, sim, model, venv)
        replay = _replay(recipe, sim, model, venv, core, seed_norm=behaviour is None)
        average = policy_average(model.policy, recipe.policy_average)  # after any warm start
        scoring = average.swapped if average is not None else contextlib.nullcontext
        logger = configure(str(staged / "logs"), ["csv", "tensorboard"])
        closers.append(logger)
        model.set_logger(logger)
        scorer = _Scorer(recipe, sim, real_env)
        closers.append(scorer)
        selection = _DreamSelection()
        chosen_by = scorer.selection_estimate()

        def current_policy() -> SB3Policy:
            """The policy as scored: most likely actions, or sampled ones (seeded per call)."""
            return SB3Policy(
                model.policy,
                sim.action_space,
                obs_norm=vecnormalize_obs_norm(venv),
                sample=recipe.evaluation.actions == "sampled",
                seed=recipe.seed,
                name=recipe.algorithm,
            )

        def evaluate(step: int, episodes: int, seed_offset: int) -> dict[str, Any]:
            policy = current_policy()
            with _rng_untouched():  # training does not depend on the evaluation schedule
                dream = scorer.dream(policy, episodes, recipe.seed + seed_offset)
                real = scorer.real(policy, episodes, recipe.seed + seed_offset)
                estimates = scorer.estimate_returns(policy, episodes, recipe.seed + seed_offset)
            row = {"step": step, "dream": dream.to_dict(), "real": real.to_dict()}
            if estimates:
                row["dream_estimates"] = estimates
            for where, ep in (("dream", dream), ("real", real)):
                model.logger.record(f"eval/{where}_return_mean", ep.mean)
                model.logger.record(f"eval/{where}_return_std", ep.std)
                model.logger.record(f"eval/{where}_length_mean", float(ep.lengths.mean()))
            model.logger.dump(step)
            if progress:
                print(
                    f"  {step:>9,} dream steps: return in the dream {dream.mean:9.1f}, "
                    f"on {real_env} {real.mean:9.1f}",
                    flush=True,
                )
            return row

        class Periodic(BaseCallback):
            """Scores the policy every ``[evaluation] every`` dream steps (0: never; the final
            evaluation after training always runs); regularises it towards the behaviour after
            every rollout (``[behaviour] regularise_steps``), then moves the policy average."""

            def __init__(self) -> None:
                super().__init__()
                self.next_eval = recipe.evaluation.every

            def _on_rollout_end(self) -> None:
                if regulariser is not None:
                    loss = regulariser.step(recipe.behaviour.regularise_steps)
                    self.logger.record("train/behaviour_loss", loss)
                if average is not None:
                    average.update()

            def _on_step(self) -> bool:
                every = recipe.evaluation.every
                if every and self.num_timesteps >= self.next_eval:
                    self.next_eval += every
                    with scoring():
                        self._checkpoint()
                return True

            def _checkpoint(self) -> None:
                """Score the policy, save it under ``checkpoints/`` and offer it for selection."""
                row = evaluate(self.num_timesteps, recipe.evaluation.episodes, EVAL_SEED)
                row["policy"] = f"checkpoints/step-{self.num_timesteps}.zip"
                norm = vecnormalize_obs_norm(venv)
                save_sb3_policy(model, staged / row["policy"], norm)
                scorer.history.append(row)
                selection.offer(
                    self.num_timesteps,
                    row["dream_estimates"][chosen_by] if chosen_by else row["dream"]["mean"],
                    model.policy,
                    norm,
                )

        total = _whole_rollouts(recipe.budget, model)
        if progress and total != recipe.budget:
            print(
                f"  budget {recipe.budget:,} dream steps, rounded up to {total:,}: "
                f"{recipe.algorithm.upper()} collects whole rollouts of "
                f"{model.n_steps} x {model.n_envs} steps",
                flush=True,
            )
        bar = progress and sys.stdout.isatty()  # a log file gets lines instead of a bar
        callbacks: list[BaseCallback] = [Periodic()]
        if progress and not bar:
            callbacks.append(_LineProgress(total, every_s=PROGRESS_EVERY_S))
        t0 = time.time()
        model.learn(
            total_timesteps=total,
            callback=callbacks,
            progress_bar=bar,
            log_interval=_log_interval(recipe),
        )
        train_s = time.time() - t0
        if average is not None:  # from here on the policy acts with the average
            average.load()

        final_n = recipe.evaluation.final_episodes
        final = evaluate(int(model.num_timesteps), final_n, FINAL_SEED)
        scorer.history.append(final)
        random_real = scorer.real(
            RandomPolicy(sim.action_space, seed=recipe.seed), final_n, FINAL_SEED
        )

        norm = vecnormalize_obs_norm(venv)
        if norm is not None:  # first: a zip never exists without its normalisation
            save_obs_norm(
                staged / "model.zip", norm["mean"], norm["var"], norm["clip_obs"], norm["epsilon"]
            )
        model.save(staged / "model.zip")
        selected = None
        if scorer.history[:-1]:  # periodic evaluations: the final policy competes on their scale
            episodes, seed_eval = recipe.evaluation.episodes, recipe.seed + EVAL_SEED
            with _rng_untouched():
                last = scorer.dream(current_policy(), episodes, seed_eval, chosen_by)
            selection.offer(int(model.num_timesteps), last.mean, model.policy, norm)
            if _save_selected(selection, model, staged):
                real_selected = final["real"]
            else:  # scored on the final evaluation's real episodes, for comparison
                policy = current_policy()
                policy.obs_norm = selection.obs_norm
                with _rng_untouched():
                    real_selected = scorer.real(policy, final_n, recipe.seed + FINAL_SEED).to_dict()
            selected = {
                "by": f"{chosen_by or 'raw'} dream return on the evaluation episodes",
                "step": selection.step,
                "dream": selection.dream,
                "real": real_selected,
                "file": "selected.zip",
                "candidates": selection.candidates,
            }
        if sim.folder is not None:
            for name in ("fidelity.md", "fidelity.png", "fidelity.json"):
                if (sim.folder / name).is_file():
                    shutil.copy2(sim.folder / name, staged / name)
        summary: dict[str, Any] = {
            "recipe": {**asdict(recipe)},
            "dream_env": _source_key(recipe.env),
            "backend": backend_name,
            "real_env": real_env,
            "library_version": __version__,
            "torch_version": torch.__version__,
            "sb3_version": sb3.__version__,
            "torch_threads": torch.get_num_threads(),
            "train_s": round(train_s, 1),
            "total_s": round(time.time() - started, 1),
            "behaviour": behaviour,
            "replay": replay,
            "policy_average": None
            if average is None
            else {"decay": average.decay, "updates": average.updates},
            "evaluations": scorer.history,
            "final": {
                "dream": final["dream"],
                "real": final["real"],
                "random_real": random_real.to_dict(),
            },
        }
        if selected is not None:
            summary["selection"] = selected
        write_reality_gap(staged, summary)
        (staged / "agent.json").write_text(json.dumps(summary, indent=2) + "\n")
        for item in reversed(closers):
            item.close()
        closers.clear()
        replace_dir_atomically(staged, target)
    except BaseException:
        for item in reversed(closers):
            with contextlib.suppress(Exception):
                item.close()
        shutil.rmtree(staged, ignore_errors=True)
        raise
    summary["out"] = str(target)
    return summary


def _save_selected(selection: _DreamSelection, model: Any, folder: Path) -> bool:
    """Load the selected weights into ``model`` (after its final save) and write them to
    ``folder/selected.zip`` with their observation normalisation. True when the final policy
    is the one selected (its weights are already loaded)."""
    assert selection.step is not None
    is_final = selection.step == int(model.num_timesteps)
    if not is_final:
        model.policy.load_state_dict(selection.weights)
    if selection.obs_norm is not None:
        n = selection.obs_norm
        save_obs_norm(folder / "selected.zip", n["mean"], n["var"], n["clip_obs"], n["epsilon"])
    model.save(folder / "selected.zip")
    return is_final


#: off-policy agents dump SB3's logs about every this many vector steps
LOG_EVERY_STEPS = 500
#: seconds between progress lines when stdout is not a terminal (a log file)
PROGRESS_EVERY_S = 30.0


def _whole_rollouts(budget: int, model: Any) -> int:
    """The dream steps an on-policy agent (PPO, A2C) really takes for ``budget``: SB3 collects
    whole rollouts of ``n_steps x n_envs`` steps, so the budget rounds up to a multiple of that;
    off-policy agents take ``budget`` steps."""
    n_steps = getattr(model, "n_steps", None)
    if not isinstance(n_steps, int) or not hasattr(model, "rollout_buffer"):
        return budget
    rollout = n_steps * int(model.n_envs)
    return -(-budget // rollout) * rollout


class _LineProgress(BaseCallback):
    """Prints ``steps/total, steps/s, time left`` every ``every_s`` seconds (for log files,
    where SB3's progress bar writes nothing until the end)."""

    def __init__(self, total: int, every_s: float) -> None:
        super().__init__()
        self.total, self.every_s = total, every_s
        self.start = self.last = time.monotonic()

    def _on_step(self) -> bool:
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            done = self.num_timesteps
            rate = done / max(now - self.start, 1e-9)
            left = (self.total - done) / max(rate, 1e-9)
            print(
                f"  {done:>9,}/{self.total:,} dream steps ({100 * done / self.total:.0f}%), "
                f"{rate:,.0f} steps/s, about {left / 60:.1f} min left",
                flush=True,
            )
        return True


def _log_interval(recipe: AgentRecipe) -> int:
    """SB3's ``log_interval``: SB3's defaults for PPO (every rollout) and A2C (every 100); for SAC/TD3 (counted in finished
    episodes) about every ``LOG_EVERY_STEPS`` vector steps of episodes of the dream's horizon
    (SB3's default of 4 episodes would dump the logs on nearly every step of short branches)."""
    if recipe.algorithm == "ppo":
        return 1
    if recipe.algorithm == "a2c":
        return 100  # SB3's default for A2C
    horizon = recipe.dream.get("horizon") or 1000
    return max(4, LOG_EVERY_STEPS * recipe.n_envs // int(horizon))


@contextlib.contextmanager
def _rng_untouched() -> Iterator[None]:
    """Restore the global random states (Python, numpy, torch) on exit."""
    import random

    import numpy as np
    import torch

    python, numpy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng():
        try:
            yield
        finally:
            random.setstate(python)
            np.random.set_state(numpy)


def _unchanged(obs: Any) -> Any:
    return obs


def _behaviour(
    recipe: AgentRecipe, sim: LearnedSimulator, model: Any, venv: Any
) -> tuple[dict[str, Any] | None, BehaviourCloner | None]:
    """Apply ``[behaviour]``: seed the observation normaliser with the dream's dataset, clone the
    behaviour (warm start), and return the regulariser for the training loop (or None)."""
    from stable_baselines3.common.vec_env import VecNormalize

    settings = recipe.behaviour
    if not settings.active:
        return None, None
    from ..data.provider import MinariBatchProvider

    dataset_id = settings.dataset or sim.info.get("dataset")
    if not dataset_id:
        raise ConfigError(
            f"agent recipe {recipe.name}: [behaviour] needs a dataset: set [behaviour] dataset, "
            f"or use a dream that records its own ({recipe.env} records none)."
        )
    data = BehaviourData.from_store(MinariBatchProvider(dataset_id).store, sim.action_space)
    normalise: Any = _unchanged
    if isinstance(venv, VecNormalize):
        seed_normaliser(venv, data.obs)
        normalise = venv.normalize_obs
    summary: dict[str, Any] = {"dataset": dataset_id, "transitions": len(data)}
    if settings.clone_steps:
        cloner = BehaviourCloner(model.policy, data, normalise, recipe.seed, CLONE_LR)
        summary["clone_loss"] = cloner.step(settings.clone_steps)  # in the policy's scale
        target = getattr(model.policy, "actor_target", None)
        if target is not None:  # TD3: its critic's targets start from the clone too
            target.load_state_dict(model.policy.actor.state_dict())
    regulariser = None
    if settings.regularise_steps:
        regulariser = BehaviourCloner(
            model.policy, data, normalise, recipe.seed + 1, settings.learning_rate
        )
    return summary, regulariser


def _replay(
    recipe: AgentRecipe,
    sim: LearnedSimulator,
    model: Any,
    venv: Any,
    core: DreamCore,
    *,
    seed_norm: bool,
) -> dict[str, Any] | None:
    """Apply ``[replay]``: give the off-policy ``model`` a replay buffer that mixes the dataset's
    transitions into every batch; with ``reset = "any"``, start the dream's branches from every
    state of that dataset (as MBPO/MOPO do; a simulator keeps only a sample of its dataset's
    states); with ``seed_norm`` (when ``[behaviour]`` has not), seed the observation normaliser
    with the dataset. Returns the summary for ``agent.json`` (or None)."""
    from stable_baselines3.common.vec_env import VecNormalize

    settings = recipe.replay
    if not settings.active:
        return None
    from ..data.provider import MinariBatchProvider
    from .baselines import Transitions
    from .replay import DatasetMixReplayBuffer

    dataset_id = settings.dataset or sim.info.get("dataset")
    if not dataset_id:
        raise ConfigError(
            f"agent recipe {recipe.name}: [replay] needs a dataset: set [replay] dataset, or use "
            f"a dream that records its own ({recipe.env} records none)."
        )
    from stable_baselines3.common.buffers import ReplayBuffer

    if type(model.replay_buffer) is not ReplayBuffer:  # the recipe refuses the known ways
        raise ConfigError(
            f"agent recipe {recipe.name}: [replay] replaces SB3's plain ReplayBuffer, got "
            f"{type(model.replay_buffer).__name__}."
        )
    store = MinariBatchProvider(dataset_id).store
    data = Transitions.from_store(store, sim.action_space, who="[replay]")
    assert settings.real_fraction is not None  # active
    model.replay_buffer = DatasetMixReplayBuffer(
        model.buffer_size,
        model.observation_space,
        model.action_space,
        data=data,
        real_fraction=settings.real_fraction,
        device=model.device,
        n_envs=model.n_envs,
    )
    if core.settings.reset == "any":
        core.reset_states = ResetStates(
            start=core.reset_states.start, any=core.obs_layout.convert(data.obs.numpy())
        )
    if seed_norm and isinstance(venv, VecNormalize):
        seed_normaliser(venv, data.obs.numpy())
    return {
        "dataset": dataset_id,
        "transitions": len(data),
        "real_fraction": settings.real_fraction,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The dream-vs-real table printed at the end of a run."""
    final = summary["final"]
    real_env = summary["real_env"]
    rows = [
        ("in the dream (imagined)", final["dream"]),
        (f"on the real {real_env}", final["real"]),
        (f"random policy, real {real_env}", final["random_real"]),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"{'':<{width}}  mean return ±   std  episodes"]
    for label, ep in rows:
        lines.append(
            f"{label:<{width}}  {ep['mean']:11.1f} ± {ep['std']:5.1f}  {len(ep['returns']):>8}"
        )
    gap = final["dream"]["mean"] - final["real"]["mean"]
    lines.append(f"reality gap (dream - real): {gap:.1f}")
    if "selection" in summary:
        sel = summary["selection"]
        lines.append(
            f"dream-selected policy (step {sel['step']:,}, {sel['file']}): dream "
            f"{sel['dream']:.1f}, real {sel['real']['mean']:.1f} ± {sel['real']['std']:.1f}"
        )
    return "\n".join(lines)


def _source_key(source: str | Path) -> str:
    """A dream source as compared: a folder by its resolved path, a card by its name or id."""
    path = Path(source)
    return str(path.resolve()) if path.is_dir() else str(source)


def _latent_training(model_path: Path) -> dict[str, Any] | None:
    """The run summary (``agent.json`` beside the model) when the model was trained on latent
    observations, else None."""
    record = model_path.parent / "agent.json"
    if not record.is_file():
        return None
    try:
        summary = json.loads(record.read_text(encoding="utf-8"))
        dream = summary["recipe"]["dream"]
        latent = dream.get("observation") == "latent"
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"{record}: expected an agent run summary with recipe.dream, could not read it "
            f"({type(exc).__name__}: {exc})."
        ) from None
    return summary if latent else None


def agent_eval(
    model_path: str | Path,
    env_id: str,
    *,
    episodes: int = 10,
    seed: int = 0,
    dream: str | None = None,
    actions: str = "deterministic",
) -> dict[str, Any]:
    """Score a saved SB3 model (loaded without unpickling) on ``env_id``, and with ``dream``
    (card, artifact or run) in that dream env too; ``actions``: the policy's most likely
    actions ("deterministic") or actions drawn from its distribution ("sampled", seeded by
    ``seed``).

    A model trained on latent observations (its run's ``agent.json`` says ``observation =
    "latent"``) sees the real env through :class:`LatentObservation` over the dream it trained
    in, and only that dream can score it.
    """
    import gymnasium as gym

    if actions not in EVALUATION_ACTIONS:
        raise ConfigError(unknown_name_message("actions", actions, EVALUATION_ACTIONS))
    model_path = Path(model_path)
    latent = _latent_training(model_path)
    wrappers: list[Any] = []
    dream_settings: dict[str, Any] = {}
    if latent is not None:
        trained_in = str(latent["dream_env"])
        if dream is not None and _source_key(dream) != _source_key(trained_in):
            raise ConfigError(
                f"{model_path}: a latent-observation policy can only be scored in the dream it "
                f"trained in ({trained_in}), got --dream {dream}."
            )
        wrappers.append(latent_wrapper(load_simulator(trained_in), latent["recipe"].get("backend")))
        dream_settings = {"observation": "latent"}
    probe = gym.make(env_id)
    for wrap in wrappers:
        probe = wrap(probe)
    policy = SB3Policy.from_file(model_path, probe, sample=actions == "sampled", seed=seed)
    probe.close()
    result: dict[str, Any] = {
        "model": str(model_path),
        "env": env_id,
        "real": real_env_episodes(env_id, policy, episodes, seed, wrappers=wrappers).to_dict(),
    }
    if dream is not None:
        venv = make_dream_env(dream, num_envs=episodes, **dream_settings)
        try:
            result["dream_env"] = dream
            result["dream"] = first_episodes(venv, policy, seed).to_dict()
        finally:
            venv.close()
    return result
