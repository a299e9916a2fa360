"""Transfer sweeps on Ray (sim2real/ray_sweep.py, scripts/ray_sweep.py): the grid, the checks
before anything runs, what counts as finished, and a real local Ray head running tiny jobs.

The Ray head runs only inside a fresh network namespace whose one interface is `lo`
(`robot_bridge.netns.netns_command`, as the DDS tests do), bound to 127.0.0.1. Binding alone is
not enough to keep every packet on the machine: Ray 2.60 still probes 8.8.8.8:53 to find its
address. Where a namespace cannot be made (no `unshare`, no user namespaces), the Ray test
skips instead of starting a head outside one.
"""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from robot_bridge.netns import netns_command
from sim2real.ray_sweep import Job, expand_grid, finished, plan_jobs, split_values
from sim2real.transfer_config import config_from_overrides
from sim2real.transfer_report import RESULT_FIELDS, run_record
from transfer_tiny import TINY

ROOT = Path(__file__).resolve().parents[1]


def test_the_grid_is_every_combination_last_key_fastest():
    assert expand_grid(["task=push_cube,pick_cube", "seeds=1", "first_seed=0,1"]) == [
        ["task=push_cube", "seeds=1", "first_seed=0"], ["task=push_cube", "seeds=1", "first_seed=1"],
        ["task=pick_cube", "seeds=1", "first_seed=0"], ["task=pick_cube", "seeds=1", "first_seed=1"]]
    assert expand_grid([]) == [[]]
    # a list is one value; lists can be swept too
    assert split_values("[ours,bc],[bc]") == ["[ours,bc]", "[bc]"]
    assert expand_grid(["methods=[ours,bc]", "finetune.freeze={a: 1, b: 2}", "device='cpu,cuda'"]) == [
        ["methods=[ours,bc]", "finetune.freeze={a: 1, b: 2}", "device='cpu,cuda'"]]


@pytest.mark.parametrize("item, message", [
    ("seeds", "expected key=value"),
    ("=3", "expected key=value"),
    ("methods=[ours,bc", "unbalanced brackets"),
    ("first_seed=0,,1", "an empty value between commas"),
])
def test_a_bad_grid_item_is_named(item, message):
    with pytest.raises(ValueError, match=re.escape(f"argument {item!r}") + ".*" + message):
        expand_grid([item])


def test_jobs_are_checked_and_named_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    jobs = plan_jobs(expand_grid(["task=push_cube,pick_cube", "target_backend=mujoco", "first_seed=3"]), "sweep")
    assert [j.name for j in jobs] == ["0_push_cube_maniskill-mujoco_seed3", "1_pick_cube_maniskill-mujoco_seed3"]
    assert jobs[0].out_dir == str(tmp_path / "sweep" / jobs[0].name)
    # one cache for every job, wherever it runs
    assert jobs[0].argv[-1] == f"cache_dir={tmp_path / 'outputs/benchmarks/transfer/cache'}"
    assert config_from_overrides(plan_jobs([["cache_dir=c", "cache_dir=d"]], "s")[0].argv).cache_dir == str(tmp_path / "d")
    with pytest.raises(ValueError, match=r"job 1 \(task=push_cube seedz=1\): Could not override 'seedz'"):
        plan_jobs([["task=push_cube"], ["task=push_cube", "seedz=1"]], "sweep")
    with pytest.raises(ValueError, match="job 0 .*out_dir is the sweep's"):
        plan_jobs([["out_dir=elsewhere"]], "sweep")


def write_results(out: Path, argv: list[str], pairs: list[tuple[str, int]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(run_record(config_from_overrides(argv))))
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RESULT_FIELDS)
        writer.writeheader()
        writer.writerows({"method": m, "seed": s, "successes": 1, "episodes": 2, "success": 0.5, "train_s": 1,
                          "eval_s": 1} for m, s in pairs)


def test_a_job_is_finished_when_every_method_and_seed_is_there_with_its_settings(tmp_path):
    argv = ["methods=[ours,bc]", "first_seed=2", "seeds=2"]
    job = Job("0_job", argv, str(tmp_path / "job"))
    assert not finished(job)
    write_results(tmp_path / "job", argv, [("ours", 2), ("bc", 2), ("ours", 3)])
    assert not finished(job)
    write_results(tmp_path / "job", argv, [("ours", 2), ("bc", 2), ("ours", 3), ("bc", 3)])
    assert finished(job)
    # other settings in the folder: not this job's results (run_transfer will refuse the folder)
    write_results(tmp_path / "job", [*argv, "demos=7"], [("ours", 2), ("bc", 2), ("ours", 3), ("bc", 3)])
    assert not finished(job)


LINE = (r"transfer task=push_cube source=mujoco:source target=mujoco:target method=(\w+) demos=2 seeds=(\d+) "
        r"success_mean=([\d.]+) ci95_low=([\d.]+) ci95_high=([\d.]+)")


def in_loopback_namespace(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """scripts/ray_sweep.py run in a fresh network namespace that has only lo."""
    command = netns_command([sys.executable, str(ROOT / "scripts" / "ray_sweep.py"), *args])
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})


def test_a_sweep_on_a_local_ray_head_records_a_failed_job_and_aggregates_the_others(tmp_path):
    pytest.importorskip("ray")
    pytest.importorskip("mujoco")
    probe = subprocess.run(netns_command(["true"]), capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"no loopback-only network namespace here ({probe.stderr.strip()}); not starting Ray outside one")
    sweep = tmp_path / "sweep"
    # A setting the sweep can check (a task preset) stops it before Ray starts, naming the job.
    refused = in_loopback_namespace(tmp_path, "--address", "local", "--sweep-dir", str(sweep),
                                    "task=push_cube,no_such_task", *TINY[1:])
    assert refused.returncode != 0 and "job 1 (task=no_such_task" in refused.stderr
    assert "Could not find 'task/no_such_task'" in refused.stderr and not sweep.exists()
    tiny = [a for a in TINY if not a.startswith("pretrain.seed_steps=")]
    # 2 values x 2 seeds: the two seed_steps=40 jobs share one pretraining; `forty` is only
    # checked when pretraining composes its config, so both of its jobs fail when they start,
    # and the others go on.
    grid = ["pretrain.seed_steps=40,forty", *tiny, "methods=[zero_shot,bc]", "cache_dir=cache", "first_seed=0,1"]
    done = in_loopback_namespace(tmp_path, "--address", "local", "--num-cpus", "2", "--num-cpus-per-job", "1",
                                 "--sweep-dir", str(sweep), *grid)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-5000:]
    assert "Started a local Ray instance" in output and "submitted 4 of 4 jobs to Ray (local)" in output
    jobs = json.loads((sweep / "jobs.json").read_text())["jobs"]
    status = {j["name"]: j["status"] for j in jobs}
    assert status == {"0_push_cube_mujoco-mujoco_seed0": "ok", "1_push_cube_mujoco-mujoco_seed1": "ok",
                      "2_push_cube_mujoco-mujoco_seed0": "error", "3_push_cube_mujoco-mujoco_seed1": "error"}
    failed = jobs[2]
    assert "seed_steps=forty" in failed["error"]
    assert "seed_steps=forty" in (sweep / failed["name"] / "error.txt").read_text()  # with the traceback
    assert f"job {failed['name']}: error (ConfigCompositionException: " in output
    assert "ray_sweep: 2 of 4 jobs done, 2 failed" in done.stdout
    assert f"ray_sweep: failed jobs {jobs[2]['name']}, {jobs[3]['name']}" in done.stderr
    logs = [(sweep / j["name"] / "transfer.log").read_text() for j in jobs[:2]]
    assert sum("pretraining on mujoco:source" in log for log in logs) == 1  # one pretrained, the other loaded it
    assert all(f"cache_dir={tmp_path / 'cache'}" in log for log in logs)

    # the aggregation over both push_cube jobs: both seeds in one group
    found = {m.group(1): m for m in (re.fullmatch(LINE, line) for line in done.stdout.splitlines()) if m}
    assert sorted(found) == ["bc", "zero_shot"], done.stdout[-3000:]
    assert all(m.group(2) == "2" for m in found.values())
    with open(sweep / "aggregate" / "table.csv", newline="") as f:
        assert [(r["method"], r["seeds"]) for r in csv.DictReader(f)] == [("zero_shot", "2"), ("bc", "2")]

    # the same sweep again, without the failing task: both jobs are complete, so neither runs
    # (Ray is not even started) and the table is the same
    again = in_loopback_namespace(tmp_path, "--address", "local", "--sweep-dir", str(sweep), "pretrain.seed_steps=40",
                                  *tiny, "methods=[zero_shot,bc]", "cache_dir=cache", "first_seed=0,1")
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert again.stdout.count("already in") == 2 and "submitted" not in again.stdout
    assert "Started a local Ray instance" not in again.stdout + again.stderr
    assert sorted(re.findall(r"method=\w+ demos=2 seeds=2", again.stdout)) == sorted(
        f"method={m} demos=2 seeds=2" for m in found)
