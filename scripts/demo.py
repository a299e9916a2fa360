#!/usr/bin/env python
"""The main command: one run from simulated demos to a simulated arm driven over ROS 2.

    python scripts/demo.py                                   # push_cube, CPU budgets (make demo)
    python scripts/demo.py task=pick_cube pretrain_steps=4000 target_demos=30
    python scripts/demo.py target_domain.friction_scale=0.4 deploy_episodes=20
    python scripts/demo.py out_dir=outputs/2026-11-24/13-00-00   # continue a stopped run

Arguments are Hydra overrides of configs/demo.yaml (fields on DemoConfig in
sim2real/pipeline.py, which also lists the phases and the command each one stands for). The
command re-executes itself in a fresh network namespace with loopback-only DDS settings, so
nothing leaves the machine. The run folder (`outputs/<date>/<time>/` by default) ends with
`report/`: learning_curve.png, success_table.md/.csv, latency_hist.png, deployed_episode.mp4
and summary.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a file from a checkout
    sys.path.insert(0, str(REPO))

from robot_bridge.node_process import ensure_network_namespace  # noqa: E402


def main(argv: list[str]) -> None:
    from sim2real.config import compose_config, to_dataclass
    from sim2real.pipeline import DemoConfig, Pipeline, register_schemas

    register_schemas()
    cfg = to_dataclass(compose_config("demo", argv), DemoConfig)
    # Fix the run folder before re-executing so the namespaced process writes to the same place.
    if not cfg.out_dir:
        out_dir = REPO / "outputs" / time.strftime("%Y-%m-%d") / time.strftime("%H-%M-%S")
        argv = [*argv, f"out_dir={out_dir}"]
        cfg.out_dir = str(out_dir)
    ensure_network_namespace([sys.executable, str(Path(__file__).resolve()), *argv], allow_network=False,
                             domain_id=0)
    Pipeline(cfg, Path(cfg.out_dir), say=lambda line: print(line, flush=True)).run()


if __name__ == "__main__":
    main(sys.argv[1:])
