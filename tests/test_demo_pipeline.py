"""The main command end to end on tiny budgets: every phase runs for real (MuJoCo source, the
simulated arm over DDS in a fresh network namespace, rosbag2 MCAP bags, finetuning on them,
deployment over ROS 2) and the report folder holds what issue 7 lists. A second run on the same
folder skips every finished phase."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mujoco")
pytest.importorskip("cyclonedds")

ROOT = Path(__file__).resolve().parents[1]

TINY = ["source_backend=mujoco", "source_demos=3", "pretrain_steps=60", "target_demos=4", "seed=0", "finetune_steps=5",
        "eval_episodes=2", "deploy_episodes=1", "transport=dds",
        "model.latent_dim=32", "model.enc_dim=32", "model.mlp_dim=32",
        "pretrain=['seed_steps=40','eval_every=60','eval_episodes=2','agent.batch_size=16','eval_video=false']",
        "finetune=['agent.batch_size=16']"]


def demo(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), *TINY, f"out_dir={out}", *extra],
                          cwd=out.parent, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_the_main_command_runs_every_phase_and_writes_the_report(tmp_path):
    out = tmp_path / "run"
    done = demo(out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for i, phase in enumerate(["demos", "pretrain", "record", "finetune", "evaluate", "deploy", "report"], 1):
        assert f"[{i}/7] {phase}: finished" in done.stdout
    # target demos were recorded over ROS 2 as MCAP bags, one per episode
    bags = sorted((out / "data" / "target_bags").glob("episode_*"))
    assert len(bags) == 4 and all(list(b.glob("*.mcap")) for b in bags)
    phases = json.loads((out / "phases.json").read_text())
    # At least one must succeed: on a loaded 2-core machine the expert over ROS 2 once failed all of
    # seed=1's three (episode seeds 21000-21002); seed=0's first four succeeded 3 of 4 in
    # benchmarks/demo_fidelity.py.
    assert 1 <= phases["record"]["successful"] <= 4
    report = out / "report"
    for name in ("learning_curve.png", "latency_hist.png"):
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert (report / "deployed_episode.mp4").stat().st_size > 1000
    with open(report / "success_table.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["zero_shot", "finetuned", "bc", "bc_cotrain", "finetuned"]
    assert [r["episodes"] for r in rows] == ["2", "2", "2", "2", "1"]
    for r in rows:
        assert 0.0 <= float(r["ci95_low"]) <= float(r["success"]) <= float(r["ci95_high"]) <= 1.0
    assert "| zero_shot |" in (report / "success_table.md").read_text()
    summary = json.loads((report / "summary.json").read_text())
    assert summary["config"]["task"]["name"] == "push_cube" and summary["config"]["target_domain"]["name"] == "target"
    assert summary["arm"] == "panda"  # the deployed checkpoint's arm (configs/arm/panda.yaml)
    figures = summary["figures"]
    assert figures["latency_ms"]["ticks"] > 0 and figures["latency_ms"]["p50"] > 0
    assert set(figures["phase_wall_s"]) == {"demos", "pretrain", "record", "finetune", "evaluate", "deploy"}
    assert len(figures["pretrain_history"]) >= 1 and 0.0 <= figures["bc_source_success"] <= 1.0
    # the finetuned checkpoint says it came from the pretrained one and the bags
    from sim2real.checkpoint import load_checkpoint

    extra = load_checkpoint(out / "finetune" / "checkpoints" / "last.pt").extra
    assert extra["demos"]["format"] == "rosbag2" and extra["demos"]["episodes"] == phases["record"]["successful"]
    assert all(str(out / "data" / "target_bags") in p for p in extra["demos"]["paths"])
    assert "pretrain" in json.dumps(extra["pretrained"], default=str)
    # Continuing the same folder redoes nothing but the report.
    again = demo(out)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count("done in an earlier run") == 6
    assert "[7/7] report: finished" in again.stdout


def test_an_override_of_a_field_the_main_command_sets_is_refused(tmp_path):
    # `model` is the main command's own group: inside pretrain=[...] it would be lost or win silently.
    done = demo(tmp_path / "run", "pretrain=['model.latent_dim=16']")
    assert done.returncode != 0
    assert "pretrain overrides ['model.latent_dim=16']" in done.stderr and "['model'] set by the stage chain" in done.stderr
