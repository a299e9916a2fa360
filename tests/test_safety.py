"""robot_bridge.safety: no command outside the limits, watchdog, e-stop, bad states, bad configs."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim2real.robot.arm_model import RobotModel
from robot_bridge.safety import SafetyFilter
from robot_bridge.safety_limits import SafetyConfigError, SafetyLimits

MODEL = RobotModel.from_urdf()
LIMITS = SafetyLimits.from_model(MODEL)
N = len(LIMITS.joint_names)
PERIOD = LIMITS.control_period
LOWER, UPPER = np.array(LIMITS.lower), np.array(LIMITS.upper)
MAX_STEP, VELOCITY = np.array(LIMITS.max_step), np.array(LIMITS.velocity)
BOX_LO, BOX_HI = np.array(LIMITS.workspace_lo), np.array(LIMITS.workspace_hi)
# The tasks' rest pose (tasks.layout.ROBOT_REST_QPOS), gripper open: TCP inside the default box.
REST = np.array([0.0, math.pi / 8, 0.0, -5 * math.pi / 8, 0.0, 3 * math.pi / 4, math.pi / 4, 0.04, 0.04])
STEPS_PER_EXAMPLE = 10
EXAMPLES = 1000  # x STEPS_PER_EXAMPLE = 10,000 commands
EPS = 1e-9
ARM_DQ = np.r_[np.full(7, 0.01), 0.0, 0.0]  # a small arm move (the open fingers stay at their limit)


def tcp(q: np.ndarray) -> np.ndarray:
    return MODEL.fk(q[:7])[0]


def in_box(q: np.ndarray) -> bool:
    p = tcp(q)
    return bool(np.all(p >= BOX_LO - EPS) and np.all(p <= BOX_HI + EPS))


def started(q: np.ndarray = REST, stamp: float = 0.0) -> SafetyFilter:
    f = SafetyFilter(MODEL)
    assert f.on_joint_state(LIMITS.joint_names, q, stamp).accepted
    return f


# ---- the property: whatever comes in, what goes out is inside every limit -----------------------
# Hypothesis chooses the structure of each command (its kind, NaN/inf/huge entries, timing, joint
# states) and a seed; numpy fills in the 9 values. Drawing every value through Hypothesis made
# generation, not the filter, take 30 s for 10,000 commands.
SPECIALS = [math.nan, math.inf, -math.inf, 1e300, -1e300, 1e9, -1e9]
step = st.tuples(st.sampled_from(["delta", "delta", "absolute", "huge", "special"]),
                 st.integers(0, 2**32 - 1),  # seed for the values
                 st.sampled_from(SPECIALS) | st.floats(allow_nan=True, allow_infinity=True),
                 st.sampled_from([PERIOD] * 6 + [0.0, -0.01, 0.02, 0.3]) | st.floats(-0.05, 0.2),
                 st.sampled_from([True] * 4 + [False]))  # a fresh joint state after this command
start = st.tuples(st.booleans(), st.integers(0, 2**32 - 1))


def command_for(kind: str, seed: int, special: float, prev: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "delta":
        return prev + rng.uniform(-0.5, 0.5, N)
    if kind == "absolute":
        return rng.uniform(-4.0, 4.0, N)
    if kind == "huge":
        return rng.uniform(-1.0, 1.0, N) * 10.0 ** rng.uniform(0, 300, N)
    command = prev + rng.uniform(-0.1, 0.1, N)
    command[rng.random(N) < 0.3] = special
    command[rng.integers(N)] = special
    return command


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start, st.lists(step, min_size=STEPS_PER_EXAMPLE, max_size=STEPS_PER_EXAMPLE))
def test_no_command_leaves_the_limits(q0_kind, steps):
    near_rest, seed = q0_kind
    rng = np.random.default_rng(seed)
    q0 = np.clip(REST + rng.uniform(-0.4, 0.4, N), LOWER, UPPER) if near_rest else rng.uniform(LOWER, UPPER)
    f = started(q0)
    prev, prev_time, now = q0.copy(), None, 0.0
    for kind, seed, special, dt, fresh_state in steps:
        now += dt
        result = f.send(command_for(kind, seed, special, prev), now)
        assert result.sent
        p = result.positions
        assert np.all(np.isfinite(p))
        assert np.all(p >= LOWER - EPS) and np.all(p <= UPPER + EPS), result.reasons
        elapsed = PERIOD if prev_time is None else now - prev_time
        allowed = np.minimum(MAX_STEP, VELOCITY * max(elapsed, 0.0))
        assert np.all(np.abs(p - prev) <= allowed + EPS), (p - prev, allowed, result.reasons)
        # Inside the box, or holding an arm that was never inside it.
        assert in_box(p) or (not in_box(prev) and np.array_equal(p[:7], prev[:7])), result.reasons
        if prev_time is None or now > prev_time:
            prev_time = now
        prev = p
        if fresh_state:  # the arm lags or overshoots its target a little
            f.on_joint_state(LIMITS.joint_names, p + rng.uniform(-0.2, 0.2, N), now)
    assert f.counters.commands == STEPS_PER_EXAMPLE


# ---- individual behaviours ----------------------------------------------------------------------
def test_nan_and_inf_are_rejected_and_the_last_safe_position_held():
    f = started()
    moved = f.send(REST + 0.01, PERIOD).positions
    for t, bad in enumerate([np.full(N, np.nan), np.r_[REST[:-1], np.inf], np.zeros(N + 1)]):
        f.on_joint_state(LIMITS.joint_names, moved, PERIOD * (t + 2))
        result = f.send(bad, PERIOD * (t + 2))
        assert result.held and np.array_equal(result.positions, moved)
        assert result.reasons and ("NaN/inf" in result.reasons[0] or "values" in result.reasons[0])
    assert f.counters.rejected == 3 and f.counters.held == 3


def test_huge_commands_are_clamped_to_one_step():
    f = started()
    result = f.send(np.full(N, 1e12), PERIOD)
    assert not result.held and np.all(np.abs(result.positions - REST) <= MAX_STEP + EPS)
    assert any("position limit" in r for r in result.reasons) and f.counters.clamped == 1


def test_a_step_too_large_is_scaled_as_a_whole_not_bent_joint_by_joint():
    f = started()
    delta = np.zeros(N)
    delta[:7] = MAX_STEP[:7] * np.array([4.0, 1.0, 0.5, 2.0, 0.1, 1.5, 3.0])  # joints 1, 4, 6, 7 too far
    result = f.send(REST + delta, PERIOD)
    moved = result.positions - REST
    assert np.all(np.abs(moved) <= MAX_STEP + EPS) and "step/velocity limit" in " ".join(result.reasons)
    # the same direction, a quarter of the length: joint 1 (4 steps asked) sets the scale
    np.testing.assert_allclose(moved[:7], delta[:7] / 4.0, atol=1e-12)


def test_nothing_is_sent_before_the_first_joint_state():
    result = SafetyFilter(MODEL).send(REST, 0.0)
    assert not result.sent and "no joint state" in result.reasons[0]


def test_workspace_floor_scales_the_step_back():
    f = started()
    q = REST.copy()
    for k in range(1, 80):  # push joint 2 forward: the TCP dives towards the table
        q = f.send(q + np.r_[0, 0.06, 0, 0, 0, 0, 0, 0, 0], k * PERIOD).positions
        f.on_joint_state(LIMITS.joint_names, q, k * PERIOD)
    assert tcp(q)[2] >= BOX_LO[2] - EPS and tcp(q)[2] < BOX_LO[2] + 0.01
    assert f.send(q + np.r_[0, 0.06, 0, 0, 0, 0, 0, 0, 0], 80 * PERIOD).reasons[-1].startswith("workspace")


def test_arm_outside_the_box_is_held():
    q = REST.copy()
    q[0] = 1.5  # TCP swung far to the side: y outside [-0.4, 0.4]
    assert not in_box(q)
    f = started(q)
    result = f.send(q + 0.02, PERIOD)
    assert np.array_equal(result.positions[:7], q[:7]) and "outside the box" in result.reasons[-1]


def test_targets_stay_near_a_blocked_arm():
    f = started()
    q = REST.copy()
    for k in range(1, 20):  # the arm never moves: targets stop within the tracking bound
        q = f.send(REST + 1.0, k * PERIOD).positions
        f.on_joint_state(LIMITS.joint_names, REST, k * PERIOD)
    assert np.all(np.abs(q - REST) <= np.array(LIMITS.max_tracking_error) + EPS)


def test_watchdog_trips_within_two_periods_holds_and_recovers():
    f = started()
    t, q = 0.0, REST.copy()
    for _ in range(5):  # normal operation: a state every period
        t += PERIOD
        f.on_joint_state(LIMITS.joint_names, q, t)
        q = f.send(q + ARM_DQ, t).positions
    first_missing, held, first_trip = t + PERIOD, None, None
    for _ in range(6):  # states stop
        t += PERIOD
        result = f.send(q + ARM_DQ, t)
        if result.watchdog_tripped:
            held = result.positions if held is None else held
            first_trip = t if first_trip is None else first_trip
            assert result.held and np.array_equal(result.positions, held) and "watchdog" in result.reasons[0]
        else:
            q = result.positions
    assert first_trip is not None and first_trip - first_missing <= 2 * PERIOD + 1e-9
    assert f.counters.watchdog_trips == 1
    t += PERIOD
    assert f.on_joint_state(LIMITS.joint_names, held, t).accepted
    result = f.send(held + ARM_DQ, t)
    assert not result.held and not result.watchdog_tripped and np.allclose(result.positions, held + ARM_DQ)


def test_watchdog_trips_at_the_expected_tick():
    f = started(stamp=0.0)
    ticks = [f.send(REST, k * PERIOD).watchdog_tripped for k in range(1, 5)]
    assert ticks == [False, False, True, True]  # age 0.15 s > 2 periods at the third tick


def test_estop_stops_motion_and_latches_until_reset():
    f = started()
    q = f.send(REST + ARM_DQ, PERIOD).positions
    f.estop(True)
    for k in range(2, 6):
        f.on_joint_state(LIMITS.joint_names, q, k * PERIOD)
        f.estop(False)  # a released e-stop button does not resume motion
        result = f.send(q + 5 * ARM_DQ, k * PERIOD)
        assert result.estop and result.held and np.array_equal(result.positions, q)
    assert f.estopped and f.counters.estops == 1
    f.reset_estop()
    result = f.send(q + ARM_DQ, 6 * PERIOD)
    assert not result.estop and not result.held and np.allclose(result.positions, q + ARM_DQ)


@pytest.mark.parametrize("names,positions,stamp,expected", [
    (list(LIMITS.joint_names) + ["elbow_extra"], np.r_[REST, 0.0], 1.0, "unknown joints"),
    (list(LIMITS.joint_names[:-1]), REST[:-1], 1.0, "lacks joints"),
    (list(LIMITS.joint_names), REST[:-1], 1.0, "positions"),
    (list(LIMITS.joint_names), np.r_[np.nan, REST[1:]], 1.0, "NaN/inf"),
    (list(LIMITS.joint_names), REST, 0.0, "stale"),
    (list(LIMITS.joint_names[:-1]) + [LIMITS.joint_names[0]], REST, 1.0, "repeats"),
])
def test_bad_joint_states_are_rejected_with_reasons(names, positions, stamp, expected):
    f = started(stamp=0.0)
    check = f.on_joint_state(names, positions, stamp)
    assert not check.accepted and any(expected in r for r in check.reasons), check.reasons
    assert f.counters.states_rejected == 1 and np.array_equal(f.measured, REST)


def test_joint_states_are_reordered_by_name_and_old_ones_rejected():
    f = started(stamp=0.0)
    order = np.random.default_rng(0).permutation(N)
    names = [LIMITS.joint_names[i] for i in order]
    assert f.on_joint_state(names, (REST + 0.01)[order], 1.0).accepted
    assert np.allclose(f.measured, REST + 0.01)
    check = f.on_joint_state(LIMITS.joint_names, REST, 2.0, now=2.5)
    assert not check.accepted and "old" in check.reasons[0]


@pytest.mark.parametrize("override,field", [
    ({"lower": {"panda_joint1": -3.0}}, "lower of panda_joint1"),
    ({"upper": [u + 0.1 for u in LIMITS.upper]}, "upper of panda_joint1"),
    ({"velocity": {"panda_joint5": 3.0}}, "velocity of panda_joint5"),
    ({"max_step": {"panda_finger_joint1": 0.05}}, "max_step of panda_finger_joint1"),
    ({"watchdog_periods": 100}, "watchdog_periods"),
    ({"workspace_lo": (0.0, 0.0, 1.0), "workspace_hi": (1.0, 1.0, 0.5)}, "workspace"),
    ({"enabled": False}, "no switch to disable"),
])
def test_configs_that_loosen_the_limits_are_refused(override, field):
    with pytest.raises(SafetyConfigError, match=field):
        SafetyLimits.from_params(MODEL, override)


def test_hand_built_loose_limits_are_refused_by_the_filter():
    loose = SafetyLimits(**{**LIMITS.__dict__, "upper": tuple(u + 1.0 for u in LIMITS.upper)})
    with pytest.raises(SafetyConfigError, match="only be tightened"):
        SafetyFilter(MODEL, loose)


def test_tighter_configs_are_accepted():
    limits = SafetyLimits.from_params(MODEL, {"velocity_scale": 0.2, "position_margin": 0.1,
                                              "workspace_lo": [0.3, -0.3, 0.05], "upper": {"panda_joint1": 1.0}})
    assert limits.upper[0] == 1.0 and limits.velocity[0] == pytest.approx(0.2 * 2.175)
    assert SafetyFilter(MODEL, limits).limits is limits
