"""`worldflux offline DATASET_ID`: offline RL on a logged dataset, scored on the real environment.

Methods, all on the same dataset and the same real-environment evaluation:

* ``dream``: dataset -> ensemble world model (trained, or reused with ``model_run``) -> a
  pessimistic dream env (MOReL halt at the calibrated 99th percentile of the ensemble's
  disagreement, MOPO reward penalty, short branches from dataset states) -> PPO trained in it,
  started from behaviour cloning and regularised towards the dataset's actions after every rollout
  (:mod:`worldflux.rl.behaviour`);
* ``dream-pure``: the same without the dataset's actions (the policy learns from the dream alone);
* ``mopo-sac``, ``mopo-td3``: MOPO (Yu et al., 2020) on MBPO's branched rollouts (Janner et al.,
  2019): SAC or TD3 collects 5-step branches from dataset states in a dream whose reward is
  penalised by the ensemble's uncertainty, and every gradient step trains on batches of which 5%
  are the dataset's own transitions (:mod:`worldflux.rl.replay`); ``gradient_steps`` updates;
* ``bc``: behaviour cloning; ``td3bc``: TD3+BC; ``iql``: implicit Q-learning
  (:mod:`worldflux.rl.baselines`); ``gradient_steps`` updates.
* ``mppi``: model predictive control with the dream methods' world model: MPPI plans every
  real action over its predicted rewards minus its uncertainty (:data:`ENSEMBLE_PLANNING`);
* ``tdmpc2``: a TD-MPC2 model (``tdmpc2_model``, trained ``gradient_steps`` updates of
  :data:`TDMPC2_TRAINER` batches, behaviour-constrained policy prior) acting with its policy prior
  alone; ``tdmpc2-mppi``: the same model planning with MPPI (:func:`~worldflux.planners.
  tdmpc2_planner` at :data:`TDMPC2_OFFLINE_PLANNING`). Both use one model per seed, trained once
  and resumed where a run stopped.

Scores are returns on the real environment and normalised scores
``100 * (R - ref_min) / (ref_max - ref_min)`` with the dataset's Minari reference scores (without
them: the random return the dataset recorded, and the dataset's mean episode return). Results go
to ``results.json`` and ``results.md`` in the output folder.

Each method and seed is one job; ``sweep`` runs the jobs here one after another or as parallel
Ray tasks (:mod:`worldflux.sweep`), with the same results for the same seeds.

Offline policy selection (``checkpoints``): every method's policy is scored ``checkpoints`` times
during training and at the end, on the real environment and in the world model's dream (the
baselines too, whenever a world model is there); ``results["selection"]`` holds every pair and
the Spearman correlation of dream-predicted with real returns over all of them (the raw dream
return, and the estimates of :func:`~worldflux.rl.train.dream_estimates`: the model's mean
transitions, and for models with uncertainty the pessimistic estimates).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from ..core.errors import ConfigError, unknown_name_message
from ..data.collect import RandomPolicy
from ..data.minari_io import load_minari_dataset
from ..data.provider import MinariBatchProvider
from ..dream.make import load_simulator, make_dream_env, recorded_dataset
from ..eval.fidelity import spearman
from ..files import read_json_object, write_text_atomic
from ..sweep import SERIAL, Job, JobFailure, Sweep, run_sweep
from .baselines import (
    Checkpoints,
    Transitions,
    behaviour_cloning,
    iql,
    return_range_scale,
    td3_bc,
)
from .behaviour import BehaviourSettings
from .evaluate import first_episodes, real_env_episodes
from .recipes import AgentRecipe, Evaluation
from .replay import ReplaySettings
from .train import EVAL_SEED, FINAL_SEED, dream_estimates, prediction_settings, train_agent

METHODS = (
    "dream",
    "dream-pure",
    "mopo-sac",
    "mopo-td3",
    "bc",
    "td3bc",
    "iql",
    "mppi",
    "tdmpc2",
    "tdmpc2-mppi",
)
DEFAULT_METHODS = ("dream", "bc", "td3bc")
#: defaults of the dream methods (see the module docstring); the budgets are overridable
DREAM_SETTINGS = {"penalty": 1.0, "halt": "p99", "reset": "any", "horizon": 10}
PPO_SETTINGS = {"n_steps": 256, "batch_size": 512, "n_epochs": 5, "learning_rate": 3e-4}
#: ``dream``: small PPO steps from a behaviour-cloned start (log std -1: std 0.37), so the
#: regularisation towards the dataset's actions keeps up with the dream's pull
REGULARISED_PPO_SETTINGS = {
    **PPO_SETTINGS,
    "learning_rate": 3e-5,
    "policy_kwargs": {"log_std_init": -1.0},
}
#: ``mopo-*``: MBPO/MOPO's branches (horizon 5, MOPO's walker/hopper setting) in a dream penalised
#: by 5 x the uncertainty (no halt; at 1.0 SAC's critic diverged on Walker2d medium-v1, at 5.0 it
#: stayed bounded on Walker2d and HalfCheetah, 3 seeds each: docs/offline-rl.md); ``MOPO_ENVS``
#: branches stepped together give that many new dream transitions per gradient step (MOPO: 250),
#: kept for ``MOPO_RETAIN`` updates
MOPO_HORIZON = 5
MOPO_PENALTY = 5.0
MOPO_DREAM = {"reset": "any", "horizon": MOPO_HORIZON, "penalty": MOPO_PENALTY, "halt": None}
MOPO_ENVS = 50
MOPO_RETAIN = 5_000
MOPO_REAL_FRACTION = 0.05
OFF_POLICY_SETTINGS: dict[str, Any] = {
    "learning_rate": 3e-4,
    "batch_size": 256,
    "buffer_size": MOPO_ENVS * MOPO_RETAIN,
    "learning_starts": MOPO_ENVS * MOPO_HORIZON,
    "train_freq": 1,
    "gradient_steps": 1,
    # a layer norm before every hidden ReLU of the actor and critic: without it SAC's critic
    # diverged on Hopper medium-v1 (real 2-5; 1,010 with a halt on top), with it three seeds
    # reached 3,300 (docs/offline-rl.md)
    "policy_kwargs": {"net_arch": [256, 256], "activation_fn": "layer_norm_relu"},
}
BEHAVIOUR = BehaviourSettings(clone_steps=20_000, regularise_steps=20, learning_rate=1e-4)
MODEL_TRAINER = {
    "batch_size": 256,
    "seq_len": 1,
    "lr": 1e-3,
    "warmup_steps": 500,
    "lr_schedule": "cosine",
    "eval_every": 2500,
}

#: ``mppi``: MPPI over the world model of the dream methods, MOPO's penalty (1 x the
#: uncertainty) on every predicted reward, MBPO/MOPO's 5-step horizon, 128 samples, 2 rounds
ENSEMBLE_PLANNING: dict[str, Any] = {
    "horizon": MOPO_HORIZON,
    "num_samples": 128,
    "num_elites": 16,
    "iterations": 2,
    "uncertainty_penalty": 1.0,
}
#: ``tdmpc2*``: the family's training batches (256 sequences of the paper's horizon 3)
TDMPC2_TRAINER = {
    "batch_size": 256,
    "seq_len": 3,
    "lr": 3e-4,
    "grad_clip": 20.0,
    "eval_every": 5000,
    "checkpoint_every": 5000,
}
#: ``tdmpc2-mppi``: TD-MPC2's planner as a local search around the prior's mode
#: (:data:`~worldflux.planners.OFFLINE_PLANNING`) with 64 samples and 2 rounds (TD-MPC2: 512 and
#: 6; a local search needs fewer, and 1,000-step episodes of 10 envs stay minutes on a CPU)
TDMPC2_OFFLINE_PLANNING: dict[str, Any] = {"num_samples": 64, "iterations": 2, "num_elites": 16}

#: episodes of a random policy measured for the reference when the dataset records none
RANDOM_REFERENCE_EPISODES = 20


def _random_reference(env_id: str, space: Any, meta: dict[str, Any]) -> tuple[float, str]:
    """A random policy's mean return and where it comes from: the one the dataset recorded when it
    was collected (``worldflux collect`` measures it on 20 episodes), else measured here on
    ``RANDOM_REFERENCE_EPISODES`` episodes, never on the few scoring episodes (a noisy
    reference would move every normalised score)."""
    recorded = (meta.get("worldflux") or {}).get("random_return") or {}
    if isinstance(recorded.get("mean"), int | float):
        return float(recorded["mean"]), f"dataset ({recorded.get('episodes', '?')} episodes)"
    policy = RandomPolicy(space, 0)
    measured = real_env_episodes(env_id, policy, RANDOM_REFERENCE_EPISODES, 50_000)
    return measured.mean, f"measured ({RANDOM_REFERENCE_EPISODES} episodes)"


class DreamJudge:
    """Scores baseline policies in the world model's dream the way the dream agents' evaluations
    do (from the dataset's episode starts, up to the real time limit, raw rewards, no halt, and
    the other estimates of :func:`~worldflux.rl.train.dream_estimates` beside), so offline
    policy selection ranks every method's checkpoints together. ``step`` of a baseline's entry counts gradient updates (a dream
    agent's counts environment steps)."""

    def __init__(self, model_run: str | Path, env_id: str, episodes: int) -> None:
        self.env_id, self.episodes = env_id, episodes
        sim = load_simulator(str(model_run))
        raw = prediction_settings(env_id)
        self.venv = make_dream_env(sim, num_envs=episodes, **raw)
        self.estimates = {
            name: make_dream_env(sim, num_envs=episodes, **settings)
            for name, settings in dream_estimates(sim, raw).items()
        }

    def score(
        self, method: str, seed: int, step: int, policy: Any, offset: int, real: float | None = None
    ) -> dict[str, Any]:
        """The selection entry of ``policy``: dream return, and the real one (measured unless
        given), both on seeds ``offset + seed`` onwards."""
        dream = first_episodes(self.venv, policy, offset + seed).mean
        if real is None:
            real = real_env_episodes(self.env_id, policy, self.episodes, offset + seed).mean
        entry = {"method": method, "seed": seed, "step": step, "dream": dream, "real": real}
        if self.estimates:
            entry["dream_estimates"] = {
                name: first_episodes(venv, policy, offset + seed).mean
                for name, venv in self.estimates.items()
            }
        return entry

    def checkpoints(
        self, every: int, method: str, seed: int, sink: list[dict[str, Any]]
    ) -> Checkpoints:
        return Checkpoints(
            every,
            lambda done, policy: sink.append(self.score(method, seed, done, policy, EVAL_SEED)),
        )

    def close(self) -> None:
        for venv in (self.venv, *self.estimates.values()):
            venv.close()


def normalised(score: float, low: float, high: float) -> float:
    return 100.0 * (score - low) / (high - low)


def offline_run(
    dataset_id: str,
    out: str | Path,
    *,
    methods: tuple[str, ...] = DEFAULT_METHODS,
    seeds: tuple[int, ...] = (0,),
    model_run: str | Path | None = None,
    model: str = "ensemble:small",
    tdmpc2_model: str = "tdmpc2:1m",
    model_steps: int = 30_000,
    agent_steps: int = 300_000,
    gradient_steps: int = 100_000,
    episodes: int = 10,
    checkpoints: int = 0,
    real_fraction: float = MOPO_REAL_FRACTION,
    policy_average: float = 0.0,
    behaviour: BehaviourSettings = BEHAVIOUR,
    sweep: Sweep = SERIAL,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``methods`` x ``seeds`` on ``dataset_id``; write and return the results.
    ``agent_steps``: dream steps of the PPO methods (``dream``, ``dream-pure``);
    ``gradient_steps``: updates of the ``mopo-*`` agents, of ``bc``/``td3bc``/``iql`` and of the
    ``tdmpc2*`` model (``tdmpc2_model``, a ``family:preset``); ``checkpoints``:
    evenly spaced evaluations of each dream agent during training (in the dream and on the real
    env; the final one always runs) for offline policy selection; ``real_fraction``: the share
    of each ``mopo-*`` training batch drawn from the dataset; ``policy_average``: the decay of
    the Polyak-averaged actor that the ``mopo-*`` agents score and save (0: none; the agent
    recipes' ``policy_average``); ``behaviour``: the ``dream``
    method's use of the dataset's actions; ``sweep``: where the jobs (one per method and seed;
    the ``tdmpc2*`` methods of a seed share one) run: here in order, or as parallel Ray tasks
    (:mod:`worldflux.sweep`). results.json is rewritten as each job finishes; jobs that fail on
    Ray are listed under ``failed`` and raise a :class:`~worldflux.sweep.SweepError` at the
    end; ``resume``: keep the jobs that ``out``'s results.json holds (written with the same
    settings but perhaps other methods and seeds) and run only the others."""
    if not isinstance(checkpoints, int) or isinstance(checkpoints, bool) or checkpoints < 0:
        raise ConfigError(f"checkpoints: expected an integer >= 0, got {checkpoints!r}.")
    if isinstance(real_fraction, bool) or not (
        isinstance(real_fraction, int | float) and 0.0 <= real_fraction < 1.0
    ):
        raise ConfigError(f"real_fraction: expected a number in [0, 1), got {real_fraction!r}.")
    if isinstance(policy_average, bool) or not (
        isinstance(policy_average, int | float) and 0.0 <= policy_average < 1.0
    ):
        raise ConfigError(f"policy_average: expected a decay in [0, 1), got {policy_average!r}.")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(unknown_name_message("offline method", unknown[0], METHODS))
    if policy_average and not any(m.startswith("mopo") for m in methods):
        raise ConfigError(
            f"policy_average averages the mopo-sac/mopo-td3 agents' actors; expected one of "
            f"them in methods, got {list(methods)}."
        )
    planning = [m for m in methods if m.startswith("tdmpc2")]
    dreams = any(m.startswith(("dream", "mopo")) or m == "mppi" for m in methods)
    if dreams and model_run is not None:
        modelled = recorded_dataset(model_run)
        if modelled != dataset_id:
            raise ConfigError(
                f"--model-run {model_run}: expected a world model of {dataset_id} (the dream "
                f"agent clones and is compared on that dataset), got one of {modelled}."
            )
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    dataset = load_minari_dataset(dataset_id)
    env_spec = getattr(dataset, "env_spec", None)
    if env_spec is None:
        raise ConfigError(f"{dataset_id}: the dataset records no environment to evaluate on.")
    env_id = env_spec.id
    space = dataset.action_space
    if planning and not (
        isinstance(space, gym.spaces.Box)
        and np.all(space.low == -1.0)
        and np.all(space.high == 1.0)
    ):
        raise ConfigError(
            f"methods {planning}: the TD-MPC2 policy prior acts in [-1, 1] (as the paper "
            f"normalises action spaces), so expected a dataset with Box(-1, 1) actions, got "
            f"{space!r}."
        )
    data = MinariBatchProvider(dataset_id)
    store = data.store
    meta = dataset.storage.metadata
    random_return, random_source = _random_reference(env_id, space, meta)
    behaviour_return = float(store.episode_returns().mean())
    low = float(meta.get("ref_min_score", random_return))
    high = float(meta.get("ref_max_score", behaviour_return))
    results: dict[str, Any] = {
        "dataset": dataset_id,
        "env": env_id,
        "reference": {
            "min": low,
            "max": high,
            "source": "minari" if "ref_max_score" in meta else "random policy / dataset mean",
        },
        "settings": {
            "methods": list(methods),
            "seeds": list(seeds),
            "model_run": None if model_run is None else str(model_run),
            "model": model if model_run is None else None,
            "tdmpc2_model": tdmpc2_model if planning else None,
            "model_steps": model_steps,
            "agent_steps": agent_steps,
            "gradient_steps": gradient_steps,
            "episodes": episodes,
            "checkpoints": checkpoints,
            "real_fraction": real_fraction,
            "policy_average": policy_average,
            "behaviour": asdict(behaviour),
            "sweep": sweep.describe(),
        },
        "random_return": random_return,
        "random_return_source": random_source,
        "dataset_mean_return": behaviour_return,
        "runs": [],
    }
    if dreams and model_run is None:
        from ..training.run import train_run

        model_run = folder / "model"
        if not (Path(model_run) / "run.json").is_file():
            train_run(
                model_run,
                model=model,
                dataset=dataset_id,
                trainer={**MODEL_TRAINER, "steps": model_steps},
                progress=progress,
            )
    shared = {
        "dataset_id": dataset_id,
        "folder": str(folder.resolve()),
        "model_run": None if model_run is None else str(Path(model_run).resolve()),
        "env_id": env_id,
        "action_space": space,
        "tdmpc2_model": tdmpc2_model,
        "agent_steps": agent_steps,
        "gradient_steps": gradient_steps,
        "episodes": episodes,
        "checkpoints": checkpoints,
        "real_fraction": real_fraction,
        "policy_average": policy_average,
        "behaviour": behaviour,
        "progress": progress and not sweep.ray,  # parallel jobs' progress bars would interleave
    }
    jobs = [
        Job(
            f"{'+'.join(group)} seed {seed}",
            offline_job,
            {**shared, "methods": group, "seed": seed},
        )
        for group in _method_groups(methods)
        for seed in seeds
    ]

    def collect(job: Job, outcome: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for entry in outcome:
            row = entry["row"]
            row["normalised"] = normalised(row["real_return"], low, high)
            if progress:
                print(
                    f"{row['method']:>6} seed {row['seed']}: real return "
                    f"{row['real_return']:.1f} (normalised {row['normalised']:.1f})",
                    flush=True,
                )
        return outcome

    def write(outcomes: list[list[dict[str, Any]]], failures: list[JobFailure]) -> Path:
        return _write_results(folder, results, outcomes, failures)

    finished = _finished_jobs(folder, results, jobs) if resume else {}
    if progress and finished:
        print(f"resuming: {len(finished)} of {len(jobs)} jobs finished before", flush=True)
    run_sweep(jobs, sweep, collect, write, finished_before=finished, progress=progress)
    return results


def _finished_jobs(
    folder: Path, results: dict[str, Any], jobs: list[Job]
) -> dict[str, list[dict[str, Any]]]:
    """The outcomes of ``jobs`` that the results.json in ``folder`` holds (every method of the
    job scored), when it was written with the same settings (the launcher aside); none when
    there is no results.json."""
    path = folder / "results.json"
    if not path.is_file():
        return {}
    saved = read_json_object(path)
    ignore = ("sweep", "methods", "seeds")  # jobs are matched by method and seed
    before = {k: v for k, v in saved.get("settings", {}).items() if k not in ignore}
    before.setdefault("real_fraction", MOPO_REAL_FRACTION)  # files written before the settings
    before.setdefault("policy_average", 0.0)
    now = {k: v for k, v in results["settings"].items() if k not in ignore}
    if before != now:
        changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
        raise ConfigError(
            f"resume {folder}: expected the settings of its results.json, got different "
            f"{', '.join(changed)} (saved: {', '.join(f'{k}={before.get(k)!r}' for k in changed)}; "
            "start a new folder to change them)."
        )
    rows = {(r["method"], r["seed"]): r for r in saved.get("runs", [])}
    policies = (saved.get("selection") or {}).get("policies", [])
    finished = {}
    for job in jobs:
        seed = job.kwargs["seed"]
        methods = job.kwargs["methods"]
        if all((m, seed) in rows for m in methods):
            finished[job.key] = [
                {"row": rows[m, seed],
                 "selection": [p for p in policies if (p["method"], p["seed"]) == (m, seed)]}
                for m in methods
            ]  # fmt: skip
    return finished


def _method_groups(methods: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The methods cut into jobs: one per method, except that the ``tdmpc2*`` methods share a
    job (they share the seed's TD-MPC2 model, trained once)."""
    planning = tuple(m for m in methods if m.startswith("tdmpc2"))
    groups: list[tuple[str, ...]] = []
    for method in methods:
        if not method.startswith("tdmpc2"):
            groups.append((method,))
        elif method == planning[0]:  # the group goes where its first method stands
            groups.append(planning)
    return groups


def _write_results(
    folder: Path,
    results: dict[str, Any],
    outcomes: list[list[dict[str, Any]]],
    failures: list[JobFailure],
) -> Path:
    """Fill ``results`` with the finished jobs' rows (in the sweep's order) and write
    results.json and results.md (after every job, so a long sweep shows its progress); returns
    the path of results.json."""
    results["runs"] = [entry["row"] for outcome in outcomes for entry in outcome]
    selection = [p for outcome in outcomes for entry in outcome for p in entry["selection"]]
    results["summary"] = _summary(results["runs"])
    results.pop("selection", None)
    if selection and results["settings"]["checkpoints"]:
        real = np.array([p["real"] for p in selection])

        def rank_correlation(predicted: list[float]) -> float | None:
            rho = spearman(np.array(predicted), real)
            return rho if np.isfinite(rho) else None  # None: under 3 policies or constant

        results["selection"] = {
            "policies": selection,
            "spearman": rank_correlation([p["dream"] for p in selection]),
        }
        estimates = [k for k in selection[0].get("dream_estimates", {})
                     if all(k in p.get("dream_estimates", {}) for p in selection)]  # fmt: skip
        if estimates:
            results["selection"]["spearman_estimates"] = {
                k: rank_correlation([p["dream_estimates"][k] for p in selection]) for k in estimates
            }
    if failures:
        results["failed"] = [{"job": f.key, "error": f.error} for f in failures]
    write_text_atomic(folder / "results.json", json.dumps(results, indent=2) + "\n")
    write_text_atomic(folder / "results.md", results_markdown(results))
    return folder / "results.json"


def offline_job(
    *,
    methods: tuple[str, ...],
    seed: int,
    dataset_id: str,
    folder: str,
    model_run: str | None,
    env_id: str,
    action_space: Any,
    tdmpc2_model: str,
    agent_steps: int,
    gradient_steps: int,
    episodes: int,
    checkpoints: int,
    real_fraction: float,
    policy_average: float,
    behaviour: BehaviourSettings,
    progress: bool,
) -> list[dict[str, Any]]:
    """One job of :func:`offline_run`: train and score ``methods`` (one method, or the
    ``tdmpc2*`` methods that share a model) for ``seed``. Returns, per method, its result
    ``row`` (without the normalised score) and its ``selection`` entries (dream vs real return
    of every scored policy; empty without checkpoints)."""
    out = Path(folder)
    outcome = []
    for method in methods:
        started = time.time()
        selection: list[dict[str, Any]] = []
        selected: dict[str, Any] | None = None
        if method.startswith(("dream", "mopo")):
            assert model_run is not None  # trained by offline_run before any dream job
            recipe = dream_recipe(
                method, seed, model_run, env_id, agent_steps, gradient_steps, episodes, behaviour,
                real_fraction=real_fraction, policy_average=policy_average,
            )  # fmt: skip
            if checkpoints:
                # + 1: the last checkpoint falls before the end, where the final one runs
                recipe.evaluation.every = _trained_steps(recipe) // (checkpoints + 1) + 1
            summary = train_agent(recipe, out / f"{method}-seed{seed}", progress=progress)
            real = summary["final"]["real"]
            if "selection" in summary:  # the checkpoint the dream rates best
                sel = summary["selection"]
                selected = {"step": sel["step"], "dream": sel["dream"],
                            "real_return": sel["real"]["mean"], "real_std": sel["real"]["std"]}  # fmt: skip
            if checkpoints:
                *earlier, last = summary["evaluations"]  # last: the final evaluation
                selection.extend(
                    {"method": method, "seed": seed, "step": e["step"],
                     "dream": e["dream"]["mean"], "real": e["real"]["mean"],
                     **({"dream_estimates": e["dream_estimates"]}
                        if "dream_estimates" in e else {})}
                    for e in [*(e for e in earlier if e["step"] < last["step"]), last]
                )  # fmt: skip
        elif method == "mppi":
            assert model_run is not None
            real = _ensemble_mpc_score(Path(model_run), env_id, action_space, seed, episodes)
        elif method.startswith("tdmpc2"):
            real = _tdmpc2_score(
                method, out / f"tdmpc2-seed{seed}", dataset_id, tdmpc2_model, gradient_steps,
                seed, env_id, action_space, episodes, progress,
            )  # fmt: skip
        else:
            real = _baseline_score(
                method, seed, dataset_id, action_space, model_run if checkpoints else None,
                env_id, gradient_steps, episodes, checkpoints, selection, progress,
            )  # fmt: skip
        row = {
            "method": method,
            "seed": seed,
            "real_return": real["mean"],
            "real_std": real["std"],
            "seconds": round(time.time() - started, 1),
        }
        if selected is not None:
            row["selected"] = selected
        outcome.append({"row": row, "selection": selection})
    return outcome


def _baseline_score(
    method: str,
    seed: int,
    dataset_id: str,
    action_space: Any,
    judge_model: str | None,
    env_id: str,
    gradient_steps: int,
    episodes: int,
    checkpoints: int,
    selection: list[dict[str, Any]],
    progress: bool,
) -> dict[str, Any]:
    """Train baseline ``method`` (``bc``, ``td3bc``, ``iql``) on the dataset's transitions and
    score it on the real env; with ``judge_model``, also score its checkpoints in that model's
    dream into ``selection`` (the same checkpoints as the dream agents')."""
    store = MinariBatchProvider(dataset_id).store
    transitions = Transitions.from_store(store, action_space)
    common: dict[str, Any] = {"steps": gradient_steps, "seed": seed}
    if method == "iql":
        common["reward_scale"] = return_range_scale(store)
    train = {"bc": behaviour_cloning, "td3bc": td3_bc, "iql": iql}[method]
    judge = DreamJudge(judge_model, env_id, episodes) if judge_model is not None else None
    try:
        if judge is not None:
            every = gradient_steps // (checkpoints + 1) + 1
            common["checkpoints"] = judge.checkpoints(every, method, seed, selection)
        policy = train(transitions, action_space, progress=progress, **common)
        real = real_env_episodes(env_id, policy, episodes, FINAL_SEED + seed).to_dict()
        if judge is not None:
            selection.append(
                judge.score(method, seed, gradient_steps, policy, FINAL_SEED, real["mean"])
            )
    finally:
        if judge is not None:
            judge.close()
    return real


def _ensemble_mpc_score(
    model_run: Path, env_id: str, action_space: Any, seed: int, episodes: int
) -> dict[str, Any]:
    """Plan every real action with MPPI over the dream methods' world model
    (:data:`ENSEMBLE_PLANNING`: its uncertainty penalised as in MOPO, no value beyond the
    horizon) and score it on the real env."""
    from ..core.model import WorldModel
    from ..planners import MPPIPlanner
    from .plan import planned_episodes

    net = WorldModel.from_pretrained(model_run / "model").eval()
    planner = MPPIPlanner(
        net, low=action_space.low, high=action_space.high, seed=seed, **ENSEMBLE_PLANNING
    )
    real = planned_episodes(net, planner, env_id, action_space, episodes, FINAL_SEED + seed)
    return real.to_dict()


def _tdmpc2_score(
    method: str,
    run: Path,
    dataset_id: str,
    model: str,
    steps: int,
    seed: int,
    env_id: str,
    action_space: Any,
    episodes: int,
    progress: bool,
) -> dict[str, Any]:
    """Train (or finish, or reuse) the seed's TD-MPC2 model in ``run`` and score it on the real
    env: the policy prior alone (``tdmpc2``) or planning with MPPI (``tdmpc2-mppi``)."""
    from ..core.model import WorldModel
    from ..planners import OFFLINE_PLANNING, PolicyPriorPlanner, tdmpc2_planner
    from ..training.run import RUN_FILE, train_run
    from .plan import planned_episodes

    if not (run / "model").is_dir():
        started = (run / RUN_FILE).is_file()
        train_run(
            run,
            model=None if started else model,
            dataset=None if started else dataset_id,
            trainer=None if started else {**TDMPC2_TRAINER, "steps": steps, "seed": seed},
            resume=started,
            progress=progress,
        )
    net = WorldModel.from_pretrained(run / "model").eval()
    planner = (
        PolicyPriorPlanner(net)
        if method == "tdmpc2"
        else tdmpc2_planner(net, seed=seed, **OFFLINE_PLANNING, **TDMPC2_OFFLINE_PLANNING)
    )
    real = planned_episodes(net, planner, env_id, action_space, episodes, FINAL_SEED + seed)
    return real.to_dict()


def _trained_steps(recipe: AgentRecipe) -> int:
    """Dream steps the recipe's agent actually takes: PPO/A2C learn in whole rollouts of
    ``n_steps x n_envs`` (SB3's defaults: 2048, 5), SAC/TD3 in vector steps of ``n_envs``."""
    rollout = {"ppo": 2048, "a2c": 5}.get(recipe.algorithm)
    if rollout is not None:
        rollout = int(recipe.hyperparameters.get("n_steps", rollout))
    chunk = recipe.n_envs * (rollout or 1)
    return -(-recipe.budget // chunk) * chunk


def dream_recipe(
    method: str,
    seed: int,
    model_run: str,
    env_id: str,
    agent_steps: int,
    gradient_steps: int,
    episodes: int,
    behaviour: BehaviourSettings,
    *,
    real_fraction: float = MOPO_REAL_FRACTION,
    policy_average: float = 0.0,
) -> AgentRecipe:
    """The agent recipe of dream method ``method`` (see the module docstring): what
    :func:`offline_run` trains for it, with the final evaluation on ``episodes`` episodes;
    ``real_fraction``: the ``mopo-*`` methods' share of dataset transitions per batch;
    ``policy_average``: the decay of their Polyak-averaged actor (0: none)."""
    evaluation = Evaluation(env=env_id, every=0, episodes=episodes, final_episodes=episodes)
    name = f"offline-{method}-seed{seed}"
    if method.startswith("mopo"):
        starts = int(OFF_POLICY_SETTINGS["learning_starts"])
        return AgentRecipe(
            name=name,
            env=model_run,
            seed=seed,
            algorithm=method.removeprefix("mopo-"),
            budget=starts + gradient_steps * MOPO_ENVS,
            n_envs=MOPO_ENVS,
            backend="onnx",
            dream=dict(MOPO_DREAM),
            hyperparameters=copy.deepcopy(OFF_POLICY_SETTINGS),
            replay=ReplaySettings(real_fraction=real_fraction),
            policy_average=policy_average,
            evaluation=evaluation,
        )
    pure = method == "dream-pure"
    return AgentRecipe(
        name=name,
        env=model_run,
        seed=seed,
        algorithm="ppo",
        budget=agent_steps,
        backend="onnx",
        dream=dict(DREAM_SETTINGS),
        hyperparameters=copy.deepcopy(PPO_SETTINGS if pure else REGULARISED_PPO_SETTINGS),
        behaviour=BehaviourSettings() if pure else behaviour,
        evaluation=evaluation,
    )


def _summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for method in dict.fromkeys(r["method"] for r in runs):
        scores = np.array([r["normalised"] for r in runs if r["method"] == method])
        returns = np.array([r["real_return"] for r in runs if r["method"] == method])
        out[method] = {
            "return_mean": float(returns.mean()),
            "return_std": float(returns.std()),
            "normalised_mean": float(scores.mean()),
            "normalised_std": float(scores.std()),
            "seeds": float(len(scores)),
        }
        chosen = [
            r["selected"]["real_return"] for r in runs if r["method"] == method and "selected" in r
        ]
        if chosen:
            out[method]["selected_mean"] = float(np.mean(chosen))
            out[method]["selected_std"] = float(np.std(chosen))
    return out


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def results_markdown(results: dict[str, Any]) -> str:
    ref = results["reference"]
    lines = [
        f"# Offline RL on {results['dataset']} (scored on {results['env']})",
        "",
        f"Reference scores ({ref['source']}): min {ref['min']:.1f}, max {ref['max']:.1f}. "
        f"Random policy: {results['random_return']:.1f}; dataset mean episode return: "
        f"{results['dataset_mean_return']:.1f}.",
        "",
        "| method | seeds | real return (mean ± std over seeds) | normalised score |",
        "|---|---:|---:|---:|",
    ]
    for method, s in results["summary"].items():
        lines.append(
            f"| {method} | {int(s['seeds'])} | {s['return_mean']:.1f} ± {s['return_std']:.1f} "
            f"| {s['normalised_mean']:.1f} ± {s['normalised_std']:.1f} |"
        )
    chosen = [(m, s) for m, s in results["summary"].items() if "selected_mean" in s]
    if chosen:
        lines += [
            "",
            "Dream-selected policies (per seed, the checkpoint or final policy with the highest "
            "dream return; no real return used), scored on the same final episodes: "
            + "; ".join(
                f"{m} {s['selected_mean']:.1f} ± {s['selected_std']:.1f}" for m, s in chosen
            )
            + ".",
        ]

    def selected(r: dict[str, Any]) -> str:
        if "selected" not in r:
            return "-"
        sel = r["selected"]
        return f"{sel['real_return']:.1f} ± {sel['real_std']:.1f} (step {sel['step']:,})"

    lines += [
        "",
        "| method | seed | real return (mean ± std over episodes) | normalised | minutes | "
        "dream-selected policy: real return |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {r['method']} | {r['seed']} | {r['real_return']:.1f} ± {r['real_std']:.1f} "
            f"| {r['normalised']:.1f} | {r['seconds'] / 60:.1f} | {selected(r)} |"
            for r in results["runs"]
        ),
    ]
    selection = results.get("selection")
    if selection:
        estimates = list(selection.get("spearman_estimates", {}))
        lines += [
            "",
            "Offline policy selection: the dream's predicted return against the real return of "
            f"every scored dream-agent policy ({len(selection['policies'])} checkpoints and "
            f"seeds): Spearman {_number(selection['spearman'])}"
            + "".join(
                f"; {name} dream return {_number(rho)}"
                for name, rho in selection.get("spearman_estimates", {}).items()
            )
            + ".",
            "",
            "| method | seed | step | dream return | "
            + "".join(f"{name} | " for name in estimates)
            + "real return |",
            "|---|---:|---:|---:|" + "---:|" * len(estimates) + "---:|",
            *(
                f"| {p['method']} | {p['seed']} | {p['step']:,} | {p['dream']:.1f} | "
                + "".join(f"{p['dream_estimates'][name]:.1f} | " for name in estimates)
                + f"{p['real']:.1f} |"
                for p in selection["policies"]
            ),
        ]
    for failure in results.get("failed", []):
        lines += ["", f"Failed: {failure['job']}: {failure['error']}"]
    return "\n".join(lines) + "\n"
