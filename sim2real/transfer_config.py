"""The transfer benchmark's settings: `TransferConfig`, its Hydra schema (configs/transfer.yaml),
and the one way a command line becomes a checked TransferConfig.

benchmarks/transfer.py is a Hydra app over configs/transfer.yaml; Ray sweeps
(sim2real/ray_sweep.py) and tests compose the same config with the same overrides through
`config_from_overrides`. Either way `transfer_config` turns the composed config into the run's
TransferConfig: the task preset by name, the domains named by their field overrides
(`target(init_range_scale=1.5)`), the pass-on nodes (`pretrain.steps=2000`) kept as nested
mappings that `overrides()` turns back into override text, and every value checked.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

METHODS = ("ours", "zero_shot", "bc", "bc_cotrain", "bc_finetune", "wm_offline", "wm_scratch")
DOMAINS = ("source_domain", "target_domain")
PASSED_ON = ("pretrain", "finetune", "scratch")


@dataclass
class TransferConfig:
    """`benchmarks/transfer.py` (configs/transfer.yaml).

    Args:
        task: a task preset (configs/task/) by name; the composed config holds the preset.
        source_backend / target_backend: "maniskill" or "mujoco".
        source_domain / target_domain: a preset of configs/domain/ (`target_domain=source`) or
            DomainParams; `target_domain.friction_scale=0.5` overrides one field, and the
            domain's name records it (`target(friction_scale=0.5)`).
        demos: target demos every method gets.
        seeds: seeds per method (each: its own target demos, training seed, evaluation episodes).
        first_seed: the seeds are first_seed, ..., first_seed + seeds - 1 (a sweep gives each
            job its own; `scripts/aggregate_transfer.py` puts their results back together).
        eval_episodes: target episodes per method and seed.
        pretrain_seeds: distinct pretraining runs; seed k uses run k % pretrain_seeds (one
            pretraining run per seed on a GPU; fewer on a CPU, where a run takes ~10 minutes).
        checkpoint: a pretrained checkpoint to start from instead of pretraining here (e.g. a
            `benchmarks/pretrain_curve.py` run); its recorded sim demos feed the baselines.
        methods: which of METHODS to run.
        pretrain / finetune / scratch: overrides of configs/pretrain.yaml, of
            configs/finetune.yaml for `ours` and `wm_offline`, and of it for `wm_scratch`, as
            nested mappings (`pretrain.steps=2000`, `finetune.agent.lr=3e-5`, `pretrain.model=5m`).
        scratch_steps: updates of `wm_scratch` (it starts from nothing, so more than `ours`).
        bc: BC settings (sim2real.bc.BCConfig fields: `bc.chunk=4`), for every BC method.
        demo_init_range_scale: the target demos start in this fraction of the target domain's
            spawn regions (evaluation: all of them).
        cotrain_target_fraction: `bc_cotrain`'s share of every batch drawn from the target demos.
        bc_finetune_steps / bc_finetune_lr: `bc_finetune`'s second stage on the target demos.
        wm_offline_steps: updates of `wm_offline`'s offline training on the sim demos; 0 = as
            many as the pretraining run made.
        cache_dir: pretrained checkpoints, keyed by everything that makes them. Relative paths
            are taken from the folder the command starts in.
        out_dir: this run's folder; "" = a new timestamped one (a sweep job: the job's folder).
        device: "auto", "cpu" or "cuda".
    """

    task: Any = "push_cube"
    source_backend: str = "maniskill"
    target_backend: str = "maniskill"
    source_domain: Any = "source"
    target_domain: Any = "target"
    demos: int = 20
    seeds: int = 5
    first_seed: int = 0
    eval_episodes: int = 50
    pretrain_seeds: int = 1
    checkpoint: str = ""
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
    cache_dir: str = "outputs/benchmarks/transfer/cache"
    out_dir: str = ""
    device: str = "auto"

    def __post_init__(self) -> None:
        from sim2real.finetune_config import resolve_domain

        self.source_domain = resolve_domain(self.source_domain)
        self.target_domain = resolve_domain(self.target_domain)


def _schema() -> DictConfig:
    node = OmegaConf.structured(TransferConfig)
    # Their keys belong to other configs (checked when those are composed), so Hydra must
    # accept `pretrain.steps=2000` without a `+`: these nodes are not in struct mode.
    for key in (*PASSED_ON, "bc"):
        OmegaConf.set_struct(node[key], False)
    return node


ConfigStore.instance().store(name="transfer_schema", node=_schema())


def _run_dir(out_dir: str, task: str, source_backend: str, target_backend: str) -> str:
    """configs/transfer.yaml's hydra.run.dir: out_dir when given, else a new timestamped folder."""
    import time

    return out_dir or f"outputs/benchmarks/transfer/{task}_{source_backend}-{target_backend}_{time.strftime('%Y-%m-%d_%H-%M-%S')}"


# Cached per arguments, as Hydra's own `now`: every use of hydra.run.dir in one run is one folder.
OmegaConf.register_new_resolver("transfer_run_dir", _run_dir, use_cache=True, replace=True)


def override_text(value: Any) -> str:
    """A value written as override text that Hydra's parser and yaml.safe_load both read back
    as the same value."""
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


def overrides(node: dict[str, Any], prefix: str = "") -> list[str]:
    """`{agent: {lr: 1e-4}, steps: 2000}` -> [`agent.lr=0.0001`, `steps=2000`]: a pass-on node
    as the overrides of the config it belongs to."""
    items = []
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            items += overrides(value, f"{path}.")
        else:
            items.append(f"{path}={override_text(value)}")
    return items


def nested(items: list[str]) -> dict[str, Any]:
    """The inverse of `overrides`: [`agent.lr=0.0001`] -> {agent: {lr: 0.0001}} (for results
    written when config.json recorded override lists)."""
    return OmegaConf.to_container(OmegaConf.from_dotlist(list(items))) if items else {}


def domain_with(spec: Any, field_overrides: list[str]) -> Any:
    """A domain preset (or DomainParams) with `field=value` overrides; the name records them."""
    from sim2real.config import to_dataclass
    from sim2real.finetune_config import resolve_domain
    from tasks.domain import DomainParams

    base = resolve_domain(spec)
    if not field_overrides:
        return base
    names = {f.name for f in fields(DomainParams)}
    for item in field_overrides:
        if item.split("=", 1)[0].split(".", 1)[0] not in names:
            raise ValueError(f"domain override {item!r}: unknown field; expected one of {sorted(names)}")
    merged = OmegaConf.merge(OmegaConf.structured(base), OmegaConf.from_dotlist(field_overrides))
    domain = to_dataclass(merged, DomainParams)
    if not any(o.startswith("name=") for o in field_overrides):
        domain = replace(domain, name=f"{base.name}({','.join(field_overrides)})")
    return domain


def hydra_argv(argv: list[str]) -> list[str]:
    """`target_domain=<preset>` -> `domain@target_domain=<preset>`: Hydra's name for the choice
    of the domain/ group placed at target_domain (both spellings work)."""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        out.append(f"domain@{key}={value}" if eq and key in DOMAINS else arg)
    return out


def _given(hydra_overrides: list[str]) -> dict[str, str]:
    given = {}
    for item in hydra_overrides:
        key, eq, value = item.partition("=")
        if eq and not key.startswith("~"):
            given[key.lstrip("+")] = value
    return given


def _refuse_what_would_be_lost(given: dict[str, str]) -> None:
    """Settings that composition would drop, named before any work."""
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


def transfer_config(cfg: DictConfig, hydra_overrides: list[str], choices: dict[str, Any]) -> TransferConfig:
    """A composed configs/transfer.yaml -> the checked TransferConfig of the run.

    Args:
        cfg: the composed config (without its hydra node).
        hydra_overrides: the command line's overrides (hydra.overrides.task): the domain field
            overrides name the domain.
        choices: hydra.runtime.choices (the task and domain presets picked).
    """
    from sim2real.config import to_dataclass
    from tasks.domain import DomainParams

    given = _given(hydra_overrides)
    _refuse_what_would_be_lost(given)
    plain = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
    run = TransferConfig(**{**plain, "task": choices["task"]})
    for name in DOMAINS:
        preset = choices[f"domain@{name}"]
        named = domain_with(preset, [f"{k.split('.', 1)[1]}={v}" for k, v in given.items() if k.startswith(f"{name}.")])
        composed = to_dataclass(plain[name], DomainParams)
        # The preset plus its command-line field overrides is what names the domain; anything
        # else that changed a field (an edited transfer.yaml) would leave the name wrong.
        for f in fields(DomainParams):
            if f.name != "name" and getattr(composed, f.name) != getattr(named, f.name):
                raise ValueError(f"configs/transfer.yaml {name}.{f.name}: composed {getattr(composed, f.name)!r}, "
                                 f"but preset {preset!r} with the command line's overrides gives "
                                 f"{getattr(named, f.name)!r}; set domain fields on the command line "
                                 f"({name}.{f.name}=...) or in a configs/domain/ preset")
        setattr(run, name, named)
    check(run)
    return run


def config_from_overrides(argv: list[str]) -> TransferConfig:
    """What `benchmarks/transfer.py <argv>` would run (out_dir as given, "" when not)."""
    from sim2real.config import compose_config
    from sim2real.pretrain_config import register_schemas

    register_schemas()  # the task/ and domain/ groups' schemas
    cfg = compose_config("transfer", hydra_argv(list(argv)), hydra_node=True)
    hydra_node = cfg.hydra
    return transfer_config(cfg, list(hydra_node.overrides.task), dict(hydra_node.runtime.choices))


def check(cfg: TransferConfig) -> None:
    """Every setting in range (a ValueError naming it otherwise); a given checkpoint sets the
    source world."""
    from sim2real.bc import BCConfig

    if cfg.demos < 1 or cfg.seeds < 1 or cfg.eval_episodes < 1 or cfg.pretrain_seeds < 1:
        raise ValueError("demos, seeds, eval_episodes and pretrain_seeds must all be >= 1")
    if cfg.first_seed < 0:
        raise ValueError(f"first_seed={cfg.first_seed}: must be >= 0")
    unknown = sorted(set(cfg.methods) - set(METHODS))
    if unknown or not cfg.methods:
        raise ValueError(f"methods={cfg.methods}: unknown {unknown}; expected some of {list(METHODS)}")
    bc_fields = sorted(f.name for f in fields(BCConfig))
    unknown = sorted(set(cfg.bc) - set(bc_fields))
    if unknown:
        raise ValueError(f"bc: unknown {unknown}; expected sim2real.bc.BCConfig fields {bc_fields}")
    if cfg.checkpoint and (cfg.pretrain or cfg.pretrain_seeds != 1):
        raise ValueError(f"checkpoint={cfg.checkpoint}: a given pretrained checkpoint takes no pretrain.* settings "
                         "and pretrain_seeds=1")
    if cfg.checkpoint:
        _source_from_checkpoint(cfg)
    if not (0 < cfg.demo_init_range_scale and math.isfinite(cfg.demo_init_range_scale)):
        raise ValueError(f"demo_init_range_scale={cfg.demo_init_range_scale}: expected a number > 0")
    if not 0 < cfg.cotrain_target_fraction < 1:
        raise ValueError(f"cotrain_target_fraction={cfg.cotrain_target_fraction}: expected a fraction in (0, 1)")
    if cfg.bc_finetune_steps < 1 or cfg.wm_offline_steps < 0 or cfg.bc_finetune_lr <= 0:
        raise ValueError("bc_finetune_steps must be >= 1, bc_finetune_lr > 0 and wm_offline_steps >= 0")


def _source_from_checkpoint(cfg: TransferConfig) -> None:
    """Take the source world from the given pretrained checkpoint, which must be for the task."""
    from sim2real.checkpoint import load_checkpoint
    from sim2real.config import to_dataclass
    from tasks.domain import DomainParams

    if not Path(cfg.checkpoint).is_file():
        raise ValueError(f"checkpoint={cfg.checkpoint}: no such file")
    extra = load_checkpoint(cfg.checkpoint).extra
    if extra.get("stage") != "pretrain" or extra.get("task") != cfg.task:
        raise ValueError(f"checkpoint={cfg.checkpoint}: a {extra.get('stage')} checkpoint of task {extra.get('task')!r}; "
                         f"expected a pretrained one of task {cfg.task!r}")
    cfg.source_backend = str(extra["backend"])
    cfg.source_domain = to_dataclass(extra["domain"], DomainParams)


def world(backend: str, domain: Any) -> str:
    """How the table names a world: `<backend>:<domain name>`."""
    return f"{backend}:{domain.name}"
