"""A first dataset YAML for a rosbag2 recording made with other conventions than ours.

`survey(path)` reads every bag under `path` (MCAP or sqlite3): topics, types, counts, rates, the
largest gap of each topic, the joint names of JointState topics, the frame ids of stamped poses
and the tf edges. `suggest(survey, task)` decides each field `RosbagOptions` needs from that:
which arm (its joints against the descriptions in configs/arm/), which topic gives what, the
frames, whether the actions come from commands or from the next joint state, and the gap
tolerance; `to_yaml` writes the result as a `--dataset` file with a comment on every choice,
and a `# UNDECIDED` comment where the recording did not say (scripts/inspect_data.py --suggest).
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import Reader

from sim2real.data.bag_streams import find_bags
from sim2real.data.episode import DatasetError
from sim2real.robot.arm_yaml import ArmYaml
from sim2real.robot.description import ARM_CONFIG_DIR
from sim2real.ros import messages as m
from sim2real.ros.messages import TF_MESSAGE
from sim2real.ros.policy_action import parse_policy_action
from sim2real.ros.observation import POINT_STAMPED

NS = 1_000_000_000
# Messages decoded per topic for names and frames (timestamps are read for all).
DECODED = 20
POSE_TYPES = (m.POSE_STAMPED, POINT_STAMPED)
IMAGE_TYPES = (m.COMPRESSED_IMAGE, m.IMAGE)
COMMAND_TYPES = (m.JOINT_TRAJECTORY, m.FLOAT64_MULTI_ARRAY)
DECODED_TYPES = (m.JOINT_STATE, *POSE_TYPES, *IMAGE_TYPES, *COMMAND_TYPES, TF_MESSAGE)
OBJECT_WORDS = ("object", "obj", "cube", "block", "marker", "aruco", "item", "part")
GOAL_WORDS = ("goal", "target", "place")
TCP_WORDS = ("tcp", "ee_pose", "end_effector", "eef", "tool")


@dataclass
class TopicSurvey:
    """One topic over every bag: its type, message count, rate (Hz, median spacing) and
    largest gap (s) within a bag, and what its first messages said."""

    topic: str
    msgtype: str
    count: int = 0
    rate_hz: float = 0.0
    max_gap_s: float = 0.0
    joint_names: list[str] = field(default_factory=list)
    frame_ids: set[str] = field(default_factory=set)
    tf_edges: set[tuple[str, str]] = field(default_factory=set)
    data_sizes: set[int] = field(default_factory=set)
    policy_action: bool = False  # Float64MultiArray in the layout of sim2real.ros.policy_action
    image_format: str = ""


@dataclass
class Survey:
    bags: list[Path]
    storage: set[str]
    topics: dict[str, TopicSurvey]

    def of_type(self, *types: str) -> list[TopicSurvey]:
        """Topics of these types, the busiest first."""
        return sorted((t for t in self.topics.values() if t.msgtype in types), key=lambda t: (-t.count, t.topic))


def survey(path: str | os.PathLike) -> Survey:
    """Read what every bag under `path` holds (see the module docstring)."""
    bags = find_bags(path)
    topics: dict[str, TopicSurvey] = {}
    times: dict[str, list[np.ndarray]] = defaultdict(list)
    storage: set[str] = set()
    for bag in bags:
        storage |= {"mcap" if p.suffix == ".mcap" else "sqlite3" for p in bag.iterdir() if p.suffix in (".mcap", ".db3")}
        per_bag: dict[str, list[int]] = defaultdict(list)
        try:
            with Reader(bag) as reader:
                for conn in reader.connections:
                    topics.setdefault(conn.topic, TopicSurvey(conn.topic, conn.msgtype))
                for conn, received, data in reader.messages():
                    info = topics[conn.topic]
                    info.count += 1
                    per_bag[conn.topic].append(received)
                    if conn.msgtype in DECODED_TYPES and (len(per_bag[conn.topic]) <= DECODED or
                                                          conn.msgtype == TF_MESSAGE):
                        _note(info, m.deserialize(data, conn.msgtype))
        except Exception as exc:  # rosbags raises several kinds for a truncated or foreign file
            raise DatasetError(f"{bag}: not a readable rosbag2 bag ({exc})") from exc
        for topic, stamps in per_bag.items():
            times[topic].append(np.sort(np.asarray(stamps, dtype=np.int64)))
    for topic, runs in times.items():
        gaps = np.concatenate([np.diff(r) for r in runs]) if runs else np.zeros(0)
        if gaps.size:
            positive = gaps[gaps > 0]
            topics[topic].rate_hz = float(NS / np.median(positive)) if positive.size else 0.0
            topics[topic].max_gap_s = float(gaps.max() / NS)
    return Survey(bags, storage, topics)


def _note(info: TopicSurvey, msg: Any) -> None:
    header = getattr(msg, "header", None)
    if header is not None and header.frame_id:
        info.frame_ids.add(str(header.frame_id))
    if info.msgtype == m.JOINT_STATE and not info.joint_names:
        info.joint_names = list(msg.name)
    elif info.msgtype == m.JOINT_TRAJECTORY and not info.joint_names:
        info.joint_names = list(msg.joint_names)
    elif info.msgtype == m.FLOAT64_MULTI_ARRAY:
        info.data_sizes.add(len(msg.data))
        try:
            parse_policy_action(msg)
            info.policy_action = True
        except m.MessageError:
            pass
    elif info.msgtype == TF_MESSAGE:
        info.tf_edges |= {(str(t.header.frame_id).lstrip("/"), str(t.child_frame_id).lstrip("/"))
                          for t in msg.transforms}
    elif info.msgtype == m.COMPRESSED_IMAGE:
        info.image_format = str(msg.format)


@dataclass
class Choice:
    """One field of the suggested YAML: its value and why (or why it is undecided)."""

    value: Any
    why: str
    undecided: bool = False


def _arms() -> dict[str, tuple[list[str], list[str], str, list[str], float]]:
    """Shipped arms: (arm joints, gripper joints, base link, control modes, control rate)."""
    arms = {}
    for path in sorted(ARM_CONFIG_DIR.glob("*.yaml")):
        data = ArmYaml.read(path).data
        gripper = data.get("gripper") or {}
        control = data.get("control") or {}
        arms[path.stem] = (list(data["joints"]), list(gripper.get("joints") or []), str(data["base_link"]),
                           list(control.get("modes") or []), float(control.get("rate_hz", 20.0)))
    return arms


def _pick(candidates: list[TopicSurvey], words: tuple[str, ...]) -> TopicSurvey | None:
    named = [t for t in candidates if any(w in t.topic.lower() for w in words)]
    return named[0] if named else None


def suggest(found: Survey, task: str = "") -> dict[str, Choice]:
    """Field -> Choice for a dataset YAML of format rosbag2 (keys "rosbag.<field>" for the
    format's section). `task` fills `task` when the recording does not name one."""
    out: dict[str, Choice] = {"format": Choice("rosbag2", f"{len(found.bags)} bag(s), storage "
                                                          f"{', '.join(sorted(found.storage)) or '?'}")}
    arms = _arms()
    # ---- the arm and its joint states
    best: tuple[int, str, TopicSurvey] | None = None
    for js in found.of_type(m.JOINT_STATE):
        names = set(js.joint_names)
        for arm, (joints, gripper, *_rest) in arms.items():
            if set(joints) <= names:
                score = len(joints) + len(set(gripper) & names)
                if best is None or score > best[0]:
                    best = (score, arm, js)
    if best is None:
        seen = {t.topic: t.joint_names for t in found.of_type(m.JOINT_STATE)}
        raise DatasetError(f"{found.bags[0].parent}: no JointState topic names every joint of a shipped arm "
                           f"({', '.join(f'{a}: {j[0]}' for a, j in arms.items())}); seen {seen or 'no JointState'}. "
                           f"Describe the arm in configs/arm/<name>.yaml first (docs/bring_your_own_robot.md)")
    _, arm, js = best
    joints, gripper, base_link, modes, rate = arms[arm]
    period = 1.0 / rate
    out["arm"] = Choice(arm, f"{js.topic} names all {len(joints)} joints of configs/arm/{arm}.yaml")
    out["control_mode"] = Choice(modes[0] if modes else "pd_ee_delta_pos", f"{arm}'s first control mode")
    out["rosbag.joint_states_topic"] = Choice(js.topic, f"JointState, {js.count} messages at {js.rate_hz:.0f} Hz")
    extra = sorted(set(js.joint_names) - set(joints) - set(gripper))
    missing_gripper = sorted(set(gripper) - set(js.joint_names))
    out["rosbag.ignore_unknown_joints"] = Choice(bool(extra), f"joints not in the arm's description: {extra}" if extra
                                                 else "every joint is the arm's (the reader reorders them by name)")
    if missing_gripper:
        out["rosbag.joint_states_topic"].why += f"; gripper joints {missing_gripper} missing"
        out["rosbag.joint_states_topic"].undecided = True
    # ---- frames
    tf = {t.topic: t for t in found.of_type(TF_MESSAGE)}
    out["rosbag.base_frame"] = Choice(base_link, f"{arm}'s base link")
    out["rosbag.task_frame"] = Choice("table", "the frame the policy observes in (its simulation's table frame)")
    static = next((t for t in tf.values() if "static" in t.topic), None)
    moving = next((t for t in tf.values() if "static" not in t.topic), None)
    edges = set().union(*(t.tf_edges for t in tf.values())) if tf else set()
    out["rosbag.tf_static_topic"] = Choice(static.topic if static else "", "recorded tf2 static transforms: "
                                           f"{sorted(static.tf_edges)}" if static else "none recorded")
    out["rosbag.tf_topic"] = Choice(moving.topic if moving else "", f"recorded tf2 transforms: {sorted(moving.tf_edges)}"
                                    if moving else "none recorded")
    connected = _connected(edges, base_link)

    def input_choice(t: TopicSurvey | None, what: str, missing: str) -> Choice:
        """A stamped input's topic, and whether its frames resolve to the base through the recorded tf."""
        if t is None:
            return Choice("", missing, True)
        frames = sorted(t.frame_ids)
        bad = [f for f in frames if f.lstrip("/") not in connected and f.lstrip("/") not in ("", base_link, "table")]
        if bad:
            return Choice(t.topic, f"{what}, in frame(s) {frames}: NOT connected to {base_link} by the recorded tf",
                          True)
        return Choice(t.topic, f"{what}, in frame(s) {frames or ['(none)']}, which resolve to {base_link}")

    # ---- inputs
    poses = found.of_type(m.POSE_STAMPED)
    points = found.of_type(POINT_STAMPED)
    obj = _pick(poses, OBJECT_WORDS) or next((p for p in poses if not _pick([p], GOAL_WORDS + TCP_WORDS)), None)
    out["rosbag.object_pose_topic"] = input_choice(
        obj, f"PoseStamped at {obj.rate_hz:.0f} Hz" if obj else "",
        "no PoseStamped topic: a state contract needs one (a camera policy does not)")
    goal = _pick(points + [p for p in poses if p is not obj], GOAL_WORDS) or (points[0] if points else None)
    out["rosbag.goal_topic"] = input_choice(goal, goal.msgtype.split("/")[-1] if goal else "",
                                            "no goal topic: set goal_pos (x, y, z in goal_frame) if the task has a goal")
    tcp = _pick([p for p in poses if p not in (obj, goal)], TCP_WORDS)
    out["rosbag.tcp_pose_topic"] = Choice("", f"forward kinematics of the joint states ({tcp.topic} is recorded too)"
                                          if tcp else "forward kinematics of the joint states")
    cams = found.of_type(*IMAGE_TYPES)
    if cams:
        cam = cams[0]
        kind = f"CompressedImage ({cam.image_format})" if cam.msgtype == m.COMPRESSED_IMAGE else "Image"
        out["rosbag.camera_topic"] = Choice(cam.topic, f"{kind} at {cam.rate_hz:.0f} Hz; used by obs_mode rgb")
    # ---- actions
    action = next((t for t in found.of_type(m.FLOAT64_MULTI_ARRAY) if t.policy_action), None)
    out["rosbag.action_topic"] = Choice(action.topic if action else "", "the policy node's decided actions"
                                        if action else "no sim2real policy node actions recorded")
    commands = [t for t in found.of_type(*COMMAND_TYPES) if t is not action]
    trajectory = next((t for t in commands if t.msgtype == m.JOINT_TRAJECTORY and set(joints) <= set(t.joint_names)),
                      None)
    forward = next((t for t in commands if t.msgtype == m.FLOAT64_MULTI_ARRAY
                    and t.data_sizes & {len(joints), len(joints) + len(gripper)}), None)
    if trajectory is not None:
        out["rosbag.command_topic"] = Choice(trajectory.topic, f"JointTrajectory naming the arm's joints, "
                                                               f"{trajectory.rate_hz:.0f} Hz")
        out["rosbag.actions_from"] = Choice("command", "the commanded joint targets")
    elif forward is not None:
        out["rosbag.command_topic"] = Choice(forward.topic, f"Float64MultiArray of {sorted(forward.data_sizes)} values")
        out["rosbag.command_joints"] = Choice(joints + gripper, "the order of its values is not recorded: check it "
                                              "against the controller's joints", True)
        out["rosbag.actions_from"] = Choice("command", "the commanded joint targets")
    else:
        out["rosbag.command_topic"] = Choice("", "no joint command topic recorded")
        out["rosbag.actions_from"] = Choice("next_state", "no commands: each action from the next measured joint "
                                            "state (hand-guided, MoveIt or action-executed demos)")
        out["rosbag.next_state_gain"] = Choice(1.0, "the share of a commanded step the controller completes in one "
                                               "period: 1 for an arm that reaches its targets; fit it on a commanded "
                                               "recording (sim2real.data.bag_actions.tracking_gain)", True)
    out["rosbag.actions"] = Choice("auto" if action else "commands",
                                   "decided actions where recorded" if action else "reconstructed")
    # ---- episodes, time, gaps
    marker = next((t for t in found.of_type(m.STRING, m.BOOL) if "marker" in t.topic), None)
    episode = next((t for t in found.of_type(m.STRING) if t.topic.rstrip("/").endswith("episode")), None)
    out["rosbag.episodes"] = Choice("auto" if marker else "bag", f"start/stop markers on {marker.topic}" if marker
                                    else f"no episode markers: one episode per bag ({len(found.bags)})")
    out["rosbag.marker_topic"] = Choice(marker.topic if marker else "", "")
    out["rosbag.episode_topic"] = Choice(episode.topic if episode else "", "sim2real episode metadata (task, seed)"
                                         if episode else "no sim2real episode metadata")
    out["task"] = Choice(task, "given with --task" if task else "the task recorded in the episode metadata" if episode
                         else "not recorded: pass --task", not task and not episode)
    required = [t for t in (js, obj) if t is not None]
    worst = max(required, key=lambda t: t.max_gap_s)
    periods = worst.max_gap_s / period
    gap = max(3.0, math.ceil(periods * 2) / 2 + 0.5)
    out["rosbag.max_gap_periods"] = Choice(gap, f"largest gap {worst.max_gap_s * 1e3:.0f} ms on {worst.topic} = "
                                           f"{periods:.1f} periods of {period * 1e3:.0f} ms" +
                                           (": tolerated, check that the arm did not move then" if gap > 3 else ""))
    out["rosbag.time_source"] = Choice("receive", "the bag's receive times (header: when every stamp is on the "
                                       "recording machine's clock)")
    return out


def _connected(edges: set[tuple[str, str]], root: str) -> set[str]:
    """Frames linked to `root` through the (undirected) tf edges."""
    seen, todo = {root}, [root]
    while todo:
        frame = todo.pop()
        for a, b in edges:
            for x, y in ((a, b), (b, a)):
                if x == frame and y not in seen:
                    seen.add(y)
                    todo.append(y)
    return seen


def to_yaml(choices: dict[str, Choice], source: str) -> str:
    """The choices as a dataset YAML for `--dataset`, a comment on each line."""
    lines = [f"# Suggested by scripts/inspect_data.py --suggest for {source}.",
             "# Check each choice; fields marked UNDECIDED need you. Fields are documented on",
             "# RosbagOptions in sim2real/data/config.py.",
             "defaults:", "  - schema", "  - _self_", ""]

    def line(key: str, choice: Choice, indent: str) -> str:
        text = f"{indent}{key}: {json.dumps(choice.value)}"
        why = ("UNDECIDED: " if choice.undecided else "") + choice.why
        return f"{text:<52} # {why}" if why else text

    top = [k for k in choices if not k.startswith("rosbag.")]
    for key in ("format", "task", "arm", "control_mode", *[k for k in top if k not in
                                                               ("format", "task", "arm", "control_mode")]):
        if key in choices:
            lines.append(line(key, choices[key], ""))
    lines.append(line("obs_mode", Choice("state", "rgb: the camera topic below"), ""))
    lines.append("rosbag:")
    for key, choice in choices.items():
        if key.startswith("rosbag."):
            lines.append(line(key.split(".", 1)[1], choice, "  "))
    return "\n".join(lines) + "\n"
