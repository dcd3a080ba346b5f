"""DreamerV3 and PlaNet: presets, the contract, overrides, explicit noise, saving, two-hot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F

import worldflux as wf
from worldflux.eval.fidelity import spearman
from worldflux.models import DreamerV3Model, PlaNetModel
from worldflux.models.error_heads import FIT_ROWS
from worldflux.models.rssm.model import RSSMActionConditioner
from worldflux.models.rssm.nets import TwoHot, symexp, symlog

IMAGE = (3, 64, 64)


@pytest.mark.parametrize(
    ("preset", "millions"),
    [("tiny", 1.0), ("size12m", 12.0), ("size25m", 25.0), ("size50m", 50.0)],
)
def test_preset_names_are_true(preset: str, millions: float) -> None:
    """Parameter counts for 64x64x3 images and 6-dim actions are within 15% of the name (the
    paper's world model; the uncertainty heads and the error heads come on top and stay below a
    quarter of it)."""
    model = wf.create_world_model(f"dreamerv3:{preset}", obs_shape=IMAGE, action_dim=6)
    decoder = model.component("decoder")
    heads = sum(p.numel() for m in (decoder.heads, decoder.error_heads) for p in m.parameters())
    count = model.num_parameters() - heads
    assert abs(count / (millions * 1e6) - 1) <= 0.15, count
    assert heads < 0.25 * count


def test_uncertainty_heads_need_two_or_none() -> None:
    with pytest.raises(
        wf.core.ConfigError, match="uncertainty_heads: expected 0 \\(none\\) or >= 2"
    ):
        wf.create_world_model("dreamerv3:tiny", obs_shape=(5,), action_dim=2, uncertainty_heads=1)
    spec = dict(obs_shape=(5,), action_dim=2, uncertainty_heads=0)
    none = wf.create_world_model("planet:tiny", **spec, error_heads=0)
    state = none.transition(none.encode(torch.zeros(3, 5)), torch.zeros(3, 2))
    assert none.decode(state).uncertainty is None
    # the error heads alone: none until they are fitted, then the largest of their expected
    # RMS errors
    error_only = wf.create_world_model("planet:tiny", **spec)
    assert error_only.decode(state).uncertainty is None
    heads = error_only.component("decoder").error_heads
    heads.fit(torch.randn(64, 64), torch.rand(64), 2, torch.Generator().manual_seed(0))
    out = error_only.decode(state)
    assert out.uncertainty is not None
    expected = torch.exp(0.5 * heads(state["deter"]).amax(0))
    torch.testing.assert_close(out.uncertainty, expected)


def test_family_names_presets_and_latents() -> None:
    d = wf.create_world_model("dreamer:proprio", obs_shape=(17,), action_dim=6)
    assert isinstance(d, DreamerV3Model) and d.model_type == "dreamerv3"
    dec = d.component("decoder")
    uncertainty = sum(p.numel() for m in (dec.heads, dec.error_heads) for p in m.parameters())
    assert 1.6e6 < d.num_parameters() - uncertainty < 1.8e6 and d.config.obs_initial_state
    p = wf.create_world_model("planet", obs_shape=(17,), action_dim=6)
    assert isinstance(p, PlaNetModel) and p.config.latent == "gaussian" and p.config.deter == 200
    assert d.state_spec() == {"deter": (256,), "stoch": (256,)}
    assert d.noise_spec()["stoch"].distribution == "uniform"
    assert p.noise_spec()["stoch"] == wf.NoiseSpec((30,), "normal")
    with pytest.raises(
        wf.core.ConfigError, match="expected \\(D,\\) vectors or \\(C, H, W\\) images"
    ):
        wf.create_world_model("dreamerv3:tiny", obs_shape=(4, 4), action_dim=2)


def _windows(shape: tuple[int, ...], b: int, t: int) -> torch.Tensor:
    """Random observation windows ``[b, t + 1, *shape]``: uint8 frames or float vectors."""
    if len(shape) == 3:
        return torch.randint(0, 256, (b, t + 1, *shape), dtype=torch.uint8)
    return torch.randn(b, t + 1, *shape)


@pytest.mark.parametrize("spec", ["dreamerv3:tiny", "planet:tiny"])
@pytest.mark.parametrize("shape", [(5,), (3, 16, 16)], ids=["vector", "image"])
def test_contract_shapes_and_values(spec: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    m = wf.create_world_model(spec, obs_shape=shape, action_dim=3)
    b, t = 2, 4
    obs = _windows(shape, b, t)
    batch = wf.Batch(
        obs,
        torch.rand(b, t, 3) * 2 - 1,
        torch.randn(b, t),
        torch.zeros(b, t, dtype=torch.bool),
        torch.zeros(b, t, dtype=torch.bool),
    )
    out = m.loss(batch)
    out.loss.backward()
    parts = {"obs", "reward", "continue", "kl", "heads"}
    assert torch.isfinite(out.loss) and set(out.components) == parts
    state = m.encode(obs[:, 0])
    m.check_state(state)
    nxt = m.transition(state, torch.zeros(b, 3))
    dec = m.decode(nxt).validate()
    assert (
        dec.obs.shape == (b, *shape)
        and dec.reward.shape == (b,)
        and dec.continue_prob.shape == (b,)
        and dec.uncertainty is not None
        and dec.uncertainty.shape == (b,)
    )
    post = m.update(state, torch.zeros(b, 3), obs[:, 1])
    assert post["deter"].shape == nxt["deter"].shape
    assert torch.equal(post["deter"], nxt["deter"])  # same recurrent step; only the latent differs


def test_explicit_noise_reproduces_rollouts_and_categorical_samples_are_one_hot() -> None:
    m = wf.create_world_model("dreamerv3:tiny", obs_shape=(5,), action_dim=2)
    state = m.encode(torch.randn(3, 5))
    actions = torch.randn(6, 3, 2)
    noise = wf.core.sample_noise_torch(
        m.noise_spec(), (6, 3), generator=torch.Generator().manual_seed(0)
    )
    a, b = m.rollout(state, actions, noise=noise), m.rollout(state, actions, noise=noise)
    assert torch.equal(a.obs, b.obs) and torch.equal(a.states["stoch"], b.states["stoch"])
    stoch = a.states["stoch"][1:].reshape(6, 3, 16, 8)
    assert torch.equal(stoch.sum(-1), torch.ones(6, 3, 16))
    other = m.rollout(state, actions, noise={"stoch": torch.rand(6, 3, 16)})
    assert not torch.equal(a.states["stoch"], other.states["stoch"])


def test_override_reaches_loss_and_rollout() -> None:
    class Recording(RSSMActionConditioner):
        calls: ClassVar[list[str]] = []

        def forward(self, action, conditions=None):  # type: ignore[no-untyped-def]
            import inspect

            names = {f.function for f in inspect.stack()[1:6]}
            Recording.calls.append("loss" if "loss" in names else "rollout")
            return super().forward(action, conditions)

    m = wf.create_world_model(
        "dreamerv3:tiny",
        obs_shape=(5,),
        action_dim=2,
        component_overrides={"action_conditioner": Recording},
    )
    assert isinstance(m.component("action_conditioner"), Recording)
    batch = wf.Batch(
        torch.randn(2, 4, 5),
        torch.randn(2, 3, 2),
        torch.randn(2, 3),
        torch.zeros(2, 3),
        torch.zeros(2, 3),
    )
    m.loss(batch)
    m.rollout(m.encode(torch.randn(2, 5)), torch.randn(2, 2, 2))
    # the loss conditions every step's action in one call over B·T rows; a rollout per step
    assert Recording.calls == ["loss"] + ["rollout"] * 2
    with pytest.raises(wf.core.ContractError, match=r"must be constructible as Bilinear\(config\)"):
        wf.create_world_model(
            "dreamerv3:tiny",
            obs_shape=(5,),
            action_dim=2,
            component_overrides={"decoder": torch.nn.Bilinear},
        )


def test_save_load_round_trip_is_exact(tmp_path: Path) -> None:
    m = wf.create_world_model("planet:tiny", obs_shape=(3, 16, 16), action_dim=2)
    m.save_pretrained(tmp_path / "planet")
    loaded = wf.create_world_model(str(tmp_path / "planet"))
    assert isinstance(loaded, PlaNetModel)
    obs = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    noise = {"stoch": torch.randn(2, 16)}
    torch.manual_seed(1)
    s1 = m.encode(obs)
    torch.manual_seed(1)
    s2 = loaded.encode(obs)
    assert torch.equal(
        m.decode(m.transition(s1, torch.ones(2, 2), noise=noise)).obs,
        loaded.decode(loaded.transition(s2, torch.ones(2, 2), noise=noise)).obs,
    )


def test_symlog_and_two_hot() -> None:
    x = torch.tensor([-1000.0, -1.5, 0.0, 0.3, 42.0])
    assert torch.allclose(symexp(symlog(x)), x, rtol=1e-5)
    th = TwoHot()
    targets = torch.tensor([-3.0, 0.0, 0.7, 250.0])
    logits = torch.zeros(4, 255, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.5)
    for _ in range(300):
        loss = th.loss(logits, targets).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.allclose(th.mean(logits.detach()), targets, rtol=0.02, atol=0.02)


def test_obs_initial_state_gives_encode_a_deterministic_path() -> None:
    torch.manual_seed(0)
    base = wf.create_world_model("dreamerv3:tiny", obs_shape=(5,), action_dim=2)
    torch.manual_seed(0)
    init = wf.create_world_model(
        "dreamerv3:tiny", obs_shape=(5,), action_dim=2, obs_initial_state=True
    )
    obs = torch.randn(3, 5)
    assert torch.equal(base.encode(obs)["deter"], torch.zeros(3, 128))
    deter = init.encode(obs)["deter"]
    assert deter.abs().sum() > 0 and not torch.equal(deter[0], deter[1])  # depends on the obs
    assert init.num_parameters() > base.num_parameters()
    batch = wf.Batch(
        torch.randn(2, 4, 5),
        torch.randn(2, 3, 2),
        torch.randn(2, 3),
        torch.zeros(2, 3),
        torch.zeros(2, 3),
    )
    init.loss(batch).loss.backward()
    assert init.component("dynamics_model").init.weight.grad.abs().sum() > 0  # trained by loss()


class _Episodes:
    """A batch provider over equal-length episodes ``obs [E, L + 1, *O]``, ``actions [E, L, A]``:
    each request draws episodes (from its seed, or a running stream) and returns their first
    ``seq_len`` steps, padded (``mask`` 0) where the episodes are shorter; no validation split."""

    def __init__(self, obs: torch.Tensor, actions: torch.Tensor) -> None:
        self.obs, self.actions = obs, actions
        self.stream = torch.Generator().manual_seed(0)

    def get_batch(self, request: wf.BatchRequest) -> wf.Batch:
        if request.split != "train":
            raise wf.core.ConfigError("_Episodes: no validation episodes")
        gen = torch.Generator().manual_seed(request.seed) if request.seed is not None else None
        rows = torch.randint(len(self.obs), (request.batch_size,), generator=gen or self.stream)
        t, length = request.seq_len, self.actions.shape[1]
        pad = max(t - length, 0)
        obs = self.obs[rows, : t + 1]
        obs = torch.cat([obs, obs[:, -1:].expand(-1, pad, *obs.shape[2:])], 1)
        actions = F.pad(self.actions[rows, :t], (0, 0, 0, pad))
        zeros = torch.zeros(request.batch_size, t)
        mask = F.pad(torch.ones(request.batch_size, min(t, length)), (0, pad))
        return wf.Batch(obs, actions, zeros, zeros, zeros, mask)


@pytest.mark.parametrize("shape", [(5,), (3, 16, 16)], ids=["vector", "image"])
def test_fitting_the_error_heads_changes_nothing_else(shape: tuple[int, ...]) -> None:
    """``loss`` does not train the error heads; ``fit_error_heads`` fits them on fresh-start
    errors of real steps only and leaves every other weight as it was."""
    torch.manual_seed(0)
    m = wf.create_world_model("dreamerv3:tiny", obs_shape=shape, action_dim=2, error_head_steps=5)
    data = _Episodes(_windows(shape, 8, 6), torch.rand(8, 6, 2) * 2 - 1)
    batch = data.get_batch(wf.BatchRequest(4, 9, seed=0))
    deter, sq_error = m.step_errors(batch)
    assert deter.shape == (4 * 6, 128) and sq_error.shape == (4 * 6,)  # padding left out
    m.loss(batch).loss.backward()
    heads = m.component("decoder").error_heads
    assert all(p.grad is None for p in heads.parameters())
    before = {k: v.clone() for k, v in m.state_dict().items()}
    fits: list[tuple[int, int]] = []  # (Adam steps, transitions) of each fit
    fit = heads.fit
    heads.fit = lambda d, e, steps, g: fits.append((steps, len(e))) or fit(d, e, steps, g)
    metrics = m.fit_error_heads(data, seed=0)
    # error_head_steps=5 -> 5 steps on 24 x 5 transitions, rounded up to one request of 4,096
    assert fits == [(5, FIT_ROWS)]
    assert set(metrics) == {"error_heads/train_nll", "error_heads/train_rmse"}
    changed = {k for k, v in m.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("decoder.error_heads.") for k in changed), changed
    assert bool(heads.fitted) and m.training
    with pytest.raises(
        wf.core.ConfigError,
        match="DreamerV3Model.fit_error_heads: expected a model with error heads",
    ):
        wf.create_world_model(
            "dreamerv3:tiny", obs_shape=shape, action_dim=2, error_heads=0
        ).fit_error_heads(data)


def test_models_saved_before_the_error_heads_load_without_them(tmp_path: Path) -> None:
    """A saved config without ``error_heads`` (written before the field existed) loads as a
    model without them, exactly as it was saved."""
    m = wf.create_world_model("dreamerv3:tiny", obs_shape=(5,), action_dim=2, error_heads=0)
    m.save_pretrained(tmp_path / "old")
    config_file = tmp_path / "old" / "config.json"
    saved = json.loads(config_file.read_text())
    del saved["config"]["error_heads"]
    config_file.write_text(json.dumps(saved))
    loaded = wf.load_pretrained(tmp_path / "old")
    assert loaded.config.error_heads == 0
    assert loaded.component("decoder").error_heads is None
    state = m.transition(m.encode(torch.ones(2, 5)), torch.zeros(2, 2), deterministic=True)
    again = loaded.transition(
        loaded.encode(torch.ones(2, 5)), torch.zeros(2, 2), deterministic=True
    )
    assert torch.equal(m.decode(state).uncertainty, loaded.decode(again).uncertainty)
    # a new model takes the field's default
    assert wf.create_world_model("dreamerv3:tiny", obs_shape=(5,), action_dim=2).config.error_heads


def test_jointly_trained_error_heads_load_as_fitted_heads_on_the_raw_state(
    tmp_path: Path,
) -> None:
    """Weights saved when the loss trained the error heads (no ``shift``, ``scale``, ``fitted``)
    load as fitted heads that read the state unstandardised, as they were trained."""
    m = wf.create_world_model("dreamerv3:tiny", obs_shape=(5,), action_dim=2)
    state = {
        k: v
        for k, v in m.state_dict().items()
        if k.split(".")[-1] not in ("shift", "scale", "fitted")
    }
    again = wf.create_world_model("dreamerv3:tiny", obs_shape=(5,), action_dim=2)
    again.load_state_dict(again.upgrade_weights(state))
    heads = again.component("decoder").error_heads
    assert bool(heads.fitted)
    assert torch.equal(heads.shift, torch.zeros(128)) and torch.equal(heads.scale, torch.ones(128))
    assert again.decode(again.encode(torch.ones(2, 5))).uncertainty is not None


def _heteroscedastic_windows(
    episodes: int, steps: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(obs [E, T + 1, 3], actions [E, T, 2])`` of a 3-dim system whose step noise has std
    0.3 where ``x[0] > 0`` and 0.01 elsewhere: its one-step errors depend on the state."""
    mix = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, -0.5]])
    x = torch.randn(episodes, 3, generator=gen) * 0.5
    actions = torch.rand(episodes, steps, 2, generator=gen) * 2 - 1
    xs = [x]
    for t in range(steps):
        noise = torch.where(x[:, :1] > 0, 0.3, 0.01) * torch.randn(episodes, 3, generator=gen)
        x = 0.9 * x + 0.3 * torch.tanh(actions[:, t] @ mix) + noise
        xs.append(x)
    return torch.stack(xs, 1), actions


def test_error_heads_rank_one_step_errors_of_a_learned_system() -> None:
    """A DreamerV3 trained 300 steps on a system with state-dependent noise, its error heads
    fitted after: its uncertainty ranks the one-step errors from fresh states (measured
    Spearman 0.82-0.86 over 3 seeds) and
    is ~3x higher where the noise is (errors 2.9-4.2x). The disagreement heads alone cannot
    see it: trained the same way without error heads, the uncertainty ranks at -0.26."""
    gen = torch.Generator().manual_seed(0)
    obs, actions = _heteroscedastic_windows(2048, 8, gen)
    test_obs, test_actions = _heteroscedastic_windows(512, 1, gen)
    spearmans = {}
    for error_heads in (5, 0):
        torch.manual_seed(0)
        m = wf.create_world_model(
            "dreamerv3:tiny",
            obs_shape=(3,),
            action_dim=2,
            obs_initial_state=True,
            error_heads=error_heads,
        )
        m.set_data_statistics({"obs_mean": obs.mean((0, 1)), "obs_std": obs.std((0, 1))})
        opt = torch.optim.Adam(m.parameters(), 1e-3)
        rows = torch.Generator().manual_seed(1)
        zeros = torch.zeros(32, 8)
        for _ in range(300):
            i = torch.randint(0, len(obs), (32,), generator=rows)
            loss = m.loss(wf.Batch(obs[i], actions[i], zeros, zeros, zeros)).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        if error_heads:
            m.fit_error_heads(_Episodes(obs, actions), seed=0)
        with torch.no_grad():
            state = m.transition(m.encode(test_obs[:, 0]), test_actions[:, 0], deterministic=True)
            out = m.decode(state)
        assert out.uncertainty is not None
        error = ((out.obs - test_obs[:, 1]) / m.obs_std).pow(2).mean(-1).sqrt()
        spearmans[error_heads] = spearman(out.uncertainty.numpy(), error.numpy())
        if error_heads:
            noisy = test_obs[:, 0, 0] > 0
            ratio = out.uncertainty[noisy].median() / out.uncertainty[~noisy].median()
            assert ratio > 2.0, ratio
    assert spearmans[5] > 0.6, spearmans
    assert spearmans[5] > spearmans[0] + 0.3, spearmans
