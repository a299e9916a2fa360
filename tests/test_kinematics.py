"""sim2real.robot.arm_model: FK against the MuJoCo env, IK accuracy, the action mappings."""

import os

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")  # chosen before mujoco's first import, as in test_mujoco_env
mujoco = pytest.importorskip("mujoco")

import tasks  # noqa: E402
from sim2real.robot.arm_model import ( # noqa: E402
    ActionScales, RobotModel, ee_delta_action_to_joint_targets, joint_delta_action_to_joint_targets,
)
from sim2real.robot.rotations import quat_to_matrix  # noqa: E402
from tasks import layout  # noqa: E402

gripper_target = ActionScales().gripper_target

MODEL = RobotModel.from_urdf()
BASE = np.array(layout.ROBOT_BASE_POS)  # the tasks' world frame is the base frame shifted by this
REST = np.array(layout.ROBOT_REST_QPOS[:7])


@pytest.fixture(scope="module")
def env():
    env = tasks.make_env("push_cube", backend="mujoco", num_envs=1)
    env.reset(seed=0)
    yield env
    env.close()


def set_arm(env, q: np.ndarray) -> None:
    world = env.worlds[0]
    world.data.qpos[env.index.arm_qpos] = q
    mujoco.mj_forward(world.model, world.data)


def same_rotation(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    return min(np.abs(a - b).max(), np.abs(a + b).max()) < tol  # q and -q are one rotation


def test_model_reads_the_urdf_chain_and_limits():
    assert MODEL.joint_names == tuple(f"panda_joint{i}" for i in range(1, 8))
    assert MODEL.tip_link == "panda_hand_tcp" and MODEL.base_link == "panda_link0"
    assert MODEL.lower[3] == pytest.approx(-3.0718) and MODEL.upper[5] == pytest.approx(3.7525)
    assert MODEL.velocity_limits.tolist() == [2.175] * 4 + [2.61] * 3
    assert {n: (g.lower, g.upper) for n, g in MODEL.gripper_limits.items()} == {
        "panda_finger_joint1": (0.0, 0.04), "panda_finger_joint2": (0.0, 0.04)}


def test_fk_matches_the_mujoco_env_tcp_pose(env):
    rng = np.random.default_rng(0)
    for _ in range(25):
        q = rng.uniform(MODEL.lower, MODEL.upper)
        set_arm(env, q)
        observed = env.privileged_obs()["tcp_pose"][0].double().numpy()  # float32 observation
        exact = env.worlds[0].tcp_pose()
        pos, quat = MODEL.fk(q)
        assert np.allclose(pos + BASE, exact[:3], atol=1e-9) and same_rotation(quat, exact[3:], 1e-9)
        assert np.allclose(pos + BASE, observed[:3], atol=1e-6) and same_rotation(quat, observed[3:], 1e-6)


def test_jacobian_matches_finite_differences():
    q = REST + 0.1
    jac, rot, pos = MODEL.jacobian(q)
    h = 1e-6
    for i in range(7):
        dq = np.zeros(7)
        dq[i] = h
        rot2, pos2 = MODEL.fk_matrix(q + dq)
        assert np.allclose((pos2 - pos) / h, jac[:3, i], atol=1e-5)
        skew = (rot2 - rot) / h @ rot.T  # d(R) R^T = [w]x
        assert np.allclose([skew[2, 1], skew[0, 2], skew[1, 0]], jac[3:, i], atol=1e-5)


def test_ik_reaches_targets_within_a_millimetre():
    rng = np.random.default_rng(1)
    for _ in range(20):
        goal = np.clip(REST + rng.normal(0, 0.3, 7), MODEL.lower, MODEL.upper)
        target_pos, target_quat = MODEL.fk(goal)
        start = np.clip(goal + rng.normal(0, 0.1, 7), MODEL.lower, MODEL.upper)
        for quat in (None, target_quat):
            solution = MODEL.solve_ik(start, target_pos, quat)
            assert solution.converged
            pos, reached = MODEL.fk(solution.q)
            assert np.linalg.norm(pos - target_pos) < 1e-3
            assert np.all(solution.q >= MODEL.lower) and np.all(solution.q <= MODEL.upper)
            if quat is not None:
                assert same_rotation(reached, target_quat, 1e-3)


def test_ik_delta_moves_the_tcp_and_holds_on_unreachable_targets():
    pos, _ = MODEL.fk(REST)
    for delta in ([0.05, 0, 0], [0, -0.05, 0], [0, 0, 0.08], [0.03, 0.02, -0.05]):
        q = MODEL.ik_delta(REST, np.array(delta))
        assert np.linalg.norm(MODEL.fk(q)[0] - (pos + delta)) < 1e-3
    assert np.array_equal(MODEL.ik_delta(REST, np.array([2.0, 0, 0])), REST)  # 2 m away: hold


def test_ee_delta_action_matches_the_mujoco_backend(env):
    world, rng = env.worlds[0], np.random.default_rng(2)
    compared = 0
    for _ in range(20):
        q = REST + rng.normal(0, 0.1, 7)
        set_arm(env, q)
        action = rng.uniform(-1, 1, 4)
        target = world.data.site_xpos[env.index.tcp_site] + layout.EE_DELTA_POS_LIMIT * action[:3]
        sim = world.ik.solve(world.data.qpos, target, world.ref_quat)
        ours = ee_delta_action_to_joint_targets(MODEL, q, action, ref_quat=world.ref_quat)
        assert ours.shape == (9,) and np.allclose(ours[7:], gripper_target(action[3]))
        if sim is None:
            assert np.array_equal(ours[:7], q)  # both hold on an unreachable target
        else:
            compared += 1
            assert np.abs(ours[:7] - sim).max() < 2e-3
    assert compared >= 10


def test_action_scales_agree_with_the_tasks():
    scales = ActionScales()
    assert scales.ee_delta_pos == layout.EE_DELTA_POS_LIMIT
    assert scales.joint_delta_pos == layout.JOINT_DELTA_POS_LIMIT
    assert (scales.finger_open, scales.finger_closed) == (layout.FINGER_OPEN, layout.FINGER_CLOSED)


def test_default_ee_delta_holds_the_current_orientation():
    q = REST + 0.05
    targets = ee_delta_action_to_joint_targets(MODEL, q, np.array([0.3, 0.0, -0.3, -1.0]))
    before, after = quat_to_matrix(MODEL.fk(q)[1]), quat_to_matrix(MODEL.fk(targets[:7])[1])
    assert np.allclose(before, after, atol=1e-3) and np.allclose(targets[7:], layout.FINGER_CLOSED)


def test_joint_delta_action_mapping_and_bad_actions():
    targets = joint_delta_action_to_joint_targets(MODEL, REST, np.r_[np.ones(7) * 5.0, 1.0])  # clipped to 1
    assert np.allclose(targets[:7], np.minimum(REST + 0.1, MODEL.upper)) and np.allclose(targets[7:], 0.04)
    with pytest.raises(ValueError, match="expected 4 values"):
        ee_delta_action_to_joint_targets(MODEL, REST, np.zeros(8))
    with pytest.raises(ValueError, match="NaN"):
        ee_delta_action_to_joint_targets(MODEL, REST, np.array([np.nan, 0, 0, 0]))
    with pytest.raises(ValueError, match="expected 7 values"):
        MODEL.fk(np.zeros(6))


def test_a_urdf_without_the_tip_link_is_a_clear_error(tmp_path):
    urdf = tmp_path / "arm.urdf"
    urdf.write_text('<robot name="a"><link name="base"/><link name="tip"/>'
                    '<joint name="j" type="fixed"><parent link="base"/><child link="tip"/></joint></robot>')
    with pytest.raises(ValueError, match="no joint chain"):
        RobotModel.from_urdf(urdf, base_link="base", tip_link="hand")
