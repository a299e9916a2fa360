"""The transfer benchmark: pretrained-and-finetuned against what the target demos give alone.

One run (`benchmarks/transfer.py`) takes a task, a source world (backend + domain) and a
target world, and for every seed:

1. pretrains on the source with the scripted expert's source demos (`scripts/pretrain.py`'s
   loop and defaults), or reuses the cached checkpoint of an identical earlier pretraining;
2. collects `demos` target demos with the scripted expert in the target world (the
   stand-in for the user's real demonstrations);
3. trains every method on those demos, the baselines that could prove sim pretraining
   unnecessary with the same sim demos pretraining had:
   - `ours`: the pretrained model finetuned on them (`scripts/finetune.py`'s defaults,
     weights chosen on held-out target demos),
   - `zero_shot`: the pretrained model as is,
   - `bc`: a BC policy on the target demos (`sim2real.bc`),
   - `bc_cotrain`: one BC policy on the sim demos and the target demos together, a
     `cotrain_target_fraction` share of every batch from the target demos,
   - `bc_finetune`: BC on the sim demos, then trained on the target demos,
   - `wm_offline`: our world model and objective trained offline on the sim demos (no
     interaction, as many updates as pretraining made), then finetuned like `ours`: what
     online coverage adds is `ours` minus this,
   - `wm_scratch`: the same world model and objective trained on the target demos from scratch;
4. evaluates each on the same `eval_episodes` target episodes (seeds disjoint from the
   demos').

`demo_init_range_scale` < 1 draws the target demos from that fraction of the target's spawn
regions (`DomainParams.init_range_scale`) while evaluation uses all of it: real demos cover a
narrow part of the workspace, the simulator all of it.

Every stage is a typed call of sim2real/stages.py, as in the main command. The settings are
sim2real/transfer_config.py's; the table, its files and its intervals
sim2real/transfer_report.py's. Results are appended per (method, seed) to `results.csv` as
they come, so a stopped run continues where it was with the same `out_dir`.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

from sim2real.atomic import atomic_write
from sim2real.transfer_config import METHODS, TransferConfig, overrides, world
from sim2real.transfer_report import (MethodSummary, append_result, read_results, recorded, report,
                                      run_record)


def _task_config(name: str) -> Any:
    from sim2real.config import load_preset
    from tasks.spec import TaskConfig

    return load_preset("task", name, TaskConfig)


def pretrain_key(cfg: TransferConfig, pretrain_seed: int) -> str:
    """Everything that makes a pretrained checkpoint; equal keys share one cache entry."""
    spec = {"task": cfg.task, "backend": cfg.source_backend, "domain": asdict(cfg.source_domain),
            "overrides": sorted(overrides(cfg.pretrain)), "seed": pretrain_seed}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:10]
    # A domain named by its overrides, `source(init_range_scale=1.5)`, becomes
    # `source-init_range_scale-1.5`: a folder name that shells and override text carry as is.
    name = re.sub(r"[^A-Za-z0-9_.+-]+", "-", cfg.source_domain.name).strip("-")
    return f"{cfg.task}_{cfg.source_backend}_{name}_{digest}/seed{pretrain_seed}"


def pretrained_checkpoint(cfg: TransferConfig, pretrain_seed: int, say: Callable[[str], None]) -> Path:
    """The given checkpoint, or the cached one of this pretraining, trained (or finished, after
    a stop) first if needed."""
    import fcntl

    if cfg.checkpoint:
        return Path(cfg.checkpoint)
    out = Path(cfg.cache_dir) / pretrain_key(cfg, pretrain_seed)
    out.mkdir(parents=True, exist_ok=True)
    # Sweep jobs that need the same pretraining run at once: one trains, the others wait on
    # the lock and then find done.json.
    with open(out.with_name(out.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _pretrain_once(cfg, pretrain_seed, out, say)


def _pretrain_once(cfg: TransferConfig, pretrain_seed: int, out: Path, say: Callable[[str], None]) -> Path:
    from sim2real.stages import pretrain_settings, run_pretrain

    done = out / "done.json"
    ckpt = out / "checkpoints" / "last.pt"
    if done.exists() and ckpt.exists():
        say(f"pretrained checkpoint from cache: {ckpt}")
        return ckpt
    run_cfg = pretrain_settings(overrides(cfg.pretrain), task=_task_config(cfg.task), backend=cfg.source_backend,
                                domain=cfg.source_domain, seed=pretrain_seed + 1, out_dir=str(out),
                                demos=str(out.parent / "source_demos.h5"), resume=ckpt.exists(), eval_video=False,
                                device=cfg.device)
    say(f"pretraining on {world(cfg.source_backend, cfg.source_domain)} into {out}")
    run = run_pretrain(run_cfg, say)
    atomic_write(done, json.dumps({"history": [asdict(h) for h in run.history], "overrides": overrides(cfg.pretrain),
                                   "domain": asdict(cfg.source_domain)}, indent=1))
    return ckpt


def demo_domain(cfg: TransferConfig) -> Any:
    """The target world the demos come from: the target's spawn regions scaled by
    demo_init_range_scale (the same world when it is 1)."""
    if cfg.demo_init_range_scale == 1.0:
        return cfg.target_domain
    scale = cfg.target_domain.init_range_scale * cfg.demo_init_range_scale
    return replace(cfg.target_domain, init_range_scale=scale, name=f"{cfg.target_domain.name}(demos x{scale:g})")


def target_demos(cfg: TransferConfig, seed: int, out: Path) -> Path:
    """`demos` scripted-expert episodes in the target world (seeds 50,000 + 1,000 * seed + k),
    from `demo_domain`'s spawn regions."""
    from tasks.collect import CollectConfig, collect_demos

    path = out / f"seed{seed}" / "target_demos.h5"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        collect_demos(CollectConfig(task=_task_config(cfg.task), domain=demo_domain(cfg),
                                    backend=cfg.target_backend, episodes=cfg.demos, seed=50_000 + 1_000 * seed,
                                    out=str(path)))
    return path


def eval_seed(seed: int) -> int:
    """First evaluation episode seed of a benchmark seed: far from demo and training seeds."""
    return 3_000_000 + 10_000 * seed


def _scratch_fields(cfg: TransferConfig, pre: Any) -> dict[str, Any]:
    """A from-scratch finetuning run with the pretrained checkpoint's architecture and objective
    (its presets may have been overridden, so the checkpoint's own values, not preset names)."""
    from sim2real.imitation import CONFIGS

    objective = dict(pre.extra["objective_config"])
    return {"checkpoint": None, "scratch": True, "task": _task_config(cfg.task), "model": pre.model_config,
            "objective": CONFIGS[objective["name"]](**objective)}


def recorded_demos(pre: Any, pretrained: Path) -> dict[str, Any]:
    """The sim demos a loaded checkpoint records (file and count: a pretraining's own, or the anchor a
    finetuned one carries), checked to exist."""
    from sim2real.finetune_demos import recorded_sim_demos

    demos = recorded_sim_demos(pre.extra)
    if not demos or not Path(demos["path"]).is_file():
        where = f"{demos['path']} is missing" if demos else "it does not record its demos (an older checkpoint)"
        raise FileNotFoundError(f"{pretrained}: the sim-demo baselines need the pretraining's demos, but {where}")
    return demos


def sim_demos(pre: Any, pretrained: Path) -> list[Any]:
    """The sim demos the pretraining was given, read against its contract."""
    from sim2real.data import read_episodes

    demos = recorded_demos(pre, pretrained)
    _, episodes = read_episodes(demos["path"], contract=pre.contract)
    return episodes[:int(demos["episodes"])]


def offline_checkpoint(cfg: TransferConfig, pretrained: Path, say: Callable[[str], None]) -> Path:
    """`wm_offline`'s starting point: the world model and objective trained offline on the sim
    demos for as many updates as the pretraining made, cached beside that pretraining."""
    import fcntl

    from sim2real.checkpoint import load_checkpoint, save_checkpoint
    from sim2real.stages import finetune_settings, run_finetune

    pre = load_checkpoint(pretrained)
    steps = cfg.wm_offline_steps or int(pre.extra.get("updates", 0)) or 1
    out = pretrained.parents[1] / f"wm_offline_{steps}"
    ckpt, done = out / "checkpoints" / "last.pt", out / "done.json"
    out.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists() and ckpt.exists():
            return ckpt
        demos = recorded_demos(pre, pretrained)
        say(f"wm_offline: {steps} offline updates on {demos['path']} into {out}")
        # All sim demos train (no held-out split): pretraining had no selection either.
        run_finetune(finetune_settings(overrides(cfg.scratch), **_scratch_fields(cfg, pre), demos=demos["path"],
                                       num_demos=int(demos["episodes"]), steps=steps, holdout=0.0, seed=1,
                                       out_dir=str(out), device=cfg.device, eval_backend=""), say)
        # Its training demos are the pretraining's sim demos: recorded as its anchor, so that it is
        # finetuned like `ours` (finetune's sim_demos share comes from them).
        offline = load_checkpoint(ckpt)
        offline.extra["demos"]["sim_demos"] = {"path": demos["path"], "episodes": int(demos["episodes"])}
        save_checkpoint(ckpt, offline)
        atomic_write(done, json.dumps({"steps": steps, "pretrained": str(pretrained)}))
    return ckpt


def train_method(cfg: TransferConfig, method: str, seed: int, pretrained: Path, demos: Path, out: Path,
                 say: Callable[[str], None] = print) -> Any:
    """The trained policy of one method and seed (anything with act/reset)."""
    from sim2real.bc import BCConfig
    from sim2real.checkpoint import load_checkpoint
    from sim2real.config import PlannerConfig, load_preset
    from sim2real.data import read_episodes
    from sim2real.device import resolve_device
    from sim2real.inference import load_policy
    from sim2real.stages import finetune_settings, run_finetune, train_bc_baseline

    if method not in METHODS:
        raise ValueError(f"method {method!r}: expected one of {list(METHODS)}")
    device = resolve_device(cfg.device)
    planner = load_preset("planner", "policy", PlannerConfig)
    if method == "zero_shot":
        return load_policy(pretrained, planner, device)
    # The finetuning runs' own fields; the user's finetune.* / scratch.* overrides go under them.
    common = {"demos": str(demos), "seed": seed + 1, "out_dir": str(out / f"seed{seed}" / method),
              "device": cfg.device, "eval_backend": ""}
    if method in ("ours", "wm_offline"):
        start = pretrained if method == "ours" else offline_checkpoint(cfg, pretrained, say)
        run = run_finetune(finetune_settings(overrides(cfg.finetune), checkpoint=str(start), **common), say)
        return load_policy(run.checkpoint, planner, device)
    pre = load_checkpoint(pretrained)
    if method == "wm_scratch":
        run = run_finetune(finetune_settings(overrides(cfg.scratch), **_scratch_fields(cfg, pre),
                                             steps=cfg.scratch_steps, **common), say)
        return load_policy(run.checkpoint, planner, device)
    _, episodes = read_episodes(demos, contract=pre.contract)
    sim = sim_demos(pre, pretrained) if method != "bc" else []
    return train_bc_baseline(method, episodes, sim, pre.contract, BCConfig(**{"seed": seed, **cfg.bc}), device=device,
                             cotrain_target_fraction=cfg.cotrain_target_fraction,
                             finetune_steps=cfg.bc_finetune_steps, finetune_lr=cfg.bc_finetune_lr)


def run_transfer(cfg: TransferConfig, say: Callable[[str], None] = print) -> dict[str, MethodSummary]:
    """The whole benchmark; returns the per-method summaries (also printed and written)."""
    import tasks
    from sim2real.stages import count_successes

    out = Path(cfg.out_dir or f"outputs/benchmarks/transfer/{cfg.task}_{cfg.source_backend}-{cfg.target_backend}_"
                              f"{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    out.mkdir(parents=True, exist_ok=True)
    record = run_record(cfg)
    config_path = out / "config.json"
    if config_path.exists():
        if recorded(json.loads(config_path.read_text())) != record:
            raise ValueError(f"{config_path}: this out_dir holds a run with other settings; use a new out_dir")
    else:
        atomic_write(config_path, json.dumps(record, indent=1))
    results_path = out / "results.csv"
    rows = read_results(results_path)
    done = {(r["method"], int(r["seed"])) for r in rows}
    if done:
        say(f"continuing {out}: {len(done)} (method, seed) results already there")
    env = tasks.make_env(_task_config(cfg.task), backend=cfg.target_backend, num_envs=1, domain=cfg.target_domain)
    try:
        for seed in range(cfg.first_seed, cfg.first_seed + cfg.seeds):
            todo = [m for m in cfg.methods if (m, seed) not in done]
            if not todo:
                continue
            pretrained = pretrained_checkpoint(cfg, seed % cfg.pretrain_seeds, say)
            demos = target_demos(cfg, seed, out)
            for method in todo:
                start = time.perf_counter()
                policy = train_method(cfg, method, seed, pretrained, demos, out, say)
                trained = time.perf_counter()
                successes = count_successes(policy, env, cfg.eval_episodes, seed=eval_seed(seed))
                row = {"method": method, "seed": seed, "successes": successes, "episodes": cfg.eval_episodes,
                       "success": f"{successes / cfg.eval_episodes:.4f}", "train_s": f"{trained - start:.1f}",
                       "eval_s": f"{time.perf_counter() - trained:.1f}"}
                append_result(results_path, row)
                rows.append(row)
                say(f"transfer_seed task={cfg.task} method={method} seed={seed} "
                    f"success={successes / cfg.eval_episodes:.2f} train_s={row['train_s']} eval_s={row['eval_s']}")
    finally:
        env.close()
    return report(cfg, rows, out, say)
