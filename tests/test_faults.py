"""Resilience (benchmarks/faults.py, robot_bridge.faults): under each fault every command stays inside
the limits, the faults really happened, the loop recovers; and the audit would have caught a command
outside the limits, so none of this passes by not looking."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")  # chosen before mujoco's first import, as in test_mujoco_env

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from bridge_netns import Proc, run_in_netns  # noqa: E402

from sim2real.ros import messages as m  # noqa: E402
from robot_bridge.command_audit import CommandAudit  # noqa: E402
from robot_bridge.faults import CASES, CaseResult, FaultConfig, FaultLink, run_case  # noqa: E402
from sim2real.robot.arm_model import RobotModel  # noqa: E402
from sim2real.ros.observation import JOINT_NAMES  # noqa: E402
from robot_bridge.policy_node import RESYNC_AFTER_S, PolicyNodeCore, PolicyNodeParams, ReachPolicy  # noqa: E402
from robot_bridge.safety import SafeCommand, SafetyFilter  # noqa: E402
from robot_bridge.safety_limits import SafetyLimits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = RobotModel.from_urdf()
LIMITS = SafetyLimits.from_model(MODEL)
REST = np.array([0.0, math.pi / 8, 0.0, -5 * math.pi / 8, 0.0, 3 * math.pi / 4, math.pi / 4, 0.04, 0.04])
CFG = FaultConfig(duration_s=4.0, seed=0)  # faults from 1.0 s to 2.5 s, then 1.5 s clean
TICKS = round(CFG.duration_s * 20)


@pytest.fixture(scope="module")
def results() -> dict[str, CaseResult]:
    return {case: run_case(case, CFG) for case in CASES}


@pytest.mark.parametrize("case", CASES)
def test_every_command_stays_inside_the_limits_and_the_loop_recovers(results: dict[str, CaseResult],
                                                                    case: str) -> None:
    r = results[case]
    # One command per tick, except while the watchdog holds (the only holds these faults cause).
    assert r.node["ticks"] == TICKS and r.commands == TICKS - r.node["safety"]["held"]
    assert (r.commands < TICKS) == (case in ("stall", "robot_restart"))
    assert r.outside_limits == 0, r.violations
    assert r.recovered, (r.held_in_tail, r.reach_error_m, r.node["last_reasons"])
    assert r.policy_nonfinite == 0 and r.arm_rejected == 0


def test_the_faults_happened(results: dict[str, CaseResult]) -> None:
    clean, drop, stall, order, nan, restart = (results[c] for c in CASES)
    window_states = round((CFG.fault_end_s - CFG.fault_start_s) * 100)
    assert clean.node["rejected"] == {} and clean.node["safety"]["held"] == 0 and clean.watchdog_trips == 0
    assert clean.faults.delivered == clean.faults.published == TICKS * 5
    assert 0.04 * window_states < drop.faults.dropped < 0.2 * window_states
    assert drop.faults.delivered == drop.faults.published - drop.faults.dropped
    # Both ends of the stall range; 200 ms outlasts the 100 ms watchdog, so the node held.
    assert max(stall.faults.stalls) == pytest.approx(0.2) and min(stall.faults.stalls) == pytest.approx(0.05)
    assert stall.watchdog_trips >= 1 and stall.node["safety"]["held"] >= 1 and stall.faults.dropped > 0
    # Every late joint state arrived after a newer one and was refused for its old stamp.
    assert order.faults.reordered > 0 and order.node["rejected"] == {"joint_states": order.faults.reordered}
    assert nan.faults.nan_states > 0 and nan.faults.nan_poses > 0
    assert nan.node["rejected"] == {"joint_states": nan.faults.nan_states, "object_pose": nan.faults.nan_poses}
    assert restart.faults.restarts == 1 and restart.faults.down_s >= CFG.restart_down_s[0]
    assert restart.watchdog_trips == 1 and restart.node["safety_resyncs"] == 1
    assert restart.node["safety"]["held"] >= 5  # held from the watchdog trip until the new arm spoke
    for r in (clean, drop, stall, order, nan):
        assert r.node["safety_resyncs"] == 0


def test_runs_are_deterministic() -> None:
    cfg = dataclasses.replace(CFG, duration_s=3.0)
    a, b = run_case("out_of_order", cfg), run_case("out_of_order", cfg)
    assert a.faults == b.faults and a.node["safety"] == b.node["safety"] and a.reach_error_m == b.reach_error_m


# ---- the audit catches what it should -------------------------------------------------------------

def audit_at(q: np.ndarray = REST, t: float = 100.0) -> CommandAudit:
    audit = CommandAudit(MODEL, LIMITS)
    audit.observe(m.joint_state(JOINT_NAMES, q, np.zeros(9), stamp=t), t)
    return audit


def command(q: np.ndarray) -> Any:
    return m.joint_trajectory(JOINT_NAMES, [q], [0.05])


def verdict(audit: CommandAudit, msg: Any, t: float = 100.05) -> str:
    """What the audit found wrong with `msg` ("" when nothing)."""
    before = audit.outside
    audit.check(msg, t)
    return audit.violations[-1] if audit.outside > before else ""


def test_the_audit_catches_commands_outside_the_limits() -> None:
    step = np.array(LIMITS.max_step)
    assert verdict(audit_at(), command(REST)) == ""
    beyond = REST.copy()
    beyond[3] = LIMITS.upper[3] + 0.01  # an arm reading there, and a command to stay: only the limit is broken
    assert "position limit: panda_joint4" in verdict(audit_at(beyond), command(beyond))
    jump = REST + np.r_[0.0, 1.5 * step[1], np.zeros(7)]
    assert "step from the previous command: panda_joint2" in verdict(audit_at(), command(jump))
    # A step that is fine in a period is too fast when the command gives the arm half of one.
    small = REST + np.r_[0.0, 0.8 * step[1], np.zeros(7)]
    assert verdict(audit_at(), command(small)) == ""
    assert "step from the previous command" in verdict(audit_at(), m.joint_trajectory(JOINT_NAMES, [small], [0.025]))
    # Small steps that drift away from an arm that does not follow: the tracking bound.
    audit, q, found = audit_at(), REST.copy(), []
    for k in range(1, 6):
        q = q + np.r_[0.0, step[1], np.zeros(7)]
        found.append(verdict(audit, command(q), 100.0 + 0.05 * k))
    assert "distance from the measured joints: panda_joint2" in found[-1] and found[0] == ""
    sideways = REST.copy()
    sideways[0] = 1.6  # the arm swung to the side: TCP at y > 0.4 m, inside every joint limit
    assert MODEL.fk(sideways[:7])[0][1] > LIMITS.workspace_hi[1]
    assert "outside the workspace box" in verdict(audit_at(sideways), command(sideways))
    assert "non-finite" in verdict(audit_at(), command(np.where(np.arange(9) == 2, np.nan, REST)))
    assert "joint names" in verdict(audit_at(), m.joint_trajectory(JOINT_NAMES[:7], [REST[:7]], [0.05]))
    assert "before any joint state" in verdict(CommandAudit(MODEL, LIMITS), command(REST))


def test_the_audit_ignores_inputs_the_node_must_refuse() -> None:
    audit = audit_at(REST, 100.0)
    audit.observe(m.joint_state(JOINT_NAMES, REST + 0.3, np.zeros(9), stamp=99.9), 100.01)  # older stamp
    audit.observe(m.joint_state(JOINT_NAMES, np.full(9, np.nan), np.zeros(9), stamp=100.01), 100.01)
    audit.observe(m.joint_state(JOINT_NAMES, REST + 0.3, np.zeros(9), stamp=100.02), 100.5)  # stale on arrival
    assert np.array_equal(audit.measured, REST)


def test_a_restarted_arm_is_audited_from_where_it_first_reports() -> None:
    """Commands a new arm hears before it reports are judged against its first report."""
    audit = audit_at(REST, 100.0)
    moved = REST + np.r_[np.full(7, 0.02), 0.0, 0.0]
    assert verdict(audit, command(moved)) == ""
    audit.new_arm()
    audit.check(command(moved), 101.0)  # the node's last command, re-sent to an arm it has not heard yet
    assert audit.unjudged == 1 and audit.outside == 0
    fresh = moved + np.r_[np.full(7, 0.1), 0.0, 0.0]  # the new arm is 0.1 rad away from it
    audit.observe(m.joint_state(JOINT_NAMES, fresh, np.zeros(9), stamp=101.05), 101.05)
    assert audit.unjudged == 0 and audit.outside == 1 and "step from the previous command" in audit.violations[-1]


def test_a_filter_that_lets_targets_through_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The negative control: with the filter bypassed, the same run is flagged."""
    def unfiltered(self: SafetyFilter, target: Any, now: float) -> SafeCommand:
        self.counters.commands += 1
        q = np.asarray(target, dtype=np.float64)
        return SafeCommand(q.copy(), self.names, False, [], dataclasses.replace(self.counters), False, False)

    monkeypatch.setattr(SafetyFilter, "send", unfiltered)
    r = run_case("clean", dataclasses.replace(CFG, duration_s=3.0))
    assert r.outside_limits > 0 and any("step from the previous command" in v for v in r.violations), r.violations


# ---- the fault link and the node's resync -----------------------------------------------------------

def test_a_stall_holds_the_stream_then_releases_the_newest_states() -> None:
    link = FaultLink("stall", CFG, 0.0, 0.01)
    start, end = link.stalls[0]  # the pinned 200 ms stall
    arrivals = {}
    for k in range(1, round(end / 0.01) + 5):
        t = k * 0.01
        link.send("joint_states", m.joint_state(JOINT_NAMES, REST, np.zeros(9), stamp=t), t)
        arrivals[k] = [m.stamp_to_seconds(msg.header.stamp) for _, msg in link.receive(t)]
    inside = [k for k in arrivals if start <= k * 0.01 < end]
    assert len(inside) >= 19 and all(arrivals[k] == [] for k in inside)
    release = inside[-1] + 1
    # The stall's newest five (the sensor QoS depth), then the state published at the release.
    assert arrivals[release] == pytest.approx([k * 0.01 for k in inside[-5:]] + [release * 0.01])
    assert link.counts.dropped == len(inside) - 5


def reach_core() -> PolicyNodeCore:
    params = PolicyNodeParams(policy="reach", reach_target=[0.1, 0.25, 0.1], object_pose_topic="", goal_topic="")
    return PolicyNodeCore(ReachPolicy(params.reach_target), params, MODEL)


def drive(core: PolicyNodeCore, q: np.ndarray, t: float, ticks: int) -> tuple[np.ndarray, float]:
    """`ticks` control periods with an arm that reaches every command."""
    for _ in range(ticks):
        t += 0.05
        core.on_joint_state(m.joint_state(JOINT_NAMES, q, np.zeros(9), stamp=t), t, t)
        q = core.tick(t).command.positions
    return q, t


def test_nothing_is_published_while_the_watchdog_holds() -> None:
    core = reach_core()
    q, t = drive(core, REST.copy(), 1000.0, 4)
    silent = [core.tick(t + 0.05 * k) for k in range(1, 5)]  # no joint states: the watchdog trips at 0.15 s
    assert [r.message is None for r in silent] == [False, False, True, True]
    assert all(r.command.held for r in silent[2:]) and core.safety.counters.watchdog_trips == 1


@pytest.mark.parametrize("gap_s, resync", [(0.2, False), (RESYNC_AFTER_S + 0.1, True)])
def test_joint_states_after_a_long_gap_restart_the_filter_from_the_arm(gap_s: float, resync: bool) -> None:
    """A restarted arm is back at rest: after a long gap the next command is a step from it, not
    from the last command its predecessor got; after a short stall the filter continues."""
    core = reach_core()
    q, t = drive(core, REST.copy(), 1000.0, 12)
    assert np.max(np.abs(q - REST)[:7]) > 3 * max(LIMITS.max_step)  # the arm went somewhere
    back = REST if resync else q  # a new arm at rest, or the same arm where it was held
    t += gap_s
    core.on_joint_state(m.joint_state(JOINT_NAMES, back, np.zeros(9), stamp=t), t, t)
    sent = core.tick(t + 0.001).command.positions
    reference = REST if resync else q
    assert np.all(np.abs(sent - reference) <= np.array(LIMITS.max_step) + 1e-9)
    assert core.resyncs == int(resync) and core.status()["safety_resyncs"] == int(resync)


# ---- the script ---------------------------------------------------------------------------------

def test_the_benchmark_prints_one_line_per_case(tmp_path: Path) -> None:
    out = tmp_path / "faults.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "faults.py"), "cases=clean,nan", "duration_s=3",
                          f"out={out}"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    pattern = r"faults case=(\w+) commands=60 outside_limits=0 watchdog_trips=0 recovered=true"
    assert [re.fullmatch(pattern, line).group(1) for line in lines[:2]] == ["clean", "nan"]  # type: ignore[union-attr]
    assert lines[2] == "faults cases=2 outside_limits=0 recovered=2/2"
    details = json.loads(out.read_text())
    assert [c["case"] for c in details["cases"]] == ["clean", "nan"] and details["config"]["duration_s"] == 3.0
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "faults.py"), "cases=flood"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "unknown ['flood']" in bad.stderr


def test_over_dds_a_restarted_arm_process_gets_no_command_from_before() -> None:
    """transport=dds: the arm is a process that is really stopped and started again, the node's
    real rate loop runs on cyclonedds, all inside a loopback-only network namespace."""
    code = textwrap.dedent(f"""
        import runpy, sys
        sys.argv = ["benchmarks/faults.py", "transport=dds", "cases=robot_restart", "duration_s=8", "domain_id=67"]
        runpy.run_path({str(ROOT / "benchmarks" / "faults.py")!r}, run_name="__main__")
        """)
    res = run_in_netns(Proc("faults", code), domain_id=67, timeout_s=120)["faults"]
    assert res.returncode == 0, res.describe()
    line = res.stdout.strip().splitlines()[0]
    found = re.fullmatch(r"faults case=robot_restart commands=(\d+) outside_limits=0 watchdog_trips=(\d+) "
                         r"recovered=true", line)
    assert found and int(found.group(1)) > 60 and int(found.group(2)) >= 1, res.describe()
