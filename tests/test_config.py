import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from sim2real.config import ModelConfig, PlannerConfig, ToyConfig, compose_config, load_preset, preset_names, to_dataclass
from sim2real.world_model import WorldModel

ROOT = Path(__file__).resolve().parents[1]

# Parameter counts without TD-MPC2's reward head (ours comes from the objective), for
# obs_dim 42, action_dim 4. The named sizes in TD-MPC2 include that head (~0.6M at 5M).
EXPECTED_PARAMS = {"1m": (0.9e6, 1.1e6), "5m": (4.2e6, 4.6e6), "19m": (15e6, 18e6), "48m": (40e6, 46e6)}


def test_presets_exist():
    assert set(preset_names("model")) >= {"tiny", "1m", "5m", "19m", "48m"}
    assert set(preset_names("planner")) >= {"mppi", "deploy", "policy"}


@pytest.mark.parametrize("name", ["1m", "5m", "19m", "48m"])
def test_model_presets_have_td_mpc2_sizes(name: str):
    cfg = load_preset("model", name, ModelConfig)
    assert cfg.name == name
    total = WorldModel(cfg, {"state": (42,)}, 4).describe()["total"]
    lo, hi = EXPECTED_PARAMS[name]
    assert lo <= total <= hi, f"{name}: {total:,} parameters"


def test_tiny_is_smaller_than_1m():
    tiny = WorldModel(load_preset("model", "tiny", ModelConfig), {"state": (42,)}, 4).describe()["total"]
    assert tiny < 0.5e6


def test_mppi_preset_is_td_mpc2_defaults():
    assert load_preset("planner", "mppi", PlannerConfig) == PlannerConfig()


def test_compose_with_overrides_gives_typed_dataclasses():
    cfg = to_dataclass(compose_config(
        "toy", ["model=5m", "planner=deploy", "planner.iterations=3", "seed=7", "output_dir=/tmp/toy"]), ToyConfig)
    assert isinstance(cfg.model, ModelConfig) and cfg.model.latent_dim == 512
    assert cfg.planner.name == "deploy" and cfg.planner.iterations == 3 and cfg.seed == 7


def test_schema_rejects_bad_values():
    with pytest.raises(ConfigCompositionException, match="model.latent_dim=big"):
        compose_config("toy", ["model.latent_dim=big"])
    with pytest.raises(ConfigCompositionException, match="no_such_field"):
        compose_config("toy", ["model.no_such_field=1"])
    with pytest.raises(ValidationError, match="could not be converted to Integer"):
        to_dataclass({"latent_dim": "big"}, ModelConfig)


def test_toy_main_job_runs_from_the_command_line(tmp_path: Path):
    """The README's main command, shrunk: a real subprocess with Hydra overrides."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "toy_latent.py"), "episodes=1", "episode_steps=3",
         "planner=deploy", "device=cpu", f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "reproduces the plan bit-for-bit" in out.stdout
    assert (tmp_path / "toy_world_model.pt").is_file()
