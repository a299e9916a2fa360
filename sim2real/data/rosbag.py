"""rosbag2 demo logs (MCAP or sqlite3, read with rosbags: no ROS install) -> canonical Episodes.

Which topic gives which feature is `RosbagOptions` (configs/dataset/ros2_panda.yaml). Every
message is turned into features by the policy node's own `ObservationAssembler`
(sim2real/ros/observation.py): joints reordered by name, `tcp_pose` by forward kinematics with
MuJoCo's quaternion convention, poses moved into the task frame, camera frames decoded, cropped
and resized with OpenCV. A log therefore yields exactly the features the deployed node would
have seen at the same instants.

Time alignment (all times are bag receive times unless `time_source: header`):
- the grid starts at the first command (moved forward by whole periods until every required
  input has a message) and steps by one control period: t_k = t_0 + k / control_freq;
- observation k is the zero-order hold of every input at t_k (its latest message at or before t_k);
- action k is the command in force at t_k + command_phase x period (mid-period by default, so a
  20 Hz command stream with jitter below half a period lands one command per step), converted
  from joint targets to the task's control mode against observation k's joint positions
  (sim2real/data/actions.py) and clipped to [-1, 1], the clipped values counted;
- the episode ends with the period of its last command, or earlier at its end (bag end or stop
  marker); its final observation is the hold at the end of that period.

Where the bag has the policy node's decided actions (`action_topic`, recorded by deploy), they
replace all of the above for the actions: each message is one step, its action is the step's
action (what the demonstrator meant, before the safety filter), and observation k is the hold
of every input at the stamp of the joint state the node acted on (`time_source: header`; with
`receive`, at the message's receive time). The final observation is one period after the last.
Nothing is resampled, so a recorder that stalled and wrote several commands at once loses nothing.

Where the recorder was told when the arm began the episode (`start_stamp_ns` in its start event,
on the arm's clock, as deploy records it), inputs stamped earlier are the episode before: a
recorder that hears of a reset late has some of them in the bag, and decisions made on them
are not part of this episode.

Episodes are one per bag, or the spans between start and stop markers on `marker_topic`
(std_msgs/String or Bool, `sim2real.ros.episodes.parse_marker`; an abort marker discards its
span). Task, seed, domain and success come from `/sim2real/episode` (what bag_recorder writes)
and from marker fields.

Every problem raises DatasetError naming the bag, the topic and the time in seconds from the bag
start: `data/bags/episode_0003: topic /joint_states: gap of 0.400 s from t=1.000 s to t=1.400 s
(max_gap_periods 3 = 0.150 s)`.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from sim2real.robot.description import load_arm
from sim2real.robot.kinematics import KinematicChain
from sim2real.ros.frames import FrameGraph, Frames, base_in_task_matrix, base_in_task_or_default
from sim2real.ros.observation import ObservationAssembler
from sim2real.contract import Contract, ContractMismatch
from sim2real.data.actions import clip_actions
from sim2real.data.bag_actions import ACTIONS_FROM, BagActions
from sim2real.data.bag_streams import ROLES, Bag, Segment, Stream, episode_segments, find_bags, load_bag, \
    message_error
from sim2real.data.decisions import decided_steps
from sim2real.data.config import RosbagOptions
from sim2real.data.episode import DatasetError, Episode
from sim2real.data.resample import NS, first_gap, grid, hold_indices, period_ns, steps_until

EPISODE_MODES = ("auto", "bag", "marker")
TIME_SOURCES = ("receive", "header")
ACTION_SOURCES = ("auto", "intent", "commands")
GRIPPER_MAPPINGS = ("binary", "linear")
# Inputs sampled at every observation, whose silence longer than max_gap_periods is an error
# (the goal is a fixed target until replaced, and success a flag that changes rarely).
CHECKED_ROLES = ("joints", "object", "tcp", "camera")


def _check_options(opts: RosbagOptions) -> None:
    for name, value, allowed in (("episodes", opts.episodes, EPISODE_MODES),
                                 ("time_source", opts.time_source, TIME_SOURCES),
                                 ("actions", opts.actions, ACTION_SOURCES),
                                 ("gripper", opts.gripper, GRIPPER_MAPPINGS)):
        if value not in allowed:
            raise DatasetError(f"rosbag option {name}={value!r}: expected one of {', '.join(allowed)}")
    if not opts.max_gap_periods > 0:
        raise DatasetError(f"rosbag option max_gap_periods={opts.max_gap_periods}: expected > 0")
    if opts.actions_from not in ACTIONS_FROM:
        raise DatasetError(f"rosbag option actions_from={opts.actions_from!r}: expected one of {', '.join(ACTIONS_FROM)}")
    if not 0.0 < opts.next_state_gain <= 1.0:
        raise DatasetError(f"rosbag option next_state_gain={opts.next_state_gain}: expected a share in (0, 1]")
    if opts.actions_from == "next_state" and opts.actions == "intent":
        raise DatasetError("rosbag options actions_from=next_state and actions=intent contradict each other: the "
                           "decided actions are never read from the next state")
    if opts.actions == "intent" and not opts.action_topic:
        raise DatasetError("rosbag option actions=intent needs action_topic (the policy node's ~/action)")
    if not 0.0 <= opts.command_phase <= 1.0:
        raise DatasetError(f"rosbag option command_phase={opts.command_phase}: expected a fraction in [0, 1]")
    try:
        if opts.base_in_task:
            base_in_task_matrix(opts.base_in_task, "rosbag option base_in_task")
    except ValueError as exc:
        raise DatasetError(str(exc)) from None


def _roles(opts: RosbagOptions, contract: Contract) -> dict[str, str]:
    """role -> topic for what this contract needs (roles without a topic left out)."""
    wanted = {"joints": opts.joint_states_topic, "command": opts.command_topic, "success": opts.success_topic,
              "marker": opts.marker_topic, "episode": opts.episode_topic,
              "tf": opts.tf_topic, "tf_static": opts.tf_static_topic}
    if "obj_pose" in contract.features:
        wanted["object"] = opts.object_pose_topic
    if "tcp_pose" in contract.features:
        wanted["tcp"] = opts.tcp_pose_topic
    if "goal_pos" in contract.features:
        wanted["goal"] = opts.goal_topic
    if contract.rgb_shape is not None:
        wanted["camera"] = opts.camera_topic
    if opts.actions_from == "next_state":
        wanted.pop("command")  # no command topic: the joint states give the actions
    elif opts.actions != "commands":
        wanted["intent"] = opts.action_topic
    return {role: topic for role, topic in wanted.items() if topic}


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class RosbagReader:
    """Turns bags into Episodes of one contract (see the module docstring).

    Args:
        contract: the features and control mode the episodes get.
        options: topics, frames and alignment settings.
        task: the expected task; an episode whose metadata names another is refused ("" accepts any).
        model: the arm's kinematics (default: the chain of the contract's arm description, or of
            options.urdf when set).

    Raises:
        DatasetError: the contract asks for a feature these options cannot give.
    """

    def __init__(self, contract: Contract, options: RosbagOptions, task: str = "",
                 model: KinematicChain | None = None) -> None:
        _check_options(options)
        self.contract, self.options, self.task = contract, options, task
        # options.urdf replaces the description's file only: its limits and TCP still apply.
        self.model = model or load_arm(contract.arm, urdf=options.urdf or None).chain
        # The joints every joint state and command are read against: the arm's, then its gripper's.
        self.arm_joints = tuple(self.model.joint_names)
        self.joint_names = self.arm_joints + tuple(self.model.gripper_limits)
        self.period = period_ns(contract.control_freq)
        self.max_gap = round(options.max_gap_periods * self.period)
        self.roles = _roles(options, contract)
        sources = {}
        if "object" in self.roles:
            sources["obj_pose"] = options.object_pose_topic
        if "goal" in self.roles or options.goal_pos:
            sources["goal_pos"] = options.goal_topic or "parameter goal_pos"
        if "camera" in self.roles:
            sources["rgb"] = options.camera_topic
        try:
            base_in_task = base_in_task_or_default(options.base_in_task, contract.arm, "rosbag option base_in_task")
        except ValueError as exc:
            raise DatasetError(str(exc)) from None
        frames = Frames(options.base_frame, options.task_frame, base_in_task)
        crop = tuple(options.camera_crop) if options.camera_crop else None
        try:
            # No staleness limit: the reader checks gaps itself, against the log's own clock.
            self.assembler = ObservationAssembler(contract, self.model, sources, frames, math.inf,
                                                  options.ignore_unknown_joints, crop)  # type: ignore[arg-type]
            if "goal_pos" in contract.features and "goal" not in self.roles:
                self.assembler.set_goal(list(options.goal_pos), options.goal_frame, 0.0)
        except (ContractMismatch, ValueError) as exc:
            raise DatasetError(f"rosbag options cannot give this contract: {exc}") from exc
        self.fixed_goal = self.assembler.inputs["goal_pos"].value if "goal_pos" in self.assembler.inputs else None
        self.actions = BagActions(contract, options, self.model, self.period)

    def read(self, path: str | os.PathLike) -> tuple[list[Episode], dict[str, Any]]:
        """Every episode under `path` and a summary (bags, clipped action values, ...)."""
        episodes: list[Episode] = []
        bags = find_bags(path)
        for bag_path in bags:
            bag = load_bag(bag_path, self.roles, self.options.time_source)
            self._frames_of(bag)
            for segment in episode_segments(bag, self.options.episodes, self.options.marker_topic):
                episodes.append(self.episode(bag, segment))
        return episodes, {"bags": len(bags), **fidelity(episodes, self.contract.action_dim)}

    def _frames_of(self, bag: Bag) -> None:
        """The bag's recorded /tf and /tf_static, whole, as the frames poses are resolved through
        (each pose at its own stamp); a bag without them resolves through base_in_task only."""
        graph = FrameGraph(history_s=math.inf)
        for role, static in (("tf_static", True), ("tf", False)):
            stream = bag.streams.get(role)
            for i, msg in enumerate(stream.msgs if stream else ()):
                reasons = graph.add_message(msg, static)
                if reasons:
                    raise message_error(bag, stream, i, reasons)  # type: ignore[arg-type]
        self.assembler.frames.graph = graph

    # ---- one episode -------------------------------------------------------------------------
    def episode(self, bag: Bag, seg: Segment) -> Episode:
        where = str(bag.path)
        recorded_task = seg.meta.get("task")
        if self.task and recorded_task and recorded_task != self.task:
            raise DatasetError(f"{where}: the episode at {bag.at(seg.start)} is task {recorded_task!r} (episode "
                               f"metadata), expected {self.task!r}")
        ready = self._ready(bag, seg)
        began = (seg.meta.get("extra") or {}).get("start_stamp_ns")
        if isinstance(began, int) and not isinstance(began, bool):  # inputs stamped before belong to the last episode
            ready = max(ready, began)
        intent = None
        if self.options.actions_from == "next_state":
            obs_t = self._state_grid(bag, seg, ready)
        elif "intent" in self.roles:
            intent = decided_steps(bag, seg, ready, self.contract.action_dim, self.period, self.roles,
                                   header_clock=self.options.time_source == "header",
                                   required=self.options.actions == "intent")
        if intent is not None:
            obs_t = intent.obs_t
        elif self.options.actions_from == "command":
            obs_t, act_t = self._command_grid(bag, seg, ready)
            self._check_gap(bag, "command", int(act_t[0]), int(act_t[-1]))
        for role in CHECKED_ROLES:
            if role in self.roles:
                self._check_gap(bag, role, int(obs_t[0]), int(obs_t[-1]))
        obs, qpos = self._observations(bag, obs_t, intent.held_at if intent is not None else {})
        if intent is not None:
            raw = intent.actions
            counts: dict[str, Any] = {"action_source": "intent",
                                      "safety_changed_steps": int(intent.safety_changed.sum())}
        elif self.options.actions_from == "next_state":
            raw, counts = self.actions.from_next_state(qpos)
        else:
            raw, counts = self.actions.from_commands(bag, act_t, qpos)
        actions, clipped = clip_actions(raw)
        counts["clipped_steps"] = int(np.count_nonzero((np.abs(raw) > 1.0).any(axis=1)))
        success = self._success(bag, obs_t, seg.meta.get("success"))
        seed = seg.meta.get("seed")
        meta = {"source": where, "start_s": (int(obs_t[0]) - bag.start) / NS, "clipped_actions": clipped, **counts}
        for key in ("task", "domain", "success"):
            if seg.meta.get(key) is not None:
                meta[key] = seg.meta[key]
        return Episode(obs=obs, actions=torch.from_numpy(actions), success=torch.from_numpy(success), rewards=None,
                       seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None, meta=meta)

    def _ready(self, bag: Bag, seg: Segment) -> int:
        """The first time every observed input has a message (an error when one has none in the episode).

        On the inputs' own clock: with `time_source: header` their stamps, which may run ahead of or
        behind the bag's receive times that delimit the episode."""
        first = []
        for role in (r for r in (*CHECKED_ROLES, "goal") if r in self.roles):
            stream = bag.streams[role]
            if not len(stream.times) or stream.times[0] > seg.end:
                raise DatasetError(f"{bag.path}: topic {stream.topic} ({ROLES[role][0]}): no message before "
                                   f"{bag.at(seg.end)}, the end of the episode")
            first.append(int(stream.times[0]))
        return max(first)

    def _command_grid(self, bag: Bag, seg: Segment, ready: int) -> tuple[np.ndarray, np.ndarray]:
        """Observation times [T+1] and action times [T] on the control grid of the commands."""
        where = str(bag.path)
        cmd = bag.streams["command"]
        lo = int(np.searchsorted(cmd.times, seg.start, side="left"))
        hi = int(np.searchsorted(cmd.times, seg.end, side="right"))
        if lo >= hi:
            raise DatasetError(f"{where}: topic {cmd.topic}: no command between {bag.at(seg.start)} and "
                               f"{bag.at(seg.end)} (the episode)")
        first_cmd, last_cmd = int(cmd.times[lo]), int(cmd.times[hi - 1])
        ready = max(ready, first_cmd)
        # The grid keeps the first command's phase; it starts at the first point where every input has spoken.
        t0 = first_cmd + _ceil_div(ready - first_cmd, self.period) * self.period
        phase = round(self.options.command_phase * self.period)
        # Enough periods that the last command is in force in one of them, but none ending after the episode.
        steps = max(0, _ceil_div(last_cmd - t0 - phase, self.period)) + 1
        steps = min(steps, steps_until(t0, seg.end, self.period))
        if steps < 1:
            raise DatasetError(f"{where}: the episode from {bag.at(seg.start)} to {bag.at(seg.end)} has less than "
                               f"one control period ({self.period / NS:g} s) from {bag.at(t0)}, when every input "
                               f"has a message, to its end")
        obs_t = grid(t0, steps, self.period)
        return obs_t, obs_t[:-1] + phase

    def _state_grid(self, bag: Bag, seg: Segment, ready: int) -> np.ndarray:
        """Observation times [T+1] on a control grid from the first joint state at which every
        input has a message (actions_from next_state: the joint states are the clock)."""
        joints = bag.streams["joints"]
        lo = int(np.searchsorted(joints.times, max(seg.start, ready), side="left"))
        if lo >= len(joints.times) or joints.times[lo] > seg.end:
            raise DatasetError(f"{bag.path}: topic {joints.topic}: no joint state between {bag.at(max(seg.start, ready))} "
                               f"and {bag.at(seg.end)} (the episode, once every input has a message)")
        t0 = int(joints.times[lo])
        steps = steps_until(t0, seg.end, self.period)
        if steps < 1:
            raise DatasetError(f"{bag.path}: the episode from {bag.at(seg.start)} to {bag.at(seg.end)} has less than "
                               f"one control period ({self.period / NS:g} s) of joint states from {bag.at(t0)}")
        return grid(t0, steps, self.period)

    def _check_gap(self, bag: Bag, role: str, start: int, end: int) -> None:
        stream = bag.streams[role]
        gap = first_gap(stream.times, start, end, self.max_gap)
        if gap is not None:
            raise DatasetError(f"{bag.path}: topic {stream.topic}: gap of {(gap[1] - gap[0]) / NS:.3f} s from "
                               f"{bag.at(gap[0])} to {bag.at(gap[1])} (max_gap_periods {self.options.max_gap_periods:g}"
                               f" = {self.max_gap / NS:.3f} s)")

    def _span(self, stream: Stream, times: np.ndarray) -> tuple[np.ndarray, range]:
        """Hold indices of `times`, and every message index from the first held one to the last."""
        idx = hold_indices(stream.times, times)
        return idx, range(int(idx[0]), int(idx[-1]) + 1)

    def _observations(self, bag: Bag, obs_t: np.ndarray,
                      held_at: dict[str, np.ndarray]) -> tuple[dict[str, torch.Tensor], np.ndarray]:
        """Every feature at obs_t [T+1]: the joint state held there, other inputs held at `held_at`
        (by role) where given, else at obs_t too; and the held joint positions [T+1, 9]."""
        joints = bag.streams["joints"]
        idx, span = self._span(joints, obs_t)
        readings = {}
        for i in span:  # every message in the episode is checked, not only the sampled ones
            reading, reasons = self.assembler.parse_joint_state(joints.msgs[i])
            if reading is None:
                raise message_error(bag, joints, i, reasons)
            readings[i] = reading
        qpos = np.stack([readings[i].position for i in idx])
        values: dict[str, np.ndarray] = {"qpos": qpos, "qvel": np.stack([readings[i].velocity for i in idx])}
        if "tcp_pose" in self.contract.features:
            if "tcp" in self.roles:
                values["tcp_pose"] = self._held_values(bag, "tcp", obs_t, "obj_pose")
            else:
                arm = len(self.arm_joints)
                fk = {i: self.assembler.tcp_pose(readings[i].position[:arm]) for i in set(idx.tolist())}
                values["tcp_pose"] = np.stack([fk[i] for i in idx])
        if "obj_pose" in self.contract.features:
            values["obj_pose"] = self._held_values(bag, "object", held_at.get("object", obs_t), "obj_pose")
        if "goal_pos" in self.contract.features:
            if "goal" in self.roles:
                values["goal_pos"] = self._held_values(bag, "goal", held_at.get("goal", obs_t), "goal_pos")
            else:
                values["goal_pos"] = np.repeat(self.fixed_goal[None], len(obs_t), axis=0)
        out: dict[str, torch.Tensor] = {}
        for name, feature in self.contract.features.items():
            if feature.kind == "rgb":
                out[name] = torch.from_numpy(self._held_values(bag, "camera", held_at.get("camera", obs_t), "rgb",
                                                               check_all=False))
            else:
                out[name] = torch.from_numpy(values[name].astype(np.float32).reshape(len(obs_t), *feature.shape))
        return out, qpos

    def _held_values(self, bag: Bag, role: str, times: np.ndarray, feature: str, check_all: bool = True) -> np.ndarray:
        """The feature an input's messages give, held at `times` (every message in the span is
        converted when check_all, so one bad message anywhere in the episode is reported)."""
        stream = bag.streams[role]
        handler = {"object": self.assembler.on_object_pose, "tcp": self.assembler.on_object_pose,
                   "goal": self.assembler.on_goal, "camera": self.assembler.on_image}[role]
        idx, span = self._span(stream, times)
        converted: dict[int, np.ndarray] = {}
        for i in (span if check_all else sorted(set(idx.tolist()))):
            self.assembler.inputs.pop(feature, None)  # each message on its own: no ordering or age rules
            reasons = handler(stream.msgs[i], int(stream.times[i]) / NS)
            if reasons:
                raise message_error(bag, stream, i, reasons)
            converted[i] = self.assembler.inputs.pop(feature).value
        return np.stack([converted[i] for i in idx])

    def _success(self, bag: Bag, obs_t: np.ndarray, final: Any) -> np.ndarray:
        if "success" not in self.roles:
            success = np.zeros(len(obs_t), dtype=bool)
            success[-1] = bool(final)
            return success
        stream = bag.streams["success"]
        idx = hold_indices(stream.times, obs_t)
        return np.array([i >= 0 and bool(stream.msgs[i].data) for i in idx], dtype=bool)


def fidelity(episodes: list[Episode], action_dim: int) -> dict[str, Any]:
    """How far the actions of read episodes can be trusted: clipped values (reconstructed actions
    outside [-1, 1]), steps per action source (the node's decided actions, or reconstructed from
    commands), steps whose command the safety filter changed, and the gripper readings seen."""
    steps = sum(e.length for e in episodes)
    clipped = sum(e.meta["clipped_actions"] for e in episodes)
    clipped_steps = sum(e.meta["clipped_steps"] for e in episodes)
    sources = {"intent": 0, "commands": 0, "next_state": 0}
    for e in episodes:
        sources[e.meta["action_source"]] += e.length
    changed = sum(e.meta.get("safety_changed_steps", 0) for e in episodes)
    grip = np.concatenate([e.actions[:, -1].numpy() for e in episodes]) if episodes else np.zeros(0)
    return {"clipped_actions": clipped, "clipped_fraction": clipped / (steps * action_dim) if steps else 0.0,
            "clipped_steps_fraction": clipped_steps / steps if steps else 0.0, "steps": steps,
            "action_source_steps": sources,
            "safety_changed_fraction": changed / sources["intent"] if sources["intent"] else None,
            "gripper_steps": {"closed": int(np.count_nonzero(grip <= -0.999)),
                              "open": int(np.count_nonzero(grip >= 0.999)),
                              "between": int(np.count_nonzero(np.abs(grip) < 0.999))}}


def recorded_task(path: str | os.PathLike, options: RosbagOptions) -> tuple[str | None, Contract | None]:
    """The task and contract the first bag under `path` was recorded with (bag_recorder's
    `/sim2real/episode`), or None where it names none."""
    bag = load_bag(find_bags(path)[0], {"episode": options.episode_topic})
    contract = None
    if isinstance(bag.meta.get("contract"), dict):
        try:
            contract = Contract.from_dict(bag.meta["contract"], f"{bag.path}: {options.episode_topic} contract")
        except ValueError as exc:
            raise DatasetError(str(exc)) from exc
    task = bag.meta.get("task")
    return (task if isinstance(task, str) else None), contract


def read_rosbag(path: str | os.PathLike, contract: Contract, options: RosbagOptions, task: str = "",
                model: KinematicChain | None = None) -> tuple[list[Episode], dict[str, Any]]:
    """Episodes of every bag under `path` (see RosbagReader) and a summary for the dataset's metadata."""
    episodes, summary = RosbagReader(contract, options, task, model).read(path)
    return episodes, {**summary, "options": asdict(options)}
