"""Scoring policies in a simulated domain, the way the stage-1 benchmarks compare them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def success_in_domain(policies: Sequence[Any], task: Any, backend: str, domain: Any, episodes: int) -> list[Any]:
    """EvalStats of each policy on the same `episodes` episodes of `domain` (a DomainParams or
    a configs/domain/ preset name): one env, the training evaluations' seeds."""
    from sim2real.config import load_preset
    from sim2real.evaluate import TRAINING_EVAL_SEED, evaluate_policy
    from tasks.domain import DomainParams
    import tasks

    if isinstance(domain, str):
        domain = load_preset("domain", domain, DomainParams)
    env = tasks.make_env(task, backend=backend, num_envs=1, domain=domain)
    try:
        return [evaluate_policy(policy, env, episodes, seed=TRAINING_EVAL_SEED) for policy in policies]
    finally:
        env.close()
