"""Sweeps of the transfer benchmark: Hydra's spelling of every setting, a two-job multirun of
benchmarks/transfer.py with the local launcher that shares one cached pretraining, and
scripts/aggregate_transfer.py merging runs into one table (grouping, duplicates, older
config.json files, no runs)."""

import csv
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sim2real.transfer_config import METHODS, TransferConfig, config_from_overrides, domain_with
from sim2real.transfer_report import RESULT_FIELDS, run_record
from transfer_tiny import TINY

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


aggregator = load_script("aggregate_transfer")


def test_the_defaults_are_the_dataclass_defaults():
    cfg = config_from_overrides([])
    assert run_record(cfg) == run_record(TransferConfig())
    assert cfg.seeds == 5 and cfg.first_seed == 0 and cfg.methods == TransferConfig().methods
    assert cfg.cache_dir == "outputs/benchmarks/transfer/cache" and cfg.out_dir == ""


def test_hydra_overrides_give_the_settings_they_spell():
    cfg = config_from_overrides([
        "task=pick_cube", "target_backend=mujoco", "target_domain=source", "target_domain.friction_scale=0.3",
        "pretrain.steps=2000", "pretrain.agent.lr=1e-4", "pretrain.model=5m", "finetune.freeze=[encoder,q]",
        "scratch.agent.batch_size=16", "bc.chunk=4", "bc.lr=3e-4", "methods=[ours,bc]", "first_seed=3", "seeds=1"])
    assert cfg.pretrain == {"steps": 2000, "agent": {"lr": 1e-4}, "model": "5m"}
    assert run_record(cfg)["pretrain"] == ["steps=2000", "agent.lr=0.0001", "model=5m"]
    assert run_record(cfg)["finetune"] == ["freeze=[encoder,q]"] and cfg.bc == {"chunk": 4, "lr": 3e-4}
    assert cfg.target_domain == domain_with("source", ["friction_scale=0.3"])
    assert (cfg.task, cfg.methods, cfg.first_seed, cfg.seeds) == ("pick_cube", ["ours", "bc"], 3, 1)


LINE = (r"transfer task=push_cube source=mujoco:source target=mujoco:target method=(\w+) demos=2 seeds=(\d+) "
        r"success_mean=([\d.]+) ci95_low=([\d.]+) ci95_high=([\d.]+)")


def run_script(cwd: Path, script: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(script), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def test_a_two_seed_sweep_shares_its_pretraining_and_aggregates_into_one_table(tmp_path):
    pytest.importorskip("mujoco")
    sweep = tmp_path / "sweep"
    run_script(tmp_path, ROOT / "benchmarks" / "transfer.py", "-m", *TINY, "target_domain=target", "cache_dir=cache", "first_seed=0,1",
               f"hydra.sweep.dir={sweep}")
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0_push_cube_mujoco-mujoco_seed0", "1_push_cube_mujoco-mujoco_seed1"]
    first, second = ((job / "transfer.log").read_text() for job in jobs)
    assert f"cache_dir={tmp_path / 'cache'}" in first and "pretraining on mujoco:source" in first
    assert "pretrained checkpoint from cache" in second and "pretraining on" not in second
    # one job's settings are the benchmark's: its results merge with benchmarks/transfer.py's
    assert json.loads((jobs[0] / "config.json").read_text()) == run_record(config_from_overrides(TINY))

    done = run_script(tmp_path, ROOT / "scripts" / "aggregate_transfer.py", str(sweep), f"out={tmp_path / 'table'}")
    found = {m.group(1): m for m in (re.fullmatch(LINE, line) for line in done.stdout.splitlines()) if m}
    assert sorted(found) == sorted(METHODS), done.stdout
    assert all(m.group(2) == "2" for m in found.values())
    assert "transfer_gap task=push_cube" in done.stdout
    group = next(p for p in (tmp_path / "table").iterdir() if p.is_dir())
    with open(group / "results.csv", newline="") as f:
        merged = list(csv.DictReader(f))
    assert sorted((r["method"], r["seed"]) for r in merged) == sorted(
        (m, s) for m in METHODS for s in ("0", "1"))
    with open(tmp_path / "table" / "table.csv", newline="") as f:
        assert [(r["method"], r["seeds"]) for r in csv.DictReader(f)] == [(m, "2") for m in METHODS]
    assert (group / "transfer.png").exists() and "| ours | 2 | 4 |" in (tmp_path / "table" / "table.md").read_text()


def write_run(folder: Path, cfg: TransferConfig, results: list[tuple[str, int, int]], episodes: int = 10,
              **record: object) -> Path:
    """A handwritten transfer out_dir: config.json (run_record, `record` replacing some of it)
    and results.csv with (method, seed, successes)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({**run_record(cfg), **record}))
    with open(folder / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RESULT_FIELDS)
        writer.writeheader()
        for method, seed, successes in results:
            writer.writerow({"method": method, "seed": seed, "successes": successes, "episodes": episodes,
                             "success": successes / episodes, "train_s": 1.0, "eval_s": 1.0})
    return folder


def test_aggregation_groups_runs_by_their_settings_and_merges_seeds(tmp_path):
    push = TransferConfig(task="push_cube", demos=5, pretrain={"steps": 100, "agent": {"lr": 1e-4}})
    slippery = TransferConfig(task="push_cube", demos=5, pretrain={"steps": 100, "agent": {"lr": 1e-4}},
                              target_domain=domain_with("target", ["friction_scale=0.3"]))
    write_run(tmp_path / "sweep" / "0", push, [("ours", 0, 8), ("bc", 0, 4)])
    # the same experiment as an older config.json recorded it: the overrides as given, in another
    # order and with a budget given twice (the last one counts)
    write_run(tmp_path / "sweep" / "1", push, [("ours", 1, 6), ("bc", 1, 5), ("ours", 0, 8)],
              pretrain=["agent.lr=1e-4", "steps=50", "steps=100"])
    write_run(tmp_path / "other" / "run", slippery, [("ours", 0, 3)])
    (tmp_path / "sweep" / "2").mkdir()
    (tmp_path / "sweep" / "2" / "config.json").write_text("{}")  # a job that has not finished a seed yet
    lines = []
    groups = aggregator.aggregate([tmp_path / "sweep", tmp_path / "other"], tmp_path / "out", say=lines.append)
    assert [len(g.runs) for g in groups] == [1, 2]
    slip, main = groups
    assert main.cfg.seeds == 2 and sorted((r["method"], int(r["seed"])) for r in main.rows) == [
        ("bc", 0), ("bc", 1), ("ours", 0), ("ours", 1)]
    assert "target-friction_scale=0.3" in slip.name and slip.cfg.seeds == 1
    assert any("left out 1 runs with no results yet" in line for line in lines)
    assert any("repeats 1 results of" in line and "method=ours seed=0" in line and "counted once" in line
               for line in lines)
    assert ("transfer task=push_cube source=maniskill:source target=maniskill:target method=ours demos=5 seeds=2 "
            "success_mean=0.700") in "\n".join(lines)
    assert "target=maniskill:target(friction_scale=0.3) method=ours demos=5 seeds=1" in "\n".join(lines)
    with open(tmp_path / "out" / "table.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [(r["group"], r["method"], r["seeds"]) for r in table] == [
        (slip.name, "ours", "1"), (main.name, "ours", "2"), (main.name, "bc", "2")]
    assert (tmp_path / "out" / main.name / "summary.csv").exists()
    assert (tmp_path / "out" / main.name / "runs.txt").read_text().count("\n") == 2


def test_a_pair_with_different_results_is_refused_unless_asked_to_keep_the_first(tmp_path):
    cfg = TransferConfig(demos=5)
    write_run(tmp_path / "a", cfg, [("ours", 0, 8)])
    write_run(tmp_path / "b", cfg, [("ours", 0, 2), ("ours", 1, 4)])
    with pytest.raises(ValueError, match=r"duplicate method=ours seed=0 with different results: 8/10 in .*a"):
        aggregator.aggregate([tmp_path], tmp_path / "out", say=lambda line: None)
    lines = []
    [group] = aggregator.aggregate([tmp_path], tmp_path / "out", duplicates="first", say=lines.append)
    assert sorted((r["seed"], r["successes"]) for r in group.rows) == [("0", "8"), ("1", "4")]
    assert any("8/10 in" in line and "2/10 in" in line and "dropped" in line for line in lines)


def test_no_runs_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no transfer runs"):
        aggregator.aggregate([tmp_path], tmp_path / "out", say=lambda line: None)
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="1 have config.json but no results yet"):
        aggregator.aggregate([tmp_path], tmp_path / "out", say=lambda line: None)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        aggregator.aggregate([tmp_path / "missing"], tmp_path / "out", say=lambda line: None)
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "aggregate_transfer.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "aggregate_transfer: no transfer runs" in done.stderr


def test_a_sweep_over_demos_gets_a_success_against_demos_plot(tmp_path):
    for demos, (ours, bc) in {5: (4, 1), 10: (6, 3), 20: (8, 6)}.items():
        cfg = TransferConfig(task="pick_cube", demos=demos)
        write_run(tmp_path / "sweep" / f"d{demos}", cfg, [("ours", 0, ours), ("bc", 0, bc), ("ours", 1, ours)])
    # another experiment at one demo count only: no plot of its own
    write_run(tmp_path / "sweep" / "single", TransferConfig(task="push_cube", demos=5), [("ours", 0, 5)])
    lines = []
    groups = aggregator.aggregate([tmp_path / "sweep"], tmp_path / "out", say=lines.append)
    assert len(groups) == 4
    plots = sorted((tmp_path / "out").glob("demos_*.png"))
    assert [p.name.split("_")[1] for p in plots] == ["pick"]
    assert plots[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any("success against target demos" in line for line in lines)
