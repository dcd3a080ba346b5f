"""Run a sweep's jobs (seeds, methods) here one after another, or in parallel as Ray tasks.

`worldflux offline` and `worldflux agent train --seeds` cut their work into independent jobs
and hand them to :func:`run_jobs`. With ``Sweep()`` the jobs run in this process, in order, and
the first failure stops the sweep (its exception propagates). With ``Sweep(ray=True)`` each job
is a Ray task (``pip install "worldflux[ray]"``):

* on a local Ray instance started for the sweep, ``workers`` jobs at a time (default: one per
  core) at normal priority (Ray's default would start them at nice 15, unless
  ``RAY_worker_niceness`` is set), or on an existing cluster (``address``, e.g. ``"ray://head:10001"`` or ``"auto"``);
* each job gets ``threads`` CPUs and as many torch threads (1 by default: several single-thread
  jobs use a machine better than a few multi-thread ones, and cannot fall into OpenMP's
  spin-waiting when they share cores);
* a job that raises, or whose worker dies, is retried ``retries`` times; one that still fails is
  reported (:class:`JobFailure`) while the other jobs go on, never silently dropped;
* results arrive as jobs finish, so callers can save progress as it comes;
* when this process has already called ``ray.init``, the sweep uses that Ray as it is (and
  leaves it running).

On a cluster every node needs WorldFlux installed and the sweep's datasets and output folder at
the same paths (a shared file system): jobs read datasets by id and write their runs where the
sweep says. The variables of ``FORWARDED_ENV`` (e.g. ``MINARI_DATASETS_PATH``) are passed on to
the tasks when they are set here.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .core.errors import ConfigError, WorldFluxError

#: environment variables passed on to Ray tasks when set here
FORWARDED_ENV = ("MINARI_DATASETS_PATH", "WORLDFLUX_CACHE", "OMP_WAIT_POLICY", "MUJOCO_GL")
T = TypeVar("T")

#: the environment variable that sets the niceness of a local Ray instance's workers
WORKER_NICENESS = "RAY_worker_niceness"
#: object store of a local Ray instance: jobs return small dicts, so Ray's default (30% of RAM)
#: would only reserve memory the jobs need
LOCAL_OBJECT_STORE_BYTES = 128 * 1024**2


class SweepError(WorldFluxError, RuntimeError):
    """Some jobs of a sweep failed after their retries (the others' results were kept)."""


@dataclass(frozen=True)
class Sweep:
    """Where a sweep's jobs run. ``ray=False``: here, in order (the other fields must keep their
    defaults); ``ray=True``: Ray tasks on a local instance of ``workers`` CPUs (default: all
    cores) or on the cluster at ``address``; ``threads``: CPUs and torch threads per task;
    ``retries``: reruns of a failed task."""

    ray: bool = False
    address: str | None = None
    workers: int | None = None
    threads: int = 1
    retries: int = 1

    def __post_init__(self) -> None:
        for name, value, low in (("threads", self.threads, 1), ("retries", self.retries, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"sweep {name}: expected an integer >= {low}, got {value!r}.")
        if self.workers is not None and (
            not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 1
        ):
            raise ConfigError(f"sweep workers: expected an integer >= 1, got {self.workers!r}.")
        if not self.ray and (self.address, self.workers, self.threads, self.retries) != (
            None,
            None,
            1,
            1,
        ):
            raise ConfigError(
                "sweep: address, workers, threads and retries apply to Ray sweeps; expected "
                f"ray=True with them, got ray=False with {self}."
            )
        if self.address is not None and self.workers is not None:
            raise ConfigError(
                "sweep workers: a Ray cluster at an address has its own CPUs; expected workers "
                f"only for a local instance, got address={self.address!r}, workers={self.workers}."
            )

    def describe(self) -> dict[str, Any]:
        """The settings as saved with a sweep's results."""
        if not self.ray:
            return {"launcher": "serial"}
        return {
            "launcher": "ray",
            "address": self.address,
            "workers": self.workers if self.address else (self.workers or os.cpu_count()),
            "threads": self.threads,
            "retries": self.retries,
        }


#: the jobs run here, one after another
SERIAL = Sweep()


@dataclass(frozen=True)
class Job:
    """One unit of a sweep: ``function(**kwargs)``. ``function`` must be importable by name (a
    module-level function) for Ray to run it elsewhere; its result must pickle."""

    key: str
    function: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobFailure:
    """A job that failed after its retries: its key and the error it ended with."""

    key: str
    error: str


def run_jobs(
    jobs: Sequence[Job],
    sweep: Sweep,
    on_result: Callable[[Job, Any], None],
    *,
    progress: bool = True,
) -> list[JobFailure]:
    """Run ``jobs`` as ``sweep`` says; ``on_result(job, result)`` is called in this process as
    each job finishes (in completion order on Ray). Returns the failures (Ray only: a serial
    sweep raises the first job's exception)."""
    keys = [job.key for job in jobs]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"sweep jobs: expected unique keys, got {keys}.")
    if not sweep.ray:
        for job in jobs:
            on_result(job, job.function(**job.kwargs))
        return []
    return _run_on_ray(jobs, sweep, on_result, progress)


def run_sweep(
    jobs: Sequence[Job],
    sweep: Sweep,
    collect: Callable[[Job, Any], T],
    write: Callable[[list[T], list[JobFailure]], Path],
    *,
    finished_before: Mapping[str, T] | None = None,
    progress: bool = True,
) -> None:
    """Run ``jobs`` and keep their results saved: ``collect(job, result)`` turns each finished
    job's result into what ``write(outcomes, failures)`` saves (the outcomes of the finished jobs
    in the order of ``jobs``; returns the results file). ``write`` runs after every job and once
    at the end with the failures, which then raise a :class:`SweepError`.
    ``finished_before``: outcomes of jobs (by key) that an earlier run of the sweep finished;
    those jobs do not run again."""
    done: dict[str, T] = dict(finished_before or {})
    jobs_to_run = [job for job in jobs if job.key not in done]

    def finished() -> list[T]:
        return [done[job.key] for job in jobs if job.key in done]

    def on_result(job: Job, result: Any) -> None:
        done[job.key] = collect(job, result)
        write(finished(), [])

    failures = run_jobs(jobs_to_run, sweep, on_result, progress=progress)
    saved = write(finished(), failures)
    raise_failures(failures, f"results so far in {saved}")


def _in_task(
    function: Callable[..., Any], kwargs: dict[str, Any], threads: int, env: dict[str, str]
) -> Any:
    """What a Ray task runs: the sweep's environment variables (set here rather than through a
    Ray runtime environment, which starts new workers for each), ``threads`` torch threads,
    then the job."""
    os.environ.update(env)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    return function(**kwargs)


def _run_on_ray(
    jobs: Sequence[Job],
    sweep: Sweep,
    on_result: Callable[[Job, Any], None],
    progress: bool,
) -> list[JobFailure]:
    try:
        import ray
    except ImportError as error:
        raise ConfigError(
            "a Ray sweep needs Ray, which cannot be imported here: install it with "
            '`pip install "worldflux[ray]"` (or `pip install ray`), or run the sweep serially.'
        ) from error
    env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
    started_here = not ray.is_initialized()
    if started_here:
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": progress}
        if sweep.address is None:
            # Ray starts workers at nice 15 (background priority); a sweep's jobs are the
            # machine's main work, and beside other busy processes they would starve
            os.environ.setdefault(WORKER_NICENESS, "0")
            options["num_cpus"] = sweep.workers or os.cpu_count()
            options["object_store_memory"] = LOCAL_OBJECT_STORE_BYTES
        else:
            options["address"] = sweep.address
        ray.init(**options)
    failures: list[JobFailure] = []
    try:
        task = ray.remote(_in_task).options(
            num_cpus=sweep.threads, max_retries=sweep.retries, retry_exceptions=True
        )
        pending = {task.remote(job.function, job.kwargs, sweep.threads, env): job for job in jobs}
        while pending:
            (done,), _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done)
            try:
                result = ray.get(done)
            except ray.exceptions.RayError as error:
                cause = getattr(error, "cause", None) or error
                message = "".join(traceback.format_exception_only(type(cause), cause)).strip()
                failures.append(JobFailure(job.key, message))
                if progress:
                    print(f"sweep: {job.key} failed after {sweep.retries} retries: {message}")
                continue
            on_result(job, result)
    finally:
        if started_here:
            ray.shutdown()
    return failures


def raise_failures(failures: Sequence[JobFailure], where: str) -> None:
    """Raise a :class:`SweepError` naming every failed job (after their results were saved)."""
    if failures:
        listed = "; ".join(f"{f.key}: {f.error}" for f in failures)
        raise SweepError(f"{len(failures)} job(s) failed after their retries ({where}): {listed}")
