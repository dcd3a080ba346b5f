"""Does an image dream end its episodes where the real game does?

Two measurements of a `worldflux train` run of an image model over a game (Breakout):

1. **On held-out episodes** (real frames, logged actions): the model's termination probability
   at every step, read as the filter path reads it (``encode`` then ``update``; the diffusion
   family's :meth:`end_logits` plus its ``end_logit_shift`` gives the same numbers for a whole
   episode at once, and is used where a model has it). Reported:
   ROC AUC of real game ends against all other steps, recall and false-positive rate at 0.5,
   and the share of episodes whose most likely end is their real last step.
2. **Closed loop under uniform random actions**: the first episode's length in each dream env
   (default dream settings: termination sampled, episodes cut at the 1,000-step horizon; those
   still running after ``--dream-steps`` count as longer) next to those of the real game under
   the same policy.

    python benchmarks/pixel_termination.py --run runs/diffusion-breakout [--which model|best]
        [--dream-envs 32] [--dream-steps 400] [--real-episodes 32] [--name breakout-diffusion]

Results go to ``benchmarks/results/pixel_termination-<name>.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import worldflux  # noqa: F401  (registers the envs)
from worldflux.core.payloads import Batch
from worldflux.data.provider import MinariBatchProvider
from worldflux.dream import LearnedSimulator, make_dream_env

RESULTS = Path(__file__).with_name("results")


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that a positive scores above a negative (ties count half)."""
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # 1-based, ties share their mean
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def filtered_end_probabilities(model: torch.nn.Module, batch: Batch) -> np.ndarray:
    """Termination probabilities ``[B, T]`` of whole episodes through the filter path:
    ``encode`` the first frame, then ``update`` with each logged action and the next frame.
    Padding steps (past an episode's end) take action 0; their outputs are meaningless."""
    actions = batch.actions.clone()
    actions[~batch.valid.bool()] = 0.0
    actions[~batch.valid.bool(), 0] = 1.0  # a valid one-hot where the batch pads with zeros
    ends = []
    with torch.no_grad():
        state = model.encode(batch.obs[:, 0])  # type: ignore[operator]
        for t in range(batch.seq_len):
            state = model.update(state, actions[:, t], batch.obs[:, t + 1])  # type: ignore[operator]
            ends.append(1.0 - state["continue"])
    return torch.stack(ends, 1).numpy()


def held_out_end_probabilities(
    model: torch.nn.Module, data: MinariBatchProvider, chunk: int = 16
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per held-out episode: termination probabilities ``[T]`` and real terminations ``[T]``.
    A model with ``end_logits`` (the diffusion family; plus the imagination's end-rate shift, as
    ``update`` adds it) scores an episode at once; others go
    through the filter path, ``chunk`` episodes of similar length at a time."""
    store = data.store
    episodes = sorted(data.episodes["validation"], key=lambda e: int(store.lengths[e]))
    probs, labels = [], []
    for first in range(0, len(episodes), chunk):
        group = episodes[first : first + chunk]
        lengths = [int(store.lengths[e]) for e in group]
        batch = data._gather(
            np.array([int(store.step_starts[e]) for e in group]), max(lengths), "cpu"
        )
        if hasattr(model, "end_logits"):
            with torch.no_grad():
                logits = model.end_logits(*model.windows(batch))  # type: ignore[operator]
                p = torch.sigmoid(logits + model.end_logit_shift).numpy()
        else:
            p = filtered_end_probabilities(model, batch)
        ends = batch.terminations.bool().numpy()
        for row, length in enumerate(lengths):
            probs.append(p[row, :length])
            labels.append(ends[row, :length])
    return probs, labels


def dream_first_episodes(sim: LearnedSimulator, envs: int, steps: int, seed: int) -> list[int]:
    """Length of the first episode of each of ``envs`` dream envs under uniform random actions
    (termination or the horizon), run for at most ``steps`` steps: an episode still running
    then counts as ``steps + 1`` (longer than ``steps``), so the median is exact while fewer
    than half are still running."""
    env = make_dream_env(sim, num_envs=envs, backend="torch")
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    n_actions = int(sim.action_space.n)  # type: ignore[attr-defined]
    lengths = np.full(envs, steps + 1)
    running = np.ones(envs, bool)
    for t in range(1, steps + 1):
        _, _, terminated, truncated, _ = env.step(rng.integers(0, n_actions, envs))
        ended = (terminated | truncated) & running
        lengths[ended] = t
        running &= ~ended
        if not running.any():
            break
    return lengths.tolist()


def real_episode_lengths(env_id: str, episodes: int, seed: int) -> list[int]:
    """Episode lengths of the real game under uniform random actions."""
    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(episodes):
        env.reset(seed=seed + i)
        length, over = 0, False
        while not over:
            _, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))  # type: ignore[attr-defined]
            length += 1
            over = terminated or truncated
        out.append(length)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a `worldflux train` run of an image model")
    parser.add_argument("--which", default="model", choices=["model", "best"])
    parser.add_argument("--dream-envs", type=int, default=32)
    parser.add_argument("--dream-steps", type=int, default=400)
    parser.add_argument("--real-episodes", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=None, help="results file suffix (default: run name)")
    args = parser.parse_args()

    sim = LearnedSimulator.from_run(args.run, which=args.which)
    model = sim.torch_model().eval()
    if sim.source_env is None:
        raise SystemExit(f"{args.run}: its dataset names no real environment to compare with.")
    spec = json.loads((Path(args.run) / "run.json").read_text())
    data = MinariBatchProvider(spec["dataset"], validation_fraction=spec["validation_fraction"])
    probs, labels = held_out_end_probabilities(model, data)
    p, y = np.concatenate(probs), np.concatenate(labels)
    ended = [bool(lab[-1]) for lab in labels]
    at_end = [int(np.argmax(pr)) == len(pr) - 1 for pr, e in zip(probs, ended, strict=True) if e]
    auc = roc_auc(p, y)
    print(f"held-out: AUC {auc:.4f}, {int(y.sum())} ends in {len(y)} steps", flush=True)

    started = time.perf_counter()
    dream = dream_first_episodes(sim, args.dream_envs, args.dream_steps, args.seed)
    running = sum(n > args.dream_steps for n in dream)
    dream_s = time.perf_counter() - started
    real = real_episode_lengths(sim.source_env, args.real_episodes, args.seed)
    print(f"dream lengths {sorted(dream)} ({running} running); real {sorted(real)}", flush=True)

    def describe(lengths: list[int]) -> str:
        """Median (p10-p90); values past ``--dream-steps`` read as "> N" (still running)."""
        censored = max(lengths) > args.dream_steps  # no interpolation towards a bound
        method = "lower" if censored else "linear"
        q = [float(np.percentile(lengths, x, method=method)) for x in (50, 10, 90)]
        text = [f"> {args.dream_steps}" if v > args.dream_steps else f"{v:.0f}" for v in q]
        return f"{text[0]} ({text[1]}-{text[2]}), {len(lengths)} episodes"

    lines = [
        f"# Image dream termination ({Path(args.run).name}, `{model.model_type}`)",
        "",
        f"{platform.machine()}, {torch.get_num_threads()} torch threads; dataset "
        f"`{sim.info['dataset']}`, real env `{sim.source_env}`.",
        "",
        f"## Held-out episodes ({len(probs)} episodes, {len(y):,} steps, {int(y.sum())} game ends)",
        "",
        "Termination probability at every real step (real frames, logged actions).",
        "",
        "| ROC AUC | recall at 0.5 | false-positive rate at 0.5 | most likely end at the real end |",
        "|---:|---:|---:|---:|",
        f"| {auc:.4f} | {np.mean(p[y] > 0.5):.3f} | {np.mean(p[~y] > 0.5):.5f} | "
        f"{np.mean(at_end):.3f} |",
        "",
        "## Closed loop, uniform random actions",
        "",
        f"Dream: the first episode of each of {args.dream_envs} envs, run for at most "
        f"{args.dream_steps} steps (default dream settings: termination sampled, horizon 1,000; "
        f"{dream_s:.0f} s); {running} still running then (counted as longer). Real: "
        f"{args.real_episodes} games.",
        "",
        "| | median episode length (p10-p90) |",
        "|---|---|",
        f"| dream | {describe(dream)} |",
        f"| real | {describe(real)} |",
    ]
    name = args.name or Path(args.run).name
    out = RESULTS / f"pixel_termination-{name}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
