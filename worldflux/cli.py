"""The ``worldflux`` command."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .sweep import Sweep

#: the agent recipes `worldflux demo` runs, in order (agents/<name>.toml)
DEMO_RECIPES = ("demo-ppo-ensemble-walker", "demo-ppo-dreamer-walker")
#: each demo recipe runs with these seeds (agents trained in a dream vary a lot between seeds)
DEMO_SEEDS = (0, 1, 2)

_PACKAGES = (
    "torch",
    "numpy",
    "gymnasium",
    "mujoco",
    "minari",
    "stable-baselines3",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "onnxruntime-gpu",
    "safetensors",
)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the help already names its default
    or there is none to show (None, False, an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        shown = default not in (None, False, argparse.SUPPRESS) and default != []
        if shown and "default" not in text and (action.option_strings or action.nargs == "?"):
            text += " (default: %(default)s)"
        return text.strip()


def _print_columns(
    rows: Sequence[Sequence[str]], right: frozenset[int] | set[int] = frozenset()
) -> None:
    """Print ``rows`` as columns as wide as their longest cell (``right``: right-aligned
    column indices); the last column is not padded."""
    if not rows:
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        cells[-1] = cells[-1].rstrip()
        print("  ".join(cells))


def _trainer_defaults() -> dict[str, Any]:
    """``TrainerConfig``'s defaults for ``train --help`` (none without torch)."""
    try:
        from dataclasses import fields

        from .training.config import TrainerConfig
    except ImportError:
        return {}
    return {f.name: f.default for f in fields(TrainerConfig)}


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _model_info() -> dict[str, Any]:
    """The torch side of ``worldflux info``: contract versions, families, components, plugins."""
    import torch

    from .core.components import ComponentRegistry
    from .core.model import CONTRACT_VERSION
    from .core.plugins import PLUGIN_API_VERSION, plugin_records
    from .core.registry import WorldModelRegistry
    from .core.serialization import FORMAT_VERSION

    return {
        "contract_version": CONTRACT_VERSION,
        "format_version": FORMAT_VERSION,
        "plugin_api_version": PLUGIN_API_VERSION,
        "torch": {
            "cuda_available": torch.cuda.is_available(),
            "cuda_devices": [
                torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
            ],
            "num_threads": torch.get_num_threads(),
        },
        "families": {
            name: {
                "aliases": list(entry.aliases),
                "presets": sorted(entry.presets),
                "default_preset": entry.config_cls.default_preset,
                "source": entry.source,
            }
            for name, entry in WorldModelRegistry.families().items()
        },
        "components": ComponentRegistry.names(),
        "plugins": [
            {
                "group": r.group,
                "name": r.name,
                "target": r.target,
                "distribution": r.distribution,
                "status": r.status,
                "reason": r.reason,
                "families": r.families,
                "components": r.components,
            }
            for r in plugin_records()
        ],
    }


def collect_info() -> dict[str, Any]:
    """Versions, ONNX Runtime providers, registered families and plugins, as a JSON-ready dict
    (without torch: the runtime side only, and a warning)."""
    from ._optional import torch_available

    warnings: list[str] = []
    packages = {name: _dist_version(name) for name in _PACKAGES}
    if packages["onnxruntime"] and packages["onnxruntime-gpu"]:
        warnings.append(
            "both onnxruntime and onnxruntime-gpu are installed; they overwrite each other's "
            "module. Reinstall one (see README, 'GPU set-up')."
        )
    try:
        import onnxruntime

        providers: list[str] = list(onnxruntime.get_available_providers())
    except ImportError as exc:
        providers = []
        warnings.append(f"onnxruntime cannot be imported: {exc}")
    if torch_available():
        models = _model_info()
    else:
        models = {
            "contract_version": None,
            "format_version": None,
            "plugin_api_version": None,
            "torch": {},
            "families": {},
            "components": {},
            "plugins": [],
        }
        warnings.append(
            "torch cannot be imported: exported dream environments run on ONNX Runtime; "
            "building, training and exporting models need torch."
        )
    return {
        "worldflux": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        **{k: models[k] for k in ("contract_version", "format_version", "plugin_api_version")},
        "packages": packages,
        "torch": models["torch"],
        "onnxruntime_providers": providers,
        "families": models["families"],
        "components": models["components"],
        "plugins": models["plugins"],
        "warnings": warnings,
    }


def _print_info(info: dict[str, Any]) -> None:
    print(f"WorldFlux {info['worldflux']}  (Python {info['python']}, {info['platform']})")
    print(
        f"  contract v{info['contract_version']}, save format v{info['format_version']}, "
        f"plugin API v{info['plugin_api_version']}"
    )
    print("\nPackages")
    for name, version in info["packages"].items():
        print(f"  {name:<18} {version or '-'}")
    t = info["torch"]
    if t:
        gpus = ", ".join(t["cuda_devices"]) or "none"
        print(
            f"\nPyTorch: CUDA {'available' if t['cuda_available'] else 'not available'} "
            f"(GPUs: {gpus}); {t['num_threads']} CPU threads"
        )
    print(f"ONNX Runtime providers: {', '.join(info['onnxruntime_providers']) or 'none'}")
    print("\nWorld-model families")
    if not info["families"]:
        print("  (none registered)")
    for name, fam in info["families"].items():
        aliases = f" (aliases: {', '.join(fam['aliases'])})" if fam["aliases"] else ""
        presets = ", ".join(fam["presets"]) or "-"
        print(f"  {name}{aliases}: presets {presets}; from {fam['source']}")
    if info["components"]:
        print("\nRegistered components")
        for name, role in info["components"].items():
            print(f"  {name} ({role})")
    print("\nPlugins")
    if not info["plugins"]:
        print("  (none installed)")
    for p in info["plugins"]:
        detail = f": {p['reason']}" if p["reason"] else ""
        print(f"  {p['name']} [{p['group']}] from {p['distribution']}: {p['status']}{detail}")
    for warning in info["warnings"]:
        print(f"\nWARNING: {warning}")


def _cmd_info(args: argparse.Namespace) -> int:
    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_info(info)
    return 0


def _cmd_collect(args: argparse.Namespace) -> int:
    from .data.pipeline import CollectSpec, TrainSpec, collect_dataset
    from .data.recipes import load_recipes, recipe_names, recipe_spec

    if args.list_recipes:
        recipes = load_recipes()
        rows = []
        for name in recipe_names():
            r = recipes["dataset"][name]
            rows.append([name, r["dataset_id"], r["env"], f"policy={r.get('policy', 'random')}"])
        _print_columns(rows)
        return 0
    if args.recipe:
        if args.env_id or args.dataset_id:
            raise SystemExit(
                "worldflux collect: give either --recipe or ENV_ID --dataset-id, not both."
            )
        spec = recipe_spec(args.recipe)
    else:
        if not args.env_id or not args.dataset_id:
            raise SystemExit(
                "worldflux collect: expected ENV_ID and --dataset-id (or --recipe NAME; "
                "--list-recipes shows them)."
            )
        train = None
        policy = args.policy
        if args.train_steps is not None:
            if policy != "random":
                raise SystemExit(
                    "worldflux collect: --train-steps trains the policy; drop --policy."
                )
            policy = "train"
            train = TrainSpec(
                algo=args.algo,
                train_steps=args.train_steps,
                n_envs=args.n_envs,
                save_to=args.save_policy,
            )
        elif args.mode == "replay":
            raise SystemExit("worldflux collect: --mode replay needs --train-steps.")
        if args.mode == "replay" and args.steps is not None:
            raise SystemExit(
                "worldflux collect: --mode replay keeps every episode played in training, so its "
                "size is set by --train-steps; expected no --steps, got --steps "
                f"{args.steps}."
            )
        spec = CollectSpec(
            env_id=args.env_id,
            dataset_id=args.dataset_id,
            policy=policy,
            mode=args.mode,
            steps=None if args.mode == "replay" else (args.steps or 100_000),
            action_noise=args.action_noise,
            actions=args.actions,
            n_envs=args.n_envs,
            seed=args.seed,
            train=train,
            score_episodes=args.score_episodes,
            ref_max_score=args.ref_max_score,
        )
    report = collect_dataset(spec, overwrite=args.overwrite, progress=not args.quiet)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0


#: Python's spellings of NaN and infinity, which ``--model-arg`` reads as numbers (so that they
#: are refused as such, before any data is read); JSON's ``NaN`` and ``Infinity`` parse anyway.
_NON_FINITE_WORDS = frozenset(
    sign + word for sign in ("", "+", "-") for word in ("nan", "inf", "infinity")
)


def _parse_value(text: str) -> Any:
    """``--model-arg k=v`` values: JSON when it parses (numbers, booleans, lists, ``"quoted"``
    strings), ``nan``/``inf`` as floats, else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return float(text) if text.strip().lower() in _NON_FINITE_WORDS else text


def _key_values(pairs: Sequence[str], flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"worldflux: {flag} expects KEY=VALUE, got {pair!r}.")
        out[key] = _parse_value(value)
    return out


_TRAINER_FLAGS = (
    "steps",
    "batch_size",
    "seq_len",
    "end_fraction",
    "lr",
    "weight_decay",
    "grad_clip",
    "warmup_steps",
    "lr_schedule",
    "seed",
    "bf16",
    "log_every",
    "eval_every",
    "eval_batches",
    "checkpoint_every",
    "early_stopping_patience",
    "device",
    "threads",
)


def _threads_value(text: str) -> int | str:
    """``--threads``: ``auto`` or an integer; anything else is passed on as given, for
    ``TrainerConfig`` to refuse by name."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        return text


def _cmd_train(args: argparse.Namespace) -> int:
    from .training.run import train_run

    trainer = {k: getattr(args, k) for k in _TRAINER_FLAGS if getattr(args, k) is not None}
    if args.resume and (trainer or args.model_arg):
        raise SystemExit(
            "worldflux train --resume continues with the run's saved settings; drop "
            f"{sorted([*trainer, *(['--model-arg'] if args.model_arg else [])])}."
        )
    if args.trust_imports and not args.resume:
        raise SystemExit(
            "worldflux train: --trust-imports applies to --resume (code a run folder's run.json "
            "names); a new run's --model-arg values are yours and need no opt-in."
        )
    result = train_run(
        args.run_dir,
        model=args.model,
        dataset=args.dataset,
        model_overrides=_key_values(args.model_arg, "--model-arg"),
        trainer=trainer,
        validation_fraction=args.validation_fraction,
        resume=args.resume,
        progress=not args.quiet,
        fidelity=not args.no_fidelity,
        trust_imports=args.trust_imports,
    )
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports
        return 0
    print(
        f"{result['stop_reason']} after {result['steps']} steps; validation loss "
        f"{result['validation'].get('val/loss', float('nan')):.4f}; "
        f"{result['samples_per_s']:.0f} samples/s; {result['threads']} CPU threads; "
        f"run in {args.run_dir}"
    )
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .dream.make import load_simulator
    from .dream.shifted import default_policies, shifted_policy_report

    source = Path(args.source)
    is_run = (source / "run.json").is_file()
    if not is_run and (args.which != "model" or args.dataset):
        raise SystemExit("worldflux evaluate: --which and --dataset apply to training runs only.")
    if is_run and not args.shifted_only:
        from .training.run import evaluate_run

        report = evaluate_run(
            source,
            which=args.which,
            dataset=args.dataset,
            horizons=tuple(args.horizons),
            windows=args.windows,
            device=args.device,
        )
        print(report.to_markdown())
    if args.no_shifted:
        return 0
    sim = load_simulator(source)
    if is_run and args.which != "model":
        from .core.serialization import load_pretrained

        sim.model = load_pretrained(source / args.which)
    extra = {}
    for item in args.policy or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"worldflux evaluate: --policy expected NAME=PATH, got {item!r}.")
        extra[name] = path
    policies, notes = default_policies(
        sim, behaviour=args.behaviour_policy, noise=args.noise, extra=extra, seed=args.seed
    )
    shifted = shifted_policy_report(
        sim,
        policies=policies,
        episodes=args.episodes,
        horizons=tuple(args.horizons),
        seed=args.seed,
    )
    shifted.notes[:0] = notes
    print(shifted.to_markdown())
    out = Path(args.out) if args.out else (source if is_run else None)
    if out is not None:
        stem = "shifted" if args.which == "model" else f"shifted-{args.which}"
        for path in shifted.save(out, stem=stem):
            print(f"wrote {path}")
    return 0


def _cmd_envs(args: argparse.Namespace) -> int:
    from .dream.cards import load_cards

    cards = load_cards()
    if args.json:
        rows = [
            {
                "name": n,
                "id": c.id,
                "model": c.model,
                "artifact": str(c.artifact_dir),
                "built": c.built,
                "onnx": c.built and (c.artifact_dir / "step.onnx").is_file(),
            }
            for n, c in cards.items()
        ]
        print(json.dumps(rows, indent=2))
        return 0
    _print_columns(
        [
            [card.id, card.model, "built" if card.built else f"not built (worldflux build {name})"]
            for name, card in cards.items()
        ]
    )
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from .dream.build import build_artifact

    if args.trust_imports and not args.resume:
        raise SystemExit(
            "worldflux build: --trust-imports applies to --resume (code a run folder's run.json "
            "names); a new build's settings come from its env card."
        )
    summary = build_artifact(
        args.card,
        run_dir=args.run_dir,
        resume=args.resume,
        progress=not args.quiet,
        trust_imports=args.trust_imports,
    )
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export.artifact import export_artifact

    print(json.dumps(export_artifact(args.source, args.out), indent=2))
    return 0


def _cmd_agent(args: argparse.Namespace) -> int:
    from .rl import agent_eval, find_agent_recipe, format_summary, train_agent
    from .rl.recipes import agents_dir, read_agent_recipe

    if args.action == "list":
        rows = []
        for path in sorted(agents_dir().glob("*.toml")):
            r = read_agent_recipe(path)
            rows.append([path.stem, r.algorithm, r.env, f"{r.budget:,}", r.description])
        _print_columns(rows, right={3})
        return 0
    from .core.errors import ConfigError

    if args.action == "train":
        if args.recipe is None:
            raise ConfigError(
                "agent train: expected a recipe name or file (see `worldflux agent list`)."
            )
        recipe = find_agent_recipe(args.recipe)
        out = args.out or f"runs/agent-{recipe.name}"
        sweep = _sweep(args)
        if args.seeds is not None:
            if args.seed is not None:
                raise ConfigError("agent train: expected --seed or --seeds, got both.")
            from .rl.seeds import train_agent_seeds

            print(f"training {recipe.algorithm.upper()} in {recipe.env} ({recipe.name}), seeds "
                  f"{args.seeds}, into {out}/seed*")  # fmt: skip
            results = train_agent_seeds(
                recipe, out, tuple(args.seeds), budget=args.budget, sweep=sweep,
                progress=not args.quiet,
            )  # fmt: skip
            print((Path(out) / "results.md").read_text())
            print(f"results: {out}/results.json, {out}/results.md")
            return 0 if results["runs"] else 1
        if sweep.ray:
            raise ConfigError(
                "agent train: the Ray flags run several seeds in parallel; expected --seeds with "
                "them, got a single run."
            )
        print(f"training {recipe.algorithm.upper()} in {recipe.env} ({recipe.name}) into {out}")
        summary = train_agent(
            recipe, out, budget=args.budget, seed=args.seed, progress=not args.quiet
        )
        print(format_summary(summary))
        print(f"report: {out}/reality_gap.md, {out}/reality_gap.png")
        return 0
    if args.model is None or args.env is None:
        raise ConfigError("agent eval: expected --model MODEL.zip and --env ENV_ID.")
    result = agent_eval(
        args.model,
        args.env,
        episodes=args.episodes,
        seed=args.seed or 0,
        dream=args.dream,
        actions=args.actions,
    )
    print(json.dumps(result, indent=2))
    return 0


def _add_sweep_arguments(parser: argparse.ArgumentParser, prefix: str) -> None:
    """The flags of :class:`~worldflux.sweep.Sweep`: parallel jobs on Ray."""
    parser.add_argument(
        "--ray",
        action="store_true",
        help=f"{prefix}run the jobs (seeds, methods) in parallel as Ray tasks on a local Ray "
        "instance (pip install 'worldflux[ray]')",
    )
    parser.add_argument(
        "--ray-address",
        help=f"{prefix}run the Ray tasks on an existing cluster (e.g. ray://head:10001 or auto; "
        "implies --ray)",
    )
    parser.add_argument(
        "--workers", type=int, help=f"{prefix}local Ray: jobs at a time (default: the CPU count)"
    )
    parser.add_argument(
        "--job-threads", type=int, help=f"{prefix}Ray: CPUs and torch threads per job (default 1)"
    )
    parser.add_argument(
        "--retries", type=int, help=f"{prefix}Ray: reruns of a failed job (default 1)"
    )


def _sweep(args: argparse.Namespace) -> Sweep:
    """The sweep the Ray flags ask for (serial without them)."""
    from .sweep import Sweep

    ray = args.ray or args.ray_address is not None
    given = {"workers": args.workers, "threads": args.job_threads, "retries": args.retries}
    if not ray:
        flags = {"workers": "--workers", "threads": "--job-threads", "retries": "--retries"}
        used = [flags[name] for name, value in given.items() if value is not None]
        if used:
            from .core.errors import ConfigError

            raise ConfigError(f"{', '.join(used)}: expected with --ray or --ray-address.")
        return Sweep()
    options = {name: value for name, value in given.items() if value is not None}
    return Sweep(ray=True, address=args.ray_address, **options)


def _cmd_offline(args: argparse.Namespace) -> int:
    from .rl.offline import DEFAULT_METHODS, offline_run, results_markdown

    out = args.out or f"runs/offline-{args.dataset_id.replace('/', '-')}"
    results = offline_run(
        args.dataset_id,
        out,
        methods=tuple(args.methods or DEFAULT_METHODS),
        seeds=tuple(args.seeds),
        model_run=args.model_run,
        tdmpc2_model=args.tdmpc2_model,
        model_steps=args.model_steps,
        agent_steps=args.agent_steps,
        gradient_steps=args.gradient_steps,
        episodes=args.episodes,
        checkpoints=args.checkpoints,
        **({} if args.real_fraction is None else {"real_fraction": args.real_fraction}),
        **({} if args.policy_average is None else {"policy_average": args.policy_average}),
        sweep=_sweep(args),
        resume=args.resume,
        progress=not args.quiet,
    )
    print(results_markdown(results))
    print(f"results: {out}/results.json, {out}/results.md")
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from .rl.plan import plan_eval

    result = plan_eval(
        args.source,
        planner=args.planner,
        env_id=args.env,
        episodes=args.episodes,
        seed=args.seed,
        horizon=args.horizon,
        num_samples=args.samples,
        iterations=args.iterations,
        uncertainty_penalty=args.uncertainty_penalty,
        search=args.search,
        goal=args.goal,
    )
    print(json.dumps(result, indent=2))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .rl import find_agent_recipe, format_summary, train_agent
    from .rl.report import write_demo_report

    out = Path(args.out)
    runs: list[tuple[str, list[dict[str, Any]]]] = []
    total = len(DEMO_RECIPES) * len(DEMO_SEEDS)
    done = 0
    for name in DEMO_RECIPES:
        summaries = []
        for seed in DEMO_SEEDS:
            done += 1
            recipe = find_agent_recipe(name)
            print(
                f"[{done}/{total}] {recipe.description}, seed {seed}: {recipe.algorithm.upper()} "
                f"for {args.budget or recipe.budget:,} steps in {recipe.env}, scored on the real "
                f"{recipe.evaluation.env}",
                flush=True,
            )
            summary = train_agent(
                recipe,
                out / f"{name}-seed{seed}",
                seed=seed,
                budget=args.budget,
                progress=not args.quiet,
            )
            print(format_summary(summary), flush=True)
            summaries.append(summary)
        runs.append((name, summaries))
    table = write_demo_report(out, runs)
    print(f"\n{table}\n\nplot: {out / 'demo.png'}   reports: {out}/*/reality_gap.md")
    return 0


def _cmd_dream_video(args: argparse.Namespace) -> int:
    from .dream.video import dream_video

    result = dream_video(
        args.source, args.out, steps=args.steps, seed=args.seed, policy=args.policy
    )
    print(json.dumps(result, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="worldflux",
        description="Learned simulators from logged RL data: train world models on Minari "
        "datasets and serve them as Gymnasium environments.",
    )
    parser.add_argument("--version", action="version", version=f"worldflux {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser(
        "info", help="versions, registered families and plugins, ONNX Runtime providers"
    )
    info.add_argument("--json", action="store_true", help="print machine-readable JSON")
    info.set_defaults(func=_cmd_info)

    col = sub.add_parser(
        "collect",
        help="write a Minari dataset from a gymnasium env with a behaviour policy",
        description="Write a Minari dataset (into MINARI_DATASETS_PATH or ~/.minari/datasets) "
        "from ENV_ID with a random policy, an SB3 model file, or an SB3 agent trained first; "
        "or rebuild one of the project's datasets with --recipe.",
    )
    col.add_argument("env_id", nargs="?", help="gymnasium environment id, e.g. Walker2d-v5")
    col.add_argument("--dataset-id", help="Minari id to write, e.g. me/walker2d/medium-v0")
    col.add_argument("--recipe", help="build a named project dataset (see --list-recipes)")
    col.add_argument("--list-recipes", action="store_true", help="list dataset recipes and exit")
    col.add_argument(
        "--policy", default="random", help="'random' (default) or the path of an SB3 model zip"
    )
    col.add_argument("--train-steps", type=int, help="train an SB3 agent for this many steps first")
    col.add_argument("--algo", default="ppo", help="SB3 algorithm for --train-steps (default ppo)")
    col.add_argument(
        "--mode",
        choices=("final", "replay"),
        default="final",
        help="with --train-steps: episodes of the final policy, or the training episodes",
    )
    col.add_argument("--save-policy", help="with --train-steps: save the trained agent here (.zip)")
    col.add_argument(
        "--steps", type=int, help="transitions to collect (default 100000; not with --mode replay)"
    )
    col.add_argument(
        "--action-noise", type=float, default=0.0, help="Gaussian noise, x half the action range"
    )
    col.add_argument(
        "--actions",
        choices=("deterministic", "sampled"),
        default="deterministic",
        help="SB3 policies: the mean action (plus --action-noise), or actions sampled from the "
        "policy's distribution with its log-probabilities stored in the dataset's infos",
    )
    col.add_argument("--n-envs", type=int, default=8, help="environments stepped together")
    col.add_argument("--seed", type=int, default=0)
    col.add_argument(
        "--score-episodes", type=int, default=20, help="episodes for reference returns"
    )
    col.add_argument("--ref-max-score", type=float, help="expert return for normalised scores")
    col.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    col.add_argument("--quiet", action="store_true", help="no progress bars")
    col.add_argument("--json", action="store_true", help="print the report as JSON")
    col.set_defaults(func=_cmd_collect)

    tr = sub.add_parser(
        "train",
        help="train a world model on a Minari dataset into a run folder",
        description="Train MODEL (family[:preset], e.g. dreamerv3:small) on Minari dataset "
        "DATASET. The run folder gets run.json, logs (CSV, TensorBoard), checkpoints, the best "
        "and final models, metrics.json and a fidelity report. Under `torchrun "
        "--nproc_per_node=N` it trains with DistributedDataParallel.",
    )
    tr.add_argument("model", nargs="?", help="family[:preset]; omit with --resume")
    tr.add_argument("--dataset", help="Minari dataset id; omit with --resume")
    tr.add_argument("--run-dir", required=True, help="folder for the run")
    tr.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    tr.add_argument(
        "--trust-imports",
        action="store_true",
        help="with --resume: import the code the run's run.json names (component overrides, "
        "termination_fn as 'package.module:attr'); only for run folders you trust",
    )
    tr.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a model config field (repeatable)",
    )
    tr.add_argument("--validation-fraction", type=float, default=0.1)
    trainer_defaults = _trainer_defaults()
    for flag in _TRAINER_FLAGS:
        if flag == "bf16":
            tr.add_argument(
                "--bf16",
                action="store_const",
                const=True,
                default=None,
                help="bf16 autocast for the loss",
            )
            continue
        if flag == "threads":
            tr.add_argument(
                "--threads",
                type=_threads_value,
                default=None,
                metavar="N|auto",
                help="TrainerConfig.threads: torch's CPU threads for training; 'auto' keeps "
                "torch's count when OMP_NUM_THREADS is set, else uses half the CPUs (at least "
                "1), which a busy machine slows down far less than all of them"
                + (f" (default: {trainer_defaults[flag]})" if flag in trainer_defaults else ""),
            )
            continue
        kind = {
            "lr": float,
            "end_fraction": float,
            "weight_decay": float,
            "grad_clip": float,
            "lr_schedule": str,
            "device": str,
        }.get(flag, int)
        tr.add_argument(
            f"--{flag.replace('_', '-')}",
            dest=flag,
            type=kind,
            default=None,
            help=f"TrainerConfig.{flag}"
            + (f" (default: {trainer_defaults[flag]})" if flag in trainer_defaults else ""),
        )
    tr.add_argument("--no-fidelity", action="store_true", help="skip the final fidelity report")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=_cmd_train)

    ev = sub.add_parser(
        "evaluate",
        help="fidelity of a learned simulator: on held-out data, and against the real env "
        "under shifted policies",
        description="For a training run: roll its model open-loop with logged actions from "
        "held-out episodes and compare with copy and linear baselines at several horizons. For "
        "a run, an artifact folder or an env card: drive the dream and the real environment "
        "(recovered from the dataset) with policies other than the behaviour policy (random "
        "actions, the behaviour policy with Gaussian action noise, the behaviour policy, and "
        "any --policy) and compare open-loop errors from the same real states and closed-loop "
        "episode lengths, returns and termination rates.",
    )
    ev.add_argument("source", help="a `worldflux train` run folder, an artifact folder or a card")
    ev.add_argument(
        "--which",
        choices=("model", "best"),
        default="model",
        help="runs: the final model (default) or the best-on-validation one",
    )
    ev.add_argument("--dataset", help="runs: held-out data of another dataset (same spaces)")
    ev.add_argument("--horizons", type=int, nargs="+", default=[1, 5, 15, 50])
    ev.add_argument("--windows", type=int, default=256, help="held-out windows (default 256)")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--no-shifted", action="store_true", help="skip the shifted-policy comparison")
    ev.add_argument(
        "--shifted-only", action="store_true", help="runs: skip the held-out-data report"
    )
    ev.add_argument(
        "--episodes", type=int, default=32, help="shifted: episodes per policy and world (32)"
    )
    ev.add_argument(
        "--behaviour-policy",
        help="shifted: the behaviour policy (SB3 zip; default: the dataset recipe's)",
    )
    ev.add_argument(
        "--noise",
        type=float,
        nargs="+",
        default=[0.1, 0.3],
        help="shifted: Gaussian action-noise scales for the behaviour policy, x half the "
        "action range (default 0.1 0.3)",
    )
    ev.add_argument(
        "--policy",
        action="append",
        metavar="NAME=PATH",
        help="shifted: another policy to compare (SB3 zip), e.g. a stronger one; repeatable",
    )
    ev.add_argument("--seed", type=int, default=0, help="shifted: seed (default 0)")
    ev.add_argument(
        "--out", help="shifted: folder for shifted.{json,md,png} (default: the run folder)"
    )
    ev.set_defaults(func=_cmd_evaluate)
    envs = sub.add_parser("envs", help="the registered dream environments (env cards)")
    envs.add_argument("action", choices=["list"], help="list the cards and whether they are built")
    envs.add_argument("--json", action="store_true", help="print machine-readable JSON")
    envs.set_defaults(func=_cmd_envs)

    bld = sub.add_parser(
        "build",
        help="build a dream env's artifact: dataset, training, export to exports/",
        description="Build the artifact of an env card (see `worldflux envs list`): collect its "
        "dataset when missing, train its model, and write exports/<artifact>/.",
    )
    bld.add_argument("card", help="card name (e.g. dreamer-walker) or env id")
    bld.add_argument("--run-dir", help="training run folder (default runs/build-CARD)")
    bld.add_argument("--resume", action="store_true", help="continue an interrupted build run")
    bld.add_argument(
        "--trust-imports",
        action="store_true",
        help="with --resume: import the code the run's run.json names (component overrides, "
        "termination_fn as 'package.module:attr') and load its model trusting the same; only "
        "for run folders you trust",
    )
    bld.add_argument("--quiet", action="store_true", help="no progress bars")
    bld.set_defaults(func=_cmd_build)

    agent = sub.add_parser(
        "agent",
        help="stable-baselines3 agents trained in a dream env, scored on the real env",
        description="train: run an agent recipe (agents/*.toml or a file): SB3 in the dream "
        "vector env, periodic dream and real-env evaluations, the saved model and a reality-gap "
        "report. eval: score a saved model on a real (and optionally a dream) env. list: the "
        "project's recipes.",
    )
    agent.add_argument("action", choices=["train", "eval", "list"])
    agent.add_argument("recipe", nargs="?", help="train: recipe name or TOML file")
    agent.add_argument("--out", help="train: output folder (default runs/agent-RECIPE)")
    agent.add_argument("--budget", type=int, help="train: dream steps (overrides the recipe)")
    agent.add_argument("--seed", type=int, help="train: seed (overrides the recipe); eval: seed")
    agent.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        help="train: one run per seed into OUT/seedS, returns over seeds in OUT/results.json",
    )
    _add_sweep_arguments(agent, "train --seeds: ")
    agent.add_argument("--quiet", action="store_true", help="train: no progress output")
    agent.add_argument("--model", help="eval: SB3 model zip")
    agent.add_argument("--env", help="eval: real environment id")
    agent.add_argument("--episodes", type=int, default=10, help="eval: episodes (default 10)")
    agent.add_argument("--dream", help="eval: also score in this dream env (card, artifact, run)")
    agent.add_argument(
        "--actions",
        choices=("deterministic", "sampled"),
        default="deterministic",
        help="eval: the policy's most likely actions, or actions sampled from its distribution "
        "(seeded by --seed)",
    )
    agent.set_defaults(func=_cmd_agent)

    off = sub.add_parser(
        "offline",
        help="offline RL on a dataset: dream-trained agents vs BC and TD3+BC, real-env scores",
        description="Train a world model on DATASET_ID (or reuse --model-run), agents in its "
        "pessimistic dream (regularised PPO; MOPO-style SAC/TD3 on a buffer that mixes dream "
        "branches with the dataset), and the model-free baselines (behaviour cloning, TD3+BC) "
        "on the same data; score all on the real environment (normalised with the dataset's "
        "reference scores) and write results.json and results.md.",
    )
    off.add_argument("dataset_id", help="a local Minari dataset id")
    off.add_argument(
        "--methods",
        nargs="+",
        help="any of dream, dream-pure (no behaviour regularisation), mopo-sac, mopo-td3, bc, "
        "td3bc, iql, mppi (planning with the dream's model), tdmpc2 (its policy prior), "
        "tdmpc2-mppi (planning) (default: dream bc td3bc)",
    )
    off.add_argument("--seeds", nargs="+", type=int, default=[0])
    off.add_argument("--out", help="output folder (default runs/offline-DATASET)")
    off.add_argument(
        "--model-run", help="reuse this training run's world model for the dream methods"
    )
    off.add_argument("--model-steps", type=int, default=30_000, help="world-model training steps")
    off.add_argument(
        "--tdmpc2-model",
        default="tdmpc2:1m",
        help="family:preset of the tdmpc2 methods' model (default tdmpc2:1m)",
    )
    off.add_argument("--agent-steps", type=int, default=300_000, help="PPO steps in the dream")
    off.add_argument(
        "--gradient-steps",
        type=int,
        default=100_000,
        help="updates of the mopo-sac/mopo-td3 agents, of BC/TD3+BC/IQL and of the tdmpc2 model "
        "(default 100,000)",
    )
    off.add_argument("--episodes", type=int, default=10, help="real-env evaluation episodes")
    off.add_argument(
        "--checkpoints",
        type=int,
        default=0,
        help="evaluations of each dream agent during training, in the dream and on the real env "
        "(offline policy selection: how well the dream's prediction ranks them; default 0)",
    )
    off.add_argument(
        "--real-fraction",
        type=float,
        help="share of each mopo-sac/mopo-td3 training batch drawn from the dataset's "
        "transitions, the rest from dream branches (default 0.05, as MBPO/MOPO)",
    )
    off.add_argument(
        "--policy-average",
        type=float,
        help="mopo-sac/mopo-td3: score and save the Polyak average of the actor's weights with "
        "this decay per update, e.g. 0.9995 (default 0: the trained actor)",
    )
    _add_sweep_arguments(off, "")
    off.add_argument(
        "--resume",
        action="store_true",
        help="keep the jobs (method, seed) that OUT/results.json holds and run the others "
        "(the other settings must match)",
    )
    off.add_argument("--quiet", action="store_true", help="no progress output")
    off.set_defaults(func=_cmd_offline)

    plan = sub.add_parser(
        "plan",
        help="model predictive control with a learned model, scored on the real env",
        description="Plan every action of SOURCE's real environment with its model (a training "
        "run, an artifact or an env card): MPPI or CEM over the predicted rewards minus the "
        "uncertainty penalty; a model with a policy prior and a value (tdmpc2) plans as TD-MPC2 "
        "does, or acts with its prior alone (--planner prior). Prints the real returns as JSON.",
    )
    plan.add_argument("source", help="run folder, artifact folder, or env card name/id")
    plan.add_argument("--planner", choices=["mppi", "cem", "prior"], default="mppi")
    plan.add_argument("--env", help="real environment id (default: the one the model records)")
    plan.add_argument("--episodes", type=int, default=10)
    plan.add_argument("--seed", type=int, default=0)
    plan.add_argument("--horizon", type=int, help="imagined steps (default 5; TD-MPC2: 3)")
    plan.add_argument("--samples", type=int, help="samples per round (default 512)")
    plan.add_argument("--iterations", type=int, help="rounds per action (default 3; TD-MPC2: 6)")
    plan.add_argument(
        "--uncertainty-penalty",
        type=float,
        default=1.0,
        help="weight of the model's uncertainty subtracted from each predicted reward (mppi/cem; "
        "default 1.0, ignored for models without uncertainty)",
    )
    plan.add_argument(
        "--search",
        choices=["local", "open"],
        default="local",
        help="tdmpc2 models: refine the policy prior's mode locally (default; for models trained "
        "offline) or search as TD-MPC2 does online (wide Gaussian from the warm start, prior "
        "samples)",
    )
    plan.add_argument(
        "--goal",
        action="store_true",
        help="plan towards each episode's goal observation (envs with goal_observation(), e.g. "
        "WorldFlux/TwoRooms-v0) in the model's latent space instead of for reward; adds the "
        "success rate",
    )
    plan.set_defaults(func=_cmd_plan)

    demo = sub.add_parser(
        "demo",
        help="the main demo: PPO trained only in the shipped Walker2d dreams, run on the real env",
        description=f"Run the agent recipes {', '.join(DEMO_RECIPES)}: PPO trained only inside "
        "the shipped learned simulators of Walker2d-v5, then scored in the dream and on the real "
        "environment; print the dream-vs-real table and save a plot.",
    )
    demo.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    demo.add_argument("--budget", type=int, help="dream steps per run (default: the recipes')")
    demo.add_argument("--quiet", action="store_true", help="no progress output")
    demo.set_defaults(func=_cmd_demo)

    exp = sub.add_parser(
        "export",
        help="export a run, artifact or card to a self-contained artifact with ONNX graphs",
        description="Write an artifact folder (manifest, torch model, encode/step/replace ONNX "
        "graphs, reset states, fidelity report) that runs on ONNX Runtime without torch.",
    )
    exp.add_argument("source", help="training run, artifact folder, or env card name or id")
    exp.add_argument(
        "--out", help="artifact folder (default: the artifact itself, or RUN/artifact for runs)"
    )
    exp.set_defaults(func=_cmd_export)

    vid = sub.add_parser(
        "dream-video",
        help="save a side-by-side GIF of the real env (left) and the dream (right)",
        description="Drive the real environment and its dream with the same actions (from an "
        "SB3 policy file or random) and save both, side by side, as an animated GIF. Image "
        "sources (Atari frames) show both observations; MuJoCo sources render both bodies "
        "(headless machines set MUJOCO_GL=egl or osmesa).",
    )
    vid.add_argument("source", help="env card name or id, artifact folder or training run")
    vid.add_argument("--out", default="dream.gif", help="GIF path (default dream.gif)")
    vid.add_argument("--steps", type=int, default=300, help="at most this many steps")
    vid.add_argument("--seed", type=int, default=0)
    vid.add_argument("--policy", help="SB3 model zip acting on the real observations")
    vid.set_defaults(func=_cmd_dream_video)
    for command in sub.choices.values():  # every command's --help shows its defaults
        command.formatter_class = DefaultsHelpFormatter
        for action in command._actions:
            if action.help is None and action.default not in (None, False, []):
                action.help = "(default: %(default)s)"
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from .core.errors import WorldFluxError

    try:
        code: int = args.func(args)
    except WorldFluxError as exc:  # bad input: the message says what was expected and given
        print(f"worldflux {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
