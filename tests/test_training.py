"""The Trainer: learning, exact resume, callbacks, NaN handling, schedules, DDP."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from synthetic import sample_batch

import worldflux as wf
from worldflux.data import EpisodeStore, MinariBatchProvider
from worldflux.data.spaces import ActionLayout, ObservationLayout
from worldflux.training import Callback, NonFiniteLossError, Trainer, TrainerConfig
from worldflux.training.callbacks import BestModel


def synthetic_store(
    episodes: int = 60, steps: int = 12, seed: int = 0, nonlinear: bool = False
) -> EpisodeStore:
    """Episodes of the synthetic system (``tests/synthetic.py``) as an EpisodeStore."""
    batch = sample_batch(episodes, steps, seed=seed, limit=10.0, nonlinear=nonlinear)
    eps = [
        {
            "observations": batch.obs[i].numpy(),
            "actions": batch.actions[i].numpy(),
            "rewards": batch.rewards[i].numpy(),
            "terminations": np.zeros(steps, bool),
            "truncations": np.eye(steps, dtype=bool)[-1],
        }
        for i in range(episodes)
    ]
    return EpisodeStore.from_episodes(
        eps, ObservationLayout("vector", (4,)), ActionLayout("continuous", 2)
    )


def provider(seed: int = 0) -> MinariBatchProvider:
    return MinariBatchProvider.from_store(synthetic_store(), validation_fraction=0.2, seed=seed)


def toy(seed: int = 0, **overrides: Any) -> wf.WorldModel:
    torch.manual_seed(seed)
    return wf.create_world_model("toy:tiny", obs_shape=(4,), action_dim=2, **overrides)


def config(**kw: Any) -> TrainerConfig:
    base = dict(
        steps=20,
        batch_size=16,
        seq_len=4,
        lr=3e-3,
        eval_every=5,
        eval_batches=2,
        checkpoint_every=10,
        log_every=5,
    )
    base.update(kw)
    return TrainerConfig(**base)


def test_trainer_learns_and_writes_a_run(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = wf.create_world_model("toy:small", obs_shape=(4,), action_dim=2)
    trainer = Trainer(
        model,
        provider(),
        config(steps=500, batch_size=32, eval_every=100, warmup_steps=20, lr_schedule="cosine"),
        run_dir=tmp_path / "run",
        progress=False,
    )
    untrained = trainer.evaluate()
    result = trainer.fit()
    final = trainer.history[-1]
    print(untrained, final)
    assert final["val/loss"] < 0.2 * untrained["val/loss"], (untrained, final)
    assert final["val/obs"] < 0.15 * untrained["val/obs"], final
    assert final["val/reward"] < 0.02 * untrained["val/reward"], final
    run = tmp_path / "run"
    assert (run / "model" / "model.safetensors").is_file() and (
        run / "best" / "metadata.json"
    ).is_file()
    assert json.loads((run / "metrics.json").read_text())["steps"] == 500
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and len(rows) > 100
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tb").iterdir())
    assert result["samples_per_s"] > 0 and result["stop_reason"] == "completed"
    loaded = wf.WorldModel.from_pretrained(run / "model")
    assert torch.equal(
        loaded.state_dict()["decoder.obs.0.weight"],
        trainer.model.state_dict()["decoder.obs.0.weight"],
    )


class Crash(Callback):
    writes = False

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        if trainer.step == 10:
            raise KeyboardInterrupt("simulated crash right after the step-10 checkpoint")


def test_resume_is_bit_exact(tmp_path: Path) -> None:
    cfg = config(steps=20, lr_schedule="cosine", warmup_steps=3)
    straight = Trainer(toy(), provider(), cfg, run_dir=tmp_path / "a", progress=False)
    straight.fit()

    crashed = Trainer(
        toy(), provider(), cfg, run_dir=tmp_path / "b", progress=False, callbacks=[Crash()]
    )
    with pytest.raises(KeyboardInterrupt):
        crashed.fit()
    # a different progress setting changes the callback list: states are matched by name
    resumed = Trainer(toy(seed=99), provider(seed=99), cfg, run_dir=tmp_path / "b", progress=True)
    assert resumed.resume() and resumed.step == 10
    resumed.fit()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert straight.history[-1] == resumed.history[-1]
    # the logs of the resumed run have no duplicated steps
    rows = [
        line.split(",")[0] for line in (tmp_path / "b" / "metrics.csv").read_text().splitlines()[1:]
    ]
    straight_rows = [
        line.split(",")[0] for line in (tmp_path / "a" / "metrics.csv").read_text().splitlines()[1:]
    ]
    assert rows == straight_rows


class Order(Callback):
    writes = False

    def __init__(self) -> None:
        self.events: list[str] = []

    def on_train_begin(self, trainer: Trainer) -> None:
        self.events.append("begin")

    def on_step_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self.events.append(f"step{trainer.step}")

    def on_eval_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        assert "val/loss" in metrics
        self.events.append(f"eval{trainer.step}")

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        self.events.append(f"ckpt{trainer.step}")

    def on_train_end(self, trainer: Trainer) -> None:
        self.events.append("end")


def test_callback_order(tmp_path: Path) -> None:
    order = Order()
    Trainer(
        toy(),
        provider(),
        config(steps=6, eval_every=3, checkpoint_every=3),
        run_dir=tmp_path,
        progress=False,
        callbacks=[order],
    ).fit()
    assert order.events == [
        "begin",
        "step1",
        "step2",
        "step3",
        "eval3",
        "ckpt3",
        "step4",
        "step5",
        "step6",
        "eval6",
        "ckpt6",
        "end",
    ]


def test_nan_loss_stops_with_the_last_good_checkpoint(tmp_path: Path) -> None:
    model = toy()
    trainer = Trainer(
        model, provider(), config(steps=30, checkpoint_every=5), run_dir=tmp_path, progress=False
    )

    class Poison(Callback):
        writes = False

        def on_step_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
            if trainer.step == 7:
                with torch.no_grad():
                    model.decoder.obs[0].weight.fill_(float("nan"))

    trainer.callbacks.append(Poison())
    with pytest.raises(
        NonFiniteLossError, match=r"loss is nan at step 8 .*Last good checkpoint: .*step-0000005"
    ):
        trainer.fit()


def test_early_stopping_and_best_model_use_validation(tmp_path: Path) -> None:
    trainer = Trainer(
        toy(),
        provider(),
        config(steps=400, eval_every=2, lr=1e-9, early_stopping_patience=3),
        run_dir=tmp_path,
        progress=False,
    )
    result = trainer.fit()
    assert result["stop_reason"].startswith("early stopping") and trainer.step < 400
    assert result["best"]["best_step"] >= 2


def test_schedule_clipping_and_param_groups() -> None:
    cfg = TrainerConfig(steps=100, warmup_steps=10, lr_schedule="cosine")
    assert cfg.lr_factor(0) == pytest.approx(0.1) and cfg.lr_factor(9) == pytest.approx(1.0)
    assert cfg.lr_factor(55) == pytest.approx(0.5) and cfg.lr_factor(100) == pytest.approx(0.0)
    model = toy()

    def groups() -> list[dict[str, Any]]:
        return [
            {"name": "decoder", "params": list(model.decoder.parameters()), "lr_scale": 0.1},
            {
                "name": "rest",
                "params": [p for n, p in model.named_parameters() if not n.startswith("decoder.")],
            },
        ]

    model.param_groups = groups  # type: ignore[method-assign]
    trainer = Trainer(model, provider(), config(lr=1e-3, grad_clip=1e-6), progress=False)
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([1e-4, 1e-3])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    metrics = trainer.train_step()
    assert metrics["train/grad_norm"] > 1e-6  # the norm before clipping is reported
    moved = max(float((model.state_dict()[k] - v).abs().max()) for k, v in before.items())
    assert moved < 2e-3  # one AdamW step moves each weight by about lr, clipped or not
    with pytest.raises(
        wf.core.ConfigError, match="TrainerConfig field 'stpes'. Did you mean 'steps'"
    ):
        TrainerConfig.from_dict({"stpes": 3})


def test_bf16_autocast_runs(tmp_path: Path) -> None:
    trainer = Trainer(toy(), provider(), config(steps=5, bf16=True), progress=False)
    assert np.isfinite(trainer.fit()["validation"]["val/loss"])


DDP_SCRIPT = r"""
import json, os, sys
sys.path.insert(0, {tests!r})
import torch, torch.distributed as dist
import conftest  # registers the toy family
from test_training import synthetic_store, toy
import worldflux as wf
from worldflux.data import MinariBatchProvider
from worldflux.training import Trainer, TrainerConfig

class Shard:
    # rank r gets rows [r*b, (r+1)*b) of one fixed global batch
    def __init__(self, rank, world, b):
        self.p = MinariBatchProvider.from_store(synthetic_store(), validation_fraction=0.2, seed=0)
        self.rank, self.world, self.b = rank, world, b
    def get_batch(self, request):
        g = self.p.get_batch(wf.BatchRequest(self.b * self.world, request.seq_len, request.split, seed=7))
        sl = slice(self.rank * self.b, (self.rank + 1) * self.b)
        return wf.Batch(g.obs[sl], g.actions[sl], g.rewards[sl], g.terminations[sl], g.truncations[sl])

world = int(os.environ.get("WORLD_SIZE", "1")); rank = int(os.environ.get("RANK", "0"))
b = int(sys.argv[1])
trainer = Trainer(toy(sample_in_loss=False), Shard(rank, world, b), TrainerConfig(steps=5, batch_size=b, seq_len=3, lr=1e-2,
                  eval_every=0, checkpoint_every=0, eval_batches=1), progress=False)
losses = [trainer.train_step()["train/loss"] for _ in range(5)]
flat = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
out = {{"rank": rank, "world": world, "losses": losses, "params": flat.tolist()}}
with open(os.path.join(sys.argv[2], f"rank{{rank}}-of-{{world}}.json"), "w") as fh:
    json.dump(out, fh)
if world > 1:
    dist.barrier()  # nobody tears the group down while another rank still uses it
    dist.destroy_process_group()
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_ddp_two_processes_match_single_process(tmp_path: Path) -> None:
    tests = str(Path(__file__).parent)
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=tests))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).parent / "torchrun"
    proc = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node=2",
            f"--master_port={free_port()}",
            str(script),
            "8",
            str(tmp_path),
        ],
        env=env,
        timeout=300,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    subprocess.run(
        [sys.executable, str(script), "16", str(tmp_path)], check=True, env=env, timeout=300
    )
    r0 = json.loads((tmp_path / "rank0-of-2.json").read_text())
    r1 = json.loads((tmp_path / "rank1-of-2.json").read_text())
    single = json.loads((tmp_path / "rank0-of-1.json").read_text())
    assert r0["params"] == r1["params"]  # weights identical across ranks
    # the mean of the two ranks' losses is the loss of one process on the whole global batch
    ddp_losses = [(a + b) / 2 for a, b in zip(r0["losses"], r1["losses"], strict=True)]
    assert np.allclose(ddp_losses, single["losses"], rtol=1e-4, atol=1e-5)
    assert np.allclose(r0["params"], single["params"], atol=1e-4)


def test_fidelity_beats_copy_and_linear_baselines(tmp_path: Path) -> None:
    from worldflux.eval import fidelity_report

    data = MinariBatchProvider.from_store(
        synthetic_store(episodes=200, steps=16, nonlinear=True), validation_fraction=0.2
    )
    torch.manual_seed(0)
    model = wf.create_world_model(
        "toy:small", obs_shape=(4,), action_dim=2, hidden=128, min_std=1e-3
    )
    cfg = config(steps=1500, batch_size=64, seq_len=4, eval_every=0, checkpoint_every=0)
    Trainer(model, data, cfg, progress=False).fit()
    report = fidelity_report(model, data, horizons=(1, 5, 15, 50), windows=256)
    assert report.horizons == [1, 5, 15] and "above 16" in report.notes[0]
    m, copy, lin = (report.metrics[k] for k in ("model", "copy", "linear"))
    for k in (1, 5):
        assert m[k]["obs_nrmse"] < 0.7 * lin[k]["obs_nrmse"] < 0.7 * copy[k]["obs_nrmse"], k
        assert m[k]["reward_rmse"] < 0.7 * lin[k]["reward_rmse"], k
        assert m[k]["reward_pearson"] > 0.95
    assert m[15]["obs_nrmse"] < copy[15]["obs_nrmse"]
    paths = report.save(tmp_path)
    assert [p.name for p in paths] == ["fidelity.json", "fidelity.md", "fidelity.png"]
    assert (
        json.loads(paths[0].read_text())["metrics"]["model"]["1"]["obs_nrmse"] == m[1]["obs_nrmse"]
    )
    assert "NaN" not in paths[0].read_text()
    assert paths[2].stat().st_size > 10_000


def test_without_validation_episodes_training_still_finishes(tmp_path: Path) -> None:
    data = MinariBatchProvider.from_store(synthetic_store(), validation_fraction=0.0)
    with pytest.warns(UserWarning, match="no validation batches"):
        trainer = Trainer(toy(), data, config(steps=6), run_dir=tmp_path, progress=False)
    result = trainer.fit()
    assert result["validation"] == {} and (tmp_path / "model" / "model.safetensors").is_file()
    with pytest.raises(wf.core.ConfigError, match="early stopping needs validation batches"):
        Trainer(toy(), data, config(steps=6, early_stopping_patience=2), progress=False)
    with pytest.raises(wf.core.ConfigError, match="seq_len=50 is longer than every episode"):
        Trainer(toy(), data, config(seq_len=50), progress=False)


def test_non_finite_gradients_stop_before_the_update(tmp_path: Path) -> None:
    model = toy()
    trainer = Trainer(model, provider(), config(steps=10), progress=False)
    model.decoder.obs[0].weight.register_hook(lambda g: g * float("inf"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(
        NonFiniteLossError, match="gradient norm is (nan|inf) at step 1.*not updated"
    ):
        trainer.fit()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_resuming_an_early_stopped_run_does_not_train_on(tmp_path: Path) -> None:
    cfg = config(steps=400, eval_every=2, lr=1e-9, early_stopping_patience=2)
    first = Trainer(toy(), provider(), cfg, run_dir=tmp_path, progress=False)
    stopped_at = first.fit()["steps"]
    again = Trainer(toy(), provider(), cfg, run_dir=tmp_path, progress=False)
    assert again.resume()
    result = again.fit()
    assert result["steps"] == stopped_at and result["stop_reason"].startswith("early stopping")


def test_after_update_hook_runs_after_every_optimiser_step() -> None:
    model = toy()
    seen: list[int] = []
    trainer = Trainer(
        model, provider(), config(steps=4, eval_every=0, checkpoint_every=0), progress=False
    )
    model.after_update = lambda: seen.append(trainer.step)  # type: ignore[method-assign]
    trainer.fit()
    assert seen == [0, 1, 2, 3]  # called after the step, before the step counter advances


def test_end_fraction_shapes_training_batches_only() -> None:
    """``end_fraction`` reaches the provider for training batches; validation stays uniform;
    the model is handed the data's and the drawn batches' end rates, and a model that cannot
    correct its end rate is refused by name."""
    requests: list[wf.BatchRequest] = []
    rates: list[tuple[float, float]] = []

    class Spy:
        def __init__(self) -> None:
            self.inner = provider()

        def get_batch(self, request: wf.BatchRequest) -> wf.Batch:
            requests.append(request)
            return self.inner.get_batch(dataclasses.replace(request, end_fraction=0.0))

    with pytest.raises(
        wf.core.ConfigError, match=r"end_fraction=0.25: expected a model .*ToyModel"
    ):
        Trainer(toy(), Spy(), config(end_fraction=0.25), progress=False)
    model = toy()
    model.correct_end_rate = lambda real, drawn: rates.append((real, drawn))  # type: ignore[attr-defined]
    requests.clear()
    Trainer(model, Spy(), config(steps=3, eval_every=3, end_fraction=0.25), progress=False).fit()
    stream = {(r.split, r.end_fraction) for r in requests if r.seed is None}
    assert stream == {("train", 0.25)}  # every training step
    assert {r.end_fraction for r in requests if r.split == "validation"} == {0.0}
    assert rates == [(0.0, 0.0)]  # the spy's batches hold no ends


def test_error_heads_are_fitted_once_when_the_steps_end(tmp_path: Path) -> None:
    """The Trainer calls the model's ``after_training`` after the last step, before the final
    evaluation and checkpoint: a DreamerV3's saved model has fitted error heads and the run's
    results their fit. Resuming the finished run does not fit them again."""
    torch.manual_seed(0)
    model = wf.create_world_model("dreamerv3:tiny", obs_shape=(4,), action_dim=2)
    cfg = config(steps=4, eval_every=0, checkpoint_every=0)
    trainer = Trainer(model, provider(), cfg, run_dir=tmp_path / "run", progress=False)
    assert not model.component("decoder").error_heads.is_fitted
    result = trainer.fit()
    assert set(result["after_training"]) == {
        "error_heads/train_nll",
        "error_heads/train_rmse",
        "error_heads/val_nll",
        "error_heads/val_spearman",
    }
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["after_training"] == result["after_training"]
    for folder in ("model", "best"):  # the final evaluation saw the fitted model
        loaded = wf.WorldModel.from_pretrained(tmp_path / "run" / folder)
        assert loaded.component("decoder").error_heads.is_fitted, folder
        assert loaded.decode(loaded.encode(torch.zeros(2, 4))).uncertainty is not None

    fresh = wf.create_world_model("dreamerv3:tiny", obs_shape=(4,), action_dim=2)
    calls: list[dict[str, Any]] = []
    fresh.after_training = lambda data, **kw: calls.append(kw) or {}  # type: ignore[method-assign]
    again = Trainer(fresh, provider(), cfg, run_dir=tmp_path / "run", progress=False)
    assert again.resume() and again.step == 4
    assert again.fit()["after_training"] == result["after_training"] and not calls


def test_a_best_model_saved_before_the_end_gets_fitted_error_heads(tmp_path: Path) -> None:
    """``best/`` written at an earlier evaluation holds another model: its error heads are
    fitted too, and its other weights stay that model's."""

    class Spoil(Callback):  # after the step-2 evaluation, the model gets much worse
        writes = False

        def on_step_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
            if trainer.step == 3:
                with torch.no_grad():
                    trainer.model.component("decoder").obs[-1].weight.mul_(5.0)

    torch.manual_seed(0)
    model = wf.create_world_model("dreamerv3:tiny", obs_shape=(4,), action_dim=2)
    cfg = config(steps=6, eval_every=2, checkpoint_every=0)
    trainer = Trainer(
        model, provider(), cfg, run_dir=tmp_path / "run", progress=False, callbacks=[Spoil()]
    )
    trainer.fit()
    best = next(c for c in trainer.callbacks if isinstance(c, BestModel))
    assert best.best_step == 2, best.best_step
    loaded = wf.WorldModel.from_pretrained(tmp_path / "run" / "best")
    assert loaded.component("decoder").error_heads.is_fitted
    final = trainer.model.state_dict()
    assert not torch.equal(
        loaded.state_dict()["decoder.obs.0.weight"], final["decoder.obs.0.weight"]
    )
