"""Target demonstrations through the bridge: the scripted expert as the policy node's policy, the
latency log, videos rendered from the simulated arm, and `run_deploy` recording rosbag2 bags that
read back into the task's contract.

The in-process tests use no DDS (SimRobotCore and PolicyNodeCore fed by hand on the simulated
clock); the deployment runs in a child process inside a network namespace (tests/bridge_netns.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import textwrap
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")  # chosen before mujoco's first import, as in test_mujoco_env

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from bridge_netns import Proc, run_in_netns  # noqa: E402

from sim2real.ros.observation import BASE_IN_TASK  # noqa: E402
from robot_bridge.policy_loop import write_latency_log  # noqa: E402
from robot_bridge.policy_node import ExpertPolicy, PolicyNodeCore, PolicyNodeParams, make_policy  # noqa: E402
from robot_bridge.sim_robot_core import SimRobotCore, SimRobotParams  # noqa: E402
from tasks.experts import replay_expert  # noqa: E402
from tasks.spec import task_contract  # noqa: E402
from sim2real.contract import ContractMismatch  # noqa: E402

CONTRACT = task_contract("push_cube", "state", "pd_ee_delta_pos")


def run_episode(sim: SimRobotCore, core: PolicyNodeCore, seed: int) -> None:
    """One episode of the closed loop without DDS: messages by hand, 20 Hz, on the simulated clock."""
    sim.reset(seed)
    core.reset_episode()
    while sim.state != "done":
        now = 1e6 + sim.sim_time  # the safety filter's step limits need the clock the arm moves on
        assert core.on_joint_state(sim.joint_state_msg(now), now) == []
        assert core.on_object_pose(sim.object_pose_msg(now), now) == [] and core.on_goal(sim.goal_msg(now), now) == []
        result = core.tick(now)
        assert result.action is not None and np.all(np.abs(result.action) <= 1.0)
        assert result.message is not None, result.reasons
        assert sim.on_trajectory(result.message) in ([], ["command ignored: the episode is settling after a reset"])
        sim.advance(core.period)
        sim.capture_frame()


def test_the_expert_picks_the_cube_through_the_node_in_process() -> None:
    expert = make_policy(PolicyNodeParams(policy="expert", expert_task="pick_cube"))
    assert isinstance(expert, ExpertPolicy) and expert.contract == task_contract("pick_cube")
    sim = SimRobotCore(SimRobotParams(task="pick_cube", domain="target", episode_length=50))
    core = PolicyNodeCore(expert, PolicyNodeParams(policy="expert", expert_task="pick_cube"))
    run_episode(sim, core, seed=1000)
    assert int(expert.expert.phase[0]) == 3 and sim.success, (sim.status(), core.status())  # carried to the goal
    expert.reset()
    assert bool(expert.expert._fresh[0])  # the next act starts the expert's phases over
    with pytest.raises(ValueError, match="parameter expert_task='fly'"):
        make_policy(PolicyNodeParams(policy="expert", expert_task="fly"))


def test_latency_log_is_written_atomically(tmp_path: Path) -> None:
    core = PolicyNodeCore(ExpertPolicy("push_cube"), PolicyNodeParams(policy="expert"))
    core.loop_ms.extend([1.5, 2.5])
    core.compute_ms.extend([1.0, 2.0, 3.0])
    core.ticks, core.overruns = 3, 1
    path = write_latency_log(tmp_path / "run" / "latency.json", core)
    assert json.loads(path.read_text()) == {"loop_ms": [1.5, 2.5], "compute_ms": [1.0, 2.0, 3.0], "overruns": 1,
                                            "ticks": 3}
    assert [p.name for p in path.parent.iterdir()] == ["latency.json"]  # no temporary file left


def test_the_sim_arm_renders_requested_episodes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="need episode_length > 0"):
        SimRobotCore(SimRobotParams(video_dir=str(tmp_path)))
    try:
        sim = SimRobotCore(SimRobotParams(task="push_cube", episode_length=4, settle_s=0.05, video_dir=str(tmp_path)))
    except RuntimeError as exc:  # no OpenGL on this machine (tasks.mujoco.render says so)
        pytest.skip(f"offscreen rendering unavailable: {exc}")
    sim.advance(0.5)  # the start-up episode ends: it is not recorded
    assert not sim.capture_frame() and sim.finished_videos == [] and sim.videos_written == 0
    events = []
    sim.reset(3)
    while sim.state != "done":
        events += sim.advance(0.01)
        sim.capture_frame()
    assert events[-1]["video"] == str(tmp_path / "episode_0.mp4")
    (path, frames), = sim.finished_videos
    assert path == tmp_path / "episode_0.mp4" and len(frames) == 5  # the start and one per control period
    assert frames[0].shape == (256, 256, 3) and frames[0].dtype == np.uint8 and frames[0].std() > 10
    sim.finished_videos.clear()
    sim.reset(4)  # video_episodes=1: only the first requested episode
    sim.advance(0.5)
    assert not sim.capture_frame() and sim.finished_videos == []


def test_deploy_config_runs_the_expert_without_a_checkpoint(tmp_path: Path) -> None:
    from robot_bridge.deploy_config import DeployConfig, RobotConfig
    from robot_bridge.deploy_plan import node_params, record_topics, resolve_policy
    from sim2real.config import compose_config, to_dataclass

    cfg = compose_config("deploy", ["policy.policy=expert", "task=pick_cube", "video_episodes=2",
                                    f"record_dir={tmp_path}", f"out_dir={tmp_path / 'run'}"])
    run = to_dataclass(cfg, DeployConfig)
    run.robot = to_dataclass(cfg.robot, RobotConfig)
    task, length, contract = resolve_policy(run)
    assert (task, length, contract) == ("pick_cube", 50, task_contract("pick_cube"))
    params = node_params(run, task, length, "dds", rgb=False)
    policy, sim = (params[n]["ros__parameters"] for n in ("sim2real_policy_node", "sim2real_sim_robot"))
    assert (policy["policy"], policy["expert_task"], policy["checkpoint"]) == ("expert", "pick_cube", "")
    assert policy["latency_log"] == str(tmp_path / "run" / "latency.json")
    assert (sim["video_dir"], sim["video_episodes"]) == (str(tmp_path / "run" / "videos"), 2)
    assert [(t.topic, t.type_name, t.qos.reliable) for t in record_topics(run, rgb=False)] == [
        ("/joint_states", "sensor_msgs/msg/JointState", False),
        ("/object_pose", "geometry_msgs/msg/PoseStamped", False),
        ("/goal", "geometry_msgs/msg/PointStamped", True),
        ("/arm_controller/joint_trajectory", "trajectory_msgs/msg/JointTrajectory", True),
        ("/sim2real_policy_node/action", "std_msgs/msg/Float64MultiArray", True)]
    run.policy["command_interface"] = "forward"
    assert record_topics(run, rgb=False)[-2].topic == "/arm_controller/commands"
    run.policy["action_topic"] = ""  # not published: not recorded
    assert record_topics(run, rgb=False)[-1].topic == "/arm_controller/commands"
    run.policy["command_interface"] = "action"
    with pytest.raises(ValueError, match="cannot hear"):
        record_topics(run, rgb=False)
    with pytest.raises(ValueError, match="task=...: required with policy.policy=expert"):
        resolve_policy(DeployConfig(policy={"policy": "expert"}))
    with pytest.raises(ValueError, match="checkpoint=...: required"):
        resolve_policy(DeployConfig())


def test_deploy_names_the_arm_and_refuses_a_checkpoint_for_another(tmp_path: Path) -> None:
    from robot_bridge.deploy import run_deploy, untrained_checkpoint
    from robot_bridge.deploy_config import DeployConfig
    from robot_bridge.deploy_plan import node_params, resolve_policy
    from sim2real.checkpoint import load_checkpoint, save_checkpoint

    run = DeployConfig(policy={"policy": "expert"}, task="push_cube", out_dir=str(tmp_path))
    params = node_params(run, "push_cube", 50, "dds", rgb=False)
    assert params["sim2real_policy_node"]["ros__parameters"]["arm"] == "panda"
    with pytest.raises(ValueError, match="policy.arm='xarm7' and arm='panda' differ"):
        node_params(DeployConfig(policy={"policy": "expert", "arm": "xarm7"}), "push_cube", 50, "dds", rgb=False)
    # A checkpoint trained for the Panda, deployed to an xArm7: refused before any node starts.
    path = untrained_checkpoint(tmp_path / "panda.pt")
    with pytest.raises(ContractMismatch, match="arm 'panda' in checkpoint, 'xarm7' on the robot \\(arm=\\)"):
        resolve_policy(DeployConfig(checkpoint=str(path), arm="xarm7"))
    ckpt = load_checkpoint(path)
    ckpt = dataclasses.replace(ckpt, contract=dataclasses.replace(ckpt.contract, arm="so100"))
    with pytest.raises(ContractMismatch, match="arm 'so100' in checkpoint, 'panda' on the robot"):
        resolve_policy(DeployConfig(checkpoint=str(save_checkpoint(tmp_path / "so100.pt", ckpt))))
    # robot=sim simulates an arm with a task scene (the Panda, the SO-100); the xArm7 has none.
    with pytest.raises(ValueError, match="arm 'xarm7' has no task scenes"):
        run_deploy(DeployConfig(policy={"policy": "expert"}, task="push_cube", arm="xarm7", out_dir=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="arms in .*panda, so100, xarm7"):
        run_deploy(DeployConfig(checkpoint=str(path), arm="ur5e", out_dir=str(tmp_path)))


DEPLOY = textwrap.dedent("""
    import dataclasses, json, sys
    from robot_bridge.deploy import run_deploy
    from robot_bridge.deploy_config import DeployConfig, RobotConfig
    cfg = DeployConfig(task="push_cube", policy={{"policy": "expert"}}, episodes=2, transport="dds",
                       robot=RobotConfig(kind="sim", domain="target", episode_length={length}),
                       record_dir={record!r}, video_episodes=1, out_dir={out!r}, startup_timeout_s=40)
    result = run_deploy(cfg, say=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(dataclasses.asdict(result)))
    """)


def test_deploy_records_expert_episodes_that_read_back(tmp_path: Path) -> None:
    """run_deploy with the expert: 2 bags that read back into the contract, latencies and a video."""
    import imageio.v3 as iio

    from sim2real.ros.episodes import read_bag_messages, read_index
    from sim2real.data import read_episodes
    from sim2real.data.formats import dataset_config

    length, record, out = 50, tmp_path / "bags", tmp_path / "run"
    began = time.monotonic()
    res = run_in_netns(Proc("deploy", DEPLOY.format(length=length, record=str(record), out=str(out))),
                       domain_id=56, timeout_s=100)["deploy"].check()
    result = res.json()
    wall = time.monotonic() - began
    assert result["task"] == "push_cube" and result["steps"] == [length, length], res.describe()
    assert result["record_dir"] == str(record) and len(result["episode_s"]) == 2
    # The latency log: one entry per published command.
    latency = json.loads((out / "latency.json").read_text())
    assert len(latency["loop_ms"]) > length and latency["loop_ms"] == result["latency_ms"]
    assert len(latency["compute_ms"]) == latency["ticks"] and latency["overruns"] == result["overruns"]
    # The video of the first episode: its start and one frame per control period.
    assert result["videos"] == [str(out / "videos" / "episode_0.mp4")]
    assert iio.imread(result["videos"][0]).shape[0] >= length
    # Two bags with what the episodes were.
    infos = read_index(record)
    assert [(i.bag, i.task, i.seed, i.domain) for i in infos] == [("episode_0000", "push_cube", 1000, "target"),
                                                                  ("episode_0001", "push_cube", 1001, "target")]
    assert [int(i.success) for i in infos] == result["successes"] and infos[0].contract == CONTRACT.to_dict()
    # ... that read back into the contract: the features the node saw, actions in [-1, 1].
    meta, episodes = read_episodes(record, "rosbag2", dataset_config("ros2_sim_panda"), contract=CONTRACT)
    assert meta.task == "push_cube" and len(episodes) == 2
    for info, ep in zip(infos, episodes):
        assert set(ep.obs) == set(CONTRACT.features) and ep.obs["qpos"].shape[1:] == (9,)
        assert length - 2 <= ep.length <= length + 5, ep.length  # plus the settle and the stop's latency
        actions = ep.actions.numpy()
        assert actions.shape == (ep.length, 4) and np.isfinite(actions).all() and np.abs(actions).max() <= 1.0
        assert np.abs(actions[:, :3]).max() > 0.3  # the expert moved the arm
        # The node's decided actions were recorded and read, paired with what the node observed: the
        # expert replayed on the read observations decides the same (over DDS the node may act on an
        # object pose one message older than the joint state, so not to the last digit).
        assert ep.meta["action_source"] == "intent"
        replayed = replay_expert("push_cube", ep.obs, ep.length).numpy()
        assert np.abs(replayed - actions).mean(axis=0).max() < 0.05
        _, goal = read_bag_messages(record / info.bag)["/goal"][-1]  # base frame
        published = np.array([goal.point.x, goal.point.y, goal.point.z]) + np.asarray(BASE_IN_TASK)
        assert np.allclose(ep.obs["goal_pos"].numpy(), published, atol=1e-6)
    print(f"expert through the bridge: push_cube target success {result['successes']} "
          f"episode_s {[round(s, 2) for s in result['episode_s']]} test wall {wall:.1f} s")
