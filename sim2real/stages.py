"""The stages of the chain as typed calls: pretrain, finetune, the BC baselines and the success
count on target episodes. The main command (sim2real/pipeline.py) and the transfer benchmark
(sim2real/transfer.py) chain the same calls; collecting demos is `tasks.collect.collect_demos`.

A stage's settings are its config dataclass: `pretrain_settings` / `finetune_settings` give
configs/pretrain.yaml's / configs/finetune.yaml's defaults with a user's own overrides (the
`pretrain.agent.lr=1e-4` a command line passes on), and the caller sets the fields it owns
(task, demos, seed, out_dir, ...) as typed values. A user override of a field the caller
owns is refused rather than silently lost or silently winning.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Sequence

from sim2real.bc import BCConfig, BCPolicy, cotrain_weights, train_bc
from sim2real.contract import Contract
from sim2real.data import Episode
from sim2real.finetune import FinetuneRun
from sim2real.finetune_config import FinetuneConfig
from sim2real.pretrain import PretrainRun

from sim2real.pretrain_config import PretrainConfig

BC_METHODS = ("bc", "bc_cotrain", "bc_finetune")


def _top_key(override: str) -> str:
    """`+agent.lr=1e-4` -> `agent`."""
    return override.split("=", 1)[0].lstrip("+~").split(".", 1)[0]


def _settings(name: str, extra: Sequence[str], owned: dict[str, Any], build: Callable[[Any], Any]) -> Any:
    from sim2real.config import compose_config

    clash = [o for o in extra if _top_key(o) in owned]
    if clash:
        raise ValueError(f"{name} overrides {clash}: {sorted({_top_key(o) for o in clash})} set by the stage chain "
                         "here; use its own setting for them")
    return replace(build(compose_config(name, list(extra))), **owned)


def pretrain_settings(extra: Sequence[str] = (), **owned: Any) -> PretrainConfig:
    """configs/pretrain.yaml's defaults with the user's `extra` overrides, then the caller's fields."""
    from sim2real.pretrain_config import pretrain_config, register_schemas

    register_schemas()
    return _settings("pretrain", extra, owned, pretrain_config)


def finetune_settings(extra: Sequence[str] = (), **owned: Any) -> FinetuneConfig:
    """configs/finetune.yaml's defaults with the user's `extra` overrides, then the caller's fields."""
    from sim2real.finetune_config import finetune_config, register_schemas

    register_schemas()
    return _settings("finetune", extra, owned, finetune_config)


def run_pretrain(cfg: PretrainConfig, say: Callable[[str], None] = print) -> PretrainRun:
    """Stage 1, printing each evaluation's line."""
    from sim2real.pretrain import eval_line, pretrain

    return pretrain(cfg, on_eval=lambda r: say(eval_line(cfg, r)))


def run_finetune(cfg: FinetuneConfig, say: Callable[[str], None] = print) -> FinetuneRun:
    """Stage 2, printing each evaluation's line (when it evaluates)."""
    from sim2real.finetune import eval_line, finetune

    return finetune(cfg, on_eval=lambda r: say(eval_line(r)))


def train_bc_baseline(method: str, target: list[Episode], sim: list[Episode], contract: Contract, bc: BCConfig,
                      device: Any = "cpu", cotrain_target_fraction: float = 0.5, finetune_steps: int = 1000,
                      finetune_lr: float = 3e-4) -> BCPolicy:
    """One of the BC baselines on the target demos (and the sim demos pretraining had):

    - `bc`: the target demos alone;
    - `bc_cotrain`: sim and target demos in one policy, `cotrain_target_fraction` of every
      batch from the target demos;
    - `bc_finetune`: the sim demos, then `finetune_steps` more at `finetune_lr` on the target
      demos (the sim stage's normalisation kept).
    """
    import torch

    if method not in BC_METHODS:
        raise ValueError(f"method {method!r}: expected one of {list(BC_METHODS)}")
    with torch.random.fork_rng():
        if method == "bc":
            return train_bc(target, contract, bc, device=device)
        if method == "bc_cotrain":
            return train_bc(sim + target, contract, bc, device=device,
                            episode_weights=cotrain_weights(sim, target, cotrain_target_fraction))
        start = train_bc(sim, contract, bc, device=device)
        second = replace(bc, steps=finetune_steps, lr=finetune_lr)
        return train_bc(target, contract, second, device=device, init=start)


def count_successes(policy: Any, env: Any, episodes: int, seed: int) -> int:
    """Episodes of `env` (seeds seed, seed + 1, ...) that `policy` ends solved."""
    from sim2real.evaluate import evaluate_policy

    return round(evaluate_policy(policy, env, episodes, seed=seed).success_at_end * episodes)
