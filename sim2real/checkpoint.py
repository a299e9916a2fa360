"""Checkpoints: one file carries everything a later stage needs.

A checkpoint holds the format version, the model config that built the network, the
observation/action contract, the model weights (buffers included: normalisation
statistics, the running Q scale, frozen reward targets) and an `extra` dict for what a
stage adds (optimiser states, step counters, RNG states, provenance).

Files are written atomically (temp file in the same directory, fsync, rename), so a
crash mid-save leaves the previous checkpoint intact (and a `.<name>.*.tmp` file that
`remove_temp_files` clears), and read with
`torch.load(weights_only=True)`, which never unpickles arbitrary objects: every value
stored here is a tensor or a plain Python container of primitives.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from sim2real.config import ModelConfig
from sim2real.contract import Contract
from sim2real.device import resolve_device
from sim2real.world_model import WorldModel

FORMAT_VERSION = 1
TEMP_SUFFIX = ".tmp"
_REQUIRED_KEYS = ("format_version", "model_config", "contract", "model_state", "extra")


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be used: unreadable, truncated, wrong version or malformed."""


@dataclass
class Checkpoint:
    """The content of a checkpoint file.

    Attributes:
        model_config: architecture that built the weights.
        contract: observation/action contract the model was trained for.
        model_state: WorldModel.state_dict().
        extra: stage-specific content (plain types and tensors only).
        format_version: file format version.
    """

    model_config: ModelConfig
    contract: Contract
    model_state: dict[str, torch.Tensor]
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def build_model(self, device: str | torch.device = "cpu") -> WorldModel:
        """Rebuild the world model and load the weights (strict: every key must match)."""
        model = WorldModel(self.model_config, self.contract.model_obs_shapes(), self.contract.action_dim)
        model.load_state_dict(self.model_state, strict=True)
        return model.to(resolve_device(device))


def make_checkpoint(model: WorldModel, contract: Contract, extra: dict[str, Any] | None = None) -> Checkpoint:
    """Snapshot a model (weights copied to CPU) with its contract."""
    if model.obs_shapes != contract.model_obs_shapes() or model.action_dim != contract.action_dim:
        raise ValueError(f"model inputs {model.obs_shapes} / action_dim {model.action_dim} do not match the "
                         f"contract's {contract.model_obs_shapes()} / {contract.action_dim}")
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return Checkpoint(model_config=model.cfg, contract=contract, model_state=state, extra=dict(extra or {}))


def save_checkpoint(path: str | os.PathLike, ckpt: Checkpoint) -> Path:
    """Write atomically: a temp file beside the target, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": ckpt.format_version,
        "model_config": asdict(ckpt.model_config),
        "contract": ckpt.contract.to_dict(),
        "model_state": ckpt.model_state,
        "extra": ckpt.extra,
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        # A full disk or an I/O error: the message names the checkpoint, not the temp file.
        Path(tmp).unlink(missing_ok=True)
        kept = "the previous file is unchanged" if path.exists() else "no file was written"
        message = f"{path}: checkpoint not written ({err.strerror or err}); {kept}"
        raise (OSError(err.errno, message) if err.errno else OSError(message)) from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Delete the temp files of saves that never finished (their writer was killed).

    Call only while nothing saves into `directory`, e.g. when a run starts.
    """
    directory = Path(directory)
    stale = sorted(directory.glob(f".*.pt.*{TEMP_SUFFIX}")) if directory.is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def load_checkpoint(path: str | os.PathLike, expect_contract: Contract | None = None,
                    expect_name: str = "task") -> Checkpoint:
    """Read and validate a checkpoint.

    Args:
        path: checkpoint file.
        expect_contract: if given, the stored contract must match it; the error names
            every differing field (e.g. `obs_dim 42 in checkpoint, 39 in task`).
        expect_name: what `expect_contract` describes, used in that message.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{path}: refused to load: it holds objects other than tensors and plain "
                              f"Python values ({err})") from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        size = path.stat().st_size
        raise CheckpointError(f"{path}: not a readable checkpoint ({size} bytes; truncated or corrupt?): "
                              f"{type(err).__name__}: {err}") from err
    if not isinstance(payload, dict) or any(k not in payload for k in _REQUIRED_KEYS):
        found = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: not a sim2real checkpoint: expected keys {list(_REQUIRED_KEYS)}, found {found}")
    version = payload["format_version"]
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {version} in checkpoint, this sim2real reads {FORMAT_VERSION}")
    known = {f.name for f in fields(ModelConfig)}
    unknown = sorted(set(payload["model_config"]) - known)
    if unknown:
        raise CheckpointError(f"{path}: model_config has unknown fields {unknown}")
    contract = Contract.from_dict(payload["contract"], source=f"{path}: contract")
    if expect_contract is not None:
        contract.check(expect_contract, mine="checkpoint", theirs=expect_name, source=str(path))
    return Checkpoint(model_config=ModelConfig(**payload["model_config"]), contract=contract,
                      model_state=payload["model_state"], extra=payload["extra"], format_version=version)
