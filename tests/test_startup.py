"""Start-up: ``import worldflux``, ``worldflux --version`` and the ONNX dream path do not load
torch (seconds on a busy machine); torch-only names still work, imported on first use."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from worldflux.dream.cards import load_cards

SHIPPED_IDS = sorted(
    card.id for card in load_cards().values() if (card.artifact_dir / "step.onnx").is_file()
)


def run_child(code: str) -> str:
    """Run ``code`` in a fresh interpreter and return its stdout (the test fails on an error)."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_import_version_and_onnx_dream_do_not_load_torch() -> None:
    assert SHIPPED_IDS, "no shipped artifact with ONNX graphs"
    out = run_child(
        f"""
        import sys

        import worldflux
        import worldflux.data
        import worldflux.dream
        assert "torch" not in sys.modules, "import worldflux loaded torch"
        from worldflux.cli import main
        try:
            main(["--version"])
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        assert "torch" not in sys.modules, "worldflux --version loaded torch"

        import gymnasium as gym
        env = gym.make({SHIPPED_IDS[0]!r})
        env.reset(seed=0)
        env.step(env.action_space.sample())
        assert env.unwrapped.core.backend_name == "onnx"
        assert "torch" not in sys.modules, "the ONNX dream loaded torch"
        print("light")
        """
    )
    assert out.splitlines()[-1] == "light"
    assert "worldflux 0." in out


def test_torch_names_import_on_first_use_and_register_the_families() -> None:
    out = run_child(
        """
        import sys

        import worldflux as wf
        from worldflux.data import MinariBatchProvider  # noqa: F401
        assert "torch" in sys.modules
        model = wf.create_world_model("ensemble:tiny", obs_shape=(3,), action_dim=2)
        assert isinstance(model, wf.WorldModel)
        assert {"dreamerv3", "planet", "ensemble"} <= set(wf.WorldModelRegistry.families())
        assert wf.State is sys.modules["worldflux.core.state"].State
        print("ok")
        """
    )
    assert out.strip() == "ok"


def test_own_family_cannot_take_a_built_in_name_before_any_lookup() -> None:
    """Built-ins register lazily, so a user's family registered first must still clash."""
    out = run_child(
        """
        from worldflux.core.config import WorldModelConfig
        from worldflux.core.errors import RegistryError
        from worldflux.core.model import WorldModel
        from worldflux.core.registry import WorldModelRegistry

        try:
            @WorldModelRegistry.register("dreamerv3", WorldModelConfig)
            class Mine(WorldModel):
                pass
        except RegistryError as exc:
            assert "already used" in str(exc), exc
            print("refused")
        """
    )
    assert out.strip() == "refused"


def test_every_public_name_resolves() -> None:
    """The lazy names of each package's ``__all__`` all import (a typo in a source table would
    only show on first use)."""
    import importlib

    for package in ("worldflux", "worldflux.core", "worldflux.data", "worldflux.training"):
        module = importlib.import_module(package)
        missing = [name for name in module.__all__ if getattr(module, name, None) is None]
        assert missing == [], (package, missing)
