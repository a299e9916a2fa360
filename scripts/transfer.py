#!/usr/bin/env python
"""The transfer benchmark (sim2real/transfer.py) as a Hydra app, for sweeps: one job runs
`run_transfer` for one setting and writes its files into the job's directory.

    python scripts/transfer.py task=pick_cube target_backend=mujoco seeds=5
    python scripts/transfer.py -m task=push_cube,pick_cube target_backend=maniskill,mujoco first_seed=0,1,2,3,4 seeds=1
    python scripts/transfer.py -m target_domain.friction_scale=0.3,0.5 pretrain.steps=2000 finetune.steps=300
    python scripts/aggregate_transfer.py outputs/sweeps/transfer/<date>      # one table over the jobs

The settings are benchmarks/transfer.py's, in Hydra syntax (configs/transfer.yaml); a job
builds the same TransferConfig the benchmark would from the same settings, so its results
merge with the benchmark's and its pretrainings share the benchmark's cache. Each job prints
the benchmark's lines (`transfer task=... method=... seeds=... success_mean=...`) and keeps
them in <job dir>/transfer.log. docs/scale_out.md covers Ray and SLURM launchers.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass, field, fields
from typing import Any

import hydra
import yaml
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from sim2real.bc import BCConfig
from sim2real.config import CONFIG_DIR, to_dataclass
from sim2real.pretrain import register_schemas
from sim2real.transfer import METHODS, TransferConfig, parse_args, run_transfer
from tasks.domain import DomainParams

register_schemas()

DOMAINS = ("source_domain", "target_domain")
PASSED_ON = ("pretrain", "finetune", "scratch")


@dataclass
class TransferJobConfig:
    """Schema of configs/transfer.yaml: TransferConfig as Hydra holds it.

    Args:
        task: a configs/task/ preset (the group: `task=pick_cube`); the benchmark takes it by name.
        source_domain / target_domain: a configs/domain/ preset composed at that key, so that
            `target_domain.friction_scale=0.3` is checked against DomainParams.
        pretrain / finetune / scratch: open nodes of overrides for configs/pretrain.yaml and
            configs/finetune.yaml (`pretrain.agent.lr=1e-4` is passed on as `agent.lr=1e-4`).
        bc: sim2real.bc.BCConfig fields.
        The rest: as TransferConfig (sim2real/transfer.py); out_dir is the job's directory.
    """

    task: Any = None
    source_backend: str = "maniskill"
    target_backend: str = "maniskill"
    source_domain: DomainParams = field(default_factory=DomainParams)
    target_domain: DomainParams = field(default_factory=DomainParams)
    demos: int = 20
    seeds: int = 5
    first_seed: int = 0
    eval_episodes: int = 50
    pretrain_seeds: int = 1
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    pretrain: dict[str, Any] = field(default_factory=dict)
    finetune: dict[str, Any] = field(default_factory=dict)
    scratch: dict[str, Any] = field(default_factory=dict)
    scratch_steps: int = 1500
    bc: dict[str, Any] = field(default_factory=dict)
    demo_init_range_scale: float = 1.0
    cotrain_target_fraction: float = 0.5
    bc_finetune_steps: int = 1000
    bc_finetune_lr: float = 3e-4
    wm_offline_steps: int = 0
    checkpoint: str = ""
    cache_dir: str = "outputs/benchmarks/transfer/cache"
    device: str = "auto"


def _schema() -> DictConfig:
    node = OmegaConf.structured(TransferJobConfig)
    # Their keys belong to other configs (validated when those are composed), so Hydra must
    # accept `pretrain.steps=2000` without a `+`: these nodes are not in struct mode.
    for key in (*PASSED_ON, "bc"):
        OmegaConf.set_struct(node[key], False)
    return node


ConfigStore.instance().store(name="transfer_schema", node=_schema())


def override_text(value: Any) -> str:
    """A composed value written as override text that Hydra's parser and yaml.safe_load both
    read back as the same value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        mantissa, e, exponent = repr(value).partition("e")
        # YAML 1.1 (PyYAML) reads 1e-05 as a string, 1.0e-05 as a float
        return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}: {override_text(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if re.fullmatch(r"[\w./:-]+", text) and yaml.safe_load(text) == text:
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _flatten(node: dict[str, Any], prefix: str, given: dict[str, str]) -> list[str]:
    """`{agent: {lr: 1e-4}}` under `pretrain` -> [`pretrain.agent.lr=1e-4`], keeping the text
    of a value given on the command line (the benchmark's spelling, hence its cache keys)."""
    items = []
    for key, value in node.items():
        path = f"{prefix}.{key}"
        if isinstance(value, dict) and value:
            items += _flatten(value, path, given)
        else:
            items.append(f"{path}={given.get(path, override_text(value))}")
    return items


def _refuse_what_would_be_lost(given: dict[str, str], bc: dict[str, Any]) -> None:
    """Settings that composition would drop or the run would ignore, named before any work."""
    for key in given:
        inner = sorted(k for k in given if k.startswith(f"{key}."))
        head = key.split(".")[0]
        if head in PASSED_ON and inner:
            # Hydra keeps only the later of the two in the composed node
            raise ValueError(f"{key}={given[key]} and {inner[0]}={given[inner[0]]}: a preset choice and its "
                             f"fields cannot both go through {head}.*; add a preset with those fields to "
                             "configs/ instead")
        if head == "task" and key != "task":
            raise ValueError(f"{key}: the benchmark takes a task preset by name (task=<preset>), not its "
                             "fields; add a preset to configs/task/ instead")
    bc_fields = sorted(f.name for f in fields(BCConfig))
    unknown = sorted(set(bc) - set(bc_fields))
    if unknown:
        raise ValueError(f"configs/transfer.yaml bc: unknown {unknown}; expected sim2real.bc.BCConfig fields "
                         f"{bc_fields}")


def transfer_config(cfg: DictConfig, overrides: list[str], choices: dict[str, Any], out_dir: str) -> TransferConfig:
    """A composed configs/transfer.yaml -> the TransferConfig benchmarks/transfer.py would build.

    Args:
        cfg: the composed config (without its hydra node).
        overrides: the job's overrides (hydra.overrides.task): their text for passed-on
            values, and the domain field overrides that name the domain.
        choices: hydra.runtime.choices (the task and domain presets picked).
        out_dir: where the run writes.
    """
    plain = OmegaConf.to_container(cfg, resolve=True)
    given = {}
    for item in overrides:
        key, eq, value = item.partition("=")
        if eq and not key.startswith("~"):
            given[key.lstrip("+")] = value
    _refuse_what_would_be_lost(given, plain["bc"])
    # The benchmark's own arguments, so that parse_args builds and checks the config exactly
    # as benchmarks/transfer.py does.
    argv = []
    for f in fields(TransferConfig):
        if f.name == "task":
            argv.append(f"task={choices['task']}")
        elif f.name in DOMAINS:
            argv.append(f"{f.name}={choices[f'domain@{f.name}']}")
            argv += [f"{k}={v}" for k, v in given.items() if k.startswith(f"{f.name}.")]
        elif f.name in PASSED_ON:
            argv += _flatten(plain[f.name], f.name, given)
        elif f.name == "bc":
            # parse_args reads these with yaml.safe_load, which takes 3e-4 for a string
            argv += _flatten(plain["bc"], "bc", {})
        elif f.name != "out_dir":
            value = plain[f.name]
            argv.append(f"{f.name}={value if isinstance(value, str) else override_text(value)}")
    run = parse_args(argv)
    # The preset plus its command-line field overrides is what names the domain; anything else
    # that changed a field (an edited transfer.yaml) would leave the name wrong.
    for name in DOMAINS:
        composed, named = to_dataclass(plain[name], DomainParams), getattr(run, name)
        for f in fields(DomainParams):
            if f.name != "name" and getattr(composed, f.name) != getattr(named, f.name):
                raise ValueError(f"configs/transfer.yaml {name}.{f.name}: composed {getattr(composed, f.name)!r}, "
                                 f"but preset {choices[f'domain@{name}']!r} with the command line's "
                                 f"overrides gives {getattr(named, f.name)!r}; set domain fields on the "
                                 f"command line ({name}.{f.name}=...) or in a configs/domain/ preset")
    run.cache_dir = to_absolute_path(run.cache_dir)
    run.out_dir = out_dir
    return run


def hydra_argv(argv: list[str]) -> list[str]:
    """`target_domain=<preset>` -> `domain@target_domain=<preset>`: Hydra's name for the choice
    of the domain/ group placed at target_domain (both spellings work)."""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        out.append(f"domain@{key}={value}" if eq and key in DOMAINS else arg)
    return out


@hydra.main(config_path=str(CONFIG_DIR), config_name="transfer", version_base="1.3")
def main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    run = transfer_config(cfg, list(hc.overrides.task), dict(hc.runtime.choices), hc.runtime.output_dir)
    # Hydra's job logging: the console as printed, <job dir>/transfer.log with timestamps.
    log = logging.getLogger("transfer")
    log.info(f"transfer job out_dir={run.out_dir} cache_dir={run.cache_dir} "
             f"seeds={run.first_seed}..{run.first_seed + run.seeds - 1}")
    run_transfer(run, say=log.info)


if __name__ == "__main__":
    sys.argv[1:] = hydra_argv(sys.argv[1:])
    main()
