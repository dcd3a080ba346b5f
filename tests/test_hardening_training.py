"""Hardening of training runs: settings checked before any work, the trust rule of
``from_pretrained`` on ``--resume`` (also ``worldflux build --resume``), no half-made or foreign
run folders, stale temporaries cleaned up, byte-identical ``model.safetensors`` for identical
weights, and CPU thread defaults that hold up on a busy machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rollouts
import synthetic_envs
import torch
from safetensors.torch import save_file
from test_training import config, provider, toy

from worldflux.cli import main
from worldflux.core.errors import ConfigError, ContractError, SerializationError
from worldflux.core.serialization import canonicalise_safetensors_header, is_library_import
from worldflux.training import Trainer, TrainerConfig
from worldflux.training.checkpoint import remove_stale_temporaries
from worldflux.training.config import resolve_threads
from worldflux.training.distributed import check_device
from worldflux.training.run import RUN_FILE, imports_allowed, train_run

DATASET = "test/linear/hardening-v0"
TINY = {
    "steps": 4,
    "batch_size": 8,
    "seq_len": 4,
    "eval_every": 2,
    "eval_batches": 1,
    "checkpoint_every": 2,
    "log_every": 2,
}
TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A tiny Minari dataset of the linear synthetic env (``MINARI_DATASETS_PATH`` set)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MINARI_DATASETS_PATH", str(tmp_path_factory.mktemp("minari")))
    synthetic_envs.register()
    rollouts.write_random_dataset(DATASET, "WFTest/Linear-v0", 600, n_envs=4)
    yield DATASET
    mp.undo()


def tiny_run(run: Path, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "model": "toy:tiny",
        "dataset": DATASET,
        "trainer": dict(TINY),
        "progress": False,
        "fidelity": False,
    }
    args.update(kw)
    return train_run(run, **args)


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# -- 1. non-finite and out-of-range settings ---------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("grad_clip", float("nan"), "a finite number >= 0"),
        ("grad_clip", float("inf"), "a finite number >= 0"),
        ("grad_clip", -1.0, "a finite number >= 0"),
        ("lr", float("nan"), "a finite number > 0"),
        ("lr", 0.0, "a finite number > 0"),
        ("lr", float("-inf"), "a finite number > 0"),
        ("weight_decay", float("nan"), "a finite number >= 0"),
        ("adam_eps", 0.0, "a finite number > 0"),
        ("adam_eps", float("nan"), "a finite number > 0"),
        ("steps", 2.5, "an integer >= 1"),
        ("steps", True, "an integer >= 1"),
        ("eval_every", -1, "an integer >= 0"),
        ("seed", "1", "an integer"),
        ("lr", "0.1", "a finite number > 0"),
        ("bf16", "yes", "true or false"),
        ("end_fraction", 1.5, "a share in [0, 1]"),
        ("end_fraction", -0.5, ">= 0"),
        ("threads", 0, "'auto' or an integer >= 1"),
        ("threads", -2, "'auto' or an integer >= 1"),
        ("threads", 1.5, "'auto' or an integer >= 1"),
        ("threads", 2.0, "'auto' or an integer >= 1"),
        ("threads", True, "'auto' or an integer >= 1"),
        ("threads", "2", "'auto' or an integer >= 1"),
        ("threads", "AUTO", "'auto' or an integer >= 1"),
    ],
)
def test_bad_numeric_settings_are_refused_by_name(field: str, value: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        TrainerConfig(**{field: value})
    message = str(info.value)
    assert f"TrainerConfig.{field}" in message and expected in message
    assert repr(value) in message


def test_numbers_of_other_types_are_accepted_as_plain_ones() -> None:
    cfg = TrainerConfig(steps=np.int64(5), lr=1, grad_clip=np.float32(2.0))
    assert type(cfg.steps) is int and cfg.steps == 5
    assert type(cfg.lr) is float and type(cfg.grad_clip) is float
    json.dumps(cfg.to_dict())  # run.json stays plain JSON


def test_a_non_finite_validation_fraction_is_refused_before_any_write(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(
        ConfigError, match=r"validation_fraction: expected a number in \[0, 1\), got nan"
    ):
        tiny_run(run, validation_fraction=float("nan"))
    assert not run.exists()


@pytest.mark.parametrize(
    ("flag", "value", "field"),
    [("--grad-clip", "nan", "grad_clip"), ("--lr", "nan", "lr"), ("--lr", "inf", "lr")],
)
def test_cli_refuses_non_finite_settings_before_any_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, field: str
) -> None:
    run = tmp_path / "run"
    args = ["train", "toy:tiny", "--dataset", "no/such/dataset-v0", "--run-dir", str(run)]
    assert main([*args, flag, value, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"TrainerConfig.{field}: expected a finite number" in err
    assert f"got {float(value)!r}" in err
    assert not run.exists()


# -- 2. --resume follows the trust rule of from_pretrained ---------------------------------------
def _probe_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> Path:
    """A module whose import writes a marker file (so a test sees whether it was imported)."""
    marker = tmp_path / f"{name}.imported"
    (tmp_path / f"{name}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('yes')\nThing = 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return marker


def test_resume_refuses_imports_named_in_run_json(
    dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    tiny_run(run)
    marker = _probe_module(tmp_path, monkeypatch, "wf_hardening_probe")
    spec = json.loads((run / RUN_FILE).read_text())
    spec["model_overrides"] = {
        "component_overrides": {"dynamics_model": "wf_hardening_probe:Thing"}
    }
    (run / RUN_FILE).write_text(json.dumps(spec))
    with pytest.raises(ConfigError) as info:
        train_run(run, resume=True, progress=False, fidelity=False)
    message = str(info.value)
    assert "'wf_hardening_probe:Thing'" in message and "--trust-imports" in message
    assert "trust_imports=True" in message
    assert not marker.exists() and "wf_hardening_probe" not in sys.modules
    # opting in imports it (and the model then checks what it got)
    with pytest.raises(ContractError, match="wf_hardening_probe:Thing"):
        train_run(run, resume=True, progress=False, fidelity=False, trust_imports=True)
    assert marker.exists()


def test_cli_resume_names_the_import_and_the_flag(
    dataset: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    _untrusted_run(run, dataset)
    assert main(["train", "--run-dir", str(run), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "'antigravity:webbrowser'" in err and "--trust-imports" in err
    assert "antigravity" not in sys.modules
    new = ["train", "toy:tiny", "--dataset", dataset, "--run-dir", str(tmp_path / "x")]
    with pytest.raises(SystemExit, match="--trust-imports applies to --resume"):
        main([*new, "--trust-imports"])
    assert not (tmp_path / "x").exists()


def test_library_imports_are_trusted_and_others_are_not(tmp_path: Path) -> None:
    own = "worldflux.models.ensemble.model:walker2d_termination"
    assert is_library_import(own)
    assert not is_library_import("os:system")
    assert not is_library_import("worldflux.core.components:importlib.import_module")  # re-export
    assert not is_library_import("worldflux.no_such_module:x")
    where = tmp_path / RUN_FILE
    assert imports_allowed({"model_overrides": {"termination_fn": own}}, where, False)
    assert not imports_allowed({"model_overrides": {"hidden": 4}}, where, False)
    for spec in ("wf_nothing_here:fn", "worldflux.training.run:os.system"):
        with pytest.raises(ConfigError, match=spec):
            imports_allowed({"model_overrides": {"termination_fn": spec}}, where, False)
        assert imports_allowed({"model_overrides": {"termination_fn": spec}}, where, True)


# -- 3. no foreign or half-made run folders ------------------------------------------------------
def test_a_folder_worldflux_did_not_write_is_refused_untouched(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.csv").write_text("my,data\n1,2\n")
    with pytest.raises(ConfigError, match="not a WorldFlux training run"):
        tiny_run(mine)
    assert listing(mine) == ["metrics.csv"]
    assert (mine / "metrics.csv").read_text() == "my,data\n1,2\n"


def test_run_dir_at_or_under_a_file_is_a_clear_error(tmp_path: Path) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("x")
    with pytest.raises(ConfigError, match="is under .*notes.txt, which is a file"):
        tiny_run(file / "run")
    with pytest.raises(ConfigError, match="it is a file"):
        tiny_run(file)
    assert listing(tmp_path) == ["notes.txt"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_is_refused_before_the_folder_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    args = ["train", "toy:tiny", "--dataset", "no/such/dataset-v0", "--run-dir", str(run)]
    assert main([*args, "--device", "cuda", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "TrainerConfig.device: 'cuda' is not available" in err and "no CUDA device" in err
    assert not run.exists()
    with pytest.raises(ConfigError, match="expected a torch device"):
        tiny_run(run, trainer={**TINY, "device": "warp-drive"})
    assert not run.exists()


def test_a_device_index_past_the_last_gpu_is_refused() -> None:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ConfigError, match=rf"'cuda:{count}' is not available"):
        check_device(f"cuda:{count}")
    assert check_device("cpu") == torch.device("cpu")


def test_refusals_leave_the_folder_usable(dataset: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match="TrainerConfig.lr"):
        tiny_run(run, trainer={**TINY, "lr": float("nan")})
    with pytest.raises(ConfigError, match="seq_len"):  # found by the trainer, after the data
        tiny_run(run, trainer={**TINY, "seq_len": 10_000})
    assert not run.exists()
    run.mkdir()  # an empty folder is fine
    result = tiny_run(run)
    assert result["steps"] == 4 and (run / "checkpoints" / "latest").is_file()


def test_resume_without_a_checkpoint_starts_over(dataset: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    tiny_run(run)
    for path in sorted((run / "checkpoints").iterdir()):  # as if killed before the first one
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    with pytest.warns(UserWarning, match="no checkpoint yet"):
        result = train_run(run, resume=True, progress=False, fidelity=False)
    assert result["steps"] == 4 and (run / "checkpoints" / "latest").is_file()


def test_a_corrupt_run_json_is_a_clear_error(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / RUN_FILE).write_text(json.dumps({"model": "toy:tiny", "dataset": 3}))
    with pytest.raises(SerializationError, match="field 'dataset' expected str, got 3"):
        train_run(run, resume=True, progress=False, fidelity=False)


# -- 4. stale checkpoint temporaries ------------------------------------------------------------
def test_stale_checkpoint_temporaries_are_removed_at_the_next_start(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    stale = root / ".step-0000010.tmp-abc123"
    (stale / "model").mkdir(parents=True)
    (stale / "trainer_state.pt").write_bytes(b"half")
    kept = [root / "step-0000005", root / ".step-0000005.old-xyz", root / "notes.tmp-1"]
    for path in kept:
        path.mkdir()
    Trainer(toy(), provider(), config(), run_dir=tmp_path, progress=False)
    assert not stale.exists()
    assert all(path.exists() for path in kept)
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_resume_cleans_up_after_a_killed_checkpoint_write(dataset: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    tiny_run(run, trainer={**TINY, "steps": 2})
    stale = run / "checkpoints" / ".step-0000004.tmp-k1ll3d"
    (stale / "model").mkdir(parents=True)
    spec = json.loads((run / RUN_FILE).read_text())
    spec["trainer"]["steps"] = 4  # more steps, as a longer budget on resume would
    (run / RUN_FILE).write_text(json.dumps(spec))
    assert train_run(run, resume=True, progress=False, fidelity=False)["steps"] == 4
    assert not stale.exists()


# -- 5. deterministic model.safetensors ---------------------------------------------------------
SAVE_SCRIPT = """
import sys
import torch
sys.path.insert(0, {tests!r})
import toy_model  # registers the toy family
import worldflux as wf
torch.manual_seed(0)
model = wf.create_world_model("toy:tiny", obs_shape=(4,), action_dim=2)
model.save_pretrained(sys.argv[1])
"""


def test_identical_models_save_identical_bytes_across_processes(tmp_path: Path) -> None:
    script = SAVE_SCRIPT.format(tests=str(TESTS))
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"model-{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed, "OMP_NUM_THREADS": "1"}
        res = subprocess.run(
            [sys.executable, "-c", script, str(out)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert res.returncode == 0, res.stderr
        outputs.append({f.name: f.read_bytes() for f in sorted(out.iterdir())})
    assert set(outputs[0]) == {"config.json", "metadata.json", "model.safetensors"}
    assert outputs[0] == outputs[1]  # weights, config and metadata (with the weights' sha256)


def _raw_safetensors(path: Path, header: bytes, data: bytes) -> None:
    padded = header + b" " * (-len(header) % 8)
    path.write_bytes(len(padded).to_bytes(8, "little") + padded + data)


def test_header_order_does_not_change_the_bytes(tmp_path: Path) -> None:
    """The metadata order safetensors picks (a Rust HashMap's, per process) no longer matters."""
    data = bytes(range(24))
    tensors = '"b":{"dtype":"U8","shape":[8],"data_offsets":[16,24]},'
    tensors += '"a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]}'
    one, two = tmp_path / "one.safetensors", tmp_path / "two.safetensors"
    _raw_safetensors(
        one, b'{"__metadata__":{"format":"pt","x":"1"},' + tensors.encode() + b"}", data
    )
    _raw_safetensors(
        two, b'{"__metadata__":{"x":"1","format":"pt"},' + tensors.encode() + b"}", data
    )
    assert one.read_bytes() != two.read_bytes()
    for path in (one, two):
        canonicalise_safetensors_header(path)
    assert one.read_bytes() == two.read_bytes()
    from safetensors.torch import load_file

    loaded = load_file(str(one))
    assert loaded["a"].tolist() == list(range(16)) and loaded["b"].tolist() == list(range(16, 24))


def test_a_header_that_changes_length_is_rewritten_whole(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file({"w": torch.arange(6, dtype=torch.float32)}, str(path), metadata={"k": "v"})
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    spaced = json.dumps(json.loads(raw[8 : 8 + size]), indent=1).encode()  # longer header
    _raw_safetensors(path, spaced, raw[8 + size :])
    canonicalise_safetensors_header(path)
    assert path.read_bytes() == raw  # back to the compact header safetensors itself writes
    from safetensors.torch import load_file

    assert load_file(str(path))["w"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


# -- 6. stale temporaries of every kind the run writes ---------------------------------------------
def test_every_kind_of_stale_temporary_is_removed_at_the_next_start(tmp_path: Path) -> None:
    """A save killed half-way leaves ``.model.tmp-*`` or ``.best.tmp-*`` beside the run's models
    (``save_pretrained`` stages there), not only ``checkpoints/.step-*.tmp-*``; and the atomic
    file writes leave their temporary files."""
    run = tmp_path
    stale_dirs = [
        run / ".model.tmp-k1ll3d",
        run / ".best.tmp-abc123",
        run / "checkpoints" / ".step-0000010.tmp-xyz",
    ]
    for path in stale_dirs:
        (path / "nested").mkdir(parents=True)
        (path / "nested" / "model.safetensors").write_bytes(b"half")
    stale_files = [
        run / ".run.json.tmp",
        run / ".metrics.json.tmp",
        run / "metrics.tmp",
        run / ".fidelity.tmp.png",
        run / "checkpoints" / ".latest.tmp",
    ]
    for path in stale_files:
        path.write_text("half")
    kept = [
        run / "model",
        run / "best",
        run / ".model.old-xyz",  # a replace killed half-way: maybe the only previous model
        run / "notes.tmp-1",
        run / "checkpoints" / ".step-0000005.old-xyz",
    ]
    for path in kept:
        path.mkdir()
    (run / "metrics.csv").write_text("step\n")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (run / ".linked.tmp-1").symlink_to(outside, target_is_directory=True)
    Trainer(toy(), provider(), config(), run_dir=run, progress=False)
    assert not any(path.exists() for path in stale_dirs + stale_files)
    assert all(path.is_dir() for path in kept) and (run / "metrics.csv").is_file()
    assert (run / ".linked.tmp-1").is_symlink() and outside.is_dir()  # links are left alone
    assert remove_stale_temporaries(run) == []


# -- 7. --model-arg: NaN and infinity ------------------------------------------------------------
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "Infinity", "-Infinity", "1e999"])
def test_cli_refuses_non_finite_model_args_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    run = tmp_path / "run"
    args = ["train", "toy:tiny", "--dataset", "no/such/dataset-v0", "--run-dir", str(run)]
    assert main([*args, "--model-arg", f"min_std={value}", "--quiet"]) == 2
    err = capsys.readouterr().err
    shown = repr(float(value))  # nan, inf or -inf
    assert f"model override 'min_std': expected a finite number, got {shown}." in err, err
    assert "no/such/dataset" not in err  # refused before the dataset is read
    assert not run.exists()


def test_non_finite_model_settings_are_refused_everywhere(dataset: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    nested = {"min_std": 0.1, "extra": [1.0, float("inf")]}
    with pytest.raises(ConfigError, match=r"model override 'extra\[1\]': .* got inf"):
        tiny_run(run, model_overrides=nested)
    with pytest.raises(ConfigError, match="ToyConfig.min_std: expected a finite number, got nan"):
        toy(min_std=float("nan"))  # the Python API: the config itself refuses it
    with pytest.raises(ConfigError, match="ToyConfig.min_std: expected a finite number"):
        toy(min_std=10**400)  # too large for a float
    assert not run.exists()
    tiny_run(run)  # a run.json edited to hold NaN is refused on resume, naming the setting
    spec = json.loads((run / RUN_FILE).read_text())
    spec["model_overrides"] = {"min_std": float("nan")}
    (run / RUN_FILE).write_text(json.dumps(spec))  # json writes NaN, and reads it back
    with pytest.raises(ConfigError, match="ToyConfig.min_std: expected a finite number, got nan"):
        train_run(run, resume=True, progress=False, fidelity=False)
    assert toy(min_std=0.5).config.min_std == 0.5


# -- 8. CPU threads --------------------------------------------------------------------------------
@pytest.fixture
def torch_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Restores torch's thread count after the test; ``OMP_NUM_THREADS`` unset inside it."""
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("cpus", "expected"), [(2, 1), (1, 1), (None, 1), (3, 1), (16, 8)])
def test_auto_threads_are_half_the_cpus(
    torch_threads: None, monkeypatch: pytest.MonkeyPatch, cpus: int | None, expected: int
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    count, reason = resolve_threads("auto")
    assert count == expected and reason == f"auto: half of {cpus or 1} CPUs"
    assert resolve_threads(3) == (3, "threads=3")


def test_auto_threads_respect_omp_num_threads(
    torch_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert resolve_threads("auto") == (None, "auto: OMP_NUM_THREADS=3 is set")
    assert resolve_threads(2) == (2, "threads=2")  # an explicit count wins
    monkeypatch.setenv("OMP_NUM_THREADS", " ")  # set but empty: OpenMP ignores it too
    assert resolve_threads("auto")[0] is not None
    with pytest.raises(ConfigError, match="'auto' or an integer >= 1, got 0"):
        resolve_threads(0)


def test_fit_sets_the_thread_count_and_reports_it(
    torch_threads: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    torch.set_num_threads(2)
    t = Trainer(toy(), provider(), config(steps=2, eval_every=0, checkpoint_every=0))
    assert torch.get_num_threads() == 2  # building the trainer changes nothing
    result = t.fit()
    assert torch.get_num_threads() == 1 and result["threads"] == 1
    assert "training with 1 CPU threads (auto: half of 2 CPUs)" in capsys.readouterr().out
    torch.set_num_threads(2)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's (or torchrun's) choice is kept
    t = Trainer(toy(), provider(), config(steps=2, eval_every=0, checkpoint_every=0))
    assert t.fit()["threads"] == 2 and torch.get_num_threads() == 2
    assert t.threads_reason == "auto: OMP_NUM_THREADS=2 is set"


def test_cli_threads_reach_the_run_and_bad_ones_are_refused(
    dataset: str, tmp_path: Path, torch_threads: None, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    args = ["train", "toy:tiny", "--dataset", dataset, "--run-dir", str(run), "--quiet"]
    args += ["--steps", "2", "--batch-size", "8", "--seq-len", "4", "--eval-batches", "1"]
    for bad in ("0", "-1", "1.5", "many"):
        assert main([*args, "--no-fidelity", "--threads", bad]) == 2
        err = capsys.readouterr().err
        shown = repr(int(bad)) if bad.lstrip("-").isdigit() else repr(bad)
        assert f"TrainerConfig.threads: expected 'auto' or an integer >= 1, got {shown}." in err
        assert not run.exists()
    torch.set_num_threads(2)
    assert main([*args, "--no-fidelity", "--threads", "1"]) == 0
    assert "; 1 CPU threads; " in capsys.readouterr().out
    spec = json.loads((run / RUN_FILE).read_text())
    assert spec["trainer"]["threads"] == 1
    assert spec["threads_used"] == {"count": 1, "reason": "threads=1"}
    assert json.loads((run / "metrics.json").read_text())["threads"] == 1
    with pytest.raises(SystemExit, match="threads"):  # --resume keeps the run's settings
        main(["train", "--run-dir", str(run), "--resume", "--threads", "2"])


def test_train_help_shows_the_threads_default() -> None:
    from worldflux.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    text = " ".join(commands["train"].format_help().split())
    assert "--threads N|auto" in text and "(default: auto)" in text
    assert TrainerConfig().threads == "auto" and TrainerConfig(threads=np.int64(3)).threads == 3


# -- 9. worldflux build --resume follows the trust rule of train --resume ------------------------
def _untrusted_run(run: Path, dataset: str) -> None:
    run.mkdir()
    spec = {
        "model": "toy:tiny",
        "dataset": dataset,
        "model_overrides": {"component_overrides": {"dynamics_model": "antigravity:webbrowser"}},
        "trainer": TrainerConfig(**TINY).to_dict(),
        "validation_fraction": 0.1,
    }
    (run / RUN_FILE).write_text(json.dumps(spec))


def test_build_resume_refuses_imports_named_in_run_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from worldflux.data import pipeline

    def no_work(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the refusal must come before any collecting or training")

    monkeypatch.setattr(pipeline, "collect_dataset", no_work)
    monkeypatch.setattr("worldflux.training.run.train_run", no_work)
    run = tmp_path / "run"
    _untrusted_run(run, "some/dataset-v0")
    before = listing(run)
    assert main(["build", "dreamer-walker", "--run-dir", str(run), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "'antigravity:webbrowser'" in err
    assert "`worldflux build dreamer-walker --resume --trust-imports`" in err
    assert "antigravity" not in sys.modules and listing(run) == before
    with pytest.raises(SystemExit, match="--trust-imports applies to --resume"):
        main(["build", "dreamer-walker", "--run-dir", str(tmp_path / "new"), "--trust-imports"])
    assert not (tmp_path / "new").exists()


def test_build_resume_passes_trust_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from worldflux.data import pipeline
    from worldflux.dream import build

    seen: dict[str, Any] = {}

    class Stop(Exception):
        pass

    def fake_train_run(run: Path, **kwargs: Any) -> None:
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(build, "datasets_root", lambda: tmp_path / "no-datasets")
    monkeypatch.setattr(pipeline, "collect_dataset", lambda *a, **k: None)
    monkeypatch.setattr("worldflux.training.run.train_run", fake_train_run)
    run = tmp_path / "run"
    _untrusted_run(run, "some/dataset-v0")
    with pytest.raises(Stop):
        build.build_artifact(
            "dreamer-walker", run_dir=run, resume=True, progress=False, trust_imports=True
        )
    assert seen["resume"] is True and seen["trust_imports"] is True
    assert "antigravity" not in sys.modules  # trusting lets train_run import it; it never ran
