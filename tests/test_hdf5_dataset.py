import importlib.util
import json
import os
from pathlib import Path

import h5py
import pytest
import torch

from sim2real.contract import Contract, Feature
from sim2real.data import (DatasetError, DatasetMetadata, DatasetWriter, Episode, inspect_dataset, iter_episodes,
                           read_dataset, read_metadata, write_dataset)
from sim2real.data.hdf5 import FORMAT_VERSION
from tasks.spec import task_contract

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def rgb_contract() -> Contract:
    return task_contract("pick_cube", obs_mode="rgb", image_size=16)


def _episode(contract: Contract, steps: int, seed: int | None = 0, rewards: bool = True) -> Episode:
    g = torch.Generator().manual_seed(seed or 0)
    obs = {}
    for name, f in contract.features.items():
        if f.kind == "rgb":
            obs[name] = torch.randint(0, 256, (steps + 1, *f.shape), generator=g, dtype=torch.uint8)
        else:
            obs[name] = torch.randn(steps + 1, *f.shape, generator=g) * 1e3  # exact float32, not rounded
    success = torch.zeros(steps + 1, dtype=torch.bool)
    success[steps // 2:-1] = True  # solved once, lost again at the end
    return Episode(obs=obs, actions=torch.rand(steps, contract.action_dim, generator=g) * 2 - 1, success=success,
                   rewards=success[1:].float() if rewards else None, seed=seed,
                   meta={"domain_draw": {"friction_scale": 0.7}} if seed else {})


def _metadata(contract: Contract, **kwargs) -> DatasetMetadata:
    return DatasetMetadata(task="pick_cube", backend="mujoco", contract=contract, domain="target",
                           domain_values={"friction_scale": 0.5, "action_latency_steps": 1}, seed=7,
                           extra={"expert": "scripted", "num_envs": 2}, **kwargs)


def _write(path: Path, contract: Contract, lengths=(6, 4, 5)) -> list[Episode]:
    episodes = [_episode(contract, n, seed=i if i else None, rewards=i != 1) for i, n in enumerate(lengths)]
    write_dataset(path, episodes, _metadata(contract))
    return episodes


def test_round_trip_is_exact(tmp_path: Path, rgb_contract: Contract):
    path = tmp_path / "data" / "demos.h5"
    episodes = _write(path, rgb_contract)
    metadata, loaded = read_dataset(path, expect_contract=rgb_contract)

    assert metadata.contract == rgb_contract
    assert (metadata.task, metadata.backend, metadata.domain, metadata.robot, metadata.seed) == \
        ("pick_cube", "mujoco", "target", "panda", 7)
    assert metadata.domain_values == {"friction_scale": 0.5, "action_latency_steps": 1}
    assert metadata.extra == {"expert": "scripted", "num_envs": 2}
    assert metadata.control_mode == "pd_ee_delta_pos" and metadata.control_freq == rgb_contract.control_freq
    assert metadata.created and metadata.sim2real_version
    assert len(loaded) == len(episodes)
    for a, b in zip(episodes, loaded):
        assert list(b.obs) == list(rgb_contract.features)
        for name in a.obs:
            assert b.obs[name].dtype == a.obs[name].dtype and torch.equal(a.obs[name], b.obs[name])
        assert torch.equal(a.actions, b.actions) and b.actions.dtype == torch.float32
        assert torch.equal(a.success, b.success) and b.success.dtype == torch.bool
        assert (a.rewards is None and b.rewards is None) or torch.equal(a.rewards, b.rewards)
        assert (a.seed, a.meta, a.length) == (b.seed, b.meta, b.length)
        assert (b.success_once, b.success_at_end) == (True, False)
    assert [e.length for e in iter_episodes(path)] == [6, 4, 5]
    assert read_metadata(path).contract == rgb_contract
    with h5py.File(path) as f:
        assert f["episodes/000000/obs/rgb"].compression == "gzip"
        assert f["episodes/000000/obs/qpos"].compression is None
        meta = json.dumps({"domain_draw": {"friction_scale": 0.7}})
        assert dict(f["episodes/000002"].attrs) == {"length": 5, "success_once": True, "success_at_end": False,
                                                    "seed": 2, "meta": meta}
    assert [p.name for p in path.parent.iterdir()] == ["demos.h5"], "no temp files left behind"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask, "a new dataset gets the usual permissions"


def test_empty_dataset_and_lzf(tmp_path: Path, rgb_contract: Contract):
    write_dataset(tmp_path / "empty.h5", [], _metadata(rgb_contract))
    assert read_dataset(tmp_path / "empty.h5")[1] == []
    write_dataset(tmp_path / "lzf.h5", [_episode(rgb_contract, 3)], _metadata(rgb_contract), compression="lzf")
    assert torch.equal(read_dataset(tmp_path / "lzf.h5")[1][0].obs["rgb"], _episode(rgb_contract, 3).obs["rgb"])


def test_exception_in_writer_leaves_no_file(tmp_path: Path, rgb_contract: Contract):
    path = tmp_path / "demos.h5"
    with pytest.raises(KeyboardInterrupt):
        with DatasetWriter(path, _metadata(rgb_contract)) as writer:
            writer.append(_episode(rgb_contract, 4))
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_exception_in_writer_keeps_the_old_file(tmp_path: Path, rgb_contract: Contract):
    path = tmp_path / "demos.h5"
    _write(path, rgb_contract)
    before = path.read_bytes()
    bad = _episode(rgb_contract, 4)
    bad.actions = bad.actions[:, :2]
    with pytest.raises(DatasetError, match=r"demos\.h5: episodes/000001/actions has shape \[4, 2\], expected \[T, 4\]"):
        with DatasetWriter(path, _metadata(rgb_contract)) as writer:
            writer.append(_episode(rgb_contract, 4))
            writer.append(bad)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["demos.h5"]


def test_truncated_file_names_the_file(tmp_path: Path, rgb_contract: Contract):
    path = tmp_path / "demos.h5"
    _write(path, rgb_contract)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(DatasetError, match=r"demos\.h5: not a readable HDF5 file .*truncated or corrupt"):
        read_dataset(path)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(DatasetError, match=r"text\.h5: not a readable HDF5 file"):
        read_dataset(tmp_path / "text.h5")
    with pytest.raises(DatasetError, match=r"nope\.h5: dataset file not found"):
        read_dataset(tmp_path / "nope.h5")


def _edit(path: Path, fn) -> None:
    with h5py.File(path, "r+") as f:
        fn(f)


@pytest.mark.parametrize("edit, message", [
    (lambda f: f.attrs.__setitem__("format", "lerobot"), r"attribute format='lerobot', expected 'sim2real-demos'"),
    (lambda f: f.attrs.__setitem__("format_version", FORMAT_VERSION + 1), r"format_version 2 is newer"),
    (lambda f: f.attrs.__delitem__("format"), r"not a sim2real-demos file: attribute 'format' is missing"),
    (lambda f: f.attrs.__delitem__("task"), r"missing attribute 'task'"),
    (lambda f: f.attrs.__setitem__("contract", "{"), r"attribute 'contract' is not valid JSON"),
    (lambda f: f.attrs.__setitem__("control_freq", 10.0), r"control_freq=10 disagrees with the contract's 20"),
    (lambda f: f.attrs.__setitem__("seed", "seven"), r"attribute 'seed' is 'seven', expected int"),
    (lambda f: f.__delitem__("episodes/000001"), r"episodes holds 2 episodes, attribute num_episodes says 3"),
    (lambda f: f.__delitem__("episodes/000002/obs/qpos"),
     r"episodes/000002/obs/qpos is missing \(expected \[6, 9\] float32"),
    (lambda f: f.__delitem__("episodes/000000/actions"), r"episodes/000000/actions is missing"),
    (lambda f: f["episodes/000001/obs"].create_dataset("extra", data=torch.zeros(5, 2).numpy()),
     r"episodes/000001/obs has features \['extra'\] that the contract does not name"),
    (lambda f: f["episodes/000001"].attrs.__setitem__("length", 9), r"episodes/000001: attribute length=9 but"),
])
def test_bad_files_name_the_file_and_field(tmp_path: Path, rgb_contract: Contract, edit, message):
    path = tmp_path / "demos.h5"
    _write(path, rgb_contract)
    _edit(path, edit)
    with pytest.raises(DatasetError, match=r"demos\.h5: .*" + message):
        read_dataset(path)


def test_shape_mismatch_names_the_field_and_expected_shape(tmp_path: Path, rgb_contract: Contract):
    path = tmp_path / "x.h5"
    _write(path, rgb_contract, lengths=(3, 4, 5, 50))

    def shrink(f: h5py.File) -> None:
        del f["episodes/000003/obs/qpos"]
        f["episodes/000003/obs"].create_dataset("qpos", data=torch.zeros(51, 7).numpy())
    _edit(path, shrink)
    with pytest.raises(DatasetError) as err:
        read_dataset(path)
    assert str(err.value) == f"{path}: episodes/000003/obs/qpos has shape [51, 7], expected [51, 9] (T+1, qpos (9,))"


def test_length_and_dtype_inconsistencies(tmp_path: Path, rgb_contract: Contract):
    path = tmp_path / "x.h5"
    _write(path, rgb_contract)

    def cut_success(f: h5py.File) -> None:
        success = f["episodes/000000/success"][:-2]
        del f["episodes/000000/success"]
        f["episodes/000000"].create_dataset("success", data=success)
        tcp = f["episodes/000001/obs/tcp_pose"][:-1]
        del f["episodes/000001/obs/tcp_pose"]
        f["episodes/000001/obs"].create_dataset("tcp_pose", data=tcp)
    _edit(path, cut_success)
    with pytest.raises(DatasetError, match=r"episodes/000000/success has shape \[5\], expected \[7\] \(T\+1 with T=6"):
        read_dataset(path)
    episode = _episode(rgb_contract, 4)
    episode.obs["tcp_pose"] = episode.obs["tcp_pose"][:-1]
    with pytest.raises(DatasetError, match=r"tcp_pose has shape \[4, 7\], expected \[5, 7\] .*T=4 actions"):
        episode.validate(rgb_contract)
    episode = _episode(rgb_contract, 4)
    episode.obs["qpos"] = episode.obs["qpos"].double()
    with pytest.raises(DatasetError, match=r"episode/obs/qpos has dtype float64, expected float32 \(state feature\)"):
        episode.validate(rgb_contract)
    episode = _episode(rgb_contract, 4)
    episode.actions[2, 1] = float("nan")
    with pytest.raises(DatasetError, match=r"my episode/actions contains NaN or inf \(first at index \[2, 1\]\)"):
        episode.validate(rgb_contract, where="my episode")


def test_expect_contract_mismatch_names_the_file_and_field(tmp_path: Path, rgb_contract: Contract):
    path = tmp_path / "demos.h5"
    _write(path, rgb_contract)
    state = task_contract("pick_cube", obs_mode="state")
    with pytest.raises(DatasetError, match=r"demos\.h5: contract mismatch: .*feature 'rgb' in dataset but not in task"):
        read_dataset(path, expect_contract=state)
    joint = task_contract("pick_cube", obs_mode="rgb", control_mode="pd_joint_delta_pos", image_size=16)
    with pytest.raises(DatasetError, match=r"demos\.h5: contract mismatch: action_dim 4 in dataset, 8 in robot"):
        next(iter_episodes(path, expect_contract=joint, expect_name="robot"))


def test_writer_refuses_non_json_metadata(tmp_path: Path):
    contract = Contract(features={"qpos": Feature((9,))}, action_dim=4)
    with pytest.raises(DatasetError, match=r"m\.h5: metadata\.extra must hold plain JSON values"):
        write_dataset(tmp_path / "m.h5", [], DatasetMetadata(task="t", backend="b", contract=contract,
                                                             extra={"x": object()}))
    assert list(tmp_path.iterdir()) == []


def _inspect_main():
    spec = importlib.util.spec_from_file_location("inspect_data", ROOT / "scripts" / "inspect_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_inspect_data_prints_summary(tmp_path: Path, rgb_contract: Contract, capsys):
    path = tmp_path / "demos.h5"
    episodes = _write(path, rgb_contract)
    assert _inspect_main()([str(path)]) == 0
    raw = capsys.readouterr().out
    out = " ".join(raw.split())  # rich wraps long lines at the terminal width
    assert str(path).replace(" ", "") in "".join(raw.split())  # the whole path, folded but never cut
    for expected in ("task pick_cube", "backend mujoco", "robot panda", "seed 7", "domain target",
                     "friction_scale=0.5", "pd_ee_delta_pos at 20 Hz", "action_dim 4", "episodes 3",
                     "lengths min 4 / mean 5.0 / max 6", "success once 100% (3/3), at end 0% (0/3)",
                     "│ rgb │ rgb │ [3, 16, 16] │ uint8 │", "│ qpos │ state │ [9] │ float32 │",
                     "qpos[8]", "goal_pos[2]", "action[3]"):
        assert expected in out, f"{expected!r} not in:\n{out}"

    stats = inspect_dataset(path).stats
    for name, moments in [("qpos", stats.state["qpos"]), ("actions", stats.actions)]:
        x = torch.cat([e.actions if name == "actions" else e.obs[name] for e in episodes]).double()
        assert moments.count == len(x)
        assert torch.allclose(moments.mean, x.mean(0)) and torch.allclose(moments.std, x.std(0, unbiased=False))
        assert torch.equal(moments.min, x.min(0).values) and torch.equal(moments.max, x.max(0).values)


def test_inspect_data_fails_cleanly_on_a_bad_file(tmp_path: Path, capsys):
    path = tmp_path / "bad.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)
    assert _inspect_main()([str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and "bad.h5: not a readable HDF5 file" in captured.err
    assert "Traceback" not in captured.err


def test_the_robot_attribute_must_be_the_contracts_arm(tmp_path: Path, rgb_contract: Contract):
    assert DatasetMetadata(task="pick_cube", backend="mujoco", contract=rgb_contract).robot == "panda"
    with pytest.raises(DatasetError, match="robot 'so100' disagrees with the contract's arm 'panda'"):
        DatasetMetadata(task="pick_cube", backend="mujoco", contract=rgb_contract, robot="so100")
    path = tmp_path / "demos.h5"
    _write(path, rgb_contract)
    _edit(path, lambda f: f.attrs.__setitem__("robot", "so100"))
    with pytest.raises(DatasetError, match=r"demos\.h5: attribute robot='so100' disagrees with the contract's arm"):
        read_dataset(path)
