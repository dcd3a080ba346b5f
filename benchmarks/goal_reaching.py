"""Goal reaching in the two rooms by planning in a learned embedding, against random actions and a
planner with the true simulator at the same search budget.

    python benchmarks/goal_reaching.py --runs runs/jepa-rooms-state-s0 runs/jepa-rooms-state-s1 ...
        [--env WorldFlux/TwoRooms-State-v0] [--pairs 50] [--horizon 10] [--samples 256]
        [--iterations 3] [--seed 1000] [--threads 1] [--name NAME]

Each run is a ``worldflux train`` folder of a model trained on the two rooms' goal-free random
walks (``worldflux collect --recipe two-rooms-state-random`` for positions, ``two-rooms-random``
for images), e.g.::

    worldflux train jepa:small --dataset worldflux/two-rooms/state-random-v0 \\
        --run-dir runs/jepa-rooms-state-s0 --steps 3000 --batch-size 64 --seq-len 8 --lr 1e-3 \\
        --grad-clip 10 --seed 0 --no-fidelity

Held-out start-goal pairs (``--pairs`` of each kind, drawn from ``--seed``, never from the
training data's seeds): "same room" and "other room" (the door between them), each at least 0.5
apart. Every policy gets 100 steps per pair (the env's time limit) and succeeds when the env ends
the episode at the goal. Planners: MPPI, ``--horizon`` steps, ``--samples`` samples, 32 elites,
``--iterations`` rounds, towards the goal observation (learned: the distance between embeddings;
oracle: :class:`~worldflux.envs.two_rooms_oracle.TwoRoomsOracle`, the true dynamics, with
Euclidean distance between positions). With ``--dream-agent-steps N`` (default 40,000; 0: off)
each learned run also trains a SAC agent for N steps only inside its goal-conditioned latent
dream (``observation="latent", goal_reward=True``: the agent sees the embedding and the goal's,
and earns minus their distance; starts and goals drawn from the dataset's states, 50-step
episodes, 16 envs) and acts on the real env with the embeddings of the observation and the
goal, without planning. Prints a table (success rate per kind; learned: mean ±
std over the runs; planning time per action, i.e. per env step, and per batched call of all of
a kind's pairs) and saves it to benchmarks/results/goal_reaching[-NAME].md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import worldflux as wf
from worldflux.data.spaces import observation_layout
from worldflux.dream import load_simulator, make_dream_env
from worldflux.envs.two_rooms_oracle import TwoRoomsOracle
from worldflux.files import write_text_atomic
from worldflux.planners import MPCPolicy, MPPIPlanner

RESULTS = Path(__file__).with_name("results") / "goal_reaching.md"
KINDS = ("same room", "other room")


def draw_pairs(count: int, seed: int) -> dict[str, list[dict[str, np.ndarray]]]:
    """``count`` start-goal pairs of each kind, at least 0.5 apart, off the wall's band."""
    rng = np.random.default_rng(seed)
    pairs: dict[str, list[dict[str, np.ndarray]]] = {kind: [] for kind in KINDS}
    while any(len(v) < count for v in pairs.values()):
        start, goal = rng.uniform(-0.95, 0.95, 2), rng.uniform(-0.95, 0.95, 2)
        if min(abs(start[0]), abs(goal[0])) < 0.1 or np.linalg.norm(start - goal) < 0.5:
            continue
        kind = KINDS[0] if np.sign(start[0]) == np.sign(goal[0]) else KINDS[1]
        if len(pairs[kind]) < count:
            pairs[kind].append({"start": start, "goal": goal})
    return pairs


def success_rate(env_id: str, pairs: list[dict[str, np.ndarray]], act: Any) -> float:
    """Run every pair in its own env (up to 100 steps), all envs acted for in one batch by
    ``act(obs [N, *O] | None, goals [N, *O] | None)`` (goals once first); the fraction of
    episodes that ended at the goal."""
    envs = [gym.make(env_id) for _ in pairs]
    try:
        obs = np.stack(
            [
                env.reset(seed=i, options=p)[0]
                for i, (env, p) in enumerate(zip(envs, pairs, strict=True))
            ]
        )
        act(None, np.stack([env.unwrapped.goal_observation() for env in envs]))  # type: ignore[attr-defined]
        done = np.zeros(len(envs), bool)
        reached = np.zeros(len(envs), bool)
        while not done.all():
            actions = act(obs, None)
            for i, env in enumerate(envs):
                if not done[i]:
                    obs[i], _, terminated, truncated, _ = env.step(actions[i])
                    reached[i] |= terminated
                    done[i] = terminated or truncated
        return float(reached.mean())
    finally:
        for env in envs:
            env.close()


class Clock:
    """Time spent in ``act`` calls that return actions, and the actions returned."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.actions = 0

    def wrap(self, act: Any) -> Any:
        def timed(obs: np.ndarray | None, goals: np.ndarray | None) -> np.ndarray:
            started = time.perf_counter()
            out = act(obs, goals)
            if obs is not None:
                self.seconds += time.perf_counter() - started
                self.calls += 1
                self.actions += len(out)
            return np.asarray(out)

        return timed

    def cell(self) -> str:
        if not self.calls:
            return "n/a"
        per_action = 1e3 * self.seconds / self.actions
        per_call = 1e3 * self.seconds / self.calls
        return f"{per_action:.1f} ms ({per_call:.0f} ms per call of {self.actions // self.calls})"


def planner_policy(model: wf.WorldModel, args: argparse.Namespace, seed: int) -> Any:
    """``act(obs, goals)``: goals first (a new run), then MPPI actions for observations."""
    space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    planner = MPPIPlanner(
        model,
        horizon=args.horizon,
        num_samples=args.samples,
        num_elites=32,
        iterations=args.iterations,
        seed=seed,
    )
    policy = MPCPolicy(model, planner, space, seed=seed)
    memory: dict[str, Any] = {"state": None}

    def act(obs: np.ndarray | None, goals: np.ndarray | None) -> np.ndarray:
        if goals is not None:
            policy.set_goal(goals)
            memory["state"] = None
            return np.zeros(0)
        actions, memory["state"] = policy.predict(obs, memory["state"])
        return np.asarray(actions)

    return act


def dream_agent_policy(run: str, steps: int, seed: int) -> Any:
    """``act(obs, goals)`` of a SAC agent trained ``steps`` steps in ``run``'s goal-conditioned
    latent dream; it acts on ``[embedding, goal embedding]`` of the real observations."""
    from stable_baselines3 import SAC

    sim = load_simulator(run)
    venv = make_dream_env(
        sim,
        num_envs=16,
        vectorization="sb3",
        backend="torch",
        observation="latent",
        goal_reward=True,
        reset="any",
        horizon=50,
    )
    agent = SAC("MlpPolicy", venv, learning_starts=2_000, gradient_steps=4, seed=seed, device="cpu")
    agent.learn(steps)
    backend = sim.make_backend("torch")
    layout = observation_layout(sim.observation_space)
    memory: dict[str, np.ndarray] = {}

    def act(obs: np.ndarray | None, goals: np.ndarray | None) -> np.ndarray:
        if goals is not None:
            memory["goal"] = backend.latent(backend.encode(layout.convert(goals)))
            return np.zeros(0)
        assert obs is not None
        features = backend.latent(backend.encode(layout.convert(obs)))
        actions, _ = agent.predict(
            np.concatenate([features, memory["goal"]], 1), deterministic=True
        )
        return np.asarray(actions)

    return act


def random_policy(seed: int) -> Any:
    rng = np.random.default_rng(seed)

    def act(obs: np.ndarray | None, goals: np.ndarray | None) -> np.ndarray:
        if obs is None:
            return np.zeros(0)
        return rng.uniform(-1, 1, (len(obs), 2)).astype(np.float32)

    return act


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, help="trained run folders (seeds)")
    parser.add_argument("--env", default="WorldFlux/TwoRooms-State-v0")
    parser.add_argument("--pairs", type=int, default=50, help="pairs of each kind")
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1000, help="seed of the held-out pairs")
    parser.add_argument("--dream-agent-steps", type=int, default=40_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default=None, help="results file suffix")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pairs = draw_pairs(args.pairs, args.seed)
    state_env = "WorldFlux/TwoRooms-State-v0"
    rows: dict[str, dict[str, list[float]]] = {}
    learned_name = f"MPPI, learned ({len(args.runs)} runs)"
    agent_name = f"SAC trained in the latent dream ({len(args.runs)} runs)"
    clocks = {name: Clock() for name in ("MPPI, true simulator", learned_name)}
    started = time.perf_counter()
    agents = [
        dream_agent_policy(run, args.dream_agent_steps, index)
        for index, run in enumerate(args.runs)
        if args.dream_agent_steps > 0
    ]
    if agents:
        print(f"dream agents trained: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    for kind, chosen in pairs.items():
        rows.setdefault("random actions", {})[kind] = [
            success_rate(state_env, chosen, random_policy(args.seed))
        ]
        oracle = TwoRoomsOracle()
        rows.setdefault("MPPI, true simulator", {})[kind] = [
            success_rate(
                state_env,
                chosen,
                clocks["MPPI, true simulator"].wrap(planner_policy(oracle, args, 0)),
            )
        ]
        learned = []
        for index, run in enumerate(args.runs):
            model = wf.create_world_model(str(Path(run) / "model")).eval()
            act = clocks[learned_name].wrap(planner_policy(model, args, index))
            learned.append(success_rate(args.env, chosen, act))
            print(f"{kind}: {run}: {learned[-1]:.2f}", file=sys.stderr, flush=True)
        rows.setdefault(learned_name, {})[kind] = learned
        if agents:
            rows.setdefault(agent_name, {})[kind] = [
                success_rate(args.env, chosen, act) for act in agents
            ]
    lines = [
        "| policy | " + " | ".join(KINDS) + " | planning time per action |",
        "|---|" + "---|" * len(KINDS) + "---|",
    ]
    for name, by_kind in rows.items():
        cells = []
        for kind in KINDS:
            values = by_kind[kind]
            if len(values) == 1:
                cells.append(f"{values[0]:.2f}")
            else:
                cells.append(
                    f"{statistics.mean(values):.2f} ± {statistics.pstdev(values):.2f} "
                    f"({', '.join(f'{v:.2f}' for v in values)})"
                )
        clock = clocks.get(name)
        cells.append(clock.cell() if clock is not None else "n/a")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    note = (
        f"Goal reaching in the two rooms ({args.env}; success rate over {args.pairs} held-out "
        f"start-goal pairs of each kind, seed {args.seed}, 100 steps each). MPPI: horizon "
        f"{args.horizon}, {args.samples} samples, 32 elites, {args.iterations} rounds, towards "
        f"the goal observation. Learned runs: {', '.join(args.runs)}. Dream agents: SAC, "
        f"{args.dream_agent_steps} steps each in the run's goal-conditioned latent dream. torch "
        f"{torch.__version__}, {args.threads} thread(s), {time.perf_counter() - started:.0f} s; "
        f"{time.strftime('%Y-%m-%d')}.\n\n"
    )
    out = RESULTS if args.name is None else RESULTS.with_name(f"goal_reaching-{args.name}.md")
    write_text_atomic(out, note + table + "\n")


if __name__ == "__main__":
    main()
