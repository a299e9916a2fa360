import os
import pickle
from pathlib import Path

import pytest
import torch

from sim2real.checkpoint import (FORMAT_VERSION, CheckpointError, load_checkpoint, make_checkpoint,
                                 save_checkpoint)
from sim2real.contract import Contract, ContractMismatch, Feature
from sim2real.world_model import WorldModel


def _trained_ish(model: WorldModel) -> WorldModel:
    """Perturb every parameter and buffer so a round trip cannot pass by re-initialisation."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        model.scale.update(torch.linspace(0, 50, 100))
        model.set_state_normalization(torch.randn(16), torch.rand(16) + 0.5)
        model.update_target_Q(tau=0.5)
    return model.eval()


def test_round_trip_reproduces_outputs_bit_for_bit(tmp_path: Path, model: WorldModel, contract: Contract):
    model = _trained_ish(model)
    path = save_checkpoint(tmp_path / "ckpt" / "model.pt", make_checkpoint(model, contract, extra={"step": 7}))
    ckpt = load_checkpoint(path, expect_contract=contract)
    assert ckpt.extra == {"step": 7} and ckpt.format_version == FORMAT_VERSION
    assert ckpt.model_config == model.cfg
    loaded = ckpt.build_model().eval()
    obs = {"state": torch.randn(4, 16)}
    a = torch.rand(4, 4)
    for m in (model, loaded):
        torch.manual_seed(5)
        z = m.encode(obs)
        out = (z, m.next(z, a), m.pi(z)[0], m.Q(z, a, "all"), m.Q(z, a, "all", target=True), m.scale.value)
        if m is model:
            expected = out
    for x, y in zip(expected, out):
        assert torch.equal(x, y)
    assert [p.name for p in tmp_path.joinpath("ckpt").iterdir()] == ["model.pt"], "no temp files left behind"


def test_mismatched_contract_names_the_field(tmp_path: Path, model: WorldModel, contract: Contract):
    path = save_checkpoint(tmp_path / "m.pt", make_checkpoint(model, contract))
    task = Contract(features={"qpos": Feature((9,)), "obj_pose": Feature((7,)), "tcp_pose": Feature((7,))},
                    action_dim=4)
    with pytest.raises(ContractMismatch, match=r"m\.pt: contract mismatch: obs_dim 16 in checkpoint, 23 in task"):
        load_checkpoint(path, expect_contract=task)


def test_a_checkpoint_records_its_arm(tmp_path: Path, model: WorldModel, contract: Contract):
    so100 = Contract(dict(contract.features), contract.action_dim, contract.control_mode, contract.control_freq,
                     arm="so100")
    path = save_checkpoint(tmp_path / "arm.pt", make_checkpoint(model, so100))
    assert load_checkpoint(path).contract.arm == "so100"
    with pytest.raises(ContractMismatch, match=r"arm\.pt: contract mismatch: arm 'so100' in checkpoint, 'panda' in "
                                               r"robot$"):
        load_checkpoint(path, expect_contract=contract, expect_name="robot")


def test_truncated_file_fails_clearly(tmp_path: Path, model: WorldModel, contract: Contract):
    path = save_checkpoint(tmp_path / "m.pt", make_checkpoint(model, contract))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"m\.pt: not a readable checkpoint .*truncated or corrupt"):
        load_checkpoint(path)


def test_missing_and_foreign_files(tmp_path: Path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a sim2real checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_arbitrary_objects_are_never_unpickled(tmp_path: Path):
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "obj": Payload()}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(path)
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Payload(), protocol=2))
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pkl")


def test_wrong_format_version(tmp_path: Path, model: WorldModel, contract: Contract):
    ckpt = make_checkpoint(model, contract)
    ckpt.format_version = 99
    path = save_checkpoint(tmp_path / "m.pt", ckpt)
    with pytest.raises(CheckpointError, match="format_version 99 in checkpoint"):
        load_checkpoint(path)


def test_failed_save_keeps_the_previous_checkpoint(tmp_path: Path, model: WorldModel, contract: Contract,
                                                   monkeypatch: pytest.MonkeyPatch):
    path = save_checkpoint(tmp_path / "m.pt", make_checkpoint(model, contract, extra={"step": 1}))

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, make_checkpoint(model, contract, extra={"step": 2}))
    monkeypatch.undo()
    assert load_checkpoint(path).extra == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_make_checkpoint_rejects_a_contract_the_model_was_not_built_for(model: WorldModel):
    with pytest.raises(ValueError, match="do not match"):
        make_checkpoint(model, Contract(features={"qpos": Feature((9,))}, action_dim=4))
