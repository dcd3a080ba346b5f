"""Entry-point plugins (``worldflux.core.plugins``) with real installed distributions.

Each scenario writes plugin packages plus their ``*.dist-info`` folders (``METADATA`` and
``entry_points.txt``) into a temporary site directory and imports worldflux in a fresh Python
process with that directory on ``PYTHONPATH``, so ``importlib.metadata`` discovers the plugins
exactly as it would discover pip-installed ones. The child prints its findings as JSON.

Several plugins share one site directory (one subprocess) per scenario to keep the file fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import worldflux
from worldflux.core.plugins import PLUGIN_API_VERSION

COMPATIBLE = {
    "plugin_api_version": PLUGIN_API_VERSION,
    "worldflux_version_range": ">=0.1",
    "capabilities": ["world_model"],
}
RESULT_MARKER = "@@WORLDFLUX-PLUGIN-TEST@@"

# A tiny but complete deterministic linear latent family. `family_plugin` prepends ``FAMILY``,
# ``ALIASES`` and ``MANIFEST`` and appends the registration code and the ``register`` hook.
FAMILY_BODY = """
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

import worldflux as wf


@dataclass
class LinConfig(wf.WorldModelConfig):
    latent_dim: int = 4
    presets: ClassVar[dict[str, dict[str, Any]]] = {"tiny": {"latent_dim": 2}}


class LinEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.net = nn.Linear(config.obs_shape[0], config.latent_dim)

    def forward(self, obs):
        return self.net(obs.float())


class LinConditioner(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.net = nn.Linear(config.action_dim, config.latent_dim)

    def forward(self, action, conditions=None):
        return self.net(action)


class LinDynamics(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.a = nn.Linear(config.latent_dim, config.latent_dim, bias=False)

    def forward(self, state, features, *, deterministic=False, noise=None):
        return wf.State({"z": self.a(state["z"]) + features})


class LinDecoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.obs = nn.Linear(config.latent_dim, config.obs_shape[0])
        self.reward = nn.Linear(config.latent_dim, 1)
        self.cont = nn.Linear(config.latent_dim, 1)

    def forward(self, state):
        z = state["z"]
        return wf.ModelOutput(
            {
                "obs": self.obs(z),
                "reward": self.reward(z).squeeze(-1),
                "continue": torch.sigmoid(self.cont(z).squeeze(-1)),
            }
        )


class LinearModel(wf.WorldModel):
    component_defaults: ClassVar[Mapping[str, Any]] = {
        "observation_encoder": LinEncoder,
        "action_conditioner": LinConditioner,
        "dynamics_model": LinDynamics,
        "decoder": LinDecoder,
    }

    def state_spec(self):
        return {"z": (self.config.latent_dim,)}

    def initial_state(self, batch_size, device=None):
        return wf.State({"z": torch.zeros(batch_size, self.config.latent_dim, device=device)})

    def encode(self, obs):
        return wf.State({"z": self.observation_encoder(self.check_obs(obs).obs)})

    def update(self, state, action, obs):
        self.check_state(state)
        self.check_action(action, state.batch_size)
        return self.encode(obs)

    def transition(self, state, action, conditions=None, deterministic=False, noise=None):
        self.check_state(state)
        features = self.action_conditioner(self.check_action(action, state.batch_size), conditions)
        return self.dynamics_model(state, features, deterministic=deterministic, noise=noise)

    def decode(self, state):
        return self.decoder(self.check_state(state))

    def loss(self, batch):
        self.check_batch(batch)
        state = self.encode(batch.obs[:, 0])
        errors = []
        for t in range(batch.seq_len):
            state = self.transition(state, batch.actions[:, t])
            out = self.decode(state)
            errors.append(((out.predictions["obs"] - batch.obs[:, t + 1].float()) ** 2).mean(-1))
            errors.append((out.predictions["reward"] - batch.rewards[:, t]) ** 2)
        total = torch.stack(errors).mean()
        return wf.LossOutput(total, {"mse": total.detach()})
"""


def family_plugin(
    family: str,
    manifest: Any = COMPATIBLE,
    *,
    register_at_import: bool = True,
    aliases: tuple[str, ...] = (),
) -> str:
    """Source of a plugin module defining the linear family; it registers ``family`` at module
    import (or inside its ``register`` hook) and its hook returns ``manifest``."""
    head = f"FAMILY = {family!r}\nALIASES = {aliases!r}\nMANIFEST = {manifest!r}\n"
    registration = "wf.WorldModelRegistry.register(FAMILY, LinConfig, aliases=ALIASES)(LinearModel)"
    if register_at_import:
        tail = f"\n{registration}\n\n\ndef register():\n    return MANIFEST\n"
    else:
        tail = f"\n\ndef register():\n    {registration}\n    return MANIFEST\n"
    return head + FAMILY_BODY + tail


def make_distribution(
    site: Path,
    name: str,
    source: str,
    entry_points: Mapping[str, Mapping[str, str]],
    version: str = "0.1.0",
) -> None:
    """Install package ``name`` (an ``__init__.py`` holding ``source``) into ``site`` with a
    ``dist-info`` declaring ``entry_points`` (``{group: {entry point name: "module:attr"}}``)."""
    package = site / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(source))
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    sections = []
    for group, eps in entry_points.items():
        lines = "".join(f"{ep} = {target}\n" for ep, target in eps.items())
        sections.append(f"[{group}]\n{lines}")
    (info / "entry_points.txt").write_text("\n".join(sections))


CHILD_PRELUDE = """
import json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import worldflux
    import_loaded_plugins = "worldflux.core.plugins" in __import__("sys").modules
    families = worldflux.WorldModelRegistry.families()  # the first lookup loads the plugins
from worldflux.core.plugins import PLUGIN_API_VERSION, plugin_records

result = {
    "warnings": [
        {"category": w.category.__name__, "message": str(w.message)} for w in caught
    ],
    "import_loaded_plugins": import_loaded_plugins,
    "families": {name: entry.source for name, entry in families.items()},
    "components": worldflux.ComponentRegistry.names(),
    "records": {
        r.name: {
            "group": r.group,
            "status": r.status,
            "reason": r.reason,
            "distribution": r.distribution,
            "families": r.families,
            "components": r.components,
        }
        for r in plugin_records()
    },
    "record_list": [
        {"name": r.name, "group": r.group, "status": r.status, "distribution": r.distribution}
        for r in plugin_records()
    ],
    "version": worldflux.__version__,
    "api": PLUGIN_API_VERSION,
}
"""


def run_child(sites: list[Path], code: str = "") -> dict[str, Any]:
    """Import worldflux in a fresh interpreter with ``sites`` first on ``PYTHONPATH``, run
    ``code`` (which may add entries to ``result``) and return ``result``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(s) for s in sites] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env.pop("PYTHONWARNINGS", None)
    script = (
        CHILD_PRELUDE + textwrap.dedent(code) + f"\nprint({RESULT_MARKER!r} + json.dumps(result))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=sites[0].parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"child failed:\n{proc.stdout}\n{proc.stderr}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0][len(RESULT_MARKER) :])


def plugin_warnings(result: dict[str, Any]) -> list[str]:
    return [w["message"] for w in result["warnings"] if w["category"] == "PluginWarning"]


def warning_for(result: dict[str, Any], ep_name: str) -> str:
    """The one PluginWarning about entry point ``ep_name``."""
    found = [m for m in plugin_warnings(result) if f"WorldFlux plugin {ep_name!r}" in m]
    assert len(found) == 1, plugin_warnings(result)
    return found[0]


# -- 1. compatible plugins: a family and a component ---------------------------------------

COMPONENT_PLUGIN = """
import torch
from torch import nn

import worldflux as wf


class ZeroConditioner(nn.Module):
    \"\"\"Ignores the action: dynamics features are always zero.\"\"\"

    def __init__(self, config):
        super().__init__()
        self.latent_dim = config.latent_dim

    def forward(self, action, conditions=None):
        return torch.zeros(action.shape[0], self.latent_dim)


def register():
    wf.ComponentRegistry.register("plug-zero-conditioner", role="action_conditioner")(
        ZeroConditioner
    )
    return {"plugin_api_version": 1, "worldflux_version_range": ">=0.1,<1"}
"""

GOOD_CHILD = """
import contextlib, io
import torch
import worldflux.cli

torch.manual_seed(0)
model = worldflux.create_world_model("plug-linear", obs_shape=(3,), action_dim=2)
tiny = worldflux.create_world_model("plug-linear:tiny", obs_shape=(3,), action_dim=2)
state = model.encode(torch.randn(2, 3))
actions = torch.randn(4, 2, 2)
traj = model.rollout(state, actions)
traj2 = model.rollout(state, -actions)
loss = model.loss(
    worldflux.Batch(
        obs=torch.randn(2, 5, 3),
        actions=torch.randn(2, 4, 2),
        rewards=torch.randn(2, 4),
        terminations=torch.zeros(2, 4, dtype=torch.bool),
        truncations=torch.zeros(2, 4, dtype=torch.bool),
    )
)
loss.loss.backward()

torch.manual_seed(0)
zeroed = worldflux.create_world_model(
    "plug-linear",
    obs_shape=(3,),
    action_dim=2,
    component_overrides={"action_conditioner": "plug-zero-conditioner"},
)
zstate = zeroed.encode(torch.randn(2, 3))
ztraj = zeroed.rollout(zstate, actions)
ztraj2 = zeroed.rollout(zstate, -actions)

out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = worldflux.cli.main(["info", "--json"])
result.update(
    model_class=type(model).__name__,
    model_module=type(model).__module__,
    model_type=model.model_type,
    tiny_latent=tiny.config.latent_dim,
    latent=model.config.latent_dim,
    state_shape=list(state["z"].shape),
    obs_pred_shape=list(traj.predictions["obs"].shape),
    reward_pred_shape=list(traj.predictions["reward"].shape),
    states_shape=list(traj.states["z"].shape),
    actions_matter=not torch.allclose(traj.predictions["obs"], traj2.predictions["obs"]),
    loss_finite=bool(torch.isfinite(loss.loss)),
    conditioner=type(zeroed.action_conditioner).__name__,
    component_specs=zeroed.component_specs,
    zeroed_actions_ignored=torch.equal(ztraj.predictions["obs"], ztraj2.predictions["obs"]),
    cli_code=code,
    info=json.loads(out.getvalue()),
    info_direct=worldflux.cli.collect_info()["plugins"],
)
"""


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    site = tmp_path_factory.mktemp("good-site")
    make_distribution(
        site,
        "wfplug_good",
        family_plugin("plug-linear"),
        {"worldflux.models": {"good": "wfplug_good:register"}},
    )
    make_distribution(
        site,
        "wfplug_comp",
        COMPONENT_PLUGIN,
        {"worldflux.components": {"zero-conditioner": "wfplug_comp:register"}},
        version="2.3.4",
    )
    return run_child([site], GOOD_CHILD)


def test_compatible_plugins_load_without_warnings(good: dict[str, Any]) -> None:
    assert plugin_warnings(good) == []
    assert good["import_loaded_plugins"] is False  # `import worldflux` stays light (no torch)
    assert good["records"]["good"] == {
        "group": "worldflux.models",
        "status": "loaded",
        "reason": "",
        "distribution": "wfplug_good 0.1.0",
        "families": ["plug-linear"],
        "components": [],
    }
    assert good["records"]["zero-conditioner"] == {
        "group": "worldflux.components",
        "status": "loaded",
        "reason": "",
        "distribution": "wfplug_comp 2.3.4",
        "families": [],
        "components": ["plug-zero-conditioner"],
    }
    assert good["families"]["plug-linear"] == "plugin good"
    assert good["components"]["plug-zero-conditioner"] == "action_conditioner"


def test_plugin_family_builds_encodes_and_rolls_out(good: dict[str, Any]) -> None:
    assert good["model_class"] == "LinearModel"
    assert good["model_module"] == "wfplug_good"
    assert good["model_type"] == "plug-linear"
    assert (good["latent"], good["tiny_latent"]) == (4, 2)
    assert good["state_shape"] == [2, 4]
    assert good["obs_pred_shape"] == [4, 2, 3]
    assert good["reward_pred_shape"] == [4, 2]
    assert good["states_shape"] == [5, 2, 4]  # initial state + one per action
    assert good["actions_matter"]
    assert good["loss_finite"]


def test_plugin_component_is_used_as_override(good: dict[str, Any]) -> None:
    assert good["conditioner"] == "ZeroConditioner"
    assert good["component_specs"] == {"action_conditioner": "plug-zero-conditioner"}
    assert good["zeroed_actions_ignored"]  # the override really drives the rollout


def test_info_lists_plugin_family_and_records(good: dict[str, Any]) -> None:
    assert good["cli_code"] == 0
    info = good["info"]
    assert info["plugin_api_version"] == PLUGIN_API_VERSION
    assert info["families"]["plug-linear"] == {
        "aliases": [],
        "presets": ["tiny"],
        "default_preset": None,
        "source": "plugin good",
    }
    assert info["components"]["plug-zero-conditioner"] == "action_conditioner"
    plugins = {p["name"]: p for p in info["plugins"]}
    assert plugins["good"]["status"] == "loaded"
    assert plugins["good"]["target"] == "wfplug_good:register"
    assert plugins["good"]["distribution"] == "wfplug_good 0.1.0"
    assert plugins["good"]["families"] == ["plug-linear"]
    assert plugins["zero-conditioner"]["status"] == "loaded"
    assert plugins["zero-conditioner"]["components"] == ["plug-zero-conditioner"]
    assert good["info_direct"] == info["plugins"]


# -- 2, 3, 6. incompatible and malformed manifests -------------------------------------------

INCOMPATIBLE: dict[str, tuple[Any, bool]] = {
    # entry point name: (manifest, register at import)
    "api99": ({**COMPATIBLE, "plugin_api_version": 99}, True),
    "api99-hook": ({**COMPATIBLE, "plugin_api_version": 99}, False),
    "too-new": ({**COMPATIBLE, "worldflux_version_range": "<0.0.1"}, True),
    "no-range": ({"plugin_api_version": PLUGIN_API_VERSION}, True),
    "not-mapping": ([PLUGIN_API_VERSION, ">=0.1"], True),
    "none-manifest": (None, False),
    "bad-range": ({**COMPATIBLE, "worldflux_version_range": "newest please"}, True),
    "str-api": ({**COMPATIBLE, "plugin_api_version": "latest"}, True),  # "1" is accepted
    "bool-api": ({**COMPATIBLE, "plugin_api_version": True}, True),
    "str-caps": ({**COMPATIBLE, "capabilities": "world_model"}, True),
}
COMPONENT_AT_IMPORT = """
import worldflux as wf
from torch import nn


@wf.ComponentRegistry.register("plug-old-conditioner", role="action_conditioner")
class OldConditioner(nn.Module):
    def forward(self, action, conditions=None):
        return action


def register():
    return {"plugin_api_version": 99, "worldflux_version_range": ">=0.1"}
"""


def family_name(ep: str) -> str:
    return f"fam-{ep}"


@pytest.fixture(scope="module")
def incompatible(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    site = tmp_path_factory.mktemp("incompatible-site")
    for ep, (manifest, at_import) in INCOMPATIBLE.items():
        module = "wfplug_" + ep.replace("-", "_")
        make_distribution(
            site,
            module,
            family_plugin(family_name(ep), manifest, register_at_import=at_import),
            {"worldflux.models": {ep: f"{module}:register"}},
        )
    make_distribution(
        site,
        "wfplug_oldcomp",
        COMPONENT_AT_IMPORT,
        {"worldflux.components": {"old-component": "wfplug_oldcomp:register"}},
    )
    make_distribution(  # entry point naming something that is not callable
        site,
        "wfplug_notcallable",
        "MANIFEST = {'plugin_api_version': 1, 'worldflux_version_range': '>=0.1'}\n",
        {"worldflux.models": {"not-callable": "wfplug_notcallable:MANIFEST"}},
    )
    make_distribution(  # a compatible neighbour still loads
        site,
        "wfplug_fine",
        family_plugin("fam-fine"),
        {"worldflux.models": {"fine": "wfplug_fine:register"}},
    )
    return run_child(
        [site],
        """
        import worldflux.core.plugins as plugins
        records_before = len(plugins.plugin_records())
        with warnings.catch_warnings(record=True) as again:
            warnings.simplefilter("always")
            worldflux.load_plugins()
        result["reload_warnings"] = [str(w.message) for w in again]
        result["reload_same_records"] = len(plugins.plugin_records()) == records_before
        """,
    )


@pytest.mark.parametrize("ep", ["api99", "api99-hook"])
def test_incompatible_plugin_api_version_is_skipped(incompatible: dict[str, Any], ep: str) -> None:
    message = warning_for(incompatible, ep)
    assert "skipped" in message
    assert "plugin API version 99" in message
    assert f"plugin API version {PLUGIN_API_VERSION}" in message
    assert incompatible["api"] == PLUGIN_API_VERSION
    record = incompatible["records"][ep]
    assert record["status"] == "skipped"
    assert "99" in record["reason"]
    assert record["families"] == []
    # staged at module import (or in the hook), then discarded
    assert family_name(ep) not in incompatible["families"]


def test_incompatible_component_plugin_is_not_registered(incompatible: dict[str, Any]) -> None:
    message = warning_for(incompatible, "old-component")
    assert "plugin API version 99" in message
    assert incompatible["records"]["old-component"]["status"] == "skipped"
    assert "plug-old-conditioner" not in incompatible["components"]


def test_version_range_excluding_this_worldflux_is_skipped(incompatible: dict[str, Any]) -> None:
    message = warning_for(incompatible, "too-new")
    assert "<0.0.1" in message
    assert incompatible["version"] == worldflux.__version__
    assert f"worldflux {worldflux.__version__}" in message
    assert incompatible["records"]["too-new"]["status"] == "skipped"
    assert family_name("too-new") not in incompatible["families"]


@pytest.mark.parametrize(
    ("ep", "expected"),
    [
        ("no-range", "worldflux_version_range"),
        ("not-mapping", "manifest mapping, got list"),
        ("none-manifest", "manifest mapping, got NoneType"),
        ("bad-range", "newest please"),
        ("str-api", "plugin_api_version"),
        ("bool-api", "plugin_api_version"),
        ("str-caps", "capabilities"),
        ("not-callable", "callable"),
    ],
)
def test_malformed_manifest_is_skipped(
    incompatible: dict[str, Any], ep: str, expected: str
) -> None:
    message = warning_for(incompatible, ep)
    assert "PluginError" in message
    assert expected in message
    record = incompatible["records"][ep]
    assert record["status"] == "failed"
    assert expected in record["reason"]
    assert family_name(ep) not in incompatible["families"]


def test_compatible_neighbour_of_incompatible_plugins_loads(incompatible: dict[str, Any]) -> None:
    assert incompatible["records"]["fine"]["status"] == "loaded"
    assert incompatible["families"]["fam-fine"] == "plugin fine"
    plugin_families = {f for f in incompatible["families"] if f.startswith("fam-")}
    assert plugin_families == {"fam-fine"}
    # one warning per rejected entry point, each naming its distribution
    assert len(plugin_warnings(incompatible)) == len(INCOMPATIBLE) + 2
    assert "from wfplug_api99 0.1.0" in warning_for(incompatible, "api99")


def test_load_plugins_again_does_not_retry_or_rewarn(incompatible: dict[str, Any]) -> None:
    assert incompatible["reload_warnings"] == []
    assert incompatible["reload_same_records"]


# -- 4, 5. broken plugins and name conflicts --------------------------------------------------

RAISES_IN_HOOK = """
import worldflux as wf


def register():
    raise RuntimeError("hook exploded on purpose")
"""
RAISES_AT_IMPORT = (
    family_plugin("fam-import-boom") + '\nraise ImportError("module import exploded on purpose")\n'
)
# Registers the *same class* as plugin alpha under alpha's name: passes `register`, so the clash
# is found by the registry's conflict check before publishing.
SAME_CLASS_AGAIN = """
import worldflux as wf
from wfplug_alpha import LinConfig, LinearModel


def register():
    wf.WorldModelRegistry.register("shared-name", LinConfig)(LinearModel)
    return {"plugin_api_version": 1, "worldflux_version_range": ">=0.1"}
"""


def conditioner_plugin(component: str) -> str:
    return f"""
import worldflux as wf
from torch import nn


@wf.ComponentRegistry.register({component!r}, role="action_conditioner")
class Conditioner(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.net = nn.Linear(config.action_dim, config.latent_dim)

    def forward(self, action, conditions=None):
        return self.net(action)


def register():
    return {{"plugin_api_version": 1, "worldflux_version_range": ">=0.1"}}
"""


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    first = tmp_path_factory.mktemp("broken-site-first")
    second = tmp_path_factory.mktemp("broken-site-second")
    models = "worldflux.models"
    make_distribution(
        first,
        "wfplug_hookboom",
        RAISES_IN_HOOK,
        {models: {"hook-boom": "wfplug_hookboom:register"}},
    )
    make_distribution(
        first,
        "wfplug_importboom",
        RAISES_AT_IMPORT,
        {models: {"import-boom": "wfplug_importboom:register"}},
    )
    make_distribution(
        first, "wfplug_missing", "", {models: {"missing-attr": "wfplug_missing:register"}}
    )
    make_distribution(
        first,
        "wfplug_alpha",
        family_plugin("shared-name"),
        {models: {"alpha": "wfplug_alpha:register"}},
    )
    make_distribution(
        first,
        "wfplug_survivor",
        family_plugin("fam-survivor", register_at_import=False),
        {models: {"survivor": "wfplug_survivor:register"}},
    )
    make_distribution(
        first,
        "wfplug_comp_a",
        conditioner_plugin("plug-dup-conditioner"),
        {"worldflux.components": {"comp-a": "wfplug_comp_a:register"}},
    )
    # `second` comes after `first` on sys.path, so its entry points load later.
    make_distribution(
        second,
        "wfplug_beta",
        family_plugin("shared-name"),
        {models: {"beta": "wfplug_beta:register"}},
    )
    make_distribution(
        second,
        "wfplug_gamma",
        family_plugin("shared-name", register_at_import=False),
        {models: {"gamma": "wfplug_gamma:register"}},
    )
    make_distribution(
        second, "wfplug_delta", SAME_CLASS_AGAIN, {models: {"delta": "wfplug_delta:register"}}
    )
    make_distribution(
        second,
        "wfplug_epsilon",
        family_plugin("fam-epsilon", aliases=("shared-name",)),
        {models: {"epsilon": "wfplug_epsilon:register"}},
    )
    make_distribution(
        second,
        "wfplug_comp_b",
        conditioner_plugin("plug-dup-conditioner"),
        {"worldflux.components": {"comp-b": "wfplug_comp_b:register"}},
    )
    return run_child(
        [first, second],
        """
        import torch
        model = worldflux.create_world_model(
            "shared-name",
            obs_shape=(3,),
            action_dim=2,
            component_overrides={"action_conditioner": "plug-dup-conditioner"},
        )
        survivor = worldflux.create_world_model("fam-survivor", obs_shape=(3,), action_dim=2)
        traj = survivor.rollout(survivor.initial_state(2), torch.zeros(3, 2, 2))
        result.update(
            shared_module=type(model).__module__,
            conditioner_module=type(model.action_conditioner).__module__,
            survivor_obs=list(traj.predictions["obs"].shape),
        )
        """,
    )


@pytest.mark.parametrize(
    ("ep", "text"),
    [
        ("hook-boom", "RuntimeError: hook exploded on purpose"),
        ("import-boom", "ImportError: module import exploded on purpose"),
        ("missing-attr", "AttributeError"),
    ],
)
def test_raising_plugin_is_skipped_with_the_exception(
    broken: dict[str, Any], ep: str, text: str
) -> None:
    message = warning_for(broken, ep)
    assert "failed to load and was skipped" in message
    assert text in message
    record = broken["records"][ep]
    assert record["status"] == "failed"
    assert text in record["reason"]


def test_registrations_before_an_import_error_are_discarded(broken: dict[str, Any]) -> None:
    assert "fam-import-boom" not in broken["families"]


def test_other_plugins_still_load_next_to_broken_ones(broken: dict[str, Any]) -> None:
    assert broken["records"]["survivor"]["status"] == "loaded"
    assert broken["records"]["alpha"]["status"] == "loaded"
    assert broken["families"]["fam-survivor"] == "plugin survivor"
    assert broken["survivor_obs"] == [3, 2, 3]


@pytest.mark.parametrize("ep", ["beta", "gamma", "epsilon"])
def test_second_plugin_with_a_taken_family_name_is_skipped(broken: dict[str, Any], ep: str) -> None:
    message = warning_for(broken, ep)
    assert "'shared-name'" in message
    assert "already used" in message
    assert "plugin alpha" in message
    record = broken["records"][ep]
    # a different class under a taken name is refused by `register` itself
    assert record["status"] == "failed"
    assert record["families"] == []
    # the first registration wins and stays intact
    assert broken["families"]["shared-name"] == "plugin alpha"
    assert broken["shared_module"] == "wfplug_alpha"
    assert broken["records"]["alpha"]["families"] == ["shared-name"]
    assert "fam-epsilon" not in broken["families"]


def test_same_class_registered_again_under_its_name_is_a_harmless_repeat(
    broken: dict[str, Any],
) -> None:
    # "delta" re-registers alpha's class under alpha's family name: no warning, nothing changes
    assert not [w for w in broken["warnings"] if "'delta'" in w["message"]]
    assert broken["records"]["delta"]["status"] == "loaded"
    assert broken["families"]["shared-name"] == "plugin alpha"
    assert broken["shared_module"] == "wfplug_alpha"


def test_second_plugin_with_a_taken_component_name_is_skipped(broken: dict[str, Any]) -> None:
    message = warning_for(broken, "comp-b")
    assert "'plug-dup-conditioner'" in message
    assert "already registered" in message
    assert "wfplug_comp_a" in message
    assert broken["records"]["comp-b"]["status"] == "failed"
    assert broken["records"]["comp-a"]["components"] == ["plug-dup-conditioner"]
    assert broken["conditioner_module"] == "wfplug_comp_a"


# -- regressions: same entry point name in two distributions; a skipped plugin's side effects ---

HIJACK = """
import worldflux as wf
from wfplug_base import LinConfig, LinearModel

wf.WorldModelRegistry.register("fam-hijack", LinConfig)(LinearModel)


def register():
    return {"plugin_api_version": 99, "worldflux_version_range": ">=0.1"}
"""


@pytest.fixture(scope="module")
def regressions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    first = tmp_path_factory.mktemp("regressions-site-first")
    second = tmp_path_factory.mktemp("regressions-site-second")
    make_distribution(
        first,
        "wfplug_one",
        family_plugin("fam-one"),
        {"worldflux.models": {"same-ep": "wfplug_one:register"}},
    )
    make_distribution(  # same entry point name as wfplug_one
        second,
        "wfplug_two",
        family_plugin("fam-two"),
        {"worldflux.models": {"same-ep": "wfplug_two:register"}},
    )
    make_distribution(
        first,
        "wfplug_base",
        family_plugin("fam-base"),
        {"worldflux.models": {"base": "wfplug_base:register"}},
    )
    make_distribution(
        second, "wfplug_hijack", HIJACK, {"worldflux.models": {"hijack": "wfplug_hijack:register"}}
    )
    return run_child(
        [first, second],
        """
        import tempfile
        model = worldflux.create_world_model("fam-base", obs_shape=(3,), action_dim=2)
        result["base_model_type"] = model.model_type
        result["base_config_model_type"] = model.config.model_type
        directory = tempfile.mkdtemp() + "/saved"
        model.save_pretrained(directory)
        try:
            worldflux.load_pretrained(directory)
            result["reload"] = "ok"
        except Exception as exc:
            result["reload"] = f"{type(exc).__name__}: {exc}"
        """,
    )


def test_same_entry_point_name_in_two_distributions_loads_both(
    regressions: dict[str, Any],
) -> None:
    # Records used to be keyed by (group, entry point name) only, so the second distribution
    # was dropped without a record or a warning.
    same = sorted(r["distribution"] for r in regressions["record_list"] if r["name"] == "same-ep")
    assert same == ["wfplug_one 0.1.0", "wfplug_two 0.1.0"]
    assert {"fam-one", "fam-two"} <= set(regressions["families"])
    assert plugin_warnings(regressions) == [warning_for(regressions, "hijack")]


def test_skipped_plugin_does_not_rename_a_published_family(regressions: dict[str, Any]) -> None:
    # A skipped plugin re-registering a published class under a new name used to set that
    # class's model_type while staging, so its models saved as an unknown family.
    assert regressions["records"]["base"]["status"] == "loaded"
    assert regressions["records"]["hijack"]["status"] == "skipped"
    assert "fam-hijack" not in regressions["families"]
    assert regressions["base_model_type"] == "fam-base"
    assert regressions["base_config_model_type"] == "fam-base"
    assert regressions["reload"] == "ok"
