"""The transfer sweep on Ray: one Ray task per job, each a run of the transfer benchmark
(sim2real/transfer.py) in its own folder under the sweep folder.

    jobs = expand_grid(["task=push_cube,pick_cube", "first_seed=0,1,2", "seeds=1"])   # 6 jobs
    done = run_sweep(jobs, "outputs/sweeps/ray/v1", address="local", num_cpus_per_job=1)
    aggregate([Path("outputs/sweeps/ray/v1")], ...)       # sim2real/transfer_aggregate.py

A job is the `key=value` arguments of benchmarks/transfer.py (`config_from_overrides`).
Its folder is `<n>_<task>_<source backend>-<target backend>_seed<first_seed>`, the name
`benchmarks/transfer.py -m` gives it, and holds what a benchmark out_dir holds plus transfer.log.
Every job's settings are checked before Ray starts. `address="local"` starts a Ray head in
this process, bound to 127.0.0.1; "auto", "host:port" or "ray://host:10001" join a running
cluster, whose nodes must see the sweep folder and cache_dir at the same absolute paths.
A job that raises is recorded as an error (jobs.json, <job>/error.txt) and the others go
on. The same sweep folder again continues the sweep: a job whose results.csv holds every
(method, seed) is not run again, the others resume per (method, seed) as run_transfer does.
scripts/ray_sweep.py is the command line; docs/scale_out.md ("Ray") the cluster setup.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from hydra.errors import HydraException

from sim2real.atomic import atomic_write
from sim2real.transfer import run_transfer
from sim2real.transfer_config import config_from_overrides
from sim2real.transfer_report import read_results, run_record

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Job:
    """One run of the sweep and how it went.

    Args:
        name: its folder under the sweep folder.
        argv: the benchmark's arguments it runs with (cache_dir made absolute; out_dir is added).
        out_dir: its folder, absolute.
        status: "pending", "ok", "complete" (every (method, seed) was there from an earlier
            call, so it was not run) or "error" (it raised, or its worker was lost).
        error: for "error", the exception (the whole traceback is in <out_dir>/error.txt).
        seconds: the task's run time, for "ok".
    """

    name: str
    argv: list[str]
    out_dir: str
    status: str = "pending"
    error: str = ""
    seconds: float = 0.0


def split_values(value: str) -> list[str]:
    """`a,b,c` -> ["a", "b", "c"]; commas inside [...], {...} or quotes stay in their value
    (`[ours,bc],[bc]` -> ["[ours,bc]", "[bc]"]), as in Hydra's sweep syntax."""
    parts, depth, start, quote = [], 0, 0, ""
    for i, ch in enumerate(value):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(value[start:i])
            start = i + 1
    parts.append(value[start:])
    if depth or quote:
        raise ValueError(f"{value!r}: unbalanced brackets or quotes")
    if "" in parts:
        raise ValueError(f"{value!r}: an empty value between commas")
    return parts


def expand_grid(overrides: list[str]) -> list[list[str]]:
    """Hydra multirun's sweep: `key=a,b` gives one job per value, several such keys one job
    per combination (the last key varying fastest); a plain `key=value` goes to every job.

    Args:
        overrides: `key=value` or `key=a,b,...` items.

    Returns:
        One argument list per job (no overrides: one job with the defaults).
    """
    choices = []
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"argument {item!r}: expected key=value or key=a,b,...")
        try:
            choices.append([f"{key}={v}" for v in split_values(value)])
        except ValueError as e:
            raise ValueError(f"argument {item!r}: {e}") from None
    return [list(combo) for combo in itertools.product(*choices)]


def plan_jobs(jobs: list[list[str]], sweep_dir: str | Path) -> list[Job]:
    """Check every job's settings as benchmarks/transfer.py would and name its folder; nothing
    runs if one is wrong. A relative cache_dir is taken from the current folder, so that every
    job (on whichever node) uses the same cache."""
    root = Path(sweep_dir).absolute()
    planned = []
    for n, argv in enumerate(jobs):
        if any(arg.startswith("out_dir=") for arg in argv):
            raise ValueError(f"job {n} ({' '.join(argv)}): out_dir is the sweep's (<sweep dir>/<job>); "
                             "give the sweep folder instead")
        try:
            cfg = config_from_overrides(argv)
        except (ValueError, HydraException) as e:
            raise ValueError(f"job {n} ({' '.join(argv)}): {e}") from None
        name = f"{n}_{cfg.task}_{cfg.source_backend}-{cfg.target_backend}_seed{cfg.first_seed}"
        given = [arg for arg in argv if not arg.startswith("cache_dir=")]
        planned.append(Job(name, [*given, f"cache_dir={Path(cfg.cache_dir).absolute()}"], str(root / name)))
    return planned


def finished(job: Job) -> bool:
    """Whether an earlier call left every (method, seed) of this job in its folder, with its settings."""
    out = Path(job.out_dir)
    cfg = config_from_overrides(job.argv)
    config = out / "config.json"
    if not config.is_file() or json.loads(config.read_text()) != run_record(cfg):
        return False
    done = {(r["method"], int(r["seed"])) for r in read_results(out / "results.csv")}
    return all((m, s) in done for m in cfg.methods for s in range(cfg.first_seed, cfg.first_seed + cfg.seeds))


def run_job(argv: list[str], out_dir: str) -> float:
    """One job, on a Ray worker: run_transfer into out_dir. Its lines are printed (Ray forwards
    them to the driver) and kept with timestamps in <out_dir>/transfer.log, as benchmarks/transfer.py
    does. Returns its run time in seconds."""
    start = time.perf_counter()
    cfg = config_from_overrides([*argv, f"out_dir={out_dir}"])
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(out_dir) / "transfer.log", "a") as log:
        def say(line: str) -> None:
            print(line, flush=True)
            log.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {line}\n")
            log.flush()

        say(f"transfer job out_dir={out_dir} cache_dir={cfg.cache_dir} "
            f"seeds={cfg.first_seed}..{cfg.first_seed + cfg.seeds - 1}")
        run_transfer(cfg, say=say)
    return time.perf_counter() - start


def connect(address: str, num_cpus: int | None = None) -> None:
    """ray.init for a local head ("local") or a running cluster (anything else Ray takes)."""
    import ray

    if address == "local":
        # A head that listens on 127.0.0.1 only, without the dashboard and without usage
        # reports; a loopback-only network namespace around it (docs/scale_out.md) also stops
        # its probe for an outside address.
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1", num_cpus=num_cpus)
    elif num_cpus is not None:
        raise ValueError(f"num_cpus={num_cpus} sizes a local head; the nodes of a running cluster have theirs "
                         "(ray start --num-cpus)")
    else:
        ray.init(address=address)


def _write_jobs(root: Path, jobs: list[Job]) -> None:
    atomic_write(root / "jobs.json", json.dumps({"jobs": [asdict(j) for j in jobs]}, indent=1))


def run_sweep(jobs: list[list[str]], sweep_dir: str | Path, address: str = "local", num_cpus: int | None = None,
              num_cpus_per_job: float = 1, num_gpus_per_job: float = 0,
              say: Callable[[str], None] = print) -> list[Job]:
    """Run the jobs as Ray tasks, as many at once as the cluster's resources allow.

    Args:
        jobs: one list of benchmarks/transfer.py `key=value` arguments per job (expand_grid).
        sweep_dir: the sweep folder: jobs.json (the jobs and how each went, rewritten as each
            ends) and one folder per job. The same folder again continues the sweep.
        address: "local" (a head in this process on 127.0.0.1) or a running cluster's address.
        num_cpus: CPUs of the local head (None: all of this machine's).
        num_cpus_per_job / num_gpus_per_job: what one job reserves on its node.

    Returns:
        The jobs with their status; none is left "pending".
    """
    planned = plan_jobs(jobs, sweep_dir)
    root = Path(sweep_dir).absolute()
    root.mkdir(parents=True, exist_ok=True)
    todo = []
    for job in planned:
        if finished(job):
            job.status = "complete"
            say(f"job {job.name}: every (method, seed) already in {job.out_dir}, not run again")
        else:
            todo.append(job)
    _write_jobs(root, planned)
    if not todo:
        return planned
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        connect(address, num_cpus)
    try:
        task = ray.remote(num_cpus=num_cpus_per_job, num_gpus=num_gpus_per_job)(run_job)
        pending = {task.remote(job.argv, job.out_dir): job for job in todo}
        say(f"submitted {len(todo)} of {len(planned)} jobs to Ray ({address}), {num_cpus_per_job} CPUs and "
            f"{num_gpus_per_job} GPUs each")
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ref)
            try:
                job.seconds = round(ray.get(ref), 1)
                job.status = "ok"
                (Path(job.out_dir) / "error.txt").unlink(missing_ok=True)  # from an earlier call
            except Exception as e:  # the job raised (RayTaskError), or its worker or node was lost
                cause = getattr(e, "cause", None) or e
                job.status, job.error = "error", f"{type(cause).__name__}: {cause}"
                atomic_write(Path(job.out_dir) / "error.txt", _ANSI.sub("", str(e)) + "\n")
            _write_jobs(root, planned)
            if job.status == "ok":
                say(f"job {job.name}: ok in {job.seconds} s")
            else:
                say(f"job {job.name}: error ({job.error.splitlines()[0]})")
    finally:
        if started_here:
            ray.shutdown()
    return planned
