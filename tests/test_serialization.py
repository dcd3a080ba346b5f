"""`save_pretrained` / `from_pretrained`: exact round trips, clear errors on bad directories,
component overrides, atomic writes, and no unpickling."""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import nn
from toy_model import RecordingConditioner, ToyConditioner, ToyModel

import worldflux as wf
import worldflux.core.serialization as serialization
from worldflux.core import (
    CONTRACT_VERSION,
    FORMAT_VERSION,
    ConfigError,
    SerializationError,
    WorldFluxError,
    WorldModelRegistry,
    sample_noise_torch,
)

OBS_DIM, ACTION_DIM = 4, 2  # as in the conftest `toy` fixture
SAVED_FILES = {"config.json", "model.safetensors", "metadata.json"}
HORIZON = 4


# -- helpers ---------------------------------------------------------------------------------
def _read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _write(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


def _edit(path: Path, **changes: Any) -> None:
    data = _read(path)
    data.update(changes)
    _write(path, data)


def _outputs(model: wf.WorldModel, batch: wf.Batch) -> dict[str, torch.Tensor]:
    """Everything a model computes from fixed inputs and fixed randomness, flattened."""
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        state = model.encode(batch.obs[:, 0])
        for key, value in model.decode(state).predictions.items():
            out[f"decode.{key}"] = value
        g = torch.Generator().manual_seed(7)
        actions = torch.randn(HORIZON, batch.batch_size, ACTION_DIM, generator=g)
        noise = sample_noise_torch(model.noise_spec(), (HORIZON, batch.batch_size), generator=g)
        traj = model.rollout(state, actions, noise=noise)
        for key in traj.states:
            out[f"rollout.state.{key}"] = traj.states[key]
        for key, value in traj.predictions.items():
            out[f"rollout.{key}"] = value
        det = model.rollout(state, actions, deterministic=True)
        out["rollout_det.obs"] = det.predictions["obs"]
        torch.manual_seed(123)  # the toy loss samples its latents from torch's RNG
        loss = model.loss(batch)
        out["loss"] = loss.loss
        for key, value in loss.components.items():
            out[f"loss.{key}"] = value
    return out


def _assert_same_outputs(a: wf.WorldModel, b: wf.WorldModel, batch: wf.Batch) -> None:
    out_a, out_b = _outputs(a, batch), _outputs(b, batch)
    assert out_a.keys() == out_b.keys()
    different = [k for k in out_a if not torch.equal(out_a[k], out_b[k])]
    assert not different, f"outputs differ after the round trip: {different}"


def _assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key


def _leftovers(parent: Path, name: str) -> list[str]:
    """Temporary / backup siblings that a save of ``parent / name`` may create."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def _toy(**overrides: Any) -> wf.WorldModel:
    return wf.create_world_model(
        "toy:tiny", obs_shape=(OBS_DIM,), action_dim=ACTION_DIM, **overrides
    )


@pytest.fixture
def saved(toy: ToyModel, tmp_path: Path) -> Path:
    target = tmp_path / "toy"
    toy.save_pretrained(target)
    return target


# -- a second family, registered only while a test needs it -----------------------------------
OTHER_FAMILY = "serialization-test-other"


@dataclass
class OtherConfig(wf.WorldModelConfig):
    width: int = 3


class _OtherDecoder(nn.Module):
    def __init__(self, config: OtherConfig) -> None:
        super().__init__()
        self.lin = nn.Linear(config.width, config.obs_shape[0])

    def forward(self, state: wf.State) -> wf.ModelOutput:
        obs = self.lin(state["h"])
        zeros = obs.new_zeros(obs.shape[0])
        return wf.ModelOutput({"obs": obs, "reward": zeros, "continue": zeros + 1.0})


class OtherModel(wf.WorldModel):
    """Deterministic stand-in family: state ``{"h": [B, width]}``."""

    component_defaults: ClassVar[Mapping[str, Any]] = {"decoder": _OtherDecoder}
    config: OtherConfig

    def state_spec(self) -> dict[str, tuple[int, ...]]:
        return {"h": (self.config.width,)}

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> wf.State:
        return wf.State({"h": torch.zeros(batch_size, self.config.width, device=device)})

    def encode(self, obs: wf.WorldModelInput | torch.Tensor) -> wf.State:
        inp = self.check_obs(obs)
        return self.initial_state(inp.obs.shape[0])

    def transition(self, state, action, conditions=None, deterministic=False, noise=None):  # type: ignore[no-untyped-def]
        return self.check_state(state)

    def update(self, state, action, obs):  # type: ignore[no-untyped-def]
        return self.encode(obs)

    def decode(self, state: wf.State) -> wf.ModelOutput:
        return self.decoder(self.check_state(state))

    def loss(self, batch: wf.Batch) -> wf.LossOutput:
        self.check_batch(batch)
        pred = self.decode(self.encode(batch.obs[:, 0])).predictions["obs"]
        return wf.LossOutput(((pred - batch.obs[:, 0]) ** 2).mean())


@pytest.fixture
def other_family() -> Iterator[type[OtherModel]]:
    WorldModelRegistry.register(OTHER_FAMILY, OtherConfig)(OtherModel)
    try:
        yield OtherModel
    finally:
        WorldModelRegistry.unregister(OTHER_FAMILY)


# -- 1. round trip ------------------------------------------------------------------------------
LOADERS: dict[str, Callable[[Path], wf.WorldModel]] = {
    "WorldModel.from_pretrained(Path)": lambda d: wf.WorldModel.from_pretrained(d),
    "WorldModel.from_pretrained(str)": lambda d: wf.WorldModel.from_pretrained(str(d)),
    "ToyModel.from_pretrained": lambda d: ToyModel.from_pretrained(d),
    "create_world_model(str)": lambda d: wf.create_world_model(str(d)),
    "create_world_model(Path)": lambda d: wf.create_world_model(Path(d)),
    "load_pretrained": lambda d: wf.load_pretrained(d),
}


@pytest.mark.parametrize("loader", LOADERS.values(), ids=list(LOADERS))
def test_round_trip_is_bit_exact(
    toy: ToyModel, saved: Path, batch: wf.Batch, loader: Callable[[Path], wf.WorldModel]
) -> None:
    loaded = loader(saved)
    assert type(loaded) is ToyModel
    assert loaded is not toy
    assert loaded.config == toy.config
    assert loaded.component_specs == {}
    _assert_same_weights(toy, loaded)
    _assert_same_outputs(toy, loaded, batch)


def test_round_trip_of_trained_weights(toy: ToyModel, batch: wf.Batch, tmp_path: Path) -> None:
    for _ in range(2):  # a few plain SGD steps: weights no longer at their initial values
        toy.zero_grad()
        toy.loss(batch).loss.backward()
        with torch.no_grad():
            for p in toy.parameters():
                p -= 0.05 * p.grad
    toy.save_pretrained(tmp_path / "trained")
    loaded = wf.WorldModel.from_pretrained(tmp_path / "trained")
    _assert_same_weights(toy, loaded)
    _assert_same_outputs(toy, loaded, batch)


def test_saved_layout_and_metadata(toy: ToyModel, saved: Path) -> None:
    assert {p.name for p in saved.iterdir()} == SAVED_FILES
    assert _leftovers(saved.parent, saved.name) == []

    config = _read(saved / "config.json")
    assert config == {
        "model_type": "toy",
        "config": toy.config.to_dict(),
        "component_overrides": {},
    }
    meta = _read(saved / "metadata.json")
    weights = saved / "model.safetensors"
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["contract_version"] == CONTRACT_VERSION
    assert meta["library_version"] == wf.__version__
    assert meta["torch_version"] == torch.__version__
    assert meta["model_type"] == "toy"
    assert meta["weights_file"] == "model.safetensors"
    assert meta["weights_bytes"] == weights.stat().st_size
    assert meta["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()


def test_other_family_round_trips_and_loads_by_its_class(
    other_family: type[OtherModel], batch: wf.Batch, tmp_path: Path
) -> None:
    model = wf.create_world_model(OTHER_FAMILY, obs_shape=(OBS_DIM,), action_dim=ACTION_DIM)
    model.save_pretrained(tmp_path / "other")
    for loaded in (
        other_family.from_pretrained(tmp_path / "other"),
        wf.WorldModel.from_pretrained(tmp_path / "other"),
    ):
        assert type(loaded) is other_family
        _assert_same_weights(model, loaded)
        assert torch.equal(model.loss(batch).loss, loaded.loss(batch).loss)


def test_create_world_model_from_directory_rejects_config_overrides(saved: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"loads a saved model; it takes no config overrides, got \['hidden'\]"
    ):
        wf.create_world_model(saved, hidden=8)


# -- 2. wrong family ----------------------------------------------------------------------------
def test_loading_as_the_wrong_family_names_both(
    saved: Path, other_family: type[OtherModel], tmp_path: Path
) -> None:
    with pytest.raises(SerializationError) as info:
        other_family.from_pretrained(saved)
    msg = str(info.value)
    assert "'toy'" in msg and "ToyModel" in msg  # found
    assert "OtherModel" in msg and OTHER_FAMILY in msg  # expected

    other = wf.create_world_model(OTHER_FAMILY, obs_shape=(OBS_DIM,), action_dim=ACTION_DIM)
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(SerializationError) as info:
        ToyModel.from_pretrained(tmp_path / "other")
    msg = str(info.value)
    assert repr(OTHER_FAMILY) in msg and "OtherModel" in msg
    assert "ToyModel" in msg and "toy" in msg.split("expected", 1)[1]


def test_model_type_disagreement_between_files(saved: Path) -> None:
    _edit(saved / "metadata.json", model_type="toy-latent")
    with pytest.raises(
        SerializationError,
        match=r"config.json says model type 'toy', metadata.json says 'toy-latent'",
    ):
        wf.WorldModel.from_pretrained(saved)


# -- 3. versions --------------------------------------------------------------------------------
def test_newer_format_version_asks_for_an_upgrade(saved: Path) -> None:
    newer = FORMAT_VERSION + 1
    _edit(saved / "metadata.json", format_version=newer)
    with pytest.raises(SerializationError) as info:
        wf.WorldModel.from_pretrained(saved)
    msg = str(info.value)
    assert f"format version {newer}" in msg
    assert f"<= {FORMAT_VERSION}" in msg
    assert "Upgrade worldflux" in msg


def test_newer_contract_version_asks_for_an_upgrade(saved: Path) -> None:
    newer = CONTRACT_VERSION + 1
    _edit(saved / "metadata.json", contract_version=newer)
    with pytest.raises(SerializationError) as info:
        ToyModel.from_pretrained(saved)
    msg = str(info.value)
    assert f"contract {newer}" in msg
    assert f"<= {CONTRACT_VERSION}" in msg
    assert "Upgrade worldflux" in msg


def test_older_versions_still_load(saved: Path, toy: ToyModel) -> None:
    # Equal versions load; the check is "newer than supported", not "different".
    _edit(saved / "metadata.json", format_version=FORMAT_VERSION, contract_version=CONTRACT_VERSION)
    _assert_same_weights(toy, wf.WorldModel.from_pretrained(saved))


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("format_version", "1", "expected int, got '1'"),
        ("format_version", True, "expected int, got True"),
        ("weights_bytes", None, "expected int, got None"),
        ("weights_sha256", 5, "expected str, got 5"),
    ],
)
def test_ill_typed_metadata_fields(saved: Path, field: str, value: Any, expected: str) -> None:
    _edit(saved / "metadata.json", **{field: value})
    with pytest.raises(SerializationError) as info:
        wf.WorldModel.from_pretrained(saved)
    assert f"field {field!r} {expected}" in str(info.value)


def test_missing_metadata_field(saved: Path) -> None:
    meta = _read(saved / "metadata.json")
    del meta["weights_sha256"]
    _write(saved / "metadata.json", meta)
    with pytest.raises(SerializationError, match="missing field 'weights_sha256'"):
        wf.WorldModel.from_pretrained(saved)


# -- 4. missing and corrupt files ---------------------------------------------------------------
def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(SerializationError, match="no such model directory"):
        wf.WorldModel.from_pretrained(tmp_path / "nope")


def test_missing_weights(saved: Path) -> None:
    (saved / "model.safetensors").unlink()
    with pytest.raises(SerializationError, match=r"weights file model\.safetensors is missing"):
        wf.WorldModel.from_pretrained(saved)


def test_truncated_weights_name_expected_and_found_bytes(saved: Path) -> None:
    weights = saved / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(SerializationError) as info:
        wf.WorldModel.from_pretrained(saved)
    msg = str(info.value)
    assert f"expected {len(data)} bytes, found {len(data) // 2}" in msg
    assert "truncated" in msg


def test_flipped_bytes_fail_the_checksum(saved: Path) -> None:
    weights = saved / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # inside the tensor data; the file still parses as safetensors
    weights.write_bytes(bytes(data))
    with pytest.raises(SerializationError, match="checksum mismatch; the file is corrupt"):
        wf.WorldModel.from_pretrained(saved)


def test_unreadable_safetensors_with_matching_checksum(saved: Path) -> None:
    weights = saved / "model.safetensors"
    weights.write_bytes(b"this is not a safetensors file")
    _edit(
        saved / "metadata.json",
        weights_bytes=weights.stat().st_size,
        weights_sha256=hashlib.sha256(weights.read_bytes()).hexdigest(),
    )
    with pytest.raises(SerializationError, match="unreadable safetensors file"):
        wf.WorldModel.from_pretrained(saved)


def test_weights_file_must_stay_inside_the_directory(saved: Path) -> None:
    _edit(saved / "metadata.json", weights_file="../model.safetensors")
    with pytest.raises(
        SerializationError,
        match=r"weights_file must be a plain file name, got '\.\./model\.safetensors'",
    ):
        wf.WorldModel.from_pretrained(saved)


@pytest.mark.parametrize("name", ["config.json", "metadata.json"])
def test_missing_json_file(saved: Path, name: str) -> None:
    (saved / name).unlink()
    with pytest.raises(
        SerializationError, match=rf"missing {re.escape(name)}; not a saved WorldFlux model"
    ):
        wf.WorldModel.from_pretrained(saved)


@pytest.mark.parametrize("name", ["config.json", "metadata.json"])
def test_invalid_json(saved: Path, name: str) -> None:
    (saved / name).write_text('{"model_type": "toy",', encoding="utf-8")
    with pytest.raises(SerializationError, match=rf"{re.escape(name)}: not valid JSON"):
        wf.WorldModel.from_pretrained(saved)


@pytest.mark.parametrize("name", ["config.json", "metadata.json"])
def test_json_that_is_not_an_object(saved: Path, name: str) -> None:
    (saved / name).write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(SerializationError, match="expected a JSON object, got list"):
        wf.WorldModel.from_pretrained(saved)


# -- 5. config problems -------------------------------------------------------------------------
def test_weights_that_do_not_fit_the_config_list_every_mismatch(saved: Path) -> None:
    cfg = _read(saved / "config.json")
    cfg["config"].update(latent_dim=12, hidden=48)
    _write(saved / "config.json", cfg)

    with pytest.raises(SerializationError) as info:
        wf.WorldModel.from_pretrained(saved)
    msg = str(info.value)
    assert "weights do not fit the 'toy' model built from its config" in msg
    assert "shape mismatches" in msg

    old = _toy().state_dict()
    new = _toy(latent_dim=12, hidden=48).state_dict()
    mismatched = [k for k in old if old[k].shape != new[k].shape]
    assert "dynamics_model.inp.weight" in mismatched
    for key in mismatched:
        assert f"{key}: model {list(new[key].shape)}, file {list(old[key].shape)}" in msg
    unchanged = [k for k in old if k not in mismatched]
    assert unchanged  # e.g. decoder.obs.2.bias [4]
    for key in unchanged:
        assert f"{key}:" not in msg


def test_unknown_config_field_suggests_the_closest(saved: Path) -> None:
    cfg = _read(saved / "config.json")
    cfg["config"]["latnt_dim"] = cfg["config"].pop("latent_dim")
    _write(saved / "config.json", cfg)
    with pytest.raises(SerializationError) as info:
        wf.WorldModel.from_pretrained(saved)
    msg = str(info.value)
    assert "config.json" in msg
    assert "'latnt_dim'" in msg
    assert "Did you mean 'latent_dim'?" in msg


def test_ill_typed_config_field(saved: Path) -> None:
    cfg = _read(saved / "config.json")
    cfg["config"]["latent_dim"] = "8"
    _write(saved / "config.json", cfg)
    with pytest.raises(SerializationError, match=r"ToyConfig\.latent_dim: expected int, got '8'"):
        wf.WorldModel.from_pretrained(saved)


def test_unknown_model_type_mentions_plugins(saved: Path) -> None:
    _edit(saved / "config.json", model_type="no-such-family")
    _edit(saved / "metadata.json", model_type="no-such-family")
    with pytest.raises(SerializationError) as info:
        wf.WorldModel.from_pretrained(saved)
    msg = str(info.value)
    assert "Unknown world-model family 'no-such-family'" in msg
    assert "'toy'" in msg  # the known families are listed
    assert "plugin" in msg


# -- 6. component overrides ---------------------------------------------------------------------
def test_registered_component_override_round_trips(batch: wf.Batch, tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = _toy(component_overrides={"action_conditioner": "toy-recording-conditioner"})
    assert isinstance(model.action_conditioner, RecordingConditioner)
    model.save_pretrained(tmp_path / "rec")
    assert _read(tmp_path / "rec" / "config.json")["component_overrides"] == {
        "action_conditioner": "toy-recording-conditioner"
    }
    for loaded in (
        wf.WorldModel.from_pretrained(tmp_path / "rec"),
        wf.create_world_model(tmp_path / "rec"),
    ):
        assert type(loaded.action_conditioner) is RecordingConditioner
        assert loaded.component_specs == {"action_conditioner": "toy-recording-conditioner"}
        _assert_same_weights(model, loaded)
    # The loaded override is the one both the rollout and loss() paths call.
    RecordingConditioner.calls.clear()
    _assert_same_outputs(model, loaded, batch)
    assert "rollout" in RecordingConditioner.calls and "loss" in RecordingConditioner.calls
    RecordingConditioner.calls.clear()


def test_registered_class_override_is_saved_by_name(tmp_path: Path) -> None:
    model = _toy(component_overrides={"action_conditioner": RecordingConditioner})
    model.save_pretrained(tmp_path / "rec")
    assert _read(tmp_path / "rec" / "config.json")["component_overrides"] == {
        "action_conditioner": "toy-recording-conditioner"
    }
    loaded = wf.WorldModel.from_pretrained(tmp_path / "rec")  # no trust_imports needed
    assert type(loaded.action_conditioner) is RecordingConditioner


def test_import_path_override_needs_trust_imports(batch: wf.Batch, tmp_path: Path) -> None:
    spec = "toy_model:ToyConditioner"
    model = _toy(component_overrides={"action_conditioner": spec})
    target = tmp_path / "imported"
    model.save_pretrained(target)
    assert _read(target / "config.json")["component_overrides"] == {"action_conditioner": spec}

    for load in (
        lambda: wf.WorldModel.from_pretrained(target),
        lambda: ToyModel.from_pretrained(target, trust_imports=False),
        lambda: wf.create_world_model(target),
    ):
        with pytest.raises(WorldFluxError) as info:
            load()
        msg = str(info.value)
        assert "trust_imports=True" in msg
        assert repr(spec) in msg
        assert "'action_conditioner'" in msg

    loaded = wf.WorldModel.from_pretrained(target, trust_imports=True)
    assert type(loaded.action_conditioner) is ToyConditioner
    assert loaded.component_specs == {"action_conditioner": spec}
    _assert_same_weights(model, loaded)
    _assert_same_outputs(model, loaded, batch)


def test_instance_override_of_a_registered_class_round_trips(
    batch: wf.Batch, tmp_path: Path
) -> None:
    config = _toy().config
    model = _toy(component_overrides={"action_conditioner": RecordingConditioner(config)})
    assert model.component_specs == {"action_conditioner": "toy-recording-conditioner"}
    model.save_pretrained(tmp_path / "inst")
    loaded = wf.WorldModel.from_pretrained(tmp_path / "inst")
    assert type(loaded.action_conditioner) is RecordingConditioner
    _assert_same_weights(model, loaded)


def test_instance_override_of_a_local_class_is_refused_at_save(tmp_path: Path) -> None:
    """A class defined inside a function has no import path, so no loader can rebuild it.

    Saving must fail up front (naming the role and the class) rather than write a directory
    that no ``from_pretrained`` call (with or without ``trust_imports``) can ever load.
    """

    class LocalConditioner(ToyConditioner):
        pass

    config = _toy().config
    model = _toy(component_overrides={"action_conditioner": LocalConditioner(config)})
    # In memory the override works.
    assert type(model.action_conditioner) is LocalConditioner

    target = tmp_path / "local"
    with pytest.raises(SerializationError) as info:
        model.save_pretrained(target)
    msg = str(info.value)
    assert "action_conditioner" in msg
    assert "LocalConditioner" in msg
    assert not target.exists()
    assert _leftovers(tmp_path, "local") == []


# -- 7. atomicity and safety --------------------------------------------------------------------
def test_saving_over_a_saved_model_replaces_it(toy: ToyModel, saved: Path, batch: wf.Batch) -> None:
    torch.manual_seed(99)
    newer = _toy()
    assert not torch.equal(
        newer.state_dict()["decoder.obs.0.weight"], toy.state_dict()["decoder.obs.0.weight"]
    )
    newer.save_pretrained(saved)
    loaded = wf.WorldModel.from_pretrained(saved)
    _assert_same_weights(newer, loaded)
    _assert_same_outputs(newer, loaded, batch)
    assert {p.name for p in saved.iterdir()} == SAVED_FILES
    assert _leftovers(saved.parent, saved.name) == []


def test_saving_into_an_empty_directory(toy: ToyModel, tmp_path: Path) -> None:
    target = tmp_path / "empty"
    target.mkdir()
    toy.save_pretrained(target)
    _assert_same_weights(toy, wf.WorldModel.from_pretrained(target))
    assert _leftovers(tmp_path, "empty") == []


def test_saving_creates_missing_parents(toy: ToyModel, tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "model"
    toy.save_pretrained(target)
    _assert_same_weights(toy, wf.WorldModel.from_pretrained(target))


def test_saving_over_an_unrelated_directory_is_refused(toy: ToyModel, tmp_path: Path) -> None:
    target = tmp_path / "project"
    target.mkdir()
    (target / "notes.txt").write_text("keep me", encoding="utf-8")
    (target / "sub").mkdir()
    (target / "sub" / "data.csv").write_text("1,2\n", encoding="utf-8")

    with pytest.raises(SerializationError) as info:
        toy.save_pretrained(target)
    msg = str(info.value)
    assert "not a saved WorldFlux model" in msg
    assert "metadata.json" in msg
    assert "refusing to replace it" in msg

    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == [
        "notes.txt",
        "sub",
        "sub/data.csv",
    ]
    assert (target / "notes.txt").read_text(encoding="utf-8") == "keep me"
    assert (target / "sub" / "data.csv").read_text(encoding="utf-8") == "1,2\n"
    assert _leftovers(tmp_path, "project") == []


def test_saving_over_a_file_is_refused(toy: ToyModel, tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.write_text("a file", encoding="utf-8")
    with pytest.raises(SerializationError, match="exists and is not a directory"):
        toy.save_pretrained(target)
    assert target.read_text(encoding="utf-8") == "a file"
    assert _leftovers(tmp_path, "model") == []


def test_failed_write_keeps_the_previous_model(
    toy: ToyModel, saved: Path, batch: wf.Batch, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {p.name: p.read_bytes() for p in saved.iterdir()}

    def broken_save_file(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(serialization, "save_file", broken_save_file)
    torch.manual_seed(99)
    with pytest.raises(OSError, match="disk full"):
        _toy().save_pretrained(saved)
    monkeypatch.undo()

    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    assert _leftovers(saved.parent, saved.name) == []
    loaded = wf.WorldModel.from_pretrained(saved)
    _assert_same_weights(toy, loaded)
    _assert_same_outputs(toy, loaded, batch)


def test_failed_first_write_leaves_nothing(
    toy: ToyModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_save_file(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(serialization, "save_file", broken_save_file)
    with pytest.raises(KeyboardInterrupt):
        toy.save_pretrained(tmp_path / "fresh")
    assert list(tmp_path.iterdir()) == []


def test_failed_rename_into_place_keeps_the_previous_model(
    toy: ToyModel, saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If moving the new files into place fails after the old model was moved aside, the old
    model must be put back under the target name (not left in a hidden ``.toy.old-*``)."""
    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    real_rename = serialization.os.rename

    def rename(src: Any, dst: Any) -> None:
        if Path(src).name.startswith(f".{saved.name}.tmp-"):
            raise OSError("simulated failure moving the new model into place")
        real_rename(src, dst)

    monkeypatch.setattr(serialization.os, "rename", rename)
    torch.manual_seed(99)
    with pytest.raises(OSError, match="simulated failure"):
        _toy().save_pretrained(saved)
    monkeypatch.undo()

    assert saved.is_dir(), (
        f"previous model lost; parent holds {sorted(p.name for p in saved.parent.iterdir())}"
    )
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    assert _leftovers(saved.parent, saved.name) == []
    _assert_same_weights(toy, wf.WorldModel.from_pretrained(saved))


# -- 8. no pickle -------------------------------------------------------------------------------
def test_saved_directory_has_no_pickle_files(saved: Path) -> None:
    names = {p.name for p in saved.rglob("*")}
    assert names == SAVED_FILES
    assert not [n for n in names if n.endswith((".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt"))]
    # safetensors: 8-byte little-endian header length, then a JSON header.
    raw = (saved / "model.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_len])
    assert header["__metadata__"] == {"format": "pt", "worldflux_model_type": "toy"}


def test_loading_never_unpickles(
    toy: ToyModel, saved: Path, batch: wf.Batch, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("loading a saved model must not unpickle")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    for loader in LOADERS.values():
        loaded = loader(saved)
        _assert_same_weights(toy, loaded)
    monkeypatch.undo()
    _assert_same_outputs(toy, loaded, batch)
