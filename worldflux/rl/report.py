"""The reality-gap report of a dream-trained agent: the same policy's returns in the dream and on
the real environment, over training (mean ± std per evaluation) and per final episode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..files import save_figure_atomic, write_text_atomic


def reality_gap_markdown(summary: dict[str, Any]) -> str:
    """``reality_gap.md``: the final scores, the per-episode returns and the learning curve."""
    final, real_env = summary["final"], summary["real_env"]
    lines = [
        f"# Reality gap: {summary['recipe']['name']}",
        "",
        f"{summary['recipe']['algorithm'].upper()} trained for {summary['recipe']['budget']:,} "
        f"steps in the dream `{summary['dream_env']}` ({summary['backend']} backend), scored "
        f"on the real `{real_env}`. Train time {summary['train_s']:.0f} s.",
        "",
        "| policy | where | mean return | std | episodes |",
        "|---|---|---:|---:|---:|",
    ]
    for who, where, key in (
        ("trained", "dream", "dream"),
        ("trained", f"real {real_env}", "real"),
        ("random", f"real {real_env}", "random_real"),
    ):
        ep = final[key]
        lines.append(
            f"| {who} | {where} | {ep['mean']:.1f} | {ep['std']:.1f} | {len(ep['returns'])} |"
        )
    actions = summary["recipe"].get("evaluation", {}).get("actions", "deterministic")
    lines += [
        "",
        f"Final episodes (same policy, {actions} actions):",
        "",
        "| episode | dream return | dream length | real return | real length |",
        "|---:|---:|---:|---:|---:|",
    ]
    d, r = final["dream"], final["real"]
    for i, (dr, dl, rr, rl) in enumerate(
        zip(d["returns"], d["lengths"], r["returns"], r["lengths"], strict=True)
    ):
        lines.append(f"| {i} | {dr:.1f} | {dl} | {rr:.1f} | {rl} |")
    lines += [
        "",
        "Evaluations during training:",
        "",
        "| dream steps | dream return | real return |",
        "|---:|---:|---:|",
    ]
    for row in summary["evaluations"]:
        lines.append(
            f"| {row['step']:,} | {row['dream']['mean']:.1f} ± {row['dream']['std']:.1f} "
            f"| {row['real']['mean']:.1f} ± {row['real']['std']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def write_reality_gap(folder: Path, summary: dict[str, Any]) -> None:
    """Write ``reality_gap.md`` and ``reality_gap.png`` into ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (folder / "reality_gap.md").write_text(reality_gap_markdown(summary))
    evaluations, final = summary["evaluations"], summary["final"]
    fig, (curve, episodes) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [row["step"] for row in evaluations]
    for where, colour in (("dream", "tab:purple"), ("real", "tab:green")):
        mean = np.array([row[where]["mean"] for row in evaluations])
        std = np.array([row[where]["std"] for row in evaluations])
        label = "in the dream" if where == "dream" else f"real {summary['real_env']}"
        curve.plot(steps, mean, "o-", color=colour, label=label)
        curve.fill_between(steps, mean - std, mean + std, color=colour, alpha=0.2)
    curve.axhline(final["random_real"]["mean"], color="grey", ls="--", label="random, real")
    curve.set_xlabel("dream environment steps")
    curve.set_ylabel("episode return")
    curve.set_title("Learning in the dream")
    curve.legend()
    n = len(final["dream"]["returns"])
    x = np.arange(n)
    episodes.bar(x - 0.2, final["dream"]["returns"], 0.4, color="tab:purple", label="dream")
    episodes.bar(x + 0.2, final["real"]["returns"], 0.4, color="tab:green", label="real")
    episodes.set_xlabel("final evaluation episode")
    episodes.set_ylabel("episode return")
    episodes.set_title("Same policy: dream vs real")
    episodes.legend()
    fig.tight_layout()
    fig.savefig(folder / "reality_gap.png", dpi=100)
    plt.close(fig)


def write_demo_report(folder: Path, runs: list[tuple[str, list[dict[str, Any]]]]) -> str:
    """``demo.md`` and ``demo.png`` for agent recipes run with several seeds; returns the table
    (per recipe: the mean over seeds of each seed's mean return, ± the std over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def over_seeds(summaries: list[dict[str, Any]], key: str) -> np.ndarray:
        return np.array([s["final"][key]["mean"] for s in summaries])

    lines = [
        "| recipe | dream env | seeds | dream return | real return | real, per seed "
        "| random, real | train time per seed |",
        "|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for name, summaries in runs:
        dream, real = over_seeds(summaries, "dream"), over_seeds(summaries, "real")
        random = over_seeds(summaries, "random_real")
        per_seed = ", ".join(f"{r:.0f}" for r in real)
        train_s = np.mean([s["train_s"] for s in summaries])
        lines.append(
            f"| {name} | {summaries[0]['dream_env']} | {len(summaries)} "
            f"| {dream.mean():.1f} ± {dream.std():.1f} | {real.mean():.1f} ± {real.std():.1f} "
            f"| {per_seed} | {random.mean():.1f} | {train_s:.0f} s |"
        )
    table = "\n".join(lines)
    write_text_atomic(folder / "demo.md", "# WorldFlux demo\n\n" + table + "\n")
    fig, ax = plt.subplots(figsize=(9, 4.5))
    x = np.arange(len(runs))
    for offset, key, colour, label in (
        (-0.25, "dream", "tab:purple", "in the dream"),
        (0.0, "real", "tab:green", "real environment"),
        (0.25, "random_real", "grey", "random policy, real"),
    ):
        values = [over_seeds(summaries, key) for _, summaries in runs]
        ax.bar(
            x + offset,
            [v.mean() for v in values],
            0.25,
            yerr=[v.std() for v in values],
            color=colour,
            label=label,
        )
        for i, v in enumerate(values):  # each seed as a dot
            ax.plot(np.full(len(v), x[i] + offset), v, "k.", ms=4)
            # every bar carries its value above its error bar and seeds: a random policy's
            # return (a few points) next to thousands is otherwise an invisible sliver
            top = max(v.mean() + v.std(), float(v.max()), 0.0)
            ax.annotate(
                f"{v.mean():.0f}",
                (x[i] + offset, top),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
    ax.set_xticks(x, [s[0]["recipe"]["description"] or name for name, s in runs])
    ax.set_ylabel("episode return (mean over seeds)")
    ax.set_title("PPO trained only in learned simulators of Walker2d-v5, scored in the real env")
    ax.legend()
    fig.tight_layout()
    save_figure_atomic(fig, folder / "demo.png")
    plt.close(fig)
    return table
