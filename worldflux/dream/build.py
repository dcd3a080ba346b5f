"""`worldflux build CARD`: dataset (collected from the card's recipe when missing) -> training run
-> artifact under ``exports/<artifact>/`` with the run's fidelity reports: on held-out data
(``fidelity.*``) and against the real environment under shifted policies (``shifted.*``)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

from ..data.minari_io import datasets_root
from ..export.onnx import ExportError
from .cards import EnvCard, find_card
from .shifted import shifted_policy_report
from .simulator import LearnedSimulator

FIDELITY_FILES = ("fidelity.md", "fidelity.json", "fidelity.png")
SHIFTED_FILES = ("shifted.md", "shifted.json", "shifted.png")


def build_artifact(
    card_name: str,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    trust_imports: bool = False,
) -> dict[str, Any]:
    """Build (or, with ``resume``, finish building) the artifact of ``card_name``.

    The training run goes to ``run_dir`` (default ``runs/build-<card>``); the artifact replaces
    ``exports/<artifact>/`` atomically at the end. Returns a summary (paths, times, fidelity).

    With ``resume`` the run folder's ``run.json`` says what to train, and the rule of
    ``worldflux train --resume`` applies: code it names for import (component overrides,
    ``termination_fn`` as ``"package.module:attr"``; WorldFlux's own objects excepted) is
    imported only with ``trust_imports``, which also loads the run's trained model with
    ``trust_imports``. Without it such a run is refused before any work, naming the import and
    the flag (:func:`~worldflux.training.run.imports_allowed`).
    """
    from ..data.pipeline import collect_dataset
    from ..data.recipes import recipe_spec
    from ..training.run import RUN_FILE, imports_allowed, resumed_spec, train_run

    card: EnvCard = find_card(card_name)
    run = Path(run_dir) if run_dir is not None else Path("runs") / f"build-{card.name}"
    if resume:  # the run folder's code, checked before collecting or training anything
        imports_allowed(
            resumed_spec(run),
            run / RUN_FILE,
            trust_imports,
            command=f"worldflux build {card.name} --resume --trust-imports",
        )
    spec = recipe_spec(card.dataset_recipe)
    started = time.time()
    summary: dict[str, Any] = {"card": card.name, "id": card.id, "dataset": spec.dataset_id}
    if not (datasets_root() / spec.dataset_id / "data").exists():
        print(f"[1/3] collecting {spec.dataset_id} (recipe {card.dataset_recipe})")
        collect_dataset(spec, progress=progress)
    else:
        print(f"[1/3] dataset {spec.dataset_id} is already built")
    summary["collect_s"] = round(time.time() - started, 1)

    print(f"[2/3] training {card.model} into {run}")
    t0 = time.time()
    result = train_run(
        run,
        model=None if resume else card.model,
        dataset=None if resume else spec.dataset_id,
        model_overrides=card.model_overrides,
        trainer=card.train,
        resume=resume,
        progress=progress,
        trust_imports=trust_imports,
    )
    summary["train_s"] = round(time.time() - t0, 1)

    sim = LearnedSimulator.from_run(run, trust_imports=trust_imports)
    sim.defaults = card.dream_defaults
    sim.source_env = card.source_env
    sim.info = {**sim.info, "card": card.name, "env_id": card.id}
    print(f"[3/3] comparing the dream with {card.source_env} under shifted policies")
    t0 = time.time()
    shifted = shifted_policy_report(sim)
    shifted.save(run)
    summary["shifted_s"] = round(time.time() - t0, 1)
    summary["shifted"] = {
        p.name: {
            "real_length_median": p.real.summary()["length_median"],
            "dream_length_median": p.dream.summary()["length_median"],
            "one_step_spearman": p.one_step["spearman"],
        }
        for p in shifted.policies
    }
    print(f"      writing {card.artifact_dir}")
    files = FIDELITY_FILES + SHIFTED_FILES
    extra = tuple(run / name for name in files if (run / name).is_file())
    try:
        sim.save_artifact(card.artifact_dir, extra_files=extra, onnx=card.onnx)
    except ExportError as exc:  # the torch backend still serves the artifact
        warnings.warn(
            f"{card.id}: {exc} The artifact is written without ONNX graphs (torch backend only).",
            RuntimeWarning,
            stacklevel=2,
        )
        sim.save_artifact(card.artifact_dir, extra_files=extra, onnx=False)
    summary["artifact"] = str(card.artifact_dir)
    summary["total_s"] = round(time.time() - started, 1)
    summary["fidelity"] = result.get("fidelity", {}).get("metrics", {})
    summary["after_training"] = result.get("after_training", {})  # e.g. the error-head fit
    return summary
