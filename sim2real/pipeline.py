"""The main job end to end: sim demos -> pretraining -> target demos over ROS 2 -> finetuning ->
deployment over ROS 2, with a report (`make demo`, `scripts/demo.py`).

Phases, each also its own command (README "The main command"):

1. `demos`: source-domain demos with the scripted expert (`scripts/collect_demos.py`);
2. `pretrain`: online imitation on the source domain (`scripts/pretrain.py`), and a BC policy on
   the same demos and evaluation episodes for the learning curve's reference line;
3. `record`: the simulated MuJoCo arm on the target domain behind ROS 2, driven by the scripted
   expert through the policy node; every episode recorded as a rosbag2 (MCAP) bag by the
   deploy coordinator (`scripts/deploy.py policy.policy=expert record_dir=...`);
4. `finetune`: the pretrained model finetuned on the successful bags (`scripts/finetune.py
   dataset=ros2_sim_panda`; failed expert episodes are left out, as bad real demos would be);
5. `evaluate`: zero-shot, finetuned, BC on the same bags, and BC co-trained on the sim demos and
   the bags (half of every batch from the bags) on the same target episodes in simulation, for
   the success table;
6. `deploy`: the finetuned model driving the simulated arm over ROS 2 for `deploy_episodes`
   episodes (`scripts/deploy.py`), with a video of the first and the decision latencies;
7. `report`: `report/` (sim2real.report) and `summary.json`.

Everything runs in one process inside a loopback-only network namespace (the ROS 2 phases need
it and the others do not care). A phase whose outputs exist is skipped, so `out_dir=<run>` on a
stopped run continues it; `phases.json` keeps the finished phases' figures and wall times.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from hydra.core.config_store import ConfigStore

from sim2real.atomic import atomic_write

PHASES = ("demos", "pretrain", "record", "finetune", "evaluate", "deploy", "report")


@dataclass
class DemoConfig:
    """`configs/demo.yaml`: `python scripts/demo.py [key=value ...]`.

    Args:
        task: the configs/task/ group (`task=pick_cube`, `task.episode_length=60`).
        arm: the configs/arm/ group (`arm=so100`): the arm in every phase, simulated and over
            ROS 2 (tasks.layout.ARM_SETUPS says which tasks each arm has).
        source_backend: the pretraining simulator ("maniskill" or "mujoco"); the arm behind
            ROS 2 is always the MuJoCo one (robot_bridge/sim_robot.py).
        target_domain: the simulated "real" arm's world: the configs/domain/ group placed here
            (`domain@target_domain=source` picks another preset, `target_domain.friction_scale=0.4`
            changes one field).
        model: the configs/model/ group (`model=5m`, `model.latent_dim=64`).
        source_demos / pretrain_steps: stage-1 budget (demos and env steps).
        target_demos / finetune_steps: stage-2 budget (bags recorded over ROS 2, updates).
        eval_episodes: target episodes per method in the simulated evaluation.
        deploy_episodes: episodes over ROS 2 with the finetuned model.
        transport: auto, dds or rclpy (robot_bridge.transport).
        seed: seeds every phase (each phase adds its own offset).
        pretrain / finetune: extra overrides of configs/pretrain.yaml / configs/finetune.yaml.
        out_dir: the run's folder; "" = outputs/<date>/<time>. An existing one is continued.
    """

    task: Any = None
    arm: Any = "panda"
    source_backend: str = "maniskill"
    target_domain: Any = None
    model: Any = None
    source_demos: int = 50
    pretrain_steps: int = 2000
    target_demos: int = 20
    finetune_steps: int = 500
    eval_episodes: int = 50
    deploy_episodes: int = 10
    transport: str = "auto"
    seed: int = 1
    pretrain: list[str] = field(default_factory=list)
    finetune: list[str] = field(default_factory=list)
    out_dir: str = ""

    def __post_init__(self) -> None:
        from sim2real.robot.description import arm_name

        self.arm = arm_name(self.arm)  # the arm/ group's node -> its name


ConfigStore.instance().store(name="demo_schema", node=DemoConfig)


def register_schemas() -> None:
    """Register the structured schemas `configs/demo.yaml` composes (task/, domain/); call
    before Hydra composes it."""
    import tasks.domain  # noqa: F401
    import tasks.spec  # noqa: F401


class Phases:
    """Which phases are done, their results and wall times (`phases.json`, rewritten atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}

    def finish(self, name: str, result: dict[str, Any], wall_s: float) -> None:
        self.done[name] = {**result, "wall_s": round(wall_s, 1)}
        atomic_write(self.path, json.dumps(self.done, indent=1, default=str))


class Pipeline:
    """The seven phases over one run folder (see the module docstring)."""

    def __init__(self, cfg: DemoConfig, out: Path, say: Callable[[str], None] = print) -> None:
        from sim2real.config import ModelConfig, to_dataclass
        from sim2real.finetune_config import resolve_domain
        from sim2real.robot.description import arm_name
        from tasks.layout import arm_setup
        from tasks.spec import TaskConfig

        self.cfg, self.out, self.say = cfg, out, say
        self.arm = arm_name(cfg.arm)  # cfg may be a DictConfig (tests compose without the dataclass)
        task = asdict(cfg.task) if isinstance(cfg.task, TaskConfig) else dict(cfg.task or {})
        if task.get("arm", self.arm) not in (self.arm, TaskConfig.arm):
            raise ValueError(f"task.arm={task['arm']!r} and arm={self.arm!r} differ: set arm= only")
        self.task = to_dataclass({**task, "arm": self.arm}, TaskConfig)
        arm_setup(self.arm, self.task.name)  # a task without a scene for this arm stops here, not in phase 3
        self.model = to_dataclass(cfg.model if cfg.model is not None else {}, ModelConfig)
        out.mkdir(parents=True, exist_ok=True)
        self.phases = Phases(out / "phases.json")
        self.target = resolve_domain(cfg.target_domain if cfg.target_domain is not None else "target")
        self.data = out / "data"
        self.source_demos = self.data / "source_demos.h5"
        self.bags = self.data / "target_bags"
        self.pretrained = out / "pretrain" / "checkpoints" / "last.pt"
        self.finetuned = out / "finetune" / "checkpoints" / "last.pt"

    def run(self) -> dict[str, Any]:
        steps = {"demos": self.collect, "pretrain": self.pretrain, "record": self.record,
                 "finetune": self.finetune_phase, "evaluate": self.evaluate, "deploy": self.deploy,
                 "report": self.report}
        start = time.perf_counter()
        for i, name in enumerate(PHASES, 1):
            if name in self.phases.done and name != "report":
                self.say(f"[{i}/{len(PHASES)}] {name}: done in an earlier run "
                         f"({self.phases.done[name]['wall_s']} s), skipped")
                continue
            self.say(f"[{i}/{len(PHASES)}] {name}: {self._describe(name)}")
            t0 = time.perf_counter()
            result = steps[name]()
            self.phases.finish(name, result, time.perf_counter() - t0)
            self.say(f"[{i}/{len(PHASES)}] {name}: finished in {time.perf_counter() - t0:.1f} s")
        self.say(f"demo total_wall_s={time.perf_counter() - start:.1f} (this process) "
                 f"phases_wall_s={sum(p['wall_s'] for p in self.phases.done.values()):.1f} out_dir={self.out}")
        return self.phases.done

    def _describe(self, name: str) -> str:
        c = self.cfg
        target = f"mujoco:{self.target.name}"
        return {
            "demos": f"{c.source_demos} scripted-expert demos of {self.task.name} on {c.source_backend}:source",
            "pretrain": f"{c.pretrain_steps} env steps of online imitation ({self.model.name}) on {c.source_backend}:source",
            "record": f"{c.target_demos} expert episodes on the simulated arm ({target}) over ROS 2, recorded "
                      f"as rosbag2 (MCAP)",
            "finetune": f"{c.finetune_steps} updates on the recorded bags",
            "evaluate": f"zero-shot, finetuned, BC and BC co-trained with the sim demos on {c.eval_episodes} "
                        f"{target} episodes each (simulation)",
            "deploy": f"the finetuned model on the simulated arm over ROS 2, {c.deploy_episodes} episodes",
            "report": f"figures, tables and summary.json in {self.out / 'report'}",
        }[name]

    # ---- phases -------------------------------------------------------------------------------
    def collect(self) -> dict[str, Any]:
        from tasks.collect import CollectConfig, collect_demos
        from tasks.domain import DomainParams

        result = collect_demos(CollectConfig(task=self.task, domain=DomainParams(), backend=self.cfg.source_backend,
                                             episodes=self.cfg.source_demos, seed=10_000, out=str(self.source_demos)))
        return {"path": str(self.source_demos), "episodes": self.cfg.source_demos,
                "success_rate": result.success_rate}

    def pretrain(self) -> dict[str, Any]:
        from sim2real.bc import BCConfig, train_bc
        from sim2real.evaluate import TRAINING_EVAL_SEED, evaluate_policy
        from sim2real.pretrain import load_demos
        from sim2real.stages import pretrain_settings, run_pretrain
        import tasks

        c = self.cfg
        continued = self.pretrained.exists()  # a fresh run has nothing to resume
        run_cfg = pretrain_settings(c.pretrain, task=self.task, model=self.model, backend=c.source_backend,
                                    steps=c.pretrain_steps, seed=c.seed, demos=str(self.source_demos),
                                    num_demos=c.source_demos, out_dir=str(self.out / "pretrain"), resume=continued)
        run = run_pretrain(run_cfg, self.say)
        env = tasks.make_env(run_cfg.task, backend=run_cfg.backend, num_envs=1, domain=run_cfg.domain)
        try:
            demos = load_demos(run_cfg, run_cfg.task, env.contract, self.say)
            bc = train_bc(demos, env.contract, BCConfig(seed=c.seed), device="cpu")
            # the episodes the pretraining loop evaluates on, so the curve and the BC line compare
            bc_stats = evaluate_policy(bc, env, run_cfg.eval_episodes, seed=TRAINING_EVAL_SEED)
        finally:
            env.close()
        self.say(f"bc task={self.task.name} demos={len(demos)} success={bc_stats.success_at_end:.2f} (source domain)")
        return {"checkpoint": str(self.pretrained), "history": [asdict(h) for h in run.history],
                "eval_episodes": run_cfg.eval_episodes, "bc_success": bc_stats.success_at_end,
                "env_steps_per_s": run.env_steps_per_s, "updates_per_s": run.updates_per_s}

    def _deploy_config(self, **kwargs: Any) -> Any:
        from robot_bridge.deploy_config import DeployConfig, RobotConfig
        from sim2real.config import PlannerConfig, load_preset

        # Every field spelled out over the nominal preset: the arm gets exactly self.target.
        params = {f"domain.{k}": v for k, v in {"name": self.target.name, **self.target.values()}.items()}
        robot = RobotConfig(kind="sim", domain="source", params=params)
        return DeployConfig(arm=self.arm, robot=robot, transport=self.cfg.transport,
                            planner=load_preset("planner", "policy", PlannerConfig), **kwargs)

    def record(self) -> dict[str, Any]:
        from robot_bridge.deploy import run_deploy

        if self.bags.exists():  # an interrupted recording: start it over (bags are cheap, seconds each)
            shutil.rmtree(self.bags)
        cfg = self._deploy_config(task=self.task.name, policy={"policy": "expert", "expert_task": self.task.name},
                                  episodes=self.cfg.target_demos, seed=20_000 + 1_000 * self.cfg.seed,
                                  record_dir=str(self.bags), out_dir=str(self.out / "record"), video_episodes=0)
        result = run_deploy(cfg, say=self.say)
        good = self._demo_bags()
        self.say(f"record episodes={len(result.successes)} successful={len(good)}: finetuning and BC use the "
                 f"successful ones, as one would keep only good real demonstrations")
        if not good:
            raise RuntimeError(f"{self.bags}: none of the {len(result.successes)} expert episodes succeeded; "
                               f"nothing to finetune on (see {self.out / 'record'} for the node logs)")
        return {"bags": str(self.bags), "episodes": len(result.successes), "successful": len(good),
                "expert_success": sum(s or 0 for s in result.successes) / max(len(result.successes), 1)}

    def _demo_bags(self) -> list[str]:
        """The recorded bags whose episode succeeded (the recorder's index says which)."""
        from sim2real.ros.episodes import read_index

        return [str(self.bags / e.bag) for e in read_index(self.bags) if e.success]

    def _bag_dataset(self) -> Any:
        """How the recorded bags are read: configs/dataset/ros2_sim_<arm>.yaml."""
        from sim2real.config import load_preset
        from sim2real.data import DatasetConfig

        return load_preset("dataset", f"ros2_sim_{self.arm}", DatasetConfig)

    def finetune_phase(self) -> dict[str, Any]:
        from sim2real.checkpoint import load_checkpoint
        from sim2real.stages import finetune_settings, run_finetune

        c = self.cfg
        run_cfg = finetune_settings(c.finetune, checkpoint=str(self.pretrained), demos=self._demo_bags(),
                                    dataset=self._bag_dataset(),
                                    steps=c.finetune_steps, seed=c.seed, out_dir=str(self.out / "finetune"),
                                    eval_backend="")
        run = run_finetune(run_cfg, self.say)
        # The arm the deployed checkpoint belongs to (its contract), for the report.
        arm = load_checkpoint(run.checkpoint).contract.arm
        return {"checkpoint": run.checkpoint, "updates": run.updates, "updates_per_s": run.updates_per_s, "arm": arm}

    def evaluate(self) -> dict[str, Any]:
        import tasks
        from sim2real.bc import BCConfig
        from sim2real.config import PlannerConfig, load_preset
        from sim2real.data import read_episodes
        from sim2real.inference import load_policy
        from sim2real.stages import count_successes, train_bc_baseline

        planner = load_preset("planner", "policy", PlannerConfig)
        zero_shot = load_policy(self.pretrained, planner)
        contract = zero_shot.contract
        dataset = self._bag_dataset()
        demos = [e for bag in self._demo_bags() for e in read_episodes(bag, dataset.format, dataset, contract=contract)[1]]
        _, sim = read_episodes(self.source_demos, contract=contract)
        bc = BCConfig(seed=self.cfg.seed)
        policies = {"zero_shot": zero_shot, "finetuned": load_policy(self.finetuned, planner),
                    **{m: train_bc_baseline(m, demos, sim, contract, bc) for m in ("bc", "bc_cotrain")}}
        env = tasks.make_env(self.task, backend="mujoco", num_envs=1, domain=self.target)
        results = {}
        try:
            for name, policy in policies.items():
                successes = count_successes(policy, env, self.cfg.eval_episodes, seed=4_000_000 + 10_000 * self.cfg.seed)
                results[name] = {"successes": successes, "episodes": self.cfg.eval_episodes}
                self.say(f"evaluate method={name} target=mujoco:{self.target.name} success={successes}/"
                         f"{self.cfg.eval_episodes}")
        finally:
            env.close()
        return {"methods": results, "bc_demos": len(demos), "bc_cotrain_sim_demos": len(sim),
                "where": f"mujoco:{self.target.name} (simulation)"}

    def deploy(self) -> dict[str, Any]:
        from robot_bridge.deploy import run_deploy

        cfg = self._deploy_config(checkpoint=str(self.finetuned), episodes=self.cfg.deploy_episodes,
                                  seed=30_000 + 1_000 * self.cfg.seed, out_dir=str(self.out / "deploy"),
                                  video_episodes=1)
        result = run_deploy(cfg, say=self.say)
        return {"successes": list(result.successes), "episodes": len(result.successes),
                "overruns": result.overruns, "transport": result.transport, "latency_ms": list(result.latency_ms),
                "videos": list(result.videos)}

    def report(self) -> dict[str, Any]:
        from sim2real import report
        from sim2real.stats import percentile

        done, c, folder = self.phases.done, self.cfg, self.out / "report"
        folder.mkdir(parents=True, exist_ok=True)
        pre = done["pretrain"]
        curve = report.learning_curve(folder / "learning_curve.png", [h["env_steps"] for h in pre["history"]],
                                      [h["success_at_end"] for h in pre["history"]], pre["bc_success"],
                                      f"{self.task.name}: pretraining on {c.source_backend}:source ({c.source_demos} demos, "
                                      f"{pre['eval_episodes']} episodes per point)")
        where = done["evaluate"]["where"]
        rows = [report.SuccessRow(m, r["successes"], r["episodes"], where)
                for m, r in done["evaluate"]["methods"].items()]
        dep = done["deploy"]
        known = [s for s in dep["successes"] if s is not None]
        rows.append(report.SuccessRow("finetuned", sum(known), len(known), f"mujoco:{self.target.name} over ROS 2"))
        md, table_csv = report.success_table(folder, rows)
        latency = dep["latency_ms"]
        hist = report.latency_histogram(folder / "latency_hist.png", latency, 1e3 / 20.0,
                                        f"policy node decision latency over ROS 2 ({dep['transport']}), "
                                        f"{len(latency)} ticks")
        video = None
        if dep["videos"]:
            video = shutil.copyfile(dep["videos"][0], folder / "deployed_episode.mp4")
        figures = {
            "pretrain_history": pre["history"], "bc_source_success": pre["bc_success"],
            "success_table": [{"method": r.method, "where": r.where, "successes": r.successes,
                               "episodes": r.episodes, "success": r.rate, "ci95": list(r.ci95)} for r in rows],
            "expert_success_over_ros2": done["record"]["expert_success"],
            "deploy_overruns": dep["overruns"],
            "latency_ms": {"p50": percentile(latency, 50) if latency else None,
                           "p99": percentile(latency, 99) if latency else None, "ticks": len(latency)},
            "phase_wall_s": {k: v["wall_s"] for k, v in done.items() if k != "report"},
            "throughput": {"env_steps_per_s": pre["env_steps_per_s"], "updates_per_s": pre["updates_per_s"],
                           "finetune_updates_per_s": done["finetune"]["updates_per_s"]},
        }
        config = {**asdict(c), "task": asdict(self.task), "target_domain": asdict(self.target)}
        summary = report.write_json(folder / "summary.json",
                                    {"arm": done["finetune"].get("arm"), "config": config, "figures": figures})
        self.say(md.read_text().rstrip())
        files = [curve, md, table_csv, hist, summary] + ([Path(video)] if video else [])
        self.say("report: " + ", ".join(str(p) for p in files))
        return {"files": [str(p) for p in files]}
