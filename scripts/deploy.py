#!/usr/bin/env python
"""Stage 3: run a checkpoint's policy through ROS 2 on the simulated arm (or a ROS 2 arm).

    python scripts/deploy.py checkpoint=outputs/pretrain/.../last.pt robot=sim episodes=5
    python scripts/deploy.py checkpoint=... robot=sim robot.domain=source transport=rclpy
    python scripts/deploy.py checkpoint=... robot=ros allow_network=true    # a real arm on the LAN
    python scripts/deploy.py policy.policy=expert task=push_cube record_dir=data/target_bags video_episodes=1

Without `allow_network=true` the command re-executes itself in a fresh network namespace with
loopback-only DDS settings, so nothing leaves the machine. `policy.policy=expert task=<task>`
runs the task's scripted expert instead of a checkpoint; `record_dir=<dir>` records every
episode as a rosbag2 bag (read back with `--dataset ros2_sim_panda`). Prints one line per episode,
`deploy episode=<i> success=<0|1> steps=<n>`, then
`deploy task=<t> robot=<r> transport=<t> episodes=<n> success=<x> overruns=<n> s_per_episode=<s>`
and, when recording, `deploy recorded episodes=<n> record_dir=<dir>`.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from robot_bridge.deploy import run_deploy
from robot_bridge.deploy_config import DeployConfig, RobotConfig
from robot_bridge.node_process import ensure_network_namespace
from sim2real.config import CONFIG_DIR, to_dataclass


@hydra.main(config_path=str(CONFIG_DIR), config_name="deploy", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run = to_dataclass(cfg, DeployConfig)
    run.robot = to_dataclass(cfg.robot, RobotConfig)
    ensure_network_namespace([sys.executable, *sys.argv], run.allow_network, run.domain_id)
    run_deploy(run, say=lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
