"""Stage 3 in one command: the policy node against the simulated arm (or a ROS 2 arm), N episodes.

`scripts/deploy.py` (Hydra, configs/deploy.yaml) calls `run_deploy`. With `robot=sim` it starts
two node processes, `sim2real_sim_robot` and `sim2real_policy_node`, from one ROS params file
written to the run directory (the same file format an ament launch file passes), and
coordinates episodes over ROS topics: `~/reset` to the arm, wait for its `episode_end` status,
report success. With `robot=ros` only the policy node starts, against an arm already running.

The network rule: unless `allow_network=true`, everything runs in a fresh network namespace
with loopback-only DDS settings (`ensure_network_namespace` re-executes the command under
`unshare -n`). With `transport=rclpy` and no rclpy in this interpreter, the nodes run with the
rclpy virtual environment's Python (scripts/rclpy_venv.sh) and this environment's packages
(torch, MuJoCo) appended to their path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.core.config_store import ConfigStore

from robot_bridge.netns import in_network_namespace, loopback_env, netns_command
from robot_bridge.transport import rclpy_available
from sim2real.config import PlannerConfig

REPO = Path(__file__).resolve().parents[1]
SIM_NODE, POLICY_NODE = "sim2real_sim_robot", "sim2real_policy_node"
_TERM_GRACE_S = 5.0


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
        checkpoint: a checkpoint from pretrain or finetune.
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
        out_dir: where the params file and node logs go.
    """

    checkpoint: str = ""
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


ConfigStore.instance().store(name="deploy_schema", node=DeployConfig)
ConfigStore.instance().store(group="robot", name="schema", node=RobotConfig)


# ---- processes ------------------------------------------------------------------------------

def ensure_network_namespace(argv: Sequence[str], allow_network: bool, domain_id: int) -> None:
    """Make sure DDS cannot leave the machine before any node starts.

    Inside a loopback-only namespace already: add the loopback-only settings to the environment.
    Otherwise re-execute `argv` under `netns_command` (this call does not return). With
    `allow_network` nothing changes: the deployment talks to the real network on purpose.
    """
    if allow_network:
        return
    env = loopback_env(domain_id)
    if in_network_namespace():
        os.environ.update(env)
        return
    command = netns_command(list(argv))
    os.execvpe(command[0], command, {**os.environ, **env})


def require_network_namespace(allow_network: bool, what: str) -> None:
    """Refuse to start DDS nodes outside a loopback-only namespace unless the network is allowed."""
    if not allow_network and not in_network_namespace():
        raise RuntimeError(f"{what}: not in a loopback-only network namespace; call ensure_network_namespace() "
                           f"first (or set allow_network=true to use the real network on purpose)")


def find_rclpy_python(explicit: str = "") -> str:
    """The interpreter that runs rclpy nodes: `explicit`, this one when rclpy imports, or the cached venv."""
    if explicit:
        return explicit
    if rclpy_available():
        return sys.executable
    venv = Path(os.environ.get("SIM2REAL_RCLPY_VENV", REPO / ".cache" / "rclpy-venv"))
    python = venv / "bin" / "python"
    if (venv / ".sim2real-rclpy-ok").exists() and python.exists():
        return str(python)
    raise RuntimeError(f"transport=rclpy: rclpy is not importable here and there is no rclpy venv at {venv}; "
                       f"build it with `bash scripts/rclpy_venv.sh` or pass rclpy_python=...")


def node_command(module: str, python: str, args: Sequence[str]) -> list[str]:
    """argv that runs `python -m module args`; a foreign interpreter (the rclpy venv) gets this
    environment's site-packages appended to its path, for torch and MuJoCo."""
    # Not resolved: venvs link to the same base interpreter, and it is the venv that matters.
    if os.path.abspath(python) == os.path.abspath(sys.executable):
        return [python, "-m", module, *args]
    site = sysconfig.get_paths()["purelib"]
    boot = (f"import site, runpy; site.addsitedir({site!r}); "
            f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)")
    return [python, "-c", boot, *args]


class NodeProcess:
    """A node in a child process, its output in `log_dir/<name>.out|.err`."""

    def __init__(self, name: str, argv: list[str], log_dir: Path) -> None:
        self.name = name
        self.out_path, self.err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                   PYTHONUNBUFFERED="1")
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.popen = subprocess.Popen(argv, stdout=out, stderr=err, cwd=REPO, env=env)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> int | None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=_TERM_GRACE_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def final_status(self) -> dict[str, Any] | None:
        """The JSON status the node printed last, if any."""
        for line in reversed(self.out_path.read_text().strip().splitlines()):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
        return None

    def describe(self) -> str:
        return (f"{self.name} (rc={self.popen.poll()}), last stderr:\n"
                + "\n".join(self.err_path.read_text().splitlines()[-15:]))


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
    task: str
    transport: str
    successes: list[int | None]
    steps: list[int]
    overruns: int
    policy_status: dict[str, Any] | None


def _node_params(cfg: DeployConfig, task: str, episode_length: int, transport: str, rgb: bool) -> dict[str, Any]:
    sim = {"task": task, "seed": cfg.seed, "domain": cfg.robot.domain, "episode_length": episode_length,
           "joint_state_rate_hz": cfg.robot.joint_state_rate_hz, "transport": transport,
           "camera": cfg.robot.camera or rgb, "allow_network": cfg.allow_network, **cfg.robot.params}
    planner = {f"planner.{k}": v for k, v in asdict(cfg.planner).items() if k != "name"}
    policy = {"checkpoint": str(Path(cfg.checkpoint).resolve()), "planner": cfg.planner.name, **planner,
              "device": cfg.device,
              "transport": transport, "allow_network": cfg.allow_network,
              "startup_timeout_s": cfg.startup_timeout_s, **cfg.policy}
    if cfg.robot.kind == "sim":
        policy.setdefault("episode_topic", f"/{SIM_NODE}/episode")
        if rgb:
            policy.setdefault("camera_topic", "/camera/image_raw/compressed")
    return {SIM_NODE: {"ros__parameters": sim}, POLICY_NODE: {"ros__parameters": policy}}


class _Coordinator:
    """The deploy process's own ROS participant: episode resets out, statuses in."""

    def __init__(self, transport_name: str, allow_network: bool, success_topic: str = "") -> None:
        from robot_bridge import messages as m
        from robot_bridge.sim_robot import int32_msg
        from robot_bridge.transport import make_transport

        name = "rclpy" if transport_name == "rclpy" and rclpy_available() else "dds"
        self.transport = make_transport(name, "sim2real_deploy", allow_network=allow_network)  # type: ignore[arg-type]
        self.sim: list[dict[str, Any]] = []
        self.policy: list[dict[str, Any]] = []
        self.success: bool | None = None
        self.transport.subscribe(f"/{SIM_NODE}/status", m.STRING, lambda msg: self.sim.append(json.loads(msg.data)))
        self.transport.subscribe(f"/{POLICY_NODE}/status", m.STRING,
                                 lambda msg: self.policy.append(json.loads(msg.data)))
        self.reset_pub = self.transport.publisher(f"/{SIM_NODE}/reset", "std_msgs/msg/Int32")
        self.policy_reset = self.transport.publisher(f"/{POLICY_NODE}/reset", m.BOOL)
        self._int32, self._bool = int32_msg, m.bool_msg
        if success_topic:
            self.transport.subscribe(success_topic, m.BOOL, lambda msg: setattr(self, "success", bool(msg.data)))

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
    from sim2real.checkpoint import load_checkpoint

    if cfg.robot.kind not in ("sim", "ros"):
        raise ValueError(f"robot.kind={cfg.robot.kind!r}: expected sim or ros")
    if not cfg.checkpoint:
        raise ValueError("checkpoint=...: required (a .pt file from pretrain or finetune)")
    require_network_namespace(cfg.allow_network, "deploy")
    ckpt = load_checkpoint(cfg.checkpoint)
    task = str(ckpt.extra.get("task", "push_cube"))
    episode_length = cfg.robot.episode_length or int(ckpt.extra.get("episode_length", 50))
    period = 1.0 / ckpt.contract.control_freq
    transport = cfg.transport if cfg.transport != "auto" else ("rclpy" if rclpy_available() else "dds")
    python = find_rclpy_python(cfg.rclpy_python) if transport == "rclpy" else sys.executable
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    params_file = out / "ros_params.yaml"
    params_file.write_text(yaml.safe_dump(_node_params(cfg, task, episode_length, transport,
                                                       ckpt.contract.rgb_shape is not None)))
    nodes: list[NodeProcess] = []
    coordinator = _Coordinator(transport, cfg.allow_network, cfg.robot.success_topic)
    policy: NodeProcess | None = None
    successes: list[int | None] = []
    steps: list[int] = []
    try:
        if cfg.robot.kind == "sim":
            nodes.append(NodeProcess(SIM_NODE, node_command("robot_bridge.sim_robot", python,
                                                            ["--ros-args", "--params-file", str(params_file)]), out))
        policy = NodeProcess(POLICY_NODE, node_command("robot_bridge.policy_node", python,
                                                       ["--ros-args", "--params-file", str(params_file)]), out)
        nodes.append(policy)
        coordinator.wait(lambda: any(s["policy_steps"] > 0 for s in coordinator.policy),
                         cfg.startup_timeout_s + 30, nodes, "waiting for the policy node to run")
        for i in range(cfg.episodes):
            seed = cfg.seed + i
            if cfg.robot.kind == "sim":
                last = max((s["episode"] for s in coordinator.sim), default=-1)
                coordinator.wait(lambda: any(s["episode"] > last and s["seed"] == seed for s in coordinator.sim),
                                 20, nodes, f"episode {i}: reset not acknowledged",
                                 every=lambda: coordinator.reset_pub.publish(coordinator._int32(seed)))
                end = coordinator.wait(
                    lambda: next((s for s in coordinator.sim if s["episode"] > last and s["state"] == "done"), None),
                    episode_length * period * 4 + 20, nodes, f"episode {i}: no episode end")
                successes.append(int(end["success"]))
                steps.append(int(end["steps"]))
            else:
                coordinator.policy_reset.publish(coordinator._bool(True))
                start = time.monotonic()
                coordinator.wait(lambda: time.monotonic() - start >= episode_length * period, episode_length * period
                                 + 5, nodes, f"episode {i}")
                successes.append(None if coordinator.success is None else int(coordinator.success))
                steps.append(episode_length)
            say(f"deploy episode={i} success={'na' if successes[-1] is None else successes[-1]} steps={steps[-1]}")
    finally:
        coordinator.close()
        for node in reversed(nodes):
            node.stop()
    status = policy.final_status() if policy is not None else None
    overruns = int(status["overruns"]) if status else -1
    known = [s for s in successes if s is not None]
    rate = f"{sum(known) / len(known):.2f}" if known else "na"
    say(f"deploy task={task} robot={cfg.robot.kind} transport={transport} episodes={cfg.episodes} "
        f"success={rate} overruns={overruns}")
    return DeployResult(task, transport, successes, steps, overruns, status)
