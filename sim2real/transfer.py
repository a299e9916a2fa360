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

The table gives, per method, the mean of the per-seed success rates and a 95% interval
that is the wider of two: Student's t over the per-seed rates (the spread between seeds)
and Wilson's over all episodes pooled (the count of episodes; it keeps an interval when
every seed scored the same). Results are appended per (method, seed) to `results.csv` as
they come, so a stopped run continues where it was with the same `out_dir`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from sim2real.atomic import atomic_write

METHODS = ("ours", "zero_shot", "bc", "bc_cotrain", "bc_finetune", "wm_offline", "wm_scratch")
RESULT_FIELDS = ("method", "seed", "successes", "episodes", "success", "train_s", "eval_s")

# Student's t 0.975 quantiles by degrees of freedom; a df between rows takes the row below
# (a slightly wider interval), beyond the last row the normal quantile.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000, 120: 1.980}


@dataclass
class TransferConfig:
    """`benchmarks/transfer.py`.

    Args:
        task: a task preset (configs/task/).
        source_backend / target_backend: "maniskill" or "mujoco".
        source_domain / target_domain: a preset name of configs/domain/, or DomainParams;
            `target_domain.friction_scale=0.5` on the command line overrides one field of it.
        demos: target demos every method gets.
        seeds: seeds per method (each: its own target demos, training seed, evaluation episodes).
        first_seed: the seeds are first_seed, ..., first_seed + seeds - 1 (a sweep gives each
            job its own; `scripts/aggregate_transfer.py` puts their results back together).
        eval_episodes: target episodes per method and seed.
        checkpoint: a pretrained checkpoint to start from instead of pretraining here (e.g. a
            `benchmarks/pretrain_curve.py` run); its recorded sim demos feed the baselines.
        pretrain_seeds: distinct pretraining runs; seed k uses run k % pretrain_seeds (one
            pretraining run per seed on a GPU; fewer on a CPU, where a run takes ~10 minutes).
        methods: which of METHODS to run.
        pretrain / finetune / scratch: overrides of configs/pretrain.yaml, of
            configs/finetune.yaml for `ours`, and of it for `wm_scratch`
            (`pretrain.steps=2000`, `finetune.steps=1000`, `scratch.steps=2000`).
        scratch_steps: updates of `wm_scratch` (it starts from nothing, so more than `ours`).
        bc: BC settings (sim2real.bc.BCConfig fields: `bc.chunk=4`), for every BC method.
        demo_init_range_scale: the target demos start in this fraction of the target domain's
            spawn regions (evaluation: all of them).
        cotrain_target_fraction: `bc_cotrain`'s share of every batch drawn from the target demos.
        bc_finetune_steps / bc_finetune_lr: `bc_finetune`'s second stage on the target demos.
        wm_offline_steps: updates of `wm_offline`'s offline training on the sim demos; 0 = as
            many as the pretraining run made.
        cache_dir: pretrained checkpoints and source demos, keyed by everything that makes them.
        out_dir: this run's tables, plot and per-seed files; "" = a new timestamped folder.
        device: "auto", "cpu" or "cuda".
    """

    task: str = "push_cube"
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
    pretrain: list[str] = field(default_factory=list)
    finetune: list[str] = field(default_factory=list)
    scratch: list[str] = field(default_factory=list)
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
        self.source_domain = domain_with(self.source_domain, [])
        self.target_domain = domain_with(self.target_domain, [])


def parse_args(argv: Iterable[str]) -> TransferConfig:
    """`key=value` arguments -> TransferConfig.

    `pretrain.X=v`, `finetune.X=v` and `scratch.X=v` are passed on as overrides `X=v`;
    `bc.X=v` sets a BCConfig field; `source_domain.X=v` / `target_domain.X=v` override one
    field of that domain; anything else is a TransferConfig field.
    """
    import yaml

    cfg = TransferConfig()
    domain_overrides: dict[str, list[str]] = {"source_domain": [], "target_domain": []}
    known = {f.name for f in fields(TransferConfig)}
    for arg in argv:
        if "=" not in arg:
            raise ValueError(f"argument {arg!r}: expected key=value")
        key, value = arg.split("=", 1)
        head, _, rest = key.partition(".")
        if rest and head in ("pretrain", "finetune", "scratch"):
            getattr(cfg, head).append(f"{rest}={value}")
        elif rest and head == "bc":
            from sim2real.bc import BCConfig

            if rest not in {f.name for f in fields(BCConfig)}:
                raise ValueError(f"argument {arg!r}: not a BCConfig field; expected bc.<one of "
                                 f"{sorted(f.name for f in fields(BCConfig))}>")
            cfg.bc[rest] = _number(yaml.safe_load(value))
        elif rest and head in domain_overrides:
            domain_overrides[head].append(f"{rest}={value}")
        elif key in known and not rest:
            parsed = yaml.safe_load(value)
            if key == "methods":
                parsed = [parsed] if isinstance(parsed, str) else list(parsed)
                unknown = sorted(set(parsed) - set(METHODS))
                if unknown:
                    raise ValueError(f"methods={value}: unknown {unknown}; expected some of {list(METHODS)}")
            elif key in ("pretrain", "finetune", "scratch", "bc"):
                raise ValueError(f"{key}={value}: give its fields one by one ({key}.<field>=<value>)")
            elif isinstance(getattr(cfg, key), float):
                parsed = _number(parsed)
                if not isinstance(parsed, (int, float)):
                    raise ValueError(f"{key}={value}: expected a number")
                parsed = float(parsed)
            setattr(cfg, key, parsed if not isinstance(getattr(cfg, key), str) else str(value))
        else:
            raise ValueError(f"argument {arg!r}: unknown key {key!r}; expected one of {sorted(known)}, "
                             "or pretrain.*, finetune.*, scratch.*, bc.*, source_domain.*, target_domain.*")
    cfg.source_domain = domain_with(cfg.source_domain, domain_overrides["source_domain"])
    cfg.target_domain = domain_with(cfg.target_domain, domain_overrides["target_domain"])
    if cfg.demos < 1 or cfg.seeds < 1 or cfg.eval_episodes < 1 or cfg.pretrain_seeds < 1:
        raise ValueError("demos, seeds, eval_episodes and pretrain_seeds must all be >= 1")
    if cfg.first_seed < 0:
        raise ValueError(f"first_seed={cfg.first_seed}: must be >= 0")
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
    return cfg


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


def _number(value: Any) -> Any:
    """YAML 1.1 reads `3e-4` (no dot) as a string: take it as the float it means."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def domain_with(spec: Any, overrides: list[str]) -> Any:
    """A domain preset (or DomainParams) with `field=value` overrides; the name records them."""
    from omegaconf import OmegaConf

    from sim2real.config import to_dataclass
    from sim2real.finetune import resolve_domain
    from tasks.domain import DomainParams

    base = resolve_domain(spec)
    if not overrides:
        return base
    names = {f.name for f in fields(DomainParams)}
    for item in overrides:
        if item.split("=", 1)[0].split(".", 1)[0] not in names:
            raise ValueError(f"domain override {item!r}: unknown field; expected one of {sorted(names)}")
    merged = OmegaConf.merge(OmegaConf.structured(base), OmegaConf.from_dotlist(overrides))
    domain = to_dataclass(merged, DomainParams)
    if not any(o.startswith("name=") for o in overrides):
        domain = replace(domain, name=f"{base.name}({','.join(overrides)})")
    return domain


def world(backend: str, domain: Any) -> str:
    """How the table names a world: `<backend>:<domain name>`."""
    return f"{backend}:{domain.name}"


# --- statistics ---------------------------------------------------------------------------

def t975(df: int) -> float:
    best = 1.959963984540054
    for k in sorted(_T975, reverse=True):
        if df >= k:
            return _T975[k] if df <= 120 or k < 120 else best
    return _T975[1]


@dataclass
class MethodSummary:
    method: str
    seeds: int
    successes: int
    episodes: int
    success_mean: float
    ci95_low: float
    ci95_high: float
    per_seed: list[float]


def summarise(rows: list[dict[str, Any]], method: str) -> MethodSummary:
    """Mean of the per-seed success rates with the wider of the t and pooled-Wilson 95% intervals."""
    from sim2real.evaluate import binomial_ci95

    mine = sorted((r for r in rows if r["method"] == method), key=lambda r: int(r["seed"]))
    if not mine:
        raise ValueError(f"no results for method {method!r}")
    rates = [int(r["successes"]) / int(r["episodes"]) for r in mine]
    k = sum(int(r["successes"]) for r in mine)
    n = sum(int(r["episodes"]) for r in mine)
    mean = sum(rates) / len(rates)
    low, high = binomial_ci95(k, n)
    if len(rates) > 1:
        sd = math.sqrt(sum((x - mean) ** 2 for x in rates) / (len(rates) - 1))
        half = t975(len(rates) - 1) * sd / math.sqrt(len(rates))
        low, high = min(low, mean - half), max(high, mean + half)
    # Wilson's bound at 0 or 1 successes can sit a rounding error inside the mean
    return MethodSummary(method, len(rates), k, n, mean, max(0.0, min(low, mean)), min(1.0, max(high, mean)), rates)


def transfer_line(cfg: TransferConfig, s: MethodSummary) -> str:
    """The line printed per method (the table's row)."""
    return (f"transfer task={cfg.task} source={world(cfg.source_backend, cfg.source_domain)} "
            f"target={world(cfg.target_backend, cfg.target_domain)} method={s.method} demos={cfg.demos} "
            f"seeds={s.seeds} success_mean={s.success_mean:.3f} ci95_low={s.ci95_low:.3f} ci95_high={s.ci95_high:.3f}")


def gap_line(cfg: TransferConfig, summaries: dict[str, MethodSummary]) -> str | None:
    """`ours` against the best of every baseline (zero_shot included): the benchmark's question."""
    baselines = [s for m, s in summaries.items() if m != "ours"]
    if "ours" not in summaries or not baselines:
        return None
    ours, best = summaries["ours"], max(baselines, key=lambda s: s.success_mean)
    gap = 100 * (ours.success_mean - best.success_mean)
    separate = ours.ci95_low > best.ci95_high or ours.ci95_high < best.ci95_low
    return (f"transfer_gap task={cfg.task} ours={ours.success_mean:.3f} best_baseline={best.method} "
            f"baseline={best.success_mean:.3f} gap_points={gap:+.1f} cis_overlap={str(not separate).lower()}")


# --- files ----------------------------------------------------------------------------------

def read_results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def append_result(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RESULT_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({k: row[k] for k in RESULT_FIELDS})
        f.flush()
        os.fsync(f.fileno())


def write_summary(path: Path, cfg: TransferConfig, summaries: list[MethodSummary]) -> None:
    """summary.csv: one row per method (written atomically)."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["task", "source", "target", "method", "demos", "seeds", "episodes", "success_mean",
                     "ci95_low", "ci95_high", "per_seed"])
    for s in summaries:
        writer.writerow([cfg.task, world(cfg.source_backend, cfg.source_domain),
                         world(cfg.target_backend, cfg.target_domain), s.method, cfg.demos, s.seeds,
                         s.episodes, f"{s.success_mean:.4f}", f"{s.ci95_low:.4f}", f"{s.ci95_high:.4f}",
                         " ".join(f"{x:.3f}" for x in s.per_seed)])
    atomic_write(path, text.getvalue())


def plot_summary(path: Path, title: str, summaries: list[MethodSummary]) -> Path:
    """Bar chart of success per method with its 95% interval and the per-seed rates as dots."""
    from sim2real.report import pyplot, save_figure

    fig, ax = pyplot().subplots(figsize=(1.6 + 1.3 * len(summaries), 3.8), dpi=120)
    xs = range(len(summaries))
    means = [s.success_mean for s in summaries]
    err = [[m - s.ci95_low for m, s in zip(means, summaries)], [s.ci95_high - m for m, s in zip(means, summaries)]]
    colors = ["#2b6cb0" if s.method == "ours" else "#a0aec0" for s in summaries]
    ax.bar(xs, means, yerr=err, capsize=6, color=colors, edgecolor="black", linewidth=0.6)
    for x, s in zip(xs, summaries):
        ax.scatter([x] * len(s.per_seed), s.per_seed, color="black", s=10, zorder=3)
        ax.text(x, min(s.ci95_high + 0.03, 1.08), f"{s.success_mean:.2f}", ha="center", fontsize=8)
    ax.set_xticks(list(xs), [s.method for s in summaries])
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("target success rate")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


# --- the run --------------------------------------------------------------------------------

def _task_config(name: str) -> Any:
    from sim2real.config import load_preset
    from tasks.spec import TaskConfig

    return load_preset("task", name, TaskConfig)


def pretrain_key(cfg: TransferConfig, pretrain_seed: int) -> str:
    """Everything that makes a pretrained checkpoint; equal keys share one cache entry."""
    last = dict(o.split("=", 1) for o in cfg.pretrain)  # the last value of a key is the one that counts
    spec = {"task": cfg.task, "backend": cfg.source_backend, "domain": asdict(cfg.source_domain),
            "overrides": sorted(f"{k}={v}" for k, v in last.items()), "seed": pretrain_seed}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:10]
    # A domain named by its overrides, `source(init_range_scale=1.5)`, becomes `source-init_range_scale-1.5`:
    # the path is passed on in Hydra overrides, whose grammar reserves parentheses, commas and "=".
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
    from sim2real.config import compose_config
    from sim2real.pretrain import eval_line, pretrain, pretrain_config, register_schemas

    done = out / "done.json"
    ckpt = out / "checkpoints" / "last.pt"
    if done.exists() and ckpt.exists():
        say(f"pretrained checkpoint from cache: {ckpt}")
        return ckpt
    register_schemas()
    overrides = [f"task={cfg.task}", f"backend={cfg.source_backend}", f"seed={pretrain_seed + 1}",
                 f"out_dir={out}", f"demos={out.parent / 'source_demos.h5'}", f"resume={str(ckpt.exists()).lower()}",
                 "eval_video=false",
                 f"device={cfg.device}", *cfg.pretrain]
    run_cfg = pretrain_config(compose_config("pretrain", overrides))
    run_cfg.domain = cfg.source_domain
    say(f"pretraining on {world(cfg.source_backend, cfg.source_domain)} into {out}")
    run = pretrain(run_cfg, on_eval=lambda r: say(eval_line(run_cfg, r)))
    atomic_write(done, json.dumps({"history": [asdict(h) for h in run.history], "overrides": overrides,
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


def _finetune(overrides: list[str], like: Any = None) -> str:
    """scripts/finetune.py with these overrides; `like`: a checkpoint whose architecture and
    objective settings a from-scratch run copies (the presets it names may have been overridden)."""
    from sim2real.config import compose_config, to_dataclass
    from sim2real.finetune import finetune, finetune_config, register_schemas
    from sim2real.imitation import CONFIGS

    register_schemas()
    run = finetune_config(compose_config("finetune", overrides))
    if like is not None:
        objective = dict(like.extra["objective_config"])
        run.model = like.model_config
        run.objective = to_dataclass(objective, CONFIGS[objective["name"]])
    return finetune(run).checkpoint


def _scratch_overrides(cfg: TransferConfig, pre: Any) -> list[str]:
    """A from-scratch finetuning run of the pretrained checkpoint's architecture and objective."""
    return ["checkpoint=null", "scratch=true", f"task={cfg.task}", f"model={pre.model_config.name}",
            f"objective={pre.extra['objective_config']['name']}"]


def recorded_demos(pre: Any, pretrained: Path) -> dict[str, Any]:
    """The sim demos a loaded pretraining checkpoint records (file and count), checked to exist."""
    demos = pre.extra.get("demos")
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

    from sim2real.checkpoint import load_checkpoint

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
        _finetune([*_scratch_overrides(cfg, pre), f"demos={demos['path']}", f"num_demos={demos['episodes']}",
                   f"steps={steps}", "holdout=0",
                   "seed=1", f"out_dir={out}", f"device={cfg.device}", "eval_backend=", *cfg.scratch], like=pre)
        atomic_write(done, json.dumps({"steps": steps, "pretrained": str(pretrained)}))
    return ckpt


def train_method(cfg: TransferConfig, method: str, seed: int, pretrained: Path, demos: Path, out: Path,
                 say: Callable[[str], None] = print) -> Any:
    """The trained policy of one method and seed (anything with act/reset)."""
    import torch

    from sim2real.bc import BCConfig, cotrain_weights, train_bc
    from sim2real.checkpoint import load_checkpoint
    from sim2real.config import PlannerConfig, load_preset
    from sim2real.data import read_episodes
    from sim2real.device import resolve_device
    from sim2real.inference import load_policy

    if method not in METHODS:
        raise ValueError(f"method {method!r}: expected one of {list(METHODS)}")
    device = resolve_device(cfg.device)
    planner = load_preset("planner", "policy", PlannerConfig)
    run_dir = out / f"seed{seed}" / method
    common = [f"demos={demos}", f"seed={seed + 1}", f"out_dir={run_dir}", f"device={cfg.device}", "eval_backend="]
    if method == "zero_shot":
        return load_policy(pretrained, planner, device)
    if method == "ours":
        return load_policy(_finetune([f"checkpoint={pretrained}", *common, *cfg.finetune]), planner, device)
    if method == "wm_offline":
        offline = offline_checkpoint(cfg, pretrained, say)
        return load_policy(_finetune([f"checkpoint={offline}", *common, *cfg.finetune]), planner, device)
    pre = load_checkpoint(pretrained)
    if method == "wm_scratch":
        scratch = [*_scratch_overrides(cfg, pre), f"steps={cfg.scratch_steps}", *common, *cfg.scratch]
        return load_policy(_finetune(scratch, like=pre), planner, device)
    _, episodes = read_episodes(demos, contract=pre.contract)
    bc = BCConfig(**{"seed": seed, **cfg.bc})
    with torch.random.fork_rng():
        if method == "bc":
            return train_bc(episodes, pre.contract, bc, device=device)
        sim = sim_demos(pre, pretrained)
        if method == "bc_cotrain":
            return train_bc(sim + episodes, pre.contract, bc, device=device,
                            episode_weights=cotrain_weights(sim, episodes, cfg.cotrain_target_fraction))
        # bc_finetune: BC on the sim demos, then (its normalisation kept) on the target demos
        start = train_bc(sim, pre.contract, bc, device=device)
        second = BCConfig(**{**asdict(bc), "steps": cfg.bc_finetune_steps, "lr": cfg.bc_finetune_lr})
        return train_bc(episodes, pre.contract, second, device=device, init=start)


def run_transfer(cfg: TransferConfig, say: Callable[[str], None] = print) -> dict[str, MethodSummary]:
    """The whole benchmark; returns the per-method summaries (also printed and written)."""
    import tasks
    from sim2real.evaluate import evaluate_policy

    out = Path(cfg.out_dir or f"outputs/benchmarks/transfer/{cfg.task}_{cfg.source_backend}-{cfg.target_backend}_"
                              f"{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    out.mkdir(parents=True, exist_ok=True)
    record = run_record(cfg)
    config_path = out / "config.json"
    if config_path.exists():
        if _recorded(json.loads(config_path.read_text())) != record:
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
                stats = evaluate_policy(policy, env, cfg.eval_episodes, seed=eval_seed(seed))
                successes = round(stats.success_at_end * cfg.eval_episodes)
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


# Settings that do not change what a (method, seed) result means: runs that differ only in
# them can be continued in one out_dir or aggregated into one table.
_NOT_RECORDED = ("out_dir", "cache_dir", "device", "seeds", "first_seed", "methods")


def run_record(cfg: TransferConfig) -> dict[str, Any]:
    """What config.json holds: the settings that define the experiment (plain JSON types)."""
    record = {k: v for k, v in asdict(cfg).items() if k not in _NOT_RECORDED}
    return json.loads(json.dumps(record, default=str))


def _recorded(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in _NOT_RECORDED}


def load_run(out_dir: str | Path) -> tuple[TransferConfig, list[dict[str, Any]]]:
    """A run's settings (config.json) and its per-(method, seed) results (results.csv)."""
    from sim2real.config import to_dataclass
    from tasks.domain import DomainParams

    out = Path(out_dir)
    config_path = out / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: not found; is {out} a transfer benchmark out_dir?")
    record = _recorded(json.loads(config_path.read_text()))
    domains = {k: to_dataclass(record.pop(k), DomainParams) for k in ("source_domain", "target_domain")}
    cfg = TransferConfig(**record, **domains)
    rows = read_results(out / "results.csv")
    cfg.seeds = len({int(r["seed"]) for r in rows})
    cfg.out_dir = str(out)
    return cfg, rows


def report(cfg: TransferConfig, rows: list[dict[str, Any]], out: Path,
           say: Callable[[str], None] = print) -> dict[str, MethodSummary]:
    """Print the table lines, write summary.csv and transfer.png."""
    summaries = {m: summarise(rows, m) for m in cfg.methods if any(r["method"] == m for r in rows)}
    for s in summaries.values():
        say(transfer_line(cfg, s))
    gap = gap_line(cfg, summaries)
    if gap:
        say(gap)
    ordered = list(summaries.values())
    write_summary(out / "summary.csv", cfg, ordered)
    title = (f"{cfg.task}: {world(cfg.source_backend, cfg.source_domain)} -> "
             f"{world(cfg.target_backend, cfg.target_domain)}, {cfg.demos} target demos, "
             f"{cfg.seeds} seeds x {cfg.eval_episodes} episodes")
    png = plot_summary(out / "transfer.png", title, ordered)
    say(f"wrote {out / 'summary.csv'}, {out / 'results.csv'} and {png}")
    return summaries
