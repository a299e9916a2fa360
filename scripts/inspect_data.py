#!/usr/bin/env python
"""Summarise a demonstration dataset, validating every episode on the way.

    python scripts/inspect_data.py data/pick_cube.h5
    python scripts/inspect_data.py data/demos/bags --dataset ros2_panda --task pick_cube
    python scripts/inspect_data.py data/lerobot_ds --dataset lerobot_panda --set lerobot.episodes=[0,1]
    python scripts/inspect_data.py lab_bags --suggest --task pick_cube --out lab.yaml   # a first dataset YAML
    python scripts/inspect_data.py lab_bags --dataset lab.yaml                          # ... that reads them

Any format scripts/convert_data.py reads (sim2real HDF5, rosbag2, LeRobot v3, ManiSkill,
robomimic) is shown as the episodes it converts to; options as in convert_data.py.
Prints the file's metadata (task, backend, domain, control mode and rate, robot, seed,
creation time), the episode count, lengths and success rates, every feature with its shape
and dtype, and the mean, std, min and max of every state and action dimension. For rosbag2
logs it also says how far the actions can be trusted: how many steps carry the action the
policy node decided and how many were reconstructed from commands, the share of reconstructed
values outside [-1, 1], how often the safety filter changed the node's command, and the gripper
readings seen. A file that
cannot be used prints the reason (file and field) and exits with status 1.

`--suggest` reads a rosbag2 recording's topics, types, joint names, frames and rates instead and
prints a dataset YAML for it (to a file with `--out`), a comment on each choice and UNDECIDED on
each field the recording did not settle (sim2real/data/suggest.py).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sim2real.data import DatasetError, DatasetSummary
from sim2real.data.formats import add_source_arguments, config_from_args, inspect_source


def _size(num_bytes: int) -> str:
    if num_bytes < 1024:
        return f"{num_bytes} B"
    size = float(num_bytes)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


def _rate(hits: int, count: int) -> str:
    return f"{hits / count:.0%} ({hits}/{count})" if count else "n/a"


FIDELITY_KEYS = ("steps", "action_source_steps", "safety_changed_fraction", "gripper_steps", "clipped_actions",
                 "clipped_fraction", "clipped_steps_fraction")


def _fidelity(extra: dict) -> str:
    """One line on where a log's actions came from (sim2real.data.rosbag.fidelity); "" for other sources."""
    sources = extra.get("action_source_steps")
    if not isinstance(sources, dict):
        return ""
    parts = [f"decided by the policy node (~/action) on {sources.get('intent', 0)} steps, reconstructed from "
             f"commands on {sources.get('commands', 0)}, from the next joint state on {sources.get('next_state', 0)}",
             f"{extra.get('clipped_steps_fraction', 0.0):.1%} of steps with values outside [-1, 1] before "
             f"clipping ({extra.get('clipped_fraction', 0.0):.1%} of values)"]
    if extra.get("safety_changed_fraction") is not None:
        parts.append(f"the safety filter changed {extra['safety_changed_fraction']:.0%} of the node's commands")
    grip = extra.get("gripper_steps") or {}
    parts.append(f"gripper closed on {grip.get('closed', 0)} steps, open on {grip.get('open', 0)}, "
                 f"in between on {grip.get('between', 0)}")
    return "; ".join(parts)


def print_summary(summary: DatasetSummary, console: Console) -> None:
    """Render `summary`: a few lines of metadata, the features, and per-dimension statistics."""
    meta, stats = summary.metadata, summary.stats
    contract = meta.contract
    values = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in meta.domain_values.items())
    rows = [
        ("file", f"{summary.path} ({_size(summary.size_bytes)})"),
        ("task", meta.task),
        ("backend", meta.backend),
        ("robot", meta.robot),
        ("domain", f"{meta.domain}: {values or '(no values recorded)'}"),
        ("control", f"{contract.control_mode} at {contract.control_freq:g} Hz, action_dim {contract.action_dim}"),
        ("seed", str(meta.seed) if meta.seed is not None else "-"),
        ("created", f"{meta.created} by sim2real {meta.sim2real_version}"),
    ]
    # A converted source's reader options are long and in the file; the rest fits a line.
    extra = {k: v for k, v in meta.extra.items() if k not in ("options", *FIDELITY_KEYS)}
    fidelity = _fidelity(meta.extra)
    if fidelity:
        rows.append(("actions", fidelity))
    if extra:
        rows.append(("extra", str(extra)))
    rows.append(("episodes", str(stats.count)))
    if stats.count:
        lengths = stats.lengths
        rows.append(("lengths", f"min {min(lengths)} / mean {sum(lengths) / stats.count:.1f} / max {max(lengths)} "
                                f"({sum(lengths)} steps)"))
        rows.append(("success", f"once {_rate(stats.num_success_once, stats.count)}, "
                                f"at end {_rate(stats.num_success_at_end, stats.count)}"))
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    # Fold, never ellipsize: a long path must stay whole (and copyable) on narrow terminals.
    header.add_column(overflow="fold")
    for key, value in rows:
        header.add_row(key, escape(value))
    console.print(header)

    features = Table(title="observation features")
    for column in ("feature", "kind", "shape", "dtype"):
        features.add_column(column)
    for name, feature in contract.features.items():
        features.add_row(escape(name), feature.kind, str(list(feature.shape)), stats.dtypes.get(name, "-"))
    console.print(features)
    if not stats.count:
        return

    # One row per dimension: a glance shows constant, saturated or wildly scaled dimensions.
    table = Table(title="per-dimension statistics over every step")
    table.add_column("field")
    for column in ("mean", "std", "min", "max"):
        table.add_column(column, justify="right")
    rows = [(f"{name}[{i}]", moments, i) for name, moments in stats.state.items() for i in range(len(moments.mean))]
    rows += [(f"action[{i}]", stats.actions, i) for i in range(contract.action_dim)]
    for label, moments, i in rows:
        table.add_row(escape(label), *(f"{float(v[i]):.4g}" for v in (moments.mean, moments.std, moments.min,
                                                                       moments.max)))
    console.print(table)


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    """Entry point; returns the exit status (0 on success, 1 on a bad file)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="dataset file or directory (any supported format)")
    add_source_arguments(parser)
    parser.add_argument("--suggest", action="store_true", help="print a dataset YAML for this rosbag2 recording")
    parser.add_argument("--out", default=None, help="with --suggest: write the YAML here (atomically)")
    args = parser.parse_args(argv)
    if args.suggest:
        return _suggest(args)
    if args.out:
        parser.error("--out goes with --suggest")
    try:
        summary = inspect_source(args.path, args.format, config_from_args(args))
    except (DatasetError, ValueError) as err:
        # The message already names the file and the field; a traceback adds nothing for a bad file.
        print(f"error: {err}", file=sys.stderr)
        return 1
    print_summary(summary, console or Console())
    return 0


def _suggest(args: argparse.Namespace) -> int:
    from sim2real.atomic import atomic_write
    from sim2real.data.suggest import suggest, survey, to_yaml

    try:
        choices = suggest(survey(args.path), task=args.task or "")
    except (DatasetError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    text = to_yaml(choices, args.path)
    undecided = [k for k, c in choices.items() if c.undecided]
    if args.out:
        atomic_write(args.out, text)
        print(f"wrote {args.out}; read the recording with: python scripts/inspect_data.py {args.path} "
              f"--dataset {args.out}")
    else:
        print(text, end="")
    if undecided:
        print(f"undecided: {', '.join(undecided)} (see the comments)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
