"""Transfer benchmark: argument routing, the table's statistics, and one tiny run end to end
(MuJoCo source and target, one seed, every method) that is then continued from its files."""

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sim2real.bc import cotrain_weights
from sim2real.checkpoint import load_checkpoint
from sim2real.finetune_config import AUTO_SIM_DEMOS
from sim2real.finetune_demos import recorded_sim_demos
from hydra.errors import HydraException
from sim2real.transfer import demo_domain, pretrain_key
from sim2real.transfer_config import METHODS, TransferConfig, config_from_overrides, domain_with, overrides
from sim2real.transfer_report import MethodSummary, gap_line, summarise, transfer_line
from transfer_tiny import TINY

ROOT = Path(__file__).resolve().parents[1]


def test_arguments_are_routed_to_pretraining_finetuning_bc_and_the_domains():
    cfg = config_from_overrides(["task=pick_cube", "target_backend=mujoco", "demos=10", "seeds=3",
                                 "pretrain.steps=2000", "finetune.steps=50", "scratch.agent.lr=3e-4", "bc.chunk=4",
                                 "methods=[ours,bc]", "target_domain.friction_scale=0.3",
                                 "source_domain.obs_noise_std=0.001"])
    assert (cfg.task, cfg.target_backend, cfg.demos, cfg.seeds) == ("pick_cube", "mujoco", 10, 3)
    assert cfg.pretrain == {"steps": 2000} and cfg.finetune == {"steps": 50}
    assert overrides(cfg.scratch) == ["agent.lr=0.0003"]
    assert cfg.bc == {"chunk": 4} and cfg.methods == ["ours", "bc"]
    # an override changes one field of the preset and keeps the rest of it
    assert cfg.target_domain.friction_scale == 0.3 and cfg.target_domain.object_mass_scale == 1.5
    assert cfg.target_domain.name == "target(friction_scale=0.3)"
    assert cfg.source_domain.obs_noise_std == 0.001 and cfg.source_domain.friction_scale == 1.0
    assert config_from_overrides([]).target_domain.name == "target"
    assert TransferConfig().target_domain.name == "target"


@pytest.mark.parametrize("argv, error, message", [
    (["seed=3"], HydraException, "Could not override 'seed'"),
    (["methods=[ours,dagger]"], ValueError, "unknown \\['dagger'\\]"),
    (["target_domain.frictoin_scale=0.3"], HydraException, "target_domain.frictoin_scale"),
    (["target_domain=moon"], HydraException, "Could not find 'domain/moon'"),
    (["demos=0"], ValueError, "must all be >= 1"),
    (["pretrain=steps"], HydraException, "pretrain=steps"),
    (["pretrain.model=5m", "pretrain.model.latent_dim=64"], ValueError, "a preset choice and its fields"),
    (["target_domain.friction_scale=-1"], ValueError, "friction_scale"),
    (["task.episode_length=3"], ValueError, "takes a task preset by name"),
    (["bc.chunkk=3"], ValueError, "bc: unknown \\['chunkk'\\]"),
    (["demo_init_range_scale=0"], ValueError, "demo_init_range_scale=0.0: expected a number > 0"),
    (["demo_init_range_scale=wide"], HydraException, "demo_init_range_scale=wide"),
    (["cotrain_target_fraction=1"], ValueError, "expected a fraction in \\(0, 1\\)"),
    (["bc_finetune_steps=0"], ValueError, "bc_finetune_steps must be >= 1"),
])
def test_bad_arguments_are_refused_naming_them(argv, error, message):
    with pytest.raises(error, match=message):
        config_from_overrides(argv)


def test_a_domain_override_that_is_invalid_is_refused():
    with pytest.raises(ValueError, match="friction_scale=-1"):
        domain_with("target", ["friction_scale=-1"])


def rows(method, successes, episodes=50):
    return [{"method": method, "seed": i, "successes": k, "episodes": episodes} for i, k in enumerate(successes)]


def test_summary_takes_the_wider_of_the_seed_spread_and_the_episode_count():
    # spread between seeds dominates: t interval over [0.2, 0.8, 0.5]
    s = summarise(rows("bc", [10, 40, 25]), "bc")
    assert s.success_mean == pytest.approx(0.5) and s.episodes == 150 and s.per_seed == [0.2, 0.8, 0.5]
    half = 4.303 * 0.3 / 3 ** 0.5
    assert (s.ci95_low, s.ci95_high) == (pytest.approx(max(0.0, 0.5 - half)), pytest.approx(min(1.0, 0.5 + half)))
    # every seed the same: the pooled Wilson interval keeps a width
    s = summarise(rows("ours", [45, 45, 45, 45, 45]), "ours")
    assert s.success_mean == pytest.approx(0.9) and 0.85 < s.ci95_low < 0.9 < s.ci95_high < 0.94
    # all failures: a non-empty interval starting at 0, never below the mean
    s = summarise(rows("zero_shot", [0, 0]), "zero_shot")
    assert s.ci95_low == 0.0 < s.ci95_high and s.success_mean == 0.0
    with pytest.raises(ValueError, match="no results for method 'wm_scratch'"):
        summarise(rows("bc", [1]), "wm_scratch")


def test_gap_line_compares_ours_with_the_best_of_every_baseline():
    cfg = TransferConfig()
    ours = MethodSummary("ours", 5, 200, 250, 0.8, 0.7, 0.9, [])
    bc = MethodSummary("bc", 5, 100, 250, 0.4, 0.3, 0.5, [])
    scratch = MethodSummary("wm_scratch", 5, 120, 250, 0.48, 0.38, 0.65, [])
    line = gap_line(cfg, {"ours": ours, "bc": bc, "wm_scratch": scratch})
    assert "best_baseline=wm_scratch" in line and "gap_points=+32.0" in line and "cis_overlap=false" in line
    scratch.ci95_high = 0.75
    assert "cis_overlap=true" in gap_line(cfg, {"ours": ours, "bc": bc, "wm_scratch": scratch})
    assert gap_line(cfg, {"ours": ours}) is None
    # the sim-data baselines and zero-shot count as much as the target-only ones
    for name in ("bc_cotrain", "bc_finetune", "wm_offline", "zero_shot"):
        best = MethodSummary(name, 5, 210, 250, 0.84, 0.75, 0.9, [])
        line = gap_line(cfg, {"ours": ours, "bc": bc, name: best})
        assert f"best_baseline={name}" in line and "gap_points=-4.0" in line
    assert transfer_line(cfg, ours) == ("transfer task=push_cube source=maniskill:source target=maniskill:target "
                                        "method=ours demos=20 seeds=5 success_mean=0.800 ci95_low=0.700 "
                                        "ci95_high=0.900")


def test_the_new_settings_are_parsed():
    cfg = config_from_overrides(["demo_init_range_scale=0.5", "cotrain_target_fraction=0.3",
                                 "bc_finetune_steps=200", "bc_finetune_lr=1e-4", "wm_offline_steps=300"])
    assert (cfg.demo_init_range_scale, cfg.cotrain_target_fraction) == (0.5, 0.3)
    assert (cfg.bc_finetune_steps, cfg.bc_finetune_lr, cfg.wm_offline_steps) == (200, 1e-4, 300)
    assert list(TransferConfig().methods) == list(METHODS) and len(METHODS) == 7


def test_target_demos_come_from_a_narrower_spawn_region_than_the_evaluation():
    cfg = config_from_overrides(["target_domain.init_range_scale=1.5", "demo_init_range_scale=0.5"])
    demos = demo_domain(cfg)
    assert cfg.target_domain.init_range_scale == 1.5 and demos.init_range_scale == pytest.approx(0.75)
    assert demos.friction_scale == cfg.target_domain.friction_scale and demos.name != cfg.target_domain.name
    plain = config_from_overrides([])
    assert demo_domain(plain) is plain.target_domain


def test_a_cache_key_of_a_domain_with_overrides_is_a_path_hydra_overrides_can_carry():
    cfg = config_from_overrides(["source_domain.init_range_scale=1.5", "source_domain.friction_scale=0.5"])
    key = pretrain_key(cfg, 0)
    assert cfg.source_domain.name == "source(init_range_scale=1.5,friction_scale=0.5)"
    assert not set("(),=") & set(key) and "source-init_range_scale-1.5-friction_scale-0.5_" in key


def test_cotraining_draws_the_asked_share_of_pairs_from_the_target_demos():
    class E:
        def __init__(self, length):
            self.length = length

    sim, target = [E(50)] * 8, [E(40), E(60)]
    weights = cotrain_weights(sim, target, 0.3)
    pairs = [e.length * w for e, w in zip(sim + target, weights)]
    assert sum(pairs[8:]) / sum(pairs) == pytest.approx(0.3)
    # pairs within a group are equally likely
    assert len(set(weights[:8])) == 1 and weights[8] == weights[9]


def run_benchmark(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "transfer.py"), *TINY,
                           f"cache_dir={tmp_path / 'cache'}", f"out_dir={tmp_path / 'run'}", *extra],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


def test_a_tiny_run_prints_the_table_writes_its_files_and_continues_from_them(tmp_path):
    pytest.importorskip("mujoco")
    done = run_benchmark(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("transfer ")]
    pattern = (r"transfer task=push_cube source=mujoco:source target=mujoco:target method=(\w+) demos=2 seeds=1 "
               r"success_mean=([\d.]+) ci95_low=([\d.]+) ci95_high=([\d.]+)")
    found = {m.group(1): m for m in map(lambda s: re.fullmatch(pattern, s), lines) if m}
    assert sorted(found) == sorted(METHODS), done.stdout[-3000:]
    for m in found.values():
        assert 0.0 <= float(m.group(3)) <= float(m.group(2)) <= float(m.group(4)) <= 1.0
    assert "transfer_gap task=push_cube" in done.stdout
    run = tmp_path / "run"
    with open(run / "results.csv", newline="") as f:
        results = list(csv.DictReader(f))
    assert sorted(r["method"] for r in results) == sorted(METHODS)
    assert all(r["episodes"] == "2" and r["seed"] == "0" for r in results)
    with open(run / "summary.csv", newline="") as f:
        assert [r["method"] for r in csv.DictReader(f)] == list(METHODS)
    assert (run / "transfer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "seed0" / "target_demos.h5").exists()
    ours = run / "seed0" / "ours" / "checkpoints" / "last.pt"
    assert ours.exists()
    # wm_offline trained offline on the cached pretraining's sim demos, then finetuned like ours:
    # both anchored by those sim demos (finetune's default sim_demos share).
    (offline,) = (tmp_path / "cache").glob("*/seed0/wm_offline_5/checkpoints/last.pt")
    (pretrained,) = (tmp_path / "cache").glob("*/seed0/checkpoints/last.pt")
    sim = load_checkpoint(pretrained).extra["demos"]
    assert recorded_sim_demos(load_checkpoint(offline).extra) == {"path": sim["path"], "episodes": sim["episodes"]}
    for method in ("ours", "wm_offline"):
        tuned = load_checkpoint(run / "seed0" / method / "checkpoints" / "last.pt").extra["demos"]["sim_demos"]
        assert tuned["path"] == sim["path"] and tuned["share"] == AUTO_SIM_DEMOS, method
    # The same out_dir again: nothing is retrained, the table is the same.
    mtime = ours.stat().st_mtime_ns
    again = run_benchmark(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "7 (method, seed) results already there" in again.stdout
    assert [line for line in again.stdout.splitlines() if line.startswith("transfer ")] == lines
    assert ours.stat().st_mtime_ns == mtime
    # One more seed reuses the cached pretraining and adds seed 1 only.
    more = run_benchmark(tmp_path, "seeds=2", "methods=[zero_shot,bc]")
    assert more.returncode == 0, more.stderr[-3000:]
    assert "pretrained checkpoint from cache" in more.stdout and "pretraining on" not in more.stdout
    with open(run / "results.csv", newline="") as f:
        assert sorted((r["method"], r["seed"]) for r in csv.DictReader(f) if r["seed"] == "1") == [
            ("bc", "1"), ("zero_shot", "1")]
    # Other settings in the same out_dir are refused.
    refused = run_benchmark(tmp_path, "demos=3")
    assert refused.returncode != 0 and "holds a run with other settings" in refused.stderr
    # A pretrained checkpoint from elsewhere (e.g. pretrain_curve) is used as is, with its recorded sim demos.
    (checkpoint,) = (tmp_path / "cache").glob("*/seed0/checkpoints/last.pt")
    given = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "transfer.py"), *[a for a in TINY if not
                            a.startswith("pretrain.")], f"checkpoint={checkpoint}", "methods=[zero_shot,bc_cotrain]",
                            f"out_dir={tmp_path / 'given'}"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert given.returncode == 0, given.stderr[-3000:]
    assert "pretraining on" not in given.stdout and "method=bc_cotrain" in given.stdout
    wrong = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "transfer.py"), "task=pick_cube",
                            f"checkpoint={checkpoint}"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert wrong.returncode != 0 and "of task 'push_cube'; expected a pretrained one of task 'pick_cube'" in wrong.stderr
