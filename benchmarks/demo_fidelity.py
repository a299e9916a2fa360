#!/usr/bin/env python
"""Are demos recorded over ROS 2 as good as the demos they record? BC on the bags against BC on
the same expert's direct demos, and where the read actions lose the demonstrator's intent.

    python benchmarks/demo_fidelity.py task=push_cube demos=20 seeds=3 eval_episodes=50
    python benchmarks/demo_fidelity.py task=pick_cube demos=50 seeds=3

1. record: the scripted expert drives the simulated MuJoCo arm (`domain`, default the `target`
   preset) through the policy node and its safety filter over ROS 2 (DDS in a loopback network
   namespace), `demos` episodes with seeds record_seed + i, each a rosbag2 bag: the main
   command's record phase. A rerun with the same out_dir reuses the bags.
2. direct: the same expert on the same domain in the MuJoCo env itself (scripts/collect_demos.py),
   the same seeds.
3. Each source keeps its successful episodes, cut to one count n (the smaller of the two), as
   a user keeps only good demonstrations. The sources:
     bags                  the bags read as the main command reads them (dataset=ros2_sim_panda:
                           the node's decided actions before the safety filter, `~/action`)
     bags_commands         the same bags, actions reconstructed from the commands (actions=commands)
     bags_commands_linear  ... with the linear gripper inverse: how every bag was read before
     direct                the direct demos
     direct_observed       direct demos of the expert acting on the observations it records (with
                           the domain's sensor noise) instead of the noise-free state: through the
                           bridge the expert, like any demonstrator behind sensors, sees only those
4. action_mae: per action dimension, the mean |dataset action - the scripted expert replayed on
   the dataset's own observations| (tasks.experts.replay_expert). The expert is deterministic
   given what it sees, so on bags this is how far each read (observation, action) pair is from
   the one the expert produced. The direct expert acted on the noise-free state while the
   stored observations carry the domain's sensor noise, so on `direct` the figure is that
   noise's effect on the expert (a floor, not an error of the data path).
5. BC (sim2real.bc, default settings) per source and seed, each scored on the same
   `eval_episodes` episodes of the domain in simulation (seeds 6,000,000 + 10,000 x seed);
   out_dir/results.csv keeps every (source, seed) result, so a rerun with more seeds trains only
   the new ones.

Prints, per source,

    fidelity task=<t> source=<s> demos=<n> bc_success=<x> ci95_low=<l> ci95_high=<h> seeds=<k> action_mae=<y> action_mae_dims=[...]

(bc_success: mean over seeds; interval: the wider of Student's t over seeds and Wilson's over the
pooled episodes; action_mae: mean over dimensions), a `fidelity_seed` line per source and seed, and
where the commands lose the intent, per control tick of the bags against the decided action:

    fidelity_cause task=<t> cause=<c> steps=<n> mae_dims=[...]

  inverse          the node's own joint targets for the decided action (IK from the joint state it
                   acted on, before the filter) read back against that joint state: the inverse itself
  safety_filter    the targets the filter let through, read back against the same joint state
                   (linear gripper): what the filter's step, tracking and finger limits change
  gripper_binary   the same, with the binary gripper reading
  reference_state  the filtered targets read back against the joint state at the reader's control
                   grid instead of the one the node acted on (time alignment and recorder delays)

Arguments: task (push_cube), demos (20), seeds (3), eval_episodes (50), domain (target),
record_seed (20000), domain_id (63), out_dir (outputs/benchmarks/demo_fidelity/<task>), sources
(all, comma-separated: BC is trained for these only), eval (sim; bridge: each BC policy drives
the simulated arm through the policy node and its safety filter, in-process, as deployed; its
results are `<source>@bridge`).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.args import key_values  # noqa: E402
from benchmarks.results import append_rows  # noqa: E402

SOURCES_ALL = ("bags", "bags_commands", "bags_commands_linear", "direct", "direct_observed")
DEFAULTS = {"task": "push_cube", "demos": "20", "seeds": "3", "eval_episodes": "50", "domain": "target",
            "record_seed": "20000", "domain_id": "63", "out_dir": "", "sources": ",".join(SOURCES_ALL),
            "eval": "sim"}
EVAL_SEED = 6_000_000


def fmt(values: Any) -> str:
    return "[" + ",".join(f"{v:.3f}" for v in np.asarray(values).reshape(-1)) + "]"


# ---- the data ---------------------------------------------------------------------------------

def record(task: str, domain: str, episodes: int, seed: int, out: Path) -> Path:
    """The expert's episodes over ROS 2 as bags under out/bags (reused when already complete)."""
    from sim2real.ros.episodes import read_index
    from robot_bridge.deploy import run_deploy
    from robot_bridge.deploy_config import DeployConfig, RobotConfig

    bags = out / "bags"
    if bags.is_dir() and len(read_index(bags)) == episodes:
        return bags
    if bags.exists():
        import shutil

        shutil.rmtree(bags)
    cfg = DeployConfig(task=task, robot=RobotConfig(kind="sim", domain=domain), transport="dds",
                       policy={"policy": "expert", "expert_task": task}, episodes=episodes, seed=seed,
                       record_dir=str(bags), out_dir=str(out / "record"))
    run_deploy(cfg, say=lambda line: print(line, flush=True) if line.startswith("deploy task=") else None)
    return bags


def read_bags(bags: Path, contract: Any, actions: str, gripper: str) -> list[Any]:
    """The successful bags' episodes, read with ros2_sim_panda and these action settings."""
    from sim2real.ros.episodes import read_index
    from sim2real.config import load_preset
    from sim2real.data import DatasetConfig, read_episodes

    dataset = load_preset("dataset", "ros2_sim_panda", DatasetConfig)
    dataset.rosbag = dataclasses.replace(dataset.rosbag, actions=actions, gripper=gripper)
    good = [bags / e.bag for e in read_index(bags) if e.success]
    return [e for bag in good for e in read_episodes(bag, dataset.format, dataset, contract=contract)[1]]


def direct_demos(task: str, domain: Any, episodes: int, seed: int, privileged: bool = True) -> list[Any]:
    """The same expert's episodes in the MuJoCo env itself (seeds seed + i), the successful ones;
    acting on the noise-free state, or with `privileged=False` on the recorded observations."""
    import tasks
    from tasks.collect import expert_episodes
    from tasks.experts import make_expert

    env = tasks.make_env(task, backend="mujoco", num_envs=1, domain=domain)
    try:
        expert = make_expert(task, 1)
        return [e for e in expert_episodes(env, expert, episodes, seed, privileged=privileged) if e.success_at_end]
    finally:
        env.close()


def action_errors(task: str, episodes: list[Any]) -> np.ndarray:
    """|action - the expert replayed on the episode's observations| per step [steps, A]."""
    from tasks.experts import replay_expert

    return np.concatenate([(replay_expert(task, e.obs, e.length) - e.actions.float()).abs().numpy()
                           for e in episodes])


# ---- where the commands lose the intent ----------------------------------------------------------

def causes(bags: Path, contract: Any) -> dict[str, np.ndarray]:
    """Per control tick of the successful bags: |read-back action - decided action| by cause."""
    from sim2real.ros import policy_action as pa
    from sim2real.ros.episodes import read_index
    from sim2real.robot.arm_model import ee_delta_action_to_joint_targets, joint_delta_action_to_joint_targets
    from robot_bridge.safety_limits import SafetyLimits
    from sim2real.config import load_preset
    from sim2real.data import DatasetConfig
    from sim2real.data.actions import binary_gripper_actions, targets_to_actions
    from sim2real.data.bag_streams import load_bag
    from sim2real.data.resample import hold_indices
    from sim2real.data.rosbag import RosbagReader

    options = load_preset("dataset", "ros2_sim_panda", DatasetConfig).rosbag
    reader = RosbagReader(contract, options)
    model, mode, period = reader.model, contract.control_mode, reader.period
    limits = SafetyLimits.from_model(model, control_period=period / 1e9)
    arm_limits = (np.asarray(limits.lower[:model.dof]), np.asarray(limits.upper[:model.dof]))
    finger = model.gripper_limits[next(iter(model.gripper_limits))]
    out: dict[str, list[np.ndarray]] = {"inverse": [], "safety_filter": [], "gripper_binary": [],
                                        "reference_state": []}
    for info in (e for e in read_index(bags) if e.success):
        bag = load_bag(bags / info.bag, {"joints": options.joint_states_topic, "command": options.command_topic,
                                         "intent": options.action_topic}, "header")
        joints, commands, intents = (bag.streams[r] for r in ("joints", "command", "intent"))

        def q_at(t: int) -> np.ndarray:
            i = int(hold_indices(joints.times, np.array([t]))[0])
            reading, reasons = reader.assembler.parse_joint_state(joints.msgs[i])
            assert reading is not None, reasons
            return reading.position

        # The tick's command was published just before its decided action: the last one received before it.
        first = int(commands.times[0])
        rows: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        ref_quat = None
        for k, msg in enumerate(intents.msgs):
            decision = pa.parse_policy_action(msg)
            action, stamp = decision.action, decision.observation_stamp_ns
            c = int(np.searchsorted(commands.times, intents.times[k], side="right")) - 1
            if c < 0 or stamp < joints.times[0] or (k and commands.times[c] <= intents.times[k - 1]):
                continue  # no command of its own (held by the watchdog) or acted before the recording
            q = q_at(stamp)
            if mode == "pd_ee_delta_pos":
                ref_quat = model.fk(q[:model.dof])[1] if ref_quat is None else ref_quat
                target = ee_delta_action_to_joint_targets(model, q[:model.dof], action, ref_quat=ref_quat,
                                                          limits=arm_limits)
            else:
                target = joint_delta_action_to_joint_targets(model, q[:model.dof], action)
            sent = reader.command_targets(bag, commands, c)
            grid = first + round((int(commands.times[c]) - first) / period) * period
            rows.append((action, q, target, sent, q_at(grid)))
        if not rows:
            continue
        actions, q, target, sent, q_grid = (np.stack(x) for x in zip(*rows))
        dof = model.dof

        def read_back(targets: np.ndarray, qpos: np.ndarray) -> np.ndarray:
            return targets_to_actions(mode, qpos, targets[:, :dof], np.nanmean(targets[:, dof:], axis=1), model)

        filtered = read_back(sent, q)
        out["inverse"].append(np.abs(read_back(target, q) - actions))
        out["safety_filter"].append(np.abs(filtered - actions))
        binary = filtered.copy()
        binary[:, -1] = binary_gripper_actions(np.nanmean(sent[:, dof:], axis=1), float(q[0, dof:].mean()),
                                               finger.lower, finger.upper)
        out["gripper_binary"].append(np.abs(binary - actions))
        out["reference_state"].append(np.abs(read_back(sent, q_grid) - filtered))
    return {k: np.concatenate(v) for k, v in out.items() if v}


# ---- BC -------------------------------------------------------------------------------------------

class _NodePolicy:
    """A BC policy as the policy node runs one: named numpy features in, one action out."""

    def __init__(self, policy: Any) -> None:
        self.policy, self.contract = policy, policy.contract

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        batch = {k: torch.as_tensor(np.asarray(v)).unsqueeze(0) for k, v in obs.items()}
        with torch.no_grad():
            return self.policy.act(batch)[0].double().numpy()

    def reset(self) -> None:
        self.policy.reset()


def evaluate_behind_bridge(policy: Any, task: str, domain: str, episodes: int, seed: int) -> int:
    """Successes of `policy` driving the simulated arm through the policy node and its safety
    filter (in-process, messages by hand on the arm's clock, no DDS): as it would be deployed."""
    from robot_bridge.policy_node import PolicyNodeCore, PolicyNodeParams
    from robot_bridge.sim_robot_core import SimRobotCore, SimRobotParams

    sim = SimRobotCore(SimRobotParams(task=task, domain=domain, episode_length=0))
    core = PolicyNodeCore(_NodePolicy(policy), PolicyNodeParams(policy="expert", expert_task=task))
    length = sim.env.episode_length
    successes = 0
    for k in range(episodes):
        sim.reset(seed + k)
        sim.state = "running"  # no settling: the episode starts as the env's does
        core.reset_episode()
        for _ in range(length):
            now = 1e6 + sim.sim_time
            core.on_joint_state(sim.joint_state_msg(now), now)
            core.on_object_pose(sim.object_pose_msg(now), now)
            core.on_goal(sim.goal_msg(now), now)
            result = core.tick(now)
            if result.message is not None:
                sim.on_trajectory(result.message)
            sim.advance(core.period)
        successes += int(sim.success)
    return successes


RESULT_FIELDS = ("method", "seed", "demos", "successes", "episodes")


def bc_rows(task: str, domain: Any, sources: dict[str, list[Any]], contract: Any, seeds: int, eval_episodes: int,
            results: Path, through_bridge: str = "") -> list[dict[str, Any]]:
    """BC per source and seed, scored on the domain; rows are appended to `results` (a CSV) as they
    finish and rows already there (same source, seed, demos and episodes) are not redone, so a
    stopped run continues and a rerun with more seeds adds only the new ones. With `through_bridge`
    (a domain preset) each policy is scored behind the policy node on that simulated arm instead,
    as `<source>@bridge`."""
    import csv

    import torch

    import tasks
    from sim2real.bc import BCConfig, train_bc
    from sim2real.evaluate import evaluate_policy

    done = []
    if results.exists():
        with open(results, newline="") as f:
            done = list(csv.DictReader(f))
    key = lambda r: (r["method"], int(r["seed"]), int(r["demos"]), int(r["episodes"]))  # noqa: E731
    have = {key(r) for r in done}
    env = tasks.make_env(task, backend="mujoco", num_envs=1, domain=domain)
    try:
        for seed in range(seeds):
            for name, episodes in sources.items():
                method = f"{name}@bridge" if through_bridge else name
                row = {"method": method, "seed": seed, "demos": len(episodes), "successes": 0, "episodes": eval_episodes}
                if key(row) in have:
                    continue
                with torch.random.fork_rng():
                    policy = train_bc(episodes, contract, BCConfig(seed=seed))
                if through_bridge:
                    row["successes"] = evaluate_behind_bridge(policy, task, through_bridge, eval_episodes,
                                                              EVAL_SEED + 10_000 * seed)
                else:
                    stats = evaluate_policy(policy, env, eval_episodes, seed=EVAL_SEED + 10_000 * seed)
                    row["successes"] = round(stats.success_at_end * eval_episodes)
                append_rows(results, RESULT_FIELDS, [row])
                done.append({k: str(v) for k, v in row.items()})
                print(f"fidelity_seed task={task} source={method} seed={seed} demos={len(episodes)} "
                      f"bc_success={row['successes'] / eval_episodes:.3f}", flush=True)
    finally:
        env.close()
    wanted = {(f"{name}@bridge" if through_bridge else name, len(episodes)) for name, episodes in sources.items()}
    return [r for r in done if (r["method"], int(r["demos"])) in wanted and int(r["seed"]) < seeds
            and int(r["episodes"]) == eval_episodes]


def main() -> None:
    args = key_values(sys.argv[1:], DEFAULTS, "demo_fidelity")
    from robot_bridge.node_process import ensure_network_namespace

    ensure_network_namespace([sys.executable, *sys.argv], allow_network=False, domain_id=int(args["domain_id"]))
    logging.basicConfig(level=logging.WARNING)
    from sim2real.config import load_preset
    from sim2real.transfer import summarise
    from tasks.domain import DomainParams
    from tasks.spec import task_contract

    task, demos, seeds = args["task"], int(args["demos"]), int(args["seeds"])
    chosen = [s for s in args["sources"].split(",") if s]
    if args["eval"] not in ("sim", "bridge"):
        raise SystemExit(f"demo_fidelity: eval={args['eval']!r}; expected sim or bridge")
    if not chosen or any(s not in SOURCES_ALL for s in chosen):
        raise SystemExit(f"demo_fidelity: sources={args['sources']!r}; expected some of {','.join(SOURCES_ALL)}")
    out = Path(args["out_dir"] or f"outputs/benchmarks/demo_fidelity/{task}")
    domain = load_preset("domain", args["domain"], DomainParams)
    contract = task_contract(task, "state", "pd_ee_delta_pos")
    bags = record(task, args["domain"], demos, int(args["record_seed"]), out)
    readers = {"bags": lambda: read_bags(bags, contract, "intent", "binary"),
               "bags_commands": lambda: read_bags(bags, contract, "commands", "binary"),
               "bags_commands_linear": lambda: read_bags(bags, contract, "commands", "linear"),
               "direct": lambda: direct_demos(task, domain, demos, int(args["record_seed"])),
               "direct_observed": lambda: direct_demos(task, domain, demos, int(args["record_seed"]), False)}
    # The count kept is the smaller of the recorded and the direct successes, whatever BC is trained on.
    sources = {name: readers[name]() for name in SOURCES_ALL if name in ("bags", "direct") or name in chosen}
    n = min(len(sources["bags"]), len(sources["direct"]))
    print(f"fidelity_data task={task} domain={args['domain']} episodes={demos} successful_bags={len(sources['bags'])} "
          f"successful_direct={len(sources['direct'])} kept={n}"
          + (f" successful_direct_observed={len(sources['direct_observed'])}" if "direct_observed" in sources else ""),
          flush=True)
    if n == 0:
        raise SystemExit("demo_fidelity: no successful episode in one of the sources; nothing to compare")
    sources = {k: v[:n] for k, v in sources.items() if k in chosen}
    for cause, errors in causes(bags, contract).items():
        print(f"fidelity_cause task={task} cause={cause} steps={len(errors)} mae_dims={fmt(errors.mean(0))}",
              flush=True)
    bridge = args["domain"] if args["eval"] == "bridge" else ""
    rows = bc_rows(task, domain, sources, contract, seeds, int(args["eval_episodes"]), out / "results.csv", bridge)
    for name in chosen:
        s = summarise(rows, f"{name}@bridge" if bridge else name)
        mae = action_errors(task, sources[name]).mean(0)
        print(f"fidelity task={task} source={name}{'@bridge' if bridge else ''} demos={len(sources[name])} bc_success={s.success_mean:.3f} "
              f"ci95_low={s.ci95_low:.3f} ci95_high={s.ci95_high:.3f} seeds={s.seeds} action_mae={mae.mean():.3f} "
              f"action_mae_dims={fmt(mae)}", flush=True)


if __name__ == "__main__":
    main()
