"""Hydra entry points. `scripts/*.py` and the console scripts in pyproject.toml call these."""

from __future__ import annotations

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
