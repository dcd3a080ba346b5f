"""Offline policy selection over finished agent runs: how well each dream estimate ranks the
policies of several runs (seeds, settings, checkpoints) as the real environment does.

    python benchmarks/policy_selection.py --name NAME RUN [RUN ...] [--episodes 10]
        [--model-run MODEL] [--members]
    python benchmarks/policy_selection.py --name NAME --checkpoints RUN [RUN ...]

Every RUN is an agent run folder (``agent.json`` + ``model.zip``, e.g. the runs of
``mopo_curve.py``) of one dataset. By default every policy a run saved (its final
``model.zip`` and the ``checkpoints/`` of its periodic evaluations) is scored anew, all from the
same seeds: in its run's dream (or ``--model-run``'s: another world model of the same dataset
as the judge) from the dataset's episode starts up to the real time limit, and on the real
environment, ``--episodes`` episodes each. Dream estimates: ``raw`` (the model's
sampled transitions) and those of :func:`worldflux.rl.train.dream_estimates`: ``mean`` (its
mean transitions: no Gaussian noise, ``noise_scale=0``), ``penalised`` and ``halted``. With
``--members`` (ensemble judges): the rollout estimates of :class:`MemberJudge` beside. With
``--checkpoints`` nothing is scored anew: every evaluation the runs recorded during training
(with the other estimates where the runs recorded them) is ranked together. Prints and saves
benchmarks/results/policy_selection-NAME.md with the Spearman correlation of each estimate with
the real return.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from worldflux.data.collect import SB3Policy
from worldflux.dream.make import load_simulator
from worldflux.eval.fidelity import spearman
from worldflux.files import write_text_atomic
from worldflux.rl.offline import DreamJudge
from worldflux.rl.train import FINAL_SEED, recorded_estimates

RESULTS = Path(__file__).with_name("results")


def saved_policies(run: Path) -> list[tuple[str, Path]]:
    """``(label, zip)`` of every policy ``run`` saved: its periodic checkpoints, then the final."""
    summary = json.loads((run / "agent.json").read_text())
    saved = [(f"{run.name} @ {e['step']:,}", run / e["policy"])
             for e in summary["evaluations"][:-1] if "policy" in e]  # fmt: skip
    final = summary["evaluations"][-1]["step"]  # the final evaluation always runs
    return [*saved, (f"{run.name} @ {final:,} (final)", run / "model.zip")]


class MemberJudge:
    """Estimates from an ensemble's deterministic rollouts, from ``episodes`` dataset episode
    starts up to the real time limit, each ending where its continue probability falls below 0.5
    or its state leaves finite values below 1e4:

    * per member (PETS's trajectory sampling, one elite for a whole episode, its mean
      transitions): ``members mean``, the mean return over elites and starts; ``members min``,
      the mean over starts of the lowest elite's return;
    * in the elites' mean transitions (``deterministic=True``): ``elites mean``, the mean return;
      ``rollout uncertainty``, the mean epistemic uncertainty over the steps rolled (not a
      return: a policy that leaves the data scores high)."""

    def __init__(self, model_run: str, env_id: str, episodes: int) -> None:
        sim = load_simulator(model_run)
        self.model = sim.torch_model().eval()
        if "member" not in self.model.noise_spec():
            raise SystemExit(f"--members: {model_run} is no ensemble (its noise has no member)")
        self.elites = int(self.model.config.elites)
        starts = sim.reset_states.start
        pick = np.random.default_rng(FINAL_SEED).choice(len(starts), episodes, replace=False)
        self.starts = starts[pick].astype(np.float32)
        self.horizon = int(gym.spec(env_id).max_episode_steps or 1000)

    def _rollout(
        self, policy: Any, obs: np.ndarray, noise: dict[str, torch.Tensor] | None
    ) -> tuple[np.ndarray, float]:
        """The returns ``[B]`` of rollouts from ``obs [B, D]`` (``noise`` None: the elites' mean
        transitions), and the mean uncertainty over the steps rolled."""
        rows = len(obs)
        alive, returns, uncertainty = np.ones(rows, bool), np.zeros(rows), []
        for _ in range(self.horizon):
            action = torch.as_tensor(policy(obs), dtype=torch.float32)
            nxt = self.model.transition(
                self.model.encode(torch.as_tensor(obs)), action, noise=noise,
                deterministic=noise is None,
            )  # fmt: skip
            returns += np.where(alive, nxt["reward"].numpy().reshape(rows), 0.0)
            uncertainty.append(self.model.decode(nxt).uncertainty.numpy().reshape(rows)[alive])
            new = nxt["obs"].numpy()
            alive &= nxt["continue"].numpy().reshape(rows) >= 0.5
            alive &= np.isfinite(new).all(1) & (np.abs(new).max(1) < 1e4)
            if not alive.any():
                break
            obs = np.where(alive[:, None], new, obs).astype(np.float32)  # ended rows stay put
        return returns, float(np.concatenate(uncertainty).mean())

    @torch.no_grad()
    def __call__(self, policy: Any) -> dict[str, float]:
        e = self.elites
        rows = len(self.starts) * e
        noise = {
            "member": torch.tensor(
                np.tile((np.arange(e) + 0.5) / e, len(self.starts)), dtype=torch.float32
            ),
            "eps": torch.zeros(rows, int(self.model.config.target_dim)),
        }
        members, _ = self._rollout(policy, np.repeat(self.starts, e, axis=0), noise)
        per_start = members.reshape(-1, e)
        mean, uncertainty = self._rollout(policy, self.starts, None)
        return {
            "members mean": float(per_start.mean()),
            "members min": float(per_start.min(1).mean()),
            "elites mean": float(mean.mean()),
            "rollout uncertainty": uncertainty,
        }


def score_run(
    run: Path, episodes: int, judge_model: str | None = None, members: bool = False
) -> list[dict[str, Any]]:
    """Every saved policy of ``run``: its dream estimates and its real return, ``episodes``
    episodes each from the same seeds (those of the offline pipeline's dream judge), in the
    dream of ``judge_model`` (default: the model the run trained in); with ``members``, the
    :class:`MemberJudge` estimates beside."""
    summary = json.loads((run / "agent.json").read_text())
    model_run, real_env = judge_model or summary["recipe"]["env"], summary["real_env"]
    sample = summary["recipe"]["evaluation"]["actions"] == "sampled"
    judge = DreamJudge(model_run, real_env, episodes)
    member_judge = MemberJudge(model_run, real_env, episodes) if members else None
    probe = gym.make(real_env)
    rows = []
    try:
        for label, path in saved_policies(run):
            policy = SB3Policy.from_file(path, probe, sample=sample, seed=FINAL_SEED)
            scored = judge.score("", 0, 0, policy, FINAL_SEED)
            row = {"run": label, "agent": run.name, "model": model_run,
                   "final": path.name == "model.zip", "real": scored["real"],
                   "raw": scored["dream"], **scored.get("dream_estimates", {})}  # fmt: skip
            if member_judge is not None:
                row.update(member_judge(policy))
            rows.append(row)
            print(row, flush=True)
    finally:
        probe.close()
        judge.close()
    return rows


def recorded_rows(run: Path) -> list[dict[str, Any]]:
    """Every evaluation ``run`` recorded: dream (raw and the other estimates) and real mean
    returns."""
    summary = json.loads((run / "agent.json").read_text())
    return [
        {"run": f"{run.name} @ {e['step']:,}", "agent": run.name,
         "model": summary["recipe"]["env"], "final": i == len(summary["evaluations"]) - 1,
         "real": e["real"]["mean"], "raw": e["dream"]["mean"], **recorded_estimates(e)}
        for i, e in enumerate(summary["evaluations"])
    ]  # fmt: skip


def chosen_returns(rows: list[dict[str, Any]], key: str) -> list[float]:
    """Per agent run (in order): the real return of its policy with the highest ``key``
    (``final``: its final policy)."""
    agents = list(dict.fromkeys(r["agent"] for r in rows))
    out = []
    for agent in agents:
        own = [r for r in rows if r["agent"] == agent]
        pick = (
            next(r for r in own if r["final"]) if key == "final" else max(own, key=lambda r: r[key])
        )
        out.append(pick["real"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument(
        "--model-run", help="judge in this world model's dream (default: each run's)"
    )
    parser.add_argument("--checkpoints", action="store_true",
                        help="rank the evaluations the runs recorded (nothing is scored anew)")  # fmt: skip
    parser.add_argument(
        "--members", action="store_true", help="add an ensemble judge's rollout estimates"
    )
    args = parser.parse_args()
    if args.checkpoints and (args.model_run or args.members):
        parser.error(
            "--checkpoints ranks recorded evaluations; --model-run and --members score anew"
        )
    rows = []
    for run in args.runs:
        if args.checkpoints:
            rows.extend(recorded_rows(run))
        else:
            rows.extend(score_run(run, args.episodes, args.model_run, args.members))
    # the estimates every row has (runs without other estimates leave only the raw one)
    names = [k for k in rows[0]
             if k not in ("run", "agent", "model", "final", "real") and all(k in r for r in rows)]  # fmt: skip
    choices = {"final policy": "final", **{f"highest dream {k}": k for k in names},
               "highest real (for reference)": "real"}  # fmt: skip
    real = np.array([r["real"] for r in rows])
    rho = {k: spearman(np.array([r[k] for r in rows]), real) for k in names}
    lines = [
        f"# Offline policy selection: {args.name}",
        "",
        (
            f"{len(rows)} evaluations recorded during training (checkpoints and final "
            "policies) from the dataset's episode starts, real returns as each run measured them"
            if args.checkpoints
            else f"{len(rows)} saved policies (checkpoints and final); dream returns over "
            f"{args.episodes} episodes from the dataset's episode starts, real returns over "
            f"{args.episodes} episodes, the same seeds for every policy"
            + (f"; every dream that of {args.model_run}" if args.model_run else "")
        )
        + ".",
        "",
        "Spearman with the real return: " + ", ".join(f"{k} {v:.2f}" for k, v in rho.items()),
        "",
        "The policy each estimate picks in every run (no real return in the choice but the last "
        "row's), its real return:",
        "",
        "| choice | real return per run | mean |",
        "|---|---|---:|",
        *(
            f"| {label} | {', '.join(f'{x:.0f}' for x in picked)} | {np.mean(picked):.1f} |"
            for label, picked in ((lb, chosen_returns(rows, k)) for lb, k in choices.items())
        ),
        "",
        "| run | real return | " + " | ".join(f"dream {k}" for k in names) + " |",
        "|---|---:|" + "---:|" * len(names),
        *(
            f"| {r['run']} | {r['real']:.1f} | " + " | ".join(f"{r[k]:.1f}" for k in names) + " |"
            for r in sorted(rows, key=lambda r: -r["real"])
        ),
    ]
    table = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    write_text_atomic(RESULTS / f"policy_selection-{args.name}.md", table)
    print(table)


if __name__ == "__main__":
    main()
