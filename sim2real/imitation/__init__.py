"""Reward-free imitation objectives: CDRED (the default) and IQ-MPC.

Each objective's config is a dataclass registered in Hydra's ConfigStore under the
`objective` group (`cdred_schema`, `iq_schema`); the presets `configs/objective/{cdred,iq}.yaml`
name their schema in their defaults. `make_objective` builds the one a config names.
"""

from __future__ import annotations

from typing import Any, Union

from hydra.core.config_store import ConfigStore

from sim2real.config import to_dataclass
from sim2real.imitation.base import LatentRollout, Objective
from sim2real.imitation.cdred import CdredConfig, CdredObjective
from sim2real.imitation.iq import IqConfig, IqObjective
from sim2real.world_model import WorldModel

ObjectiveConfig = Union[CdredConfig, IqConfig]
CONFIGS: dict[str, type] = {"cdred": CdredConfig, "iq": IqConfig}

__all__ = ["CONFIGS", "CdredConfig", "CdredObjective", "IqConfig", "IqObjective", "LatentRollout", "Objective",
           "ObjectiveConfig", "make_objective", "register_configs"]


def register_configs() -> None:
    cs = ConfigStore.instance()
    for name, cls in CONFIGS.items():
        cs.store(group="objective", name=f"{name}_schema", node=cls)


register_configs()


def make_objective(cfg: ObjectiveConfig | Any, model: WorldModel) -> Objective:
    """The objective `cfg.name` names, sized for `model` and placed on its device.

    Args:
        cfg: a CdredConfig / IqConfig, or a config node with a `name` field (e.g. the
            composed `objective` group).
        model: the world model it trains.
    """
    name = getattr(cfg, "name", None)
    if name not in CONFIGS:
        raise ValueError(f"objective.name must be one of {sorted(CONFIGS)}, got {name!r}")
    cfg = to_dataclass(cfg, CONFIGS[name])
    if isinstance(cfg, CdredConfig):
        objective: Objective = CdredObjective(cfg, model.cfg.latent_dim, model.action_dim, model.cfg.mlp_dim)
    else:
        objective = IqObjective(cfg)
    return objective.to(next(model.parameters()).device)
