#!/usr/bin/env python
"""One transfer table from many runs: the jobs of a sweep (benchmarks/transfer.py -m), runs of
benchmarks/transfer.py, or both.

    python scripts/aggregate_transfer.py outputs/sweeps/transfer/2026-11-24_13-00-00
    python scripts/aggregate_transfer.py outputs/sweeps/transfer/a outputs/sweeps/transfer/b out=outputs/tables/push
    python scripts/aggregate_transfer.py outputs/sweeps/transfer/a duplicates=first

Every folder under the given ones that holds config.json and results.csv is a run. Runs
with the same settings (config.json: task, worlds, demos, evaluation episodes and every
budget; their seeds, methods, device and paths aside) form a group, whose (method, seed)
results are merged: a pair found twice with the same numbers counts once, with different
numbers it is an error (`duplicates=first` keeps the run found first and says so). Per group
this prints the benchmark's lines, with seeds = the merged count:
`transfer task=<t> source=<backend:domain> target=<backend:domain> method=<m> demos=<n> seeds=<s> success_mean=<x> ci95_low=<a> ci95_high=<b>`
and `transfer_gap ...`, and writes out/<group>/{results.csv, summary.csv, transfer.png,
runs.txt}; then out/table.csv and out/table.md over every group. out defaults to
<first folder>/aggregate. The work is sim2real/transfer_aggregate.py's (scripts/ray_sweep.py
calls it too).
"""

from __future__ import annotations

import sys
from pathlib import Path

from sim2real.transfer_aggregate import aggregate


def parse(argv: list[str]) -> tuple[list[Path], Path, str]:
    roots, out, duplicates = [], None, "error"
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and key == "out":
            out = Path(value)
        elif eq and key == "duplicates":
            duplicates = value
        elif eq:
            raise ValueError(f"argument {arg!r}: unknown key {key!r}; expected out=<dir> or duplicates=error|first")
        else:
            roots.append(Path(arg))
    if not roots:
        raise ValueError("usage: aggregate_transfer.py <dir> [<dir> ...] [out=<dir>] [duplicates=error|first]")
    return roots, out or roots[0] / "aggregate", duplicates


def main(argv: list[str]) -> None:
    try:
        roots, out, duplicates = parse(argv)
        aggregate(roots, out, duplicates, say=lambda line: print(line, flush=True))
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"aggregate_transfer: {e}")


if __name__ == "__main__":
    main(sys.argv[1:])
