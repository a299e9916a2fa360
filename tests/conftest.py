import pytest
import torch

from sim2real.config import ModelConfig
from sim2real.contract import Contract, Feature
from sim2real.world_model import WorldModel


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


@pytest.fixture
def small_cfg() -> ModelConfig:
    """Smaller than `tiny` so unit tests stay fast; same code paths."""
    return ModelConfig(name="test", latent_dim=32, enc_dim=32, mlp_dim=64, num_q=3)


@pytest.fixture
def contract() -> Contract:
    return Contract(features={"qpos": Feature((9,)), "obj_pose": Feature((7,))}, action_dim=4)


@pytest.fixture
def model(small_cfg: ModelConfig, contract: Contract) -> WorldModel:
    return WorldModel(small_cfg, contract.model_obs_shapes(), contract.action_dim)
