"""The console scripts in pyproject.toml run the same programs as scripts/*.py (and benchmarks/transfer.py)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sim2real import cli

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def declared() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_every_cli_console_script_has_its_script():
    targets = {name: spec.split(":")[1] for name, spec in declared().items() if spec.startswith("sim2real.cli:")}
    assert len(targets) >= 10
    for name, function in targets.items():
        assert callable(getattr(cli, function)), name
        if function != "toy":
            script, *folder = getattr(cli, function).args  # scripts/ unless the entry names another folder
            path = (folder[0] if folder else cli.SCRIPTS_DIR) / f"{script}.py"
            assert path.is_file(), f"{name}: {path} missing"
            assert name == "sim2real-" + function.replace("_", "-")


def test_a_missing_scripts_folder_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "SCRIPTS_DIR", tmp_path)
    monkeypatch.setattr(sys, "argv", ["sim2real-pretrain"])
    with pytest.raises(SystemExit, match=r"sim2real-pretrain: .*pretrain\.py not found.*pip install -e \."):
        cli.pretrain()


def test_collect_then_inspect_through_console_scripts(tmp_path):
    out = tmp_path / "demos.h5"
    done = subprocess.run([str(BIN / "sim2real-collect-demos"), "task=push_cube", "backend=mujoco", "episodes=1",
                           f"out={out}"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "demos task=push_cube backend=mujoco domain=source episodes=1" in done.stdout
    # Hydra named the job after the script, as `python scripts/collect_demos.py` does.
    assert list((tmp_path / "outputs" / "collect_demos").iterdir())
    shown = subprocess.run([str(BIN / "sim2real-inspect-data"), str(out)], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "push_cube" in shown.stdout and "mujoco" in shown.stdout
