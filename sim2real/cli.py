"""Console entry points (pyproject.toml [project.scripts]): the toy check, and every scripts/*.py."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import hydra
from omegaconf import DictConfig

from sim2real.config import CONFIG_DIR, ToyConfig, to_dataclass


@hydra.main(config_path=str(CONFIG_DIR), config_name="toy", version_base="1.3")
def toy(cfg: DictConfig) -> None:
    """Build a world model and plan with it on the toy latent task."""
    from sim2real.toy import run_toy

    result = run_toy(to_dataclass(cfg, ToyConfig))
    if not result.reload_identical:
        raise SystemExit("checkpoint reload changed the plan")


# The other entry points live in scripts/*.py (Hydra apps or argparse tools) next to configs/
# (the transfer benchmark in benchmarks/transfer.py); their console scripts run those files, so
# `sim2real-pretrain task=pick_cube` and `python scripts/pretrain.py task=pick_cube` are one program.
# This needs the source checkout (the documented `pip install -e .`); a wheel without scripts/ gets a
# clear error instead.
SCRIPTS_DIR = CONFIG_DIR.parent / "scripts"


def run_script(name: str, folder: Path | None = None) -> None:
    """Run <folder>/<name>.py (scripts/ by default) as __main__ with this process's arguments."""
    import runpy
    import sys

    # SCRIPTS_DIR is read at call time, not bound as a default, so a relocated checkout is honoured.
    script = (folder or SCRIPTS_DIR) / f"{name}.py"
    if not script.is_file():
        raise SystemExit(f"{Path(sys.argv[0]).name}: {script} not found; the sim2real console scripts run the "
                         "scripts/ of a source checkout (install it with `pip install -e .`)")
    sys.argv[0] = str(script)  # Hydra names the job, and scripts re-execute themselves, from argv[0]
    runpy.run_path(str(script), run_name="__main__")


demo = partial(run_script, "demo")
collect_demos = partial(run_script, "collect_demos")
pretrain = partial(run_script, "pretrain")
finetune = partial(run_script, "finetune")
deploy = partial(run_script, "deploy")
record_demos = partial(run_script, "record_demos")
transfer = partial(run_script, "transfer", SCRIPTS_DIR.parent / "benchmarks")
aggregate_transfer = partial(run_script, "aggregate_transfer")
ray_sweep = partial(run_script, "ray_sweep")
inspect_data = partial(run_script, "inspect_data")
convert_data = partial(run_script, "convert_data")
