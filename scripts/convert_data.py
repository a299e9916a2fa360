#!/usr/bin/env python
"""Convert demonstrations in any supported format into our HDF5 (sim2real/data/hdf5.py).

    python scripts/convert_data.py data/demos/bags data/real_pick.h5 --dataset ros2_panda --task pick_cube
    python scripts/convert_data.py data/lerobot_ds data/real.h5 --dataset lerobot_panda
    python scripts/convert_data.py demos/trajectory.h5 data/sim.h5 --set maniskill.json_path=demos/t.json
    python scripts/convert_data.py data/bags data/real.h5 --task pick_cube --set rosbag.episodes=marker

Formats: sim2real, rosbag2 (MCAP/sqlite3 bags), lerobot (LeRobotDataset v3), maniskill
(trajectory .h5 + .json), robomimic; detected from the input unless --format is given.
`--dataset` names a preset of configs/dataset/ or a YAML file (DatasetConfig in
sim2real/data/config.py); `--set key=value` overrides any of its fields. Every episode is
validated against the contract before the output is written, atomically. Ends with one line:
`converted episodes=<n> steps=<n> format=<f> clipped_actions=<n> out=<path>`. A source that
cannot be used prints the reason (file, field, time) and exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a file from a checkout
    sys.path.insert(0, str(REPO))

from sim2real.data import DatasetError, read_episodes, write_dataset  # noqa: E402
from sim2real.data.formats import add_source_arguments, config_from_args  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 on success, 1 on a bad source or config)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="demo file or directory")
    parser.add_argument("output", help="HDF5 file to write (replaced atomically)")
    add_source_arguments(parser)
    parser.add_argument("--compression", default="gzip", choices=("gzip", "lzf", "none"),
                        help="HDF5 filter for rgb features")
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        metadata, episodes = read_episodes(args.source, args.format, config)
        write_dataset(args.output, episodes, metadata, None if args.compression == "none" else args.compression)
    except (DatasetError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    steps = sum(e.length for e in episodes)
    clipped = metadata.extra.get("clipped_actions", 0)
    print(f"converted episodes={len(episodes)} steps={steps} format={metadata.extra.get('format', 'sim2real')} "
          f"clipped_actions={clipped} out={args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
