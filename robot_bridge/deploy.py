"""Stage 3 in one command: the policy node against the simulated arm (or a ROS 2 arm), N episodes.

`scripts/deploy.py` (Hydra, configs/deploy.yaml) calls `run_deploy`. With `robot=sim` it starts
two node processes, `sim2real_sim_robot` and `sim2real_policy_node`, from one ROS params file
written to the run directory (the same file format an ament launch file passes), and
coordinates episodes over ROS topics: `~/reset` to the arm, wait for its `episode_end` status,
report success. With `robot=ros` only the policy node starts, against an arm already running.

Without a checkpoint, `policy.policy=expert task=<task>` runs the task's scripted expert through
the same loop. `record_dir` records every episode as a rosbag2 bag (robot_bridge.bag_recorder,
one bag per episode, on the deploy process's own participant): the joint states, object pose,
goal, the policy node's commands and its decided actions (`~/action`), with task, seed, domain,
contract, success and the arm's clock at its reset (`start_stamp_ns`: a recorder that hears of
the reset late cuts what came before). Recording starts in the callback that hears the reset,
so the episode's first state is in the bag. The bags read back with
`configs/dataset/ros2_sim_<arm>.yaml`. The run directory also gets the policy
node's per-tick latencies (`latency.json`) and, with `video_episodes`, MP4s of the first episodes
rendered from the MuJoCo arm (`videos/episode_<k>.mp4`).

The network rule: unless `allow_network=true`, everything runs in a fresh network namespace
with loopback-only DDS settings (`ensure_network_namespace` re-executes the command under
`unshare -n`). With `transport=rclpy` and no rclpy in this interpreter, the nodes run with the
rclpy virtual environment's Python (scripts/rclpy_venv.sh) and this environment's packages
(torch, MuJoCo) appended to their path.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from robot_bridge.deploy_config import DeployConfig
from robot_bridge.deploy_plan import ARUCO_NODE, PERCEPTIONS, POLICY_NODE, SIM_NODE, node_params, record_topics, \
    resolve_policy
from robot_bridge.node_process import NodeProcess, find_rclpy_python, node_command, require_network_namespace
from robot_bridge.transport import rclpy_available
from sim2real.robot.description import arm_config_path

# ---- checkpoints ------------------------------------------------------------------------------

def untrained_checkpoint(path: str | Path, task: str = "push_cube", obs_mode: str = "state",
                         control_mode: str = "pd_ee_delta_pos", model: str = "tiny", seed: int = 0) -> Path:
    """A checkpoint of an untrained world model with a CDRED objective: plumbing checks and benchmarks only."""
    import torch

    from sim2real.checkpoint import make_checkpoint, save_checkpoint
    from sim2real.config import ModelConfig, load_preset
    from sim2real.imitation import CdredConfig, make_objective
    from sim2real.world_model import WorldModel
    from tasks.spec import task_contract, task_spec

    torch.manual_seed(seed)
    contract = task_contract(task, obs_mode, control_mode)
    net = WorldModel(load_preset("model", model, ModelConfig), contract.model_obs_shapes(), contract.action_dim)
    objective_cfg = load_preset("objective", "cdred", CdredConfig)  # the preset pretraining uses
    objective = make_objective(objective_cfg, net)
    extra = {"agent": {"objective": objective.state_dict()}, "objective_config": asdict(objective_cfg),
             "episode_length": task_spec(task).episode_length, "task": task, "stage": "untrained"}
    return save_checkpoint(path, make_checkpoint(net, contract, extra))


# ---- the deployment -----------------------------------------------------------------------------

@dataclass
class DeployResult:
    """What `run_deploy` did.

    Attributes:
        task / transport: what ran, over which transport.
        successes / steps: per episode (success None: not known, robot=ros without success_topic).
        overruns: control ticks that missed their deadline (-1: no final status from the node).
        policy_status: the policy node's final status.
        latency_ms: the policy node's loop latency per command (joint state in -> command out),
            from out_dir/latency.json ([] when not logged).
        videos: the MP4s written (robot=sim with video_episodes), in episode order.
        record_dir: where the episodes were recorded ("": not recorded).
        episode_s: wall-clock seconds per episode, reset to end.
        perception_status: the ArUco node's final status (perception=aruco), else None.
    """

    task: str
    transport: str
    successes: list[int | None]
    steps: list[int]
    overruns: int
    policy_status: dict[str, Any] | None
    latency_ms: list[float] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)
    record_dir: str = ""
    episode_s: list[float] = field(default_factory=list)
    perception_status: dict[str, Any] | None = None


def _read_latency(path: Path) -> list[float]:
    if not path.is_file():
        return []
    try:
        return [float(v) for v in json.loads(path.read_text())["loop_ms"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(f"{path}: unreadable latency log ({exc})") from exc


class _Coordinator:
    """The deploy process's own ROS participant: episode resets out, statuses in."""

    def __init__(self, transport_name: str, allow_network: bool, success_topic: str = "") -> None:
        from sim2real.ros import messages as m
        from robot_bridge.sim_robot_core import int32_msg
        from robot_bridge.transport import make_transport

        name = "rclpy" if transport_name == "rclpy" and rclpy_available() else "dds"
        self.transport = make_transport(name, "sim2real_deploy", allow_network=allow_network)  # type: ignore[arg-type]
        self.sim: list[dict[str, Any]] = []
        # Called with each arm status as it is taken, before the messages behind it in the same spin.
        self.on_sim_status: Callable[[dict[str, Any]], None] | None = None
        self.policy: list[dict[str, Any]] = []
        self.success: bool | None = None
        self.transport.subscribe(f"/{SIM_NODE}/status", m.STRING, self._on_sim_status)
        self.transport.subscribe(f"/{POLICY_NODE}/status", m.STRING,
                                 lambda msg: self.policy.append(json.loads(msg.data)))
        self.reset_pub = self.transport.publisher(f"/{SIM_NODE}/reset", "std_msgs/msg/Int32")
        self.policy_reset = self.transport.publisher(f"/{POLICY_NODE}/reset", m.BOOL)
        self._int32, self._bool = int32_msg, m.bool_msg
        if success_topic:
            self.transport.subscribe(success_topic, m.BOOL, lambda msg: setattr(self, "success", bool(msg.data)))

    def _on_sim_status(self, msg: Any) -> None:
        status = json.loads(msg.data)
        self.sim.append(status)
        if self.on_sim_status is not None:
            self.on_sim_status(status)

    def wait(self, until: Callable[[], Any], timeout_s: float, nodes: Sequence[NodeProcess], what: str,
             every: Callable[[], None] | None = None, every_s: float = 0.5) -> Any:
        deadline, next_every = time.monotonic() + timeout_s, 0.0
        while time.monotonic() < deadline:
            if every is not None and time.monotonic() >= next_every:
                every()
                next_every = time.monotonic() + every_s
            self.transport.spin_once(0.05)
            found = until()
            if found:
                return found
            dead = [n for n in nodes if not n.alive()]
            if dead:
                raise RuntimeError(f"deploy: {what}: a node exited\n" + "\n".join(n.describe() for n in dead))
        raise RuntimeError(f"deploy: {what}: nothing within {timeout_s:.0f} s\n"
                           + "\n".join(n.describe() for n in nodes))

    def close(self) -> None:
        self.transport.close()


def run_deploy(cfg: DeployConfig, say: Callable[[str], None] = print) -> DeployResult:
    """Run `cfg.episodes` episodes (see the module docstring); prints one line per episode and a summary."""
    if cfg.robot.kind not in ("sim", "ros"):
        raise ValueError(f"robot.kind={cfg.robot.kind!r}: expected sim or ros")
    if cfg.video_episodes > 0 and cfg.robot.kind != "sim":
        raise ValueError(f"video_episodes={cfg.video_episodes}: videos are rendered by the simulated arm (robot=sim)")
    if cfg.perception not in PERCEPTIONS:
        raise ValueError(f"perception={cfg.perception!r}: expected one of {PERCEPTIONS} ('' or aruco)")
    arm_config_path(cfg.arm)  # an unknown arm is refused with the known ones listed
    task, episode_length, contract = resolve_policy(cfg)
    if cfg.robot.kind == "sim":
        from tasks.layout import arm_setup

        arm_setup(cfg.arm, task)  # an arm without a scene for this task is refused before any node starts
    require_network_namespace(cfg.allow_network, "deploy")
    rgb = contract.rgb_shape is not None
    period = 1.0 / contract.control_freq
    transport = cfg.transport if cfg.transport != "auto" else ("rclpy" if rclpy_available() else "dds")
    python = find_rclpy_python(cfg.rclpy_python) if transport == "rclpy" else sys.executable
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    latency_file = out / "latency.json"
    latency_file.unlink(missing_ok=True)  # a previous run's in the same directory would pass for this one's
    params_file = out / "ros_params.yaml"
    params_file.write_text(yaml.safe_dump(node_params(cfg, task, episode_length, transport, rgb)))
    topics = record_topics(cfg, rgb) if cfg.record_dir else []
    nodes: list[NodeProcess] = []
    coordinator = _Coordinator(transport, cfg.allow_network, cfg.robot.success_topic)
    recorder = None
    policy: NodeProcess | None = None
    aruco: NodeProcess | None = None
    successes: list[int | None] = []
    steps: list[int] = []
    episode_s: list[float] = []
    videos: list[str] = []
    try:
        if cfg.record_dir:
            from robot_bridge.bag_recorder import BagRecorder

            # Subscribed before the nodes start, so discovery has the whole start-up to match.
            recorder = BagRecorder(coordinator.transport, topics, cfg.record_dir, storage=cfg.record_storage,
                                   marker_topic=None, task=task, domain=cfg.robot.domain, contract=contract)
        if cfg.robot.kind == "sim":
            nodes.append(NodeProcess(SIM_NODE, node_command("robot_bridge.sim_robot", python,
                                                            ["--ros-args", "--params-file", str(params_file)]), out))
        if cfg.perception == "aruco":
            aruco = NodeProcess(ARUCO_NODE, node_command("robot_bridge.aruco_node", python,
                                                         ["--ros-args", "--params-file", str(params_file)]), out)
            nodes.append(aruco)
        policy = NodeProcess(POLICY_NODE, node_command("robot_bridge.policy_loop", python,
                                                       ["--ros-args", "--params-file", str(params_file)]), out)
        nodes.append(policy)
        coordinator.wait(lambda: any(s["policy_steps"] > 0 for s in coordinator.policy),
                         cfg.startup_timeout_s + 30, nodes, "waiting for the policy node to run")
        for i in range(cfg.episodes):
            seed = cfg.seed + i
            began = time.monotonic()
            if cfg.robot.kind == "sim":
                last = max((s["episode"] for s in coordinator.sim), default=-1)

                def is_ack(status: dict[str, Any], last: int = last, seed: int = seed) -> bool:
                    return status["episode"] > last and status["seed"] == seed

                def start_recording(status: dict[str, Any]) -> None:
                    # In the status callback: the arm's first state of the episode, which the node's first
                    # decision is made from, is taken later in the same spin (the status topic was
                    # subscribed first) and lands in the bag. The domain is the one the arm reports.
                    if recorder is not None and not recorder.recording and is_ack(status):
                        recorder.start(seed=seed, domain=status.get("domain", cfg.robot.domain),
                                       start_stamp_ns=status.get("stamp_ns"))

                coordinator.on_sim_status = start_recording
                coordinator.wait(lambda: next((s for s in coordinator.sim if is_ack(s)), None),
                                 20, nodes, f"episode {i}: reset not acknowledged",
                                 every=lambda: coordinator.reset_pub.publish(coordinator._int32(seed)))
                coordinator.on_sim_status = None
                end = coordinator.wait(
                    lambda: next((s for s in coordinator.sim if s["episode"] > last and s["state"] == "done"), None),
                    episode_length * period * 4 + 20, nodes, f"episode {i}: no episode end")
                successes.append(int(end["success"]))
                steps.append(int(end["steps"]))
                if end.get("video"):
                    videos.append(str(end["video"]))
            else:
                coordinator.policy_reset.publish(coordinator._bool(True))
                if recorder is not None:
                    recorder.start(seed=seed)
                start = time.monotonic()
                coordinator.wait(lambda: time.monotonic() - start >= episode_length * period, episode_length * period
                                 + 5, nodes, f"episode {i}")
                successes.append(None if coordinator.success is None else int(coordinator.success))
                steps.append(episode_length)
            if recorder is not None:
                recorder.stop(success=None if successes[-1] is None else bool(successes[-1]), steps=steps[-1])
            episode_s.append(time.monotonic() - began)
            say(f"deploy episode={i} success={'na' if successes[-1] is None else successes[-1]} steps={steps[-1]}")
    finally:
        if recorder is not None:
            recorder.close()  # an episode cut short by an error is discarded, not indexed
        coordinator.close()
        for node in reversed(nodes):
            node.stop()
    status = policy.final_status() if policy is not None else None
    overruns = int(status["overruns"]) if status else -1
    known = [s for s in successes if s is not None]
    rate = f"{sum(known) / len(known):.2f}" if known else "na"
    per_episode = sum(episode_s) / len(episode_s) if episode_s else 0.0
    say(f"deploy task={task} robot={cfg.robot.kind} transport={transport} episodes={cfg.episodes} "
        f"success={rate} overruns={overruns} s_per_episode={per_episode:.2f}")
    if recorder is not None:
        say(f"deploy recorded episodes={len(successes)} record_dir={cfg.record_dir}")
    return DeployResult(task, transport, successes, steps, overruns, status, latency_ms=_read_latency(latency_file),
                        videos=[v for v in videos if Path(v).is_file()], record_dir=cfg.record_dir,
                        episode_s=episode_s, perception_status=aruco.final_status() if aruco is not None else None)
