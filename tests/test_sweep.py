"""Sweeps: jobs run here in order or as Ray tasks (retried, failures reported), and the Ray
launcher gives the serial path's results for the same seeds."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rollouts

from worldflux.core.errors import ConfigError
from worldflux.rl.offline import offline_run
from worldflux.sweep import Job, Sweep, SweepError, raise_failures, run_jobs


def double(x: int) -> int:
    return 2 * x


def always_fails(x: int) -> int:
    raise ValueError(f"job input {x} is bad")


def fails_once(marker: str) -> str:
    """Fails on its first run (it leaves ``marker``), succeeds on the retry."""
    path = Path(marker)
    if not path.exists():
        path.write_text("ran once")
        raise RuntimeError("first try fails")
    return "retried"


def threads_seen() -> tuple[int, str]:
    import os

    import torch

    return torch.get_num_threads(), os.environ["OMP_NUM_THREADS"]


def test_serial_sweep_runs_in_order_and_stops_at_the_first_failure() -> None:
    seen: list[tuple[str, Any]] = []
    jobs = [Job(f"x={x}", double, {"x": x}) for x in (3, 1, 2)]
    assert run_jobs(jobs, Sweep(), lambda job, out: seen.append((job.key, out))) == []
    assert seen == [("x=3", 6), ("x=1", 2), ("x=2", 4)]
    with pytest.raises(ValueError, match="job input 5 is bad"):
        run_jobs([Job("bad", always_fails, {"x": 5})], Sweep(), lambda job, out: None)
    with pytest.raises(ConfigError, match="unique keys"):
        run_jobs([Job("a", double, {"x": 1})] * 2, Sweep(), lambda job, out: None)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": 2}, "expected ray=True with them"),
        ({"ray": True, "threads": 0}, "threads: expected an integer >= 1, got 0"),
        ({"ray": True, "retries": -1}, "retries: expected an integer >= 0, got -1"),
        ({"ray": True, "workers": 0}, "workers: expected an integer >= 1, got 0"),
        ({"ray": True, "address": "auto", "workers": 2}, "expected workers only for a local"),
    ],
)
def test_sweep_settings_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Sweep(**options)


def test_ray_sweep_retries_and_reports_failures(local_ray: Any, tmp_path: Path) -> None:
    local_ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    jobs = [
        Job("double", double, {"x": 21}),
        Job("bad", always_fails, {"x": 7}),
        Job("flaky", fails_once, {"marker": str(tmp_path / "marker")}),
    ]
    seen: dict[str, Any] = {}
    sweep = Sweep(ray=True, workers=2, retries=1)
    failures = run_jobs(jobs, sweep, lambda job, out: seen.update({job.key: out}), progress=False)
    assert seen == {"double": 42, "flaky": "retried"}  # the flaky job succeeded on its retry
    assert [f.key for f in failures] == ["bad"] and "job input 7 is bad" in failures[0].error
    with pytest.raises(SweepError, match=r"1 job\(s\) failed.*bad: .*job input 7 is bad"):
        raise_failures(failures, "here")
    assert sweep.describe() == {
        "launcher": "ray", "address": None, "workers": 2, "threads": 1, "retries": 1,
    }  # fmt: skip


def test_ray_jobs_get_the_sweeps_threads(local_ray: Any) -> None:
    local_ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    seen: list[Any] = []
    sweep = Sweep(ray=True, threads=2)
    run_jobs([Job("threads", threads_seen)], sweep, lambda job, out: seen.append(out))
    assert seen == [(2, "2")]


def test_offline_on_ray_matches_the_serial_run(
    local_ray: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same methods and seeds give the same scores in parallel Ray tasks as one after
    another here; results.json says where they ran."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    rollouts.write_random_dataset("test/pendulum/sweep-v0", "Pendulum-v1", 1200, n_envs=4)
    common: dict[str, Any] = {
        "methods": ("bc", "td3bc"), "seeds": (0, 1), "gradient_steps": 40, "episodes": 2,
        "progress": False,
    }  # fmt: skip
    serial = offline_run("test/pendulum/sweep-v0", tmp_path / "serial", **common)
    parallel = offline_run(
        "test/pendulum/sweep-v0", tmp_path / "ray", sweep=Sweep(ray=True, workers=2), **common
    )
    keys = [(r["method"], r["seed"]) for r in parallel["runs"]]
    assert keys == [("bc", 0), ("bc", 1), ("td3bc", 0), ("td3bc", 1)]  # the sweep's order
    for a, b in zip(serial["runs"], parallel["runs"], strict=True):
        assert (a["method"], a["seed"]) == (b["method"], b["seed"])
        np.testing.assert_allclose(a["real_return"], b["real_return"], rtol=1e-6)
    saved = json.loads((tmp_path / "ray" / "results.json").read_text())
    assert saved["settings"]["sweep"]["launcher"] == "ray" and "failed" not in saved
    assert saved["summary"]["td3bc"]["seeds"] == 2


def test_offline_resume_runs_only_the_missing_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--resume` keeps the (method, seed) jobs of results.json and runs the others; changed
    settings are refused."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    rollouts.write_random_dataset("test/pendulum/resume-v0", "Pendulum-v1", 600, n_envs=2)
    common: dict[str, Any] = {"gradient_steps": 20, "episodes": 1, "progress": False}
    out = tmp_path / "out"
    first = offline_run("test/pendulum/resume-v0", out, methods=("bc",), seeds=(0,), **common)
    more = offline_run(
        "test/pendulum/resume-v0", out, methods=("bc", "td3bc"), seeds=(0, 1), resume=True,
        **common,
    )  # fmt: skip
    assert [(r["method"], r["seed"]) for r in more["runs"]] == [
        ("bc", 0), ("bc", 1), ("td3bc", 0), ("td3bc", 1),
    ]  # fmt: skip
    assert more["runs"][0] == first["runs"][0]  # kept as it was, not run again
    fresh = offline_run("test/pendulum/resume-v0", tmp_path / "fresh", methods=("td3bc",),
                        seeds=(1,), **common)  # fmt: skip
    assert more["runs"][3]["real_return"] == fresh["runs"][0]["real_return"]
    with pytest.raises(ConfigError, match=r"expected the settings of its results.json, got "
                       r"different gradient_steps \(saved: gradient_steps=20"):  # fmt: skip
        offline_run("test/pendulum/resume-v0", out, methods=("bc",), resume=True,
                    gradient_steps=30, episodes=1, progress=False)  # fmt: skip
