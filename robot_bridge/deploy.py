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
`configs/dataset/ros2_sim_panda.yaml`. The run directory also gets the policy
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
from hydra.core.config_store import ConfigStore

from robot_bridge.node_process import NodeProcess, find_rclpy_python, node_command, require_network_namespace
from robot_bridge.transport import rclpy_available
from sim2real.config import PlannerConfig
from sim2real.contract import ContractMismatch
from sim2real.robot.description import arm_config_path, arm_name
from tasks.spec import TaskConfig, arm_shape  # TaskConfig registers the task/ group (`task=push_cube`)

SIM_NODE, POLICY_NODE = "sim2real_sim_robot", "sim2real_policy_node"
# History depth of the recorder's subscriptions: DDS keeps receiving while this process is
# descheduled, and with the ROS profiles' 5-10 samples a 0.3 s stall on a busy 2-core machine
# lost 0.28 s of joint states from a bag. 500 samples hold 5 s of a 100 Hz topic.
RECORD_DEPTH = 500


@dataclass
class RobotConfig:
    """The `robot/` group: which arm the policy drives.

    Args:
        kind: "sim" (start the MuJoCo arm node) or "ros" (an arm already serving the ROS 2 interface).
        domain: the simulated arm's world (a configs/domain/ preset; the "real" arm differs from training).
        episode_length: control periods per episode; 0: the checkpoint's (or the task's) length.
        joint_state_rate_hz: the simulated arm's joint state rate.
        camera: publish camera frames (always on when the checkpoint observes rgb).
        params: more sim2real_sim_robot parameters (e.g. {"domain.friction_scale": 0.5}).
        success_topic: robot=ros: std_msgs/Bool read at each episode's end ("" reports success=na).
    """

    kind: str = "sim"
    domain: str = "target"
    episode_length: int = 0
    joint_state_rate_hz: float = 100.0
    camera: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    success_topic: str = ""


@dataclass
class DeployConfig:
    """`configs/deploy.yaml`: `python scripts/deploy.py checkpoint=... robot=sim transport=auto episodes=N`.

    Args:
        checkpoint: a checkpoint from pretrain or finetune; not needed with policy.policy=expert.
        arm: the arm driven (configs/arm/<arm>.yaml), the policy node's `arm`. A checkpoint for
            another arm is refused before any node starts; robot=sim simulates this arm in its task
            scene (tasks.layout.ARM_SETUPS: the Panda, the SO-100 for pick_cube).
        task: the task when no checkpoint names it (policy.policy=expert): a name, or the `task/`
            group (`task=push_cube` on the command line; its episode_length, when set, is used
            unless robot.episode_length is); with a checkpoint it must match the checkpoint's, or be "".
        robot: the `robot/` group.
        transport: auto (rclpy when importable here, else dds), dds or rclpy.
        episodes: episodes to run.
        seed: episode i is reset with seed + i.
        domain_id: ROS_DOMAIN_ID of the nodes.
        allow_network: run on the real network (a LAN arm) instead of a loopback-only namespace.
        planner: the `planner/` group (preset and fields), passed to the policy node.
        policy: more sim2real_policy_node parameters (e.g. {"command_interface": "forward"}).
        startup_timeout_s: how long the nodes may take to load and see each other.
        rclpy_python: the Python that has rclpy, for transport=rclpy ("" finds scripts/rclpy_venv.sh's).
        out_dir: where the params file, node logs, latency.json and videos go.
        record_dir: record every episode as a rosbag2 bag under this directory ("": no recording).
        record_storage: the bags' storage, "mcap" or "sqlite3".
        latency_log: the policy node writes its per-tick loop and compute times to out_dir/latency.json.
        video_episodes: robot=sim: render the first N episodes to out_dir/videos/episode_<k>.mp4 (0: none).
    """

    checkpoint: str = ""
    arm: Any = "panda"  # a name, or the arm/ group's node (arm=so100 on the command line)
    task: Any = ""  # str or TaskConfig
    robot: RobotConfig = field(default_factory=RobotConfig)
    transport: str = "auto"
    episodes: int = 3
    seed: int = 1000
    domain_id: int = 0
    allow_network: bool = False
    planner: PlannerConfig = field(default_factory=lambda: PlannerConfig(name="deploy"))
    device: str = "cpu"
    policy: dict[str, Any] = field(default_factory=dict)
    startup_timeout_s: float = 60.0
    rclpy_python: str = ""
    out_dir: str = "outputs/deploy"
    record_dir: str = ""
    record_storage: str = "mcap"
    latency_log: bool = True
    video_episodes: int = 0

    def __post_init__(self) -> None:
        self.arm = arm_name(self.arm)  # the arm/ group's node -> its name


ConfigStore.instance().store(name="deploy_schema", node=DeployConfig)
ConfigStore.instance().store(group="robot", name="schema", node=RobotConfig)


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


def _is_expert(cfg: DeployConfig) -> bool:
    return cfg.policy.get("policy", "checkpoint") == "expert"


def _node_params(cfg: DeployConfig, task: str, episode_length: int, transport: str, rgb: bool) -> dict[str, Any]:
    out = Path(cfg.out_dir).resolve()  # the nodes run from the repository root
    sim = {"task": task, "arm": cfg.arm, "seed": cfg.seed, "domain": cfg.robot.domain,
           "episode_length": episode_length,
           "joint_state_rate_hz": cfg.robot.joint_state_rate_hz, "transport": transport,
           "camera": cfg.robot.camera or rgb, "allow_network": cfg.allow_network, **cfg.robot.params}
    if cfg.video_episodes > 0:
        sim.setdefault("video_dir", str(out / "videos"))
        sim.setdefault("video_episodes", cfg.video_episodes)
    planner = {f"planner.{k}": v for k, v in asdict(cfg.planner).items() if k != "name"}
    if cfg.policy.get("arm", cfg.arm) != cfg.arm:
        raise ValueError(f"policy.arm={cfg.policy['arm']!r} and arm={cfg.arm!r} differ: set arm= only")
    policy = {"arm": cfg.arm, "checkpoint": str(Path(cfg.checkpoint).resolve()) if cfg.checkpoint else "",
              "planner": cfg.planner.name, **planner, "device": cfg.device,
              "transport": transport, "allow_network": cfg.allow_network,
              "startup_timeout_s": cfg.startup_timeout_s, **cfg.policy}
    if _is_expert(cfg):
        policy.setdefault("expert_task", task)
    if cfg.latency_log:
        policy.setdefault("latency_log", str(out / "latency.json"))
    if cfg.robot.kind == "sim":
        from tasks.layout import arm_setup

        policy.setdefault("episode_topic", f"/{SIM_NODE}/episode")
        # Where the simulated arm's scene has its base (the arm publishes poses in the base frame),
        # and the scene's workspace for the safety filter.
        setup = arm_setup(cfg.arm, task)
        policy.setdefault("base_in_task", list(setup.base_pos))
        if setup.workspace_lo is not None and setup.workspace_hi is not None:
            policy["safety"] = {"workspace_lo": list(setup.workspace_lo), "workspace_hi": list(setup.workspace_hi),
                                **policy.get("safety", {})}
        if rgb:
            policy.setdefault("camera_topic", "/camera/image_raw/compressed")
    return {SIM_NODE: {"ros__parameters": sim}, POLICY_NODE: {"ros__parameters": policy}}


def _task(cfg: DeployConfig) -> tuple[str, int]:
    """The task's name ("" when not set) and its configured episode length (0: not set)."""
    task = cfg.task
    if isinstance(task, str):
        return task, 0
    if isinstance(task, TaskConfig):
        task = asdict(task)
    if isinstance(task, dict):
        # The arm is deploy's arm=; a task.arm other than the default and that one is a conflict.
        if task.get("arm", cfg.arm) not in (cfg.arm, TaskConfig.arm):
            raise ValueError(f"task.arm={task['arm']!r} and arm={cfg.arm!r} differ: set arm= only")
        task = TaskConfig(**{**task, "arm": cfg.arm})
    if not isinstance(task, TaskConfig):
        raise ValueError(f"task={task!r}: expected a task name or the task/ group (TaskConfig)")
    expert_mode = arm_shape(cfg.arm).modes[0]
    if _is_expert(cfg) and (task.obs_mode, task.mode) != ("state", expert_mode):
        raise ValueError(f"task.obs_mode={task.obs_mode!r}, task.control_mode={task.mode!r}: the scripted "
                         f"expert observes state and acts in {expert_mode} on arm {cfg.arm!r}")
    return task.name, task.episode_length


def _resolve_policy(cfg: DeployConfig) -> tuple[str, int, Any]:
    """(task, episode length, contract) of what the policy node will run."""
    from tasks.spec import episode_length, task_contract

    named, task_length = _task(cfg)
    if _is_expert(cfg):
        task = named or str(cfg.policy.get("expert_task", ""))
        if not task:
            raise ValueError("task=...: required with policy.policy=expert (no checkpoint names the task), "
                             "e.g. task=push_cube")
        if cfg.policy.get("expert_task", task) != task:
            raise ValueError(f"policy.expert_task={cfg.policy['expert_task']!r} and task={task!r} differ; set one")
        # Also refuses unknown tasks; the expert acts in the arm's first mode (robot_bridge.policies).
        contract = task_contract(task, "state", arm_shape(cfg.arm).modes[0], arm=cfg.arm)
        return task, cfg.robot.episode_length or task_length or episode_length(task, cfg.arm), contract
    if not cfg.checkpoint:
        raise ValueError("checkpoint=...: required (a .pt file from pretrain or finetune), or run the scripted "
                         "expert with policy.policy=expert task=<task>")
    from sim2real.checkpoint import load_checkpoint

    ckpt = load_checkpoint(cfg.checkpoint)
    if ckpt.contract.arm != cfg.arm:
        raise ContractMismatch(f"{cfg.checkpoint}: contract mismatch: arm {ckpt.contract.arm!r} in checkpoint, "
                               f"{cfg.arm!r} on the robot (arm=)")
    task = str(ckpt.extra.get("task", "push_cube"))
    if named and named != task:
        raise ValueError(f"task={named!r}: the checkpoint {cfg.checkpoint} is for task {task!r}")
    return task, cfg.robot.episode_length or task_length or int(ckpt.extra.get("episode_length", 50)), \
        ckpt.contract


def record_topics(cfg: DeployConfig, rgb: bool) -> list[Any]:
    """The topics a finetuning reader needs (configs/dataset/ros2_sim_panda.yaml), named as the
    policy node's parameters name them: joint states, object pose, goal, camera, commands, and the
    node's decided actions before the safety filter (`action_topic`, which the reader prefers)."""
    from sim2real.ros import messages as m
    from robot_bridge.bag_recorder import TopicSpec
    from sim2real.ros.observation import POINT_STAMPED
    from robot_bridge.policy_node import PolicyNodeParams
    from robot_bridge.transport import QoS

    defaults = PolicyNodeParams(policy="reach", reach_target=[0.0, 0.0, 0.0], arm=cfg.arm)

    def param(name: str) -> Any:
        return cfg.policy.get(name, getattr(defaults, name))

    interface, controller = param("command_interface"), param("controller")
    if interface == "action":
        raise ValueError("record_dir: command_interface=action sends FollowJointTrajectory goals, which a bag "
                         "recorder cannot hear; record with command_interface trajectory or forward")
    # Best effort where the policy node subscribes best effort (it matches any publisher), reliable elsewhere.
    sensor, default = QoS(reliable=False, depth=RECORD_DEPTH), QoS(reliable=True, depth=RECORD_DEPTH)
    topics = [TopicSpec(param("joint_states_topic"), m.JOINT_STATE, sensor)]
    if param("object_pose_topic"):
        topics.append(TopicSpec(param("object_pose_topic"), m.POSE_STAMPED, sensor))
    if param("goal_topic"):
        topics.append(TopicSpec(param("goal_topic"), POINT_STAMPED if param("goal_type") == "point"
                                else m.POSE_STAMPED, default))
    camera = param("camera_topic") or ("/camera/image_raw/compressed" if rgb and cfg.robot.kind == "sim" else "")
    if camera:
        kind = m.COMPRESSED_IMAGE if param("camera_type") == "compressed" else m.IMAGE
        topics.append(TopicSpec(camera, kind, sensor))
    if interface == "forward":
        topics.append(TopicSpec(f"/{controller}/commands", m.FLOAT64_MULTI_ARRAY, default))
    else:
        topics.append(TopicSpec(f"/{controller}/joint_trajectory", m.JOINT_TRAJECTORY, default))
    action = param("action_topic")
    if action:
        topics.append(TopicSpec(f"/{POLICY_NODE}{action[1:]}" if action.startswith("~") else action,
                                m.FLOAT64_MULTI_ARRAY, default))
    return topics


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
    arm_config_path(cfg.arm)  # an unknown arm is refused with the known ones listed
    task, episode_length, contract = _resolve_policy(cfg)
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
    params_file.write_text(yaml.safe_dump(_node_params(cfg, task, episode_length, transport, rgb)))
    topics = record_topics(cfg, rgb) if cfg.record_dir else []
    nodes: list[NodeProcess] = []
    coordinator = _Coordinator(transport, cfg.allow_network, cfg.robot.success_topic)
    recorder = None
    policy: NodeProcess | None = None
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
                        episode_s=episode_s)
