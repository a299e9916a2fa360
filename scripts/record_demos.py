#!/usr/bin/env python
"""Record demonstrations from ROS 2 topics into rosbag2 bags, one bag per episode.

    python scripts/record_demos.py out_dir=data/demos/bags meta.task=pick_cube episodes=5
    python scripts/record_demos.py boundaries=timed episode_duration_s=20 storage=sqlite3
    python scripts/record_demos.py loopback=false transport=rclpy   # a real arm on the LAN

Bags go to `out_dir/episode_<k>/` with `out_dir/index.json` (see robot_bridge/bag_recorder.py).
Episodes start and stop on the marker topic (`boundaries=marker`, the default; send e.g.
`{"event": "start", "task": "pick_cube", "seed": 3}` and `{"event": "stop", "success": true}`
as std_msgs/String) or back to back every `episode_duration_s` (`boundaries=timed`).

By default (`loopback=true`) the script re-executes itself in a fresh network namespace with
loopback-only DDS settings, so nothing leaves the machine; it then only hears processes in the
same namespace: start them with `run_alongside` (commands run inside it and stopped at the end).
`loopback=false` records from the network as it is: the deliberate choice for a real arm.

Ends with one line: `recorded episodes=<n> out_dir=<dir> dropped=<messages outside episodes>`.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a file from a checkout
    sys.path.insert(0, str(REPO))

from robot_bridge.netns import in_network_namespace, loopback_env, netns_command  # noqa: E402
from sim2real.config import CONFIG_DIR, to_dataclass  # noqa: E402

QOS_PROFILES = ("default", "sensor_data")


@dataclass
class TopicConfig:
    """One recorded topic; qos "sensor_data" (best effort) also matches best-effort publishers."""

    topic: str = MISSING
    type: str = MISSING
    qos: str = "default"


@dataclass
class EpisodeMeta:
    """Metadata stored with every episode (marker fields override it).

    Args:
        task / domain: what is demonstrated and where (e.g. "pick_cube", "real").
        seed: reset seed; timed episodes get seed, seed + 1, ...
        obs_mode / control_mode: with `task`, store the task's contract
            (tasks.spec.task_contract) with every episode; obs_mode None stores none.
    """

    task: str | None = None
    domain: str | None = None
    seed: int | None = None
    obs_mode: str | None = None
    control_mode: str = "pd_ee_delta_pos"


@dataclass
class RecordConfig:
    """Options of `scripts/record_demos.py` (configs/record_demos.yaml holds the defaults).

    Args:
        out_dir: where the bags and index.json go; an existing directory is continued.
        topics: what to record.
        storage / version: rosbag2 storage ("mcap", "sqlite3") and metadata version (9, 8).
        episodes: stop after this many episodes.
        boundaries: "marker" (start/stop on `marker_topic`) or "timed".
        marker_topic / marker_type: the marker topic and its type (std_msgs/msg/String or Bool).
        episode_duration_s: length of each episode when `boundaries` is "timed".
        max_duration_s: the whole run ends after this long, whatever was recorded.
        transport: "auto", "dds" or "rclpy".
        domain_id: ROS_DOMAIN_ID; None takes the environment's (else 0).
        loopback: run in a network namespace with loopback-only DDS (re-executing if needed);
            false records from the network.
        run_alongside: commands started inside the namespace once it exists, stopped at the end.
        startup_s: time given to `run_alongside` commands and DDS discovery before recording.
        meta: task, domain and seed stored with the episodes (`meta.task=pick_cube`; the
            `task` and `domain` config groups of configs/ are unrelated).
    """

    out_dir: str = "data/demos/bags"
    topics: list[TopicConfig] = field(default_factory=list)
    storage: str = "mcap"
    version: int = 9
    episodes: int = 1
    boundaries: str = "marker"
    marker_topic: str = "/sim2real/episode_marker"
    marker_type: str = "std_msgs/msg/String"
    episode_duration_s: float = 10.0
    max_duration_s: float = 600.0
    transport: str = "auto"
    domain_id: int | None = None
    loopback: bool = True
    run_alongside: list[str] = field(default_factory=list)
    startup_s: float = 1.0
    meta: EpisodeMeta = field(default_factory=EpisodeMeta)


ConfigStore.instance().store(name="record_demos_schema", node=RecordConfig)


def reexec_in_netns(domain_id: int) -> None:
    """Replace this process with itself inside a fresh network namespace with loopback DDS."""
    env = dict(os.environ)
    env.update(loopback_env(domain_id))
    argv = netns_command([sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]])
    os.execvpe(argv[0], argv, env)


def record(cfg: RecordConfig) -> int:
    """Record `cfg.episodes` episodes (or until `max_duration_s`); returns how many were recorded."""
    from robot_bridge.bag_recorder import BagRecorder, TopicSpec
    from robot_bridge.transport import QoS, make_transport

    if cfg.boundaries not in ("marker", "timed"):
        raise ValueError(f"record_demos boundaries: expected 'marker' or 'timed', got {cfg.boundaries!r}")
    bad = [t.qos for t in cfg.topics if t.qos not in QOS_PROFILES]
    if not cfg.topics or bad:
        raise ValueError(f"record_demos topics: expected at least one topic with qos in {QOS_PROFILES}, "
                         f"got {len(cfg.topics)} topics, bad qos {bad}")
    qos = {"default": QoS.DEFAULT, "sensor_data": QoS.SENSOR_DATA}
    specs = [TopicSpec(t.topic, t.type, qos[t.qos]) for t in cfg.topics]
    domain_id = cfg.domain_id if cfg.domain_id is not None else int(os.environ.get("ROS_DOMAIN_ID", "0"))
    contract = None
    if cfg.meta.task is not None and cfg.meta.obs_mode is not None:
        from tasks.spec import task_contract

        contract = task_contract(cfg.meta.task, cfg.meta.obs_mode, cfg.meta.control_mode)
    companions = [subprocess.Popen(shlex.split(cmd)) for cmd in cfg.run_alongside]
    deadline = time.monotonic() + cfg.max_duration_s
    try:
        with make_transport(cfg.transport, "sim2real_bag_recorder", domain_id=domain_id,
                            allow_network=not cfg.loopback) as transport:
            marker = cfg.marker_topic if cfg.boundaries == "marker" else None
            with BagRecorder(transport, specs, cfg.out_dir, storage=cfg.storage, version=cfg.version,
                             marker_topic=marker, marker_type=cfg.marker_type, task=cfg.meta.task,
                             domain=cfg.meta.domain, contract=contract) as recorder:
                startup_end = time.monotonic() + cfg.startup_s
                while time.monotonic() < min(startup_end, deadline):  # discovery; data now is dropped
                    recorder.spin_once(0.05)
                done = _record_loop(recorder, cfg, deadline)
            print(f"recorded episodes={done} out_dir={cfg.out_dir} dropped={recorder.dropped}", flush=True)
            return done
    finally:
        for proc in companions:
            _stop(proc)


def _record_loop(recorder: Any, cfg: RecordConfig, deadline: float) -> int:
    done = 0
    episode_end = 0.0
    while done < cfg.episodes and time.monotonic() < deadline:
        if cfg.boundaries == "timed" and not recorder.recording:
            recorder.start(seed=None if cfg.meta.seed is None else cfg.meta.seed + done)
            episode_end = time.monotonic() + cfg.episode_duration_s
        before = len(recorder.episodes)
        recorder.spin_once(0.02)
        if cfg.boundaries == "timed" and recorder.recording and time.monotonic() >= episode_end:
            recorder.stop()
        done += len(recorder.episodes) - before
    return done


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@hydra.main(config_path=str(CONFIG_DIR), config_name="record_demos", version_base="1.3")
def main(dict_cfg: DictConfig) -> None:
    cfg = to_dataclass(dict_cfg, RecordConfig)
    if cfg.loopback and not in_network_namespace():
        reexec_in_netns(cfg.domain_id if cfg.domain_id is not None else int(os.environ.get("ROS_DOMAIN_ID", "0")))
    record(cfg)


if __name__ == "__main__":
    main()
