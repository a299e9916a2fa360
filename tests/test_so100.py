"""The SO-100 end to end below the learning: its MuJoCo scene, the joint-space expert, the arm
selection in configs, the simulated arm node's joints and frames, and deploy's parameters for it."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # chosen before mujoco's first import, as in test_mujoco_env

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import tasks  # noqa: E402
from sim2real.robot.description import arm_name, load_arm  # noqa: E402
from sim2real.robot.rotations import quat_to_matrix  # noqa: E402
from tasks.experts import make_expert  # noqa: E402
from tasks.layout import ARM_SETUPS, arm_setup  # noqa: E402
from tasks.spec import TaskConfig, episode_length, task_contract  # noqa: E402

SO100 = ARM_SETUPS["so100"]


def test_contract_and_task_config_follow_the_arm() -> None:
    contract = task_contract("pick_cube", "state", "pd_joint_delta_pos", arm="so100")
    assert contract.arm == "so100" and contract.action_dim == 6
    assert contract.features["qpos"].shape == (6,) and contract.features["qvel"].shape == (6,)
    with pytest.raises(ValueError, match="not a mode of arm 'so100'"):
        task_contract("pick_cube", "state", "pd_ee_delta_pos", arm="so100")
    assert TaskConfig(name="pick_cube", arm="so100").mode == "pd_joint_delta_pos"
    assert TaskConfig(name="pick_cube").mode == "pd_ee_delta_pos"
    assert episode_length("pick_cube", "so100") == SO100.episode_length and episode_length("pick_cube") == 50
    with pytest.raises(ValueError, match=r"task 'push_cube' is not built for arm 'so100' \(its tasks: pick_cube\)"):
        arm_setup("so100", "push_cube")


def test_arm_group_node_selects_its_file_and_refuses_edits() -> None:
    import yaml

    from sim2real.robot.description import arm_config_path

    node = yaml.safe_load(arm_config_path("so100").read_text())
    assert arm_name(node) == "so100" and arm_name("panda") == "panda"
    node["control"] = {**node["control"], "rate_hz": 10.0}
    with pytest.raises(ValueError, match="arm.control: differs from"):
        arm_name(node)


@pytest.fixture(scope="module")
def env():
    env = tasks.make_env(TaskConfig(name="pick_cube", arm="so100"), backend="mujoco", num_envs=6)
    yield env
    env.close()


def test_mujoco_scene_places_the_so100_as_its_setup_says(env) -> None:
    obs, _ = env.reset(seed=3)
    assert obs["qpos"].shape == (6, 6) and env.episode_length == SO100.episode_length
    # The TCP site is the description's TCP: FK of the arm joints in the base frame, shifted by the base.
    arm = load_arm("so100")
    state = env.privileged_obs()
    for i in range(env.num_envs):
        pos, quat = arm.fk(state["qpos"][i, :5].double().numpy())
        assert np.allclose(state["tcp_pose"][i, :3].numpy(), pos + np.array(SO100.base_pos), atol=1e-5)
        assert np.allclose(quat_to_matrix(state["tcp_pose"][i, 3:].double().numpy()), quat_to_matrix(quat),
                           atol=1e-4)
    cubes = state["obj_pose"].numpy()
    assert np.all(np.abs(cubes[:, :2]) <= SO100.cube_spawn_half_range + 1e-9)
    assert np.allclose(cubes[:, 2], SO100.cube_half_size, atol=1e-3)
    goals = state["goal_pos"].numpy()
    assert np.all(goals[:, 2] <= SO100.cube_half_size + SO100.pick_max_goal_height + 1e-9)


def test_jaw_moves_at_most_its_step_towards_the_command(env) -> None:
    env.reset(seed=0)
    world = env.worlds[0]
    jaw = world.data.qpos[world.index.finger_qpos].copy()
    targets = world.gripper_targets(-1.0)  # close: from open (1.1) towards -1.1, 0.2 rad at most
    assert np.allclose(targets, jaw - SO100.gripper_step)
    assert np.allclose(world.gripper_targets(1.0), np.minimum(jaw + SO100.gripper_step, 1.1))


def test_joint_space_expert_picks_the_cube_on_mujoco(env) -> None:
    expert = make_expert("pick_cube", env.num_envs, control_mode="pd_joint_delta_pos", arm="so100")
    env.reset(seed=0)
    expert.reset()
    done = torch.zeros(env.num_envs, dtype=torch.bool)
    for _ in range(env.episode_length):
        action = expert.act(env.privileged_obs())
        assert action.shape == (env.num_envs, 6) and action.abs().max() <= 1.0
        _, _, _, _, info = env.step(action)
        done |= info["success"]
    # 24 of 24 episodes (seed 0, 150 steps) when measured; 4 of 6 leaves room for noise.
    assert int(done.sum()) >= 4


def test_sim_robot_serves_so100_joints_in_its_base_frame() -> None:
    from sim2real.ros import messages as m
    from robot_bridge.sim_robot_core import SimRobotCore, SimRobotParams

    core = SimRobotCore(SimRobotParams(task="pick_cube", arm="so100", seed=0, settle_s=0.05))
    core.reset(2)
    arm = load_arm("so100")
    msg = core.joint_state_msg(0.0)
    assert tuple(msg.name) == arm.joint_names + arm.gripper.joint_names
    pose = core.object_pose_msg(0.0)
    assert pose.header.frame_id == arm.base_link
    cube = core.env.rules.obj_pose(core.world)[:3]
    position = np.array([pose.pose.position.x, pose.pose.position.y, pose.pose.position.z])
    assert np.allclose(position + np.array(SO100.base_pos), cube, atol=1e-9)
    core.advance(0.1)  # settled: commands are taken
    q0 = core.joint_state()[0]
    target = np.r_[q0[:5] + 0.05, q0[5]]
    assert core.on_trajectory(m.joint_trajectory(arm.joint_names + arm.gripper.joint_names, [target], [0.1])) == []
    core.advance(1.0)
    assert np.allclose(core.joint_state()[0][:5], target[:5], atol=5e-3)


def test_deploy_parameters_for_the_simulated_so100(tmp_path) -> None:
    from robot_bridge.deploy_config import DeployConfig, RobotConfig
    from robot_bridge.deploy_plan import node_params, resolve_policy
    from sim2real.config import compose_config, to_dataclass

    cfg = compose_config("deploy", ["arm=so100", "task=pick_cube", "policy.policy=expert", f"out_dir={tmp_path}"])
    run = to_dataclass(cfg, DeployConfig)
    run.robot = to_dataclass(cfg.robot, RobotConfig)
    assert run.arm == "so100"
    task, length, contract = resolve_policy(run)
    assert (task, length, contract.arm, contract.control_mode) == ("pick_cube", 150, "so100", "pd_joint_delta_pos")
    params = node_params(run, task, length, "dds", rgb=False)
    sim = params["sim2real_sim_robot"]["ros__parameters"]
    policy = params["sim2real_policy_node"]["ros__parameters"]
    assert sim["arm"] == "so100" and policy["arm"] == "so100"
    # The node's default base_in_task is where the scene stands the arm.
    from sim2real.ros.frames import base_in_task_or_default
    assert base_in_task_or_default(policy.get("base_in_task", []), policy["arm"]) == SO100.base_pos
    assert policy["safety"]["workspace_lo"] == list(SO100.workspace_lo)


def test_so100_commands_go_forward_by_default() -> None:
    from robot_bridge.policy_node import PolicyNodeParams

    assert PolicyNodeParams(arm="so100", policy="reach", reach_target=[0, 0, 0]).command_interface == "forward"
    assert PolicyNodeParams(policy="reach", reach_target=[0, 0, 0]).command_interface == "trajectory"
    assert PolicyNodeParams(arm="so100", policy="reach", reach_target=[0, 0, 0],
                            command_interface="trajectory").command_interface == "trajectory"


def test_scripted_pick_through_the_node_core_and_the_simulated_arm() -> None:
    """The record phase's loop without DDS: the sim arm's messages in, the node's commands out."""
    from robot_bridge.policies import ExpertPolicy
    from robot_bridge.policy_node import PolicyNodeCore, PolicyNodeParams
    from robot_bridge.sim_robot_core import SimRobotCore, SimRobotParams

    wins = 0
    for episode in range(2):
        seed = 1000 + episode
        sim = SimRobotCore(SimRobotParams(task="pick_cube", arm="so100", seed=seed, episode_length=150,
                                          settle_s=0.1, domain="target"))
        sim.reset(seed)
        sim.advance(0.1)
        params = PolicyNodeParams(arm="so100", policy="expert", expert_task="pick_cube",
                                  base_in_task=list(SO100.base_pos),
                                  safety={"workspace_lo": list(SO100.workspace_lo),
                                          "workspace_hi": list(SO100.workspace_hi)})
        core = PolicyNodeCore(ExpertPolicy("pick_cube", arm="so100"), params)
        for _ in range(150):
            now = sim.sim_time
            core.on_joint_state(sim.joint_state_msg(now), now)
            core.on_object_pose(sim.object_pose_msg(now), now)
            core.on_goal(sim.goal_msg(now), now)
            result = core.tick(now)
            if result.message is not None:
                assert sim.on_forward(result.message) == []
            sim.advance(0.05)
        wins += sim.success
    # 7 of 8 episodes (seeds 1000-1007, target domain) when measured.
    assert wins >= 1


def test_a_urdf_override_keeps_the_descriptions_limits_and_tcp(tmp_path) -> None:
    import shutil

    from robot_bridge.policy_node import PolicyNodeCore, PolicyNodeParams
    from sim2real.contract import Contract, Feature

    described = load_arm("so100")
    copy = tmp_path / "so100.urdf"
    shutil.copy(described.urdf, copy)
    (tmp_path / "meshes").symlink_to(described.urdf.parent / "meshes")
    arm = load_arm("so100", urdf=copy)
    assert arm.urdf == copy and np.all(arm.chain.velocity_limits == 3.0)  # the URDF's are 0 (none)
    q = np.array([0.0, -0.8, 0.8, 0.3, 0.0])
    assert np.allclose(arm.fk(q)[0], described.fk(q)[0])  # tcp_offset applied
    contract = Contract({"qpos": Feature((6,)), "qvel": Feature((6,)), "tcp_pose": Feature((7,))}, action_dim=6,
                        control_mode="pd_joint_delta_pos", arm="so100")

    class Still:
        def __init__(self) -> None:
            self.contract = contract

        def act(self, obs):
            return np.zeros(6)

        def reset(self) -> None:
            pass

    core = PolicyNodeCore(Still(), PolicyNodeParams(arm="so100", policy="reach", reach_target=[0, 0, 0],
                                                     object_pose_topic="", goal_topic="", urdf=str(copy)))
    assert np.all(core.model.velocity_limits == 3.0)
    with pytest.raises(FileNotFoundError, match="not a file"):
        load_arm("so100", urdf=tmp_path / "missing.urdf")


SO100_DEPLOY = """
import dataclasses, json, sys
from robot_bridge.deploy import run_deploy
from robot_bridge.deploy_config import DeployConfig, RobotConfig
cfg = DeployConfig(arm="so100", task="pick_cube", policy={{"policy": "expert"}}, episodes=1, transport="dds",
                   robot=RobotConfig(kind="sim", domain="target", episode_length={length}),
                   record_dir={record!r}, out_dir={out!r}, startup_timeout_s=40)
result = run_deploy(cfg, say=lambda line: print(line, file=sys.stderr, flush=True))
print(json.dumps(dataclasses.asdict(result)))
"""


def test_an_so100_bag_records_over_ros2_and_reads_back(tmp_path) -> None:
    """The record phase's path on the SO-100: the sim arm and the node over DDS, one bag, read back
    with dataset=ros2_sim_so100 into the SO-100's contract."""
    from bridge_netns import Proc, run_in_netns

    from sim2real.data import read_episodes
    from sim2real.data.formats import dataset_config
    from sim2real.ros.episodes import read_index

    length, record, out = 40, tmp_path / "bags", tmp_path / "run"
    res = run_in_netns(Proc("deploy", SO100_DEPLOY.format(length=length, record=str(record), out=str(out))),
                       domain_id=57, timeout_s=100)["deploy"].check()
    assert res.json()["steps"] == [length], res.describe()
    assert [(i.task, i.seed) for i in read_index(record)] == [("pick_cube", 1000)]
    contract = task_contract("pick_cube", "state", "pd_joint_delta_pos", arm="so100")
    _, episodes = read_episodes(record, "rosbag2", dataset_config("ros2_sim_so100"), contract=contract)
    (ep,) = episodes
    assert ep.obs["qpos"].shape[1:] == (6,) and ep.actions.shape[1] == 6
    assert ep.meta["action_source"] == "intent" and np.abs(ep.actions.numpy()[:, :5]).max() > 0.3
    # The TCP read back (FK of the recorded joints, shifted by the scene's base) is where the arm
    # starts in the task frame: above the spawn square.
    assert np.all(np.abs(ep.obs["tcp_pose"][0, :2].numpy()) < 0.06)
