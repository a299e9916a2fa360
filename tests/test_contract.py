import pytest
import torch

from sim2real.contract import Contract, ContractMismatch, Feature


def test_obs_dim_and_model_inputs(contract: Contract):
    assert contract.obs_dim == 16 and contract.rgb_shape is None
    inputs = contract.model_inputs({"obj_pose": torch.zeros(2, 7), "qpos": torch.ones(2, 9)})
    assert inputs["state"].shape == (2, 16)
    assert torch.equal(inputs["state"][:, :9], torch.ones(2, 9)), "state follows the contract's feature order"


def test_model_inputs_name_the_bad_feature(contract: Contract):
    with pytest.raises(ValueError, match="missing feature 'obj_pose'"):
        contract.model_inputs({"qpos": torch.zeros(2, 9)})
    with pytest.raises(ValueError, match="'qpos' has shape \\(7,\\).*expected \\(9,\\)"):
        contract.model_inputs({"qpos": torch.zeros(2, 7), "obj_pose": torch.zeros(2, 7)})


def test_rgb_contract():
    c = Contract(features={"qpos": Feature((9,)), "rgb": Feature((3, 64, 64), kind="rgb")}, action_dim=4)
    assert c.model_obs_shapes() == {"state": (9,), "rgb": (3, 64, 64)}
    with pytest.raises(ValueError, match="\\(C, H, W\\)"):
        Feature((64, 64), kind="rgb")


def test_mismatches_name_every_field(contract: Contract):
    other = Contract(features={"qpos": Feature((7,)), "obj_pose": Feature((7,)), "goal_pos": Feature((3,))},
                     action_dim=7, control_mode="pd_joint_delta_pos", control_freq=10.0)
    with pytest.raises(ContractMismatch) as err:
        contract.check(other, source="model.pt")
    msg = str(err.value)
    for phrase in ("model.pt: contract mismatch", "obs_dim 16 in checkpoint, 17 in task",
                   "action_dim 4 in checkpoint, 7 in task", "control_mode 'pd_ee_delta_pos' in checkpoint",
                   "control_freq 20 Hz in checkpoint, 10 Hz in task", "feature 'qpos' is state[9] in checkpoint, state[7]",
                   "feature 'goal_pos' in task but not in checkpoint"):
        assert phrase in msg, msg
    contract.check(Contract.from_dict(contract.to_dict()))  # identical: no error


def test_feature_order_matters(contract: Contract):
    swapped = Contract(features={"obj_pose": Feature((7,)), "qpos": Feature((9,))}, action_dim=4)
    assert contract.mismatches(swapped) == ["feature order ['qpos', 'obj_pose'] in checkpoint, "
                                            "['obj_pose', 'qpos'] in task"]


def test_malformed_contract_dict():
    with pytest.raises(ValueError, match="ckpt.pt: contract: malformed contract"):
        Contract.from_dict({"features": {}, "action_dim": 4}, source="ckpt.pt: contract")


def test_the_arm_is_part_of_the_contract(contract: Contract):
    so100 = Contract(dict(contract.features), contract.action_dim, contract.control_mode, contract.control_freq,
                     arm="so100")
    assert Contract.from_dict(so100.to_dict()) == so100
    # Same shapes on another arm is still another arm: the mismatch names it first.
    assert so100.mismatches(contract, mine="checkpoint", theirs="robot") == ["arm 'so100' in checkpoint, 'panda' in robot"]
    # Contracts saved before the arm was recorded were all the Panda's.
    legacy = {k: v for k, v in contract.to_dict().items() if k != "arm"}
    assert Contract.from_dict(legacy).arm == "panda"
    with pytest.raises(ValueError, match="Contract.arm must name an arm"):
        Contract(dict(contract.features), 4, arm="")
