"""Resilience of the training stages: `kill -9` and resume, full disks, unwritable output
directories, and checkpoint writes that fail half way.

The kill test runs real `scripts/pretrain.py` processes on MuJoCo with tiny settings and
kills their process group with SIGKILL: once at a random moment after two checkpoints,
once inside a `last.pt` write (a wrapper stalls `torch.save` after half the bytes).
"""

import csv
import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("mujoco")

from sim2real.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint  # noqa: E402
from sim2real.config import ModelConfig, PlannerConfig, compose_config, load_preset  # noqa: E402
from sim2real.finetune import Finetuner, finetune  # noqa: E402
from sim2real.finetune_config import FinetuneConfig  # noqa: E402
from sim2real.imitation import CONFIGS  # noqa: E402
from sim2real.preflight import LOG_MARGIN_BYTES, OutputDirError, check_output_dir  # noqa: E402
from sim2real.preflight import pretrain_output_bytes  # noqa: E402
from sim2real.csv_log import CsvLog  # noqa: E402
from sim2real.pretrain import pretrain  # noqa: E402
from sim2real.pretrain_config import PretrainConfig, pretrain_config, register_schemas  # noqa: E402
from tasks.collect import CollectConfig, collect_demos  # noqa: E402
from tasks.domain import DomainParams  # noqa: E402
from tasks.spec import TaskConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TASK = TaskConfig(name="push_cube", episode_length=20)
EVERY = 40  # checkpoint_every of the kill test (env steps)

# A run that stalls in its first write of `last.pt` (or of its temp file): half the bytes
# written and fsynced, then a marker file and a long sleep, so the test can kill it there.
STALLING_RUN = """
import io, os, runpy, sys, time, torch
marker, script = sys.argv[1], sys.argv[2]
real_save = torch.save
def stalling_save(obj, f, *args, **kwargs):
    name = os.path.basename(os.readlink(f"/proc/self/fd/{f.fileno()}"))
    if name == "last.pt" or name.startswith(".last.pt."):
        data = io.BytesIO()
        real_save(obj, data, *args, **kwargs)
        f.write(data.getvalue()[: len(data.getvalue()) // 2])
        f.flush()
        os.fsync(f.fileno())
        open(marker, "w").close()
        time.sleep(600)
    return real_save(obj, f, *args, **kwargs)
torch.save = stalling_save
sys.argv = sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("demos") / "push.h5"
    collect_demos(CollectConfig(task=TASK, backend="mujoco", episodes=2, out=str(path)))
    return path


def overrides(out: Path, demos: Path, steps: int, resume: bool) -> list[str]:
    """Tiny pretraining on MuJoCo: a checkpoint every EVERY steps, a metrics row every step."""
    return ["backend=mujoco", "task.episode_length=20", "model.latent_dim=32", "model.enc_dim=32",
            "model.mlp_dim=32", "objective.rnd_dim=32", "objective.reward_mlp_dim=32", "agent.batch_size=8",
            "planner=policy", f"steps={steps}", "seed_steps=20", "eval_every=1000000", "eval_episodes=1",
            "eval_video=false", f"checkpoint_every={EVERY}", "log_every=1", "save_buffer=true", "buffer_size=2000",
            f"demos={demos}", "num_demos=2", "device=cpu", "seed=3", f"resume={str(resume).lower()}",
            f"out_dir={out}", f"hydra.run.dir={out.parent / 'hydra'}"]


def start(args: list[str], log: Path) -> subprocess.Popen:
    """A process in its own process group, so that SIGKILL reaches all of it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "1000"}
    with open(log, "ab") as f:
        return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)


def kill_9(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def wait_for(path: Path, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the run ended (rc {proc.returncode}) before {path.name}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {path.name} after {timeout} s:\n{log.read_text()}"
        time.sleep(0.05)


def last_logged_step(path: Path) -> int:
    """env_steps of the last complete metrics row (with log_every=1: the steps done)."""
    text = path.read_text()
    complete = text[: text.rfind("\n") + 1]
    return int(list(csv.DictReader(complete.splitlines()))[-1]["env_steps"])


def check_checkpoint_dir(directory: Path) -> dict[str, int]:
    """Every .pt file loads; everything else is an unfinished save's temp file. -> {name: step}"""
    steps = {}
    for path in sorted(directory.iterdir()):
        if path.suffix == ".pt":
            steps[path.name] = int(load_checkpoint(path).extra["step"])
        else:
            assert path.name.startswith((".last.pt.", ".step_")) and path.suffix == ".tmp", path
    return steps


def test_kill_9_and_resume_lose_at_most_one_checkpoint_interval(tmp_path, demos):
    out, log = tmp_path / "run", tmp_path / "run.log"
    ckpts, last = out / "checkpoints", out / "checkpoints" / "last.pt"
    script = str(ROOT / "scripts" / "pretrain.py")

    # 1. kill -9 at a random moment after the second checkpoint.
    proc = start([script, *overrides(out, demos, 1_000_000, resume=False)], log)
    try:
        wait_for(ckpts / f"step_{2 * EVERY}.pt", proc, log)
        time.sleep(random.uniform(0.0, 1.0))
    finally:
        kill_9(proc)
    killed_at = last_logged_step(out / "metrics.csv")
    steps = check_checkpoint_dir(ckpts)
    resumed_from = steps["last.pt"]
    assert resumed_from % EVERY == 0 and killed_at - EVERY <= resumed_from <= killed_at, (killed_at, steps)
    print(f"first kill: at env step {killed_at}, last.pt at step {resumed_from}, checkpoint_every={EVERY}")

    # 2. Resume, and kill -9 inside the first last.pt write (after its step file is complete).
    before = last.read_bytes()
    marker = tmp_path / "stalled"
    proc = start(["-c", STALLING_RUN, str(marker), script, *overrides(out, demos, 1_000_000, resume=True)], log)
    try:
        wait_for(marker, proc, log)
    finally:
        kill_9(proc)
    assert f"resumed from {last} at env step {resumed_from} " in log.read_text()
    killed_again_at = last_logged_step(out / "metrics.csv")
    assert last.read_bytes() == before, "a killed save changed last.pt"
    assert list(ckpts.glob(".last.pt.*.tmp")), "the stalled save left no temp file: it was not killed mid-write"
    steps = check_checkpoint_dir(ckpts)
    assert steps["last.pt"] == resumed_from and steps[f"step_{resumed_from + EVERY}.pt"] == resumed_from + EVERY
    assert killed_again_at - resumed_from <= EVERY, (killed_again_at, resumed_from)
    print(f"second kill: inside the last.pt write at env step {killed_again_at}, last.pt still at {resumed_from}")

    # 3. A row cut by the kill inside its first field (it reads as a smaller step), then resume
    # to a slightly larger budget and finish.
    with open(out / "metrics.csv", "a") as f:
        f.write(str(killed_again_at + 1)[:-1])
    target = resumed_from + 2 * EVERY
    args = overrides(out, demos, target, resume=True)
    done = subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "1000"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resumed from {last} at env step {resumed_from} " in done.stdout
    assert "the temp file of a save that never finished" in done.stdout
    steps = check_checkpoint_dir(ckpts)
    assert not list(ckpts.glob(".*.tmp"))
    assert steps["last.pt"] == steps[f"step_{target}.pt"] == target
    assert max(steps.values()) == target

    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    logged = [int(r["env_steps"]) for r in rows]
    assert all(None not in r and None not in r.values() for r in rows), "a malformed metrics row"
    assert logged == sorted(set(logged)) and logged[-1] == target, "rows repeated or out of order after resumes"
    with open(out / "eval.csv", newline="") as f:
        assert [int(r["env_steps"]) for r in csv.DictReader(f)] == [target]

    # The preflight estimate covers what the run wrote, without inflating it many times over.
    register_schemas()
    composed = compose_config("pretrain", [a for a in args if not a.startswith("hydra.")])
    need, _ = pretrain_output_bytes(pretrain_config(composed))
    written = sum(p.stat().st_size for p in ckpts.iterdir())
    assert written <= need - LOG_MARGIN_BYTES <= 3 * written, (written, need)


def test_a_row_cut_by_a_kill_is_dropped_and_a_resume_drops_the_rows_it_relogs(tmp_path):
    path = tmp_path / "metrics.csv"
    log = CsvLog(path)
    for step in (10, 20, 30):
        log.write({"env_steps": step, "loss": 0.5})
    with open(path, "a") as f:
        f.write("40,0.")
    log = CsvLog(path)
    assert path.read_text() == "env_steps,loss\n10,0.5\n20,0.5\n30,0.5\n"
    log.drop_rows_after("env_steps", 20)
    log.write({"env_steps": 30, "loss": 0.25})
    assert path.read_text() == "env_steps,loss\n10,0.5\n20,0.5\n30,0.25\n"
    path.write_text("env_st")  # killed while writing the header
    CsvLog(path).write({"env_steps": 1, "loss": 1.0})
    assert path.read_text() == "env_steps,loss\n1,1.0\n"


def test_a_normal_output_dir_passes_and_is_created(tmp_path):
    out = check_output_dir(tmp_path / "a" / "b", 1 << 20, "test")
    assert out.is_dir() and list(out.iterdir()) == [], "the write probe was left behind"


@pytest.fixture
def unwritable_dir(tmp_path) -> Path:
    """A directory this process cannot write to: mode 0o500, or for root (whom modes do not
    stop) the read-only sysfs."""
    path = tmp_path / "read_only"
    path.mkdir()
    path.chmod(0o500)
    try:
        (path / "probe").write_bytes(b"")
    except PermissionError:
        yield path
        path.chmod(0o700)
        return
    path.chmod(0o700)
    sysfs = Path("/sys")
    try:
        (sysfs / "sim2real_probe").write_bytes(b"")
    except OSError:
        yield sysfs
        return
    pytest.skip("no directory this process cannot write to")


def test_an_unwritable_output_dir_fails_naming_it(unwritable_dir):
    with pytest.raises(OutputDirError, match=f"out_dir={unwritable_dir}: the output directory is not writable"):
        check_output_dir(unwritable_dir, 0, "test")


def test_an_output_dir_that_cannot_be_created_fails_naming_it(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputDirError, match=f"out_dir={tmp_path / 'file' / 'run'}: cannot create"):
        check_output_dir(tmp_path / "file" / "run", 0, "test")


def full_disk(monkeypatch: pytest.MonkeyPatch, free: int = 5 << 20) -> None:
    usage = shutil.disk_usage("/")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=free))


def tiny_pretrain(out: Path, demos: Path) -> PretrainConfig:
    model = load_preset("model", "tiny", ModelConfig)
    objective = load_preset("objective", "cdred", CONFIGS["cdred"])
    return PretrainConfig(backend="mujoco", steps=100_000, checkpoint_every=1000, save_buffer=True, demos=str(demos),
                          num_demos=2, out_dir=str(out), task=TASK, domain=DomainParams(), model=model,
                          planner=load_preset("planner", "policy", PlannerConfig), objective=objective)


def test_a_full_disk_stops_pretraining_before_any_work(tmp_path, monkeypatch):
    import tasks

    def no_env(*args, **kwargs):
        raise AssertionError("an environment was built before the preflight")

    monkeypatch.setattr(tasks, "make_env", no_env)
    full_disk(monkeypatch)
    out, missing_demos = tmp_path / "run", tmp_path / "not_collected.h5"
    tick = time.perf_counter()
    with pytest.raises(OutputDirError) as err:
        pretrain(tiny_pretrain(out, missing_demos))
    assert time.perf_counter() - tick < 10
    message = str(err.value)
    for part in (f"out_dir={out}", "5.0 MiB (5242880 bytes) free", "needs about", "checkpoint_every=1000",
                 "steps=100000", "save_buffer=true", "model=tiny"):
        assert part in message, message
    assert not missing_demos.exists() and sorted(p.name for p in out.iterdir()) == []


def test_a_full_disk_stops_finetuning_before_the_first_update(tmp_path, monkeypatch, demos):
    def no_update(self, batch=None):
        raise AssertionError("an update ran before the preflight")

    monkeypatch.setattr(Finetuner, "update", no_update)
    full_disk(monkeypatch, free=1 << 20)
    model = load_preset("model", "tiny", ModelConfig)
    cfg = FinetuneConfig(scratch=True, demos=str(demos), task=TASK, model=model, device="cpu",
                         objective=load_preset("objective", "cdred", CONFIGS["cdred"]), out_dir=str(tmp_path / "ft"),
                         planner=load_preset("planner", "policy", PlannerConfig))
    with pytest.raises(OutputDirError, match=r"ft: 1\.0 MiB \(1048576 bytes\) free, .*checkpoints/last\.pt"):
        finetune(cfg)
    assert sorted(p.name for p in (tmp_path / "ft").iterdir()) == []


@pytest.mark.parametrize("fails_in", ["torch.save", "os.fsync"])
def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(tmp_path, model, contract, monkeypatch, fails_in):
    path = save_checkpoint(tmp_path / "last.pt", make_checkpoint(model, contract, extra={"step": 1}))
    before = path.read_bytes()
    real_save = torch.save

    def save_half(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(f.tell() // 2)
        if fails_in == "torch.save":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", save_half)
    if fails_in == "os.fsync":
        monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match=rf"{path}: checkpoint not written \(No space left on device\); the previous"
                                      r" file is unchanged") as err:
        save_checkpoint(path, make_checkpoint(model, contract, extra={"step": 2}))
    monkeypatch.undo()
    assert err.value.errno == errno.ENOSPC
    assert path.read_bytes() == before and load_checkpoint(path).extra == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"], "the temp file was left behind"
