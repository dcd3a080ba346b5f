"""`worldflux agent train RECIPE --seeds S...`: one agent recipe trained once per seed (each seed a
job of a :class:`~worldflux.sweep.Sweep`: here in order, or in parallel on Ray), every seed's
run in ``OUT/seed{S}`` and the returns over seeds in ``OUT/results.json`` and ``results.md``."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ConfigError
from ..files import write_text_atomic
from ..sweep import SERIAL, Job, JobFailure, Sweep, run_sweep
from .recipes import AgentRecipe
from .train import train_agent


def seed_job(
    *, recipe: AgentRecipe, out: str, seed: int, budget: int | None, progress: bool
) -> dict[str, Any]:
    """One seed of :func:`train_agent_seeds`: the run's summary (as in its agent.json) and the
    seconds it took."""
    started = time.time()
    summary = train_agent(copy.deepcopy(recipe), out, budget=budget, seed=seed, progress=progress)
    return {"summary": summary, "seconds": round(time.time() - started, 1)}


def train_agent_seeds(
    recipe: AgentRecipe,
    out: str | Path,
    seeds: tuple[int, ...],
    *,
    budget: int | None = None,
    sweep: Sweep = SERIAL,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``recipe`` once per seed into ``out/seed{S}``; write and return the results: per
    seed the final dream and real returns, and their mean and std over the seeds. results.json
    is rewritten as each seed finishes; seeds that fail on Ray are listed under ``failed`` and
    raise a :class:`~worldflux.sweep.SweepError` at the end."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"agent train seeds: expected distinct seeds, got {list(seeds)}.")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "recipe": recipe.name,
        "algorithm": recipe.algorithm,
        "env": str(recipe.env),
        "budget": recipe.budget if budget is None else budget,
        "seeds": list(seeds),
        "sweep": sweep.describe(),
        "runs": [],
    }
    jobs = [
        Job(
            f"seed {seed}",
            seed_job,
            {
                "recipe": recipe,
                "out": str((folder / f"seed{seed}").resolve()),
                "seed": seed,
                "budget": budget,
                "progress": progress and not sweep.ray,
            },
        )
        for seed in seeds
    ]

    def collect(job: Job, outcome: dict[str, Any]) -> dict[str, Any]:
        summary = outcome["summary"]
        final = summary["final"]
        row = {
            "seed": job.kwargs["seed"],
            "dream_return": final["dream"]["mean"],
            "real_return": final["real"]["mean"],
            "real_std": final["real"]["std"],
            "real_env": summary["real_env"],
            "seconds": outcome["seconds"],
        }
        if progress:
            print(
                f"seed {row['seed']}: real return {row['real_return']:.1f} "
                f"(dream {row['dream_return']:.1f})",
                flush=True,
            )
        return row

    def write(runs: list[dict[str, Any]], failures: list[JobFailure]) -> Path:
        return _write(folder, results, runs, failures)

    run_sweep(jobs, sweep, collect, write, progress=progress)
    return results


def _write(
    folder: Path, results: dict[str, Any], runs: list[dict[str, Any]], failures: list[JobFailure]
) -> Path:
    """Fill ``results`` with the finished seeds' rows and write results.json and results.md;
    returns the path of results.json."""
    results["runs"] = runs
    if runs:
        real = np.array([r["real_return"] for r in runs])
        dream = np.array([r["dream_return"] for r in runs])
        results["summary"] = {
            "real_mean": float(real.mean()),
            "real_std": float(real.std()),
            "dream_mean": float(dream.mean()),
            "dream_std": float(dream.std()),
            "seeds": len(runs),
        }
    if failures:
        results["failed"] = [{"job": f.key, "error": f.error} for f in failures]
    write_text_atomic(folder / "results.json", json.dumps(results, indent=2) + "\n")
    write_text_atomic(folder / "results.md", seeds_markdown(results))
    return folder / "results.json"


def seeds_markdown(results: dict[str, Any]) -> str:
    """The table of a multi-seed agent run."""
    lines = [
        f"# {results['algorithm'].upper()} agent `{results['recipe']}` in {results['env']}, "
        f"{results['budget']:,} dream steps per seed",
        "",
        "| seed | dream return | real return | minutes |",
        "|---:|---:|---:|---:|",
        *(
            f"| {r['seed']} | {r['dream_return']:.1f} | {r['real_return']:.1f} ± "
            f"{r['real_std']:.1f} | {r['seconds'] / 60:.1f} |"
            for r in results["runs"]
        ),
    ]
    summary = results.get("summary")
    if summary:
        lines += [
            "",
            f"Over {summary['seeds']} seeds: real {summary['real_mean']:.1f} ± "
            f"{summary['real_std']:.1f}, dream {summary['dream_mean']:.1f} ± "
            f"{summary['dream_std']:.1f}.",
        ]
    for failure in results.get("failed", []):
        lines += ["", f"Failed: {failure['job']}: {failure['error']}"]
    return "\n".join(lines) + "\n"
