"""The closed loop over ROS 2: simulated arm + policy node as processes in a network namespace.

Every DDS participant runs in a child process of `run_in_netns` (tests/bridge_netns.py); the
pytest process only reads the JSON the nodes print when they stop.
"""

from __future__ import annotations

import sysconfig
import textwrap
from pathlib import Path

import numpy as np
from bridge_netns import Proc, run_in_netns
from test_rclpy_interop import rclpy_python  # noqa: F401  (the session fixture that builds the rclpy venv)

from robot_bridge.deploy import untrained_checkpoint

TARGET = [0.1, 0.1, 0.08]  # task frame; the arm starts with its TCP near (0, 0, 0.17)


def node(module: str, args: list[str], foreign_python: bool = False) -> str:
    """Snippet running a node's main(); a foreign interpreter (the rclpy venv) gets this venv's packages."""
    boot = f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n" if foreign_python else ""
    return boot + textwrap.dedent(f"""
        from {module} import main
        main({args!r})
        """)


def sim_args(transport: str = "dds") -> list[str]:
    return ["--ros-args", "-p", "task:=push_cube", "-p", "seed:=3", "-p", f"transport:={transport}",
            "-p", "duration_s:=40.0"]


def reach_args(transport: str, interface: str) -> list[str]:
    return ["--ros-args", "-p", "policy:=reach", "-p", f"reach_target:={TARGET}", "-p", f"transport:={transport}",
            "-p", f"command_interface:={interface}", "-p", "object_pose_topic:=''", "-p", "goal_topic:=''",
            "-p", "duration_s:=4.0", "-p", "startup_timeout_s:=20.0"]


def check_reach(res: dict) -> dict:
    policy = res["policy"].check().json()
    sim = res["sim"].json()  # its final status, printed when the driver stopped it
    assert policy["policy_steps"] >= 40 and policy["safety"]["commands"] == policy["ticks"], policy
    assert sim["commands"] >= 40 and sim["rejected"] == 0, sim
    error = np.linalg.norm(np.array(sim["tcp_pose"][:3]) - TARGET)
    assert error < 0.01, (sim["tcp_pose"], res["policy"].describe())
    return policy


def test_policy_node_drives_the_sim_arm_to_a_target_over_dds() -> None:
    res = run_in_netns([Proc("policy", node("robot_bridge.policy_loop", reach_args("dds", "trajectory"))),
                        Proc("sim", node("robot_bridge.sim_robot", sim_args()), background=True)],
                       domain_id=51, timeout_s=40)
    policy = check_reach(res)
    assert policy["rejected"] == {} and policy["loop_p50_ms"] is not None


def test_deploy_runs_a_checkpoint_on_the_sim_arm(tmp_path: Path) -> None:
    """scripts/deploy.py end to end: Hydra config, both nodes, the real PlanningPolicy (untrained)."""
    ckpt = untrained_checkpoint(tmp_path / "tiny.pt")
    argv = ["scripts/deploy.py", f"checkpoint={ckpt}", "episodes=2", "robot.episode_length=8", "planner=policy",
            "transport=dds", "domain_id=52", f"out_dir={tmp_path / 'run'}", f"hydra.run.dir={tmp_path / 'hydra'}",
            "startup_timeout_s=30"]
    code = textwrap.dedent(f"""
        import subprocess, sys
        r = subprocess.run([sys.executable, *{argv!r}], capture_output=True, text=True, timeout=80)
        print(r.stderr[-3000:], file=sys.stderr)
        print(r.stdout)
        sys.exit(r.returncode)
        """)
    res = run_in_netns(Proc("deploy", code), domain_id=52, timeout_s=90)["deploy"].check()
    lines = [line for line in res.stdout.splitlines() if line.startswith("deploy ")]
    assert lines[0] == "deploy episode=0 success=0 steps=8" and lines[1] == "deploy episode=1 success=0 steps=8", lines
    assert lines[2].startswith("deploy task=push_cube robot=sim transport=dds episodes=2 success=0.00 overruns=")
    params = (tmp_path / "run" / "ros_params.yaml").read_text()
    assert "sim2real_policy_node:" in params and "episode_topic: /sim2real_sim_robot/episode" in params


def test_the_same_loop_with_the_policy_node_on_rclpy(rclpy_python: str) -> None:  # noqa: F811
    res = run_in_netns([Proc("policy", node("robot_bridge.policy_loop", reach_args("rclpy", "forward"), True),
                             python=rclpy_python),
                        Proc("sim", node("robot_bridge.sim_robot", sim_args("dds")), background=True)],
                       domain_id=53, timeout_s=40)
    check_reach(res)
    assert "on rclpy" in res["policy"].stderr, res["policy"].stderr[-2000:]


def test_deploy_config_composes() -> None:
    from robot_bridge.deploy_config import DeployConfig, RobotConfig
    from robot_bridge.deploy_plan import node_params
    from sim2real.config import compose_config, to_dataclass

    cfg = compose_config("deploy", ["checkpoint=a.pt", "robot=sim", "planner=policy", "robot.domain=source",
                                    "+policy.command_interface=forward", "out_dir=/tmp/x"])
    run = to_dataclass(cfg, DeployConfig)
    run.robot = to_dataclass(cfg.robot, RobotConfig)
    assert (run.robot.kind, run.robot.domain, run.planner.name, run.planner.mpc) == ("sim", "source", "policy", False)
    params = node_params(run, "push_cube", 50, "dds", rgb=True)
    policy = params["sim2real_policy_node"]["ros__parameters"]
    assert policy["command_interface"] == "forward" and policy["planner.mpc"] is False
    assert policy["camera_topic"] == "/camera/image_raw/compressed"
    assert params["sim2real_sim_robot"]["ros__parameters"]["camera"] is True
    assert to_dataclass(compose_config("deploy", ["checkpoint=a.pt", "robot=ros", "out_dir=/tmp/x"]).robot,
                        RobotConfig).kind == "ros"
