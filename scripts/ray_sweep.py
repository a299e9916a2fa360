#!/usr/bin/env python
"""The transfer sweep on Ray (sim2real/ray_sweep.py): one Ray task per job, then one table.

    python scripts/ray_sweep.py --sweep-dir outputs/sweeps/ray/v1 task=push_cube,pick_cube first_seed=0,1,2 seeds=1
    python scripts/ray_sweep.py --address auto --num-cpus-per-job 8 --num-gpus-per-job 1 \\
        --sweep-dir /shared/sim2real/sweeps/v1 cache_dir=/shared/sim2real/transfer_cache device=cuda \\
        pretrain_seeds=5 task=push_cube,pick_cube first_seed=0,1,2,3,4 seeds=1
    python scripts/ray_sweep.py --dry-run target_domain.friction_scale=0.3,0.6 first_seed=0,1   # list the jobs

The settings are benchmarks/transfer.py's `key=value` arguments; `key=a,b,c` sweeps over the
values and several such keys over every combination, as `benchmarks/transfer.py -m` does
(`methods=[ours,bc]` is one value). `--address local` (the default) starts a Ray head in this
process on 127.0.0.1: run it inside a loopback-only network namespace (docs/scale_out.md,
"Ray"); `auto`, `<host>:<port>` or `ray://<host>:10001` join a running cluster.

Each job writes into <sweep dir>/<n>_<task>_<source>-<target>_seed<first_seed> and prints the
benchmark's lines; as each ends this prints `job <name>: ok in <s> s` or `job <name>: error (<why>)`
and rewrites <sweep dir>/jobs.json. The same command with the same --sweep-dir continues the
sweep (finished jobs are not run again). Then the sweep folder is aggregated as
scripts/aggregate_transfer.py does (into <sweep dir>/aggregate unless --out), printing its
`transfer task=... method=... seeds=... success_mean=...` lines. Exits 1 when a job failed,
after aggregating the others.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

from sim2real.ray_sweep import expand_grid, plan_jobs, run_sweep
from sim2real.transfer_aggregate import DUPLICATES, aggregate


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ray_sweep.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("settings", nargs="*", help="benchmarks/transfer.py key=value, or key=a,b,... to sweep")
    parser.add_argument("--address", default="local",
                        help="'local' (a Ray head in this process on 127.0.0.1), 'auto', host:port or ray://host:10001")
    parser.add_argument("--sweep-dir", type=Path,
                        default=Path("outputs/sweeps/ray") / time.strftime("%Y-%m-%d_%H-%M-%S"),
                        help="the sweep's folder; an existing one is continued (default outputs/sweeps/ray/<time>)")
    parser.add_argument("--num-cpus", type=int, default=None,
                        help="CPUs of the local head (default: all of this machine's)")
    parser.add_argument("--num-cpus-per-job", type=float, default=1, help="CPUs one job reserves")
    parser.add_argument("--num-gpus-per-job", type=float, default=0, help="GPUs one job reserves")
    parser.add_argument("--out", type=Path, default=None, help="the aggregated table's folder (<sweep dir>/aggregate)")
    parser.add_argument("--duplicates", choices=DUPLICATES, default="error",
                        help="a (method, seed) with different results in two runs: as aggregate_transfer.py")
    parser.add_argument("--dry-run", action="store_true", help="print the jobs and their folders, run nothing")
    return parser.parse_intermixed_args(argv)


def main(argv: list[str]) -> None:
    args = parse(argv)
    say = partial(print, flush=True)
    try:
        grid = expand_grid(args.settings)
        if args.dry_run:
            for job in plan_jobs(grid, args.sweep_dir):
                say(f"job {job.name}: {' '.join(job.argv)}")
            return
        jobs = run_sweep(grid, args.sweep_dir, args.address, args.num_cpus, args.num_cpus_per_job,
                         args.num_gpus_per_job, say)
    except ValueError as e:
        sys.exit(f"ray_sweep: {e}")
    except ConnectionError as e:
        sys.exit(f"ray_sweep: {e}; a cluster with token authentication also needs RAY_AUTH_MODE=token "
                 "and the cluster's token (~/.ray/auth_token) here, or --address auto on one of its nodes")
    failed = [job.name for job in jobs if job.status == "error"]
    say(f"ray_sweep: {len(jobs) - len(failed)} of {len(jobs)} jobs done, {len(failed)} failed "
        f"({args.sweep_dir / 'jobs.json'})")
    problems = [f"failed jobs {', '.join(failed)}: their errors are in jobs.json and <job>/error.txt"] if failed else []
    try:
        aggregate([args.sweep_dir], args.out or args.sweep_dir / "aggregate", args.duplicates, say)
    except (FileNotFoundError, ValueError) as e:
        problems.insert(0, f"no table: {e}")
    if problems:
        sys.exit("ray_sweep: " + "; ".join(problems))


if __name__ == "__main__":
    main(sys.argv[1:])
