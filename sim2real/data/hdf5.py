"""Our demonstration format: one HDF5 file per dataset, read and written with h5py.

Layout (format "sim2real-demos", version 1):

    /                        attrs: format, format_version, task, backend, domain,
                             domain_values (JSON), control_mode, control_freq, robot,
                             contract (JSON of Contract.to_dict()), created (ISO 8601, UTC),
                             sim2real_version, num_episodes, [seed], [extra (JSON)]
    /episodes/000000/        attrs: length, success_once, success_at_end, [seed], [meta (JSON)]
        obs/<feature>        [T+1, *shape]: state float32 (uncompressed, exact), rgb uint8 (compressed)
        actions              [T, action_dim] float32
        success              [T+1] bool
        rewards              [T] float32 (optional)

Attributes in brackets are optional (absent when the value is None or empty).

Writes (sim2real/data/hdf5_writer.py) are atomic: episodes stream into a temp file beside the target, which replaces the
target only once the writer exits cleanly, so a crash mid-collection leaves any previous
dataset untouched. Every problem on reading raises DatasetError naming the file and the
field: `data/x.h5: episodes/000003/obs/qpos has shape [51, 7], expected [51, 9] (T+1, qpos (9,))`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import h5py
import numpy as np
import torch

from sim2real import __version__
from sim2real.contract import Contract
from sim2real.data.episode import DatasetError, Episode, EpisodeStats

FORMAT = "sim2real-demos"
FORMAT_VERSION = 1
COMPRESSIONS = ("gzip", "lzf", None)
_REQUIRED_ATTRS = ("task", "backend", "domain", "domain_values", "control_mode", "control_freq", "robot",
                   "contract", "created", "sim2real_version", "num_episodes")
# HDF5 chunks are read whole; about 1 MiB keeps random access to a frame cheap.
_CHUNK_BYTES = 1 << 20


@dataclass
class DatasetMetadata:
    """What a dataset is: the task, where it was recorded, and its observation/action contract.

    Args:
        task: task name, e.g. "pick_cube".
        backend: where the demos come from: "maniskill", "mujoco", or e.g. "real".
        contract: observation features, action size, control mode and rate of every episode.
        domain: domain name ("source", "target", …).
        domain_values: the domain's shift values (DomainParams.values()).
        robot: the arm the demos were recorded on; "" takes the contract's arm, anything else
            must equal it.
        seed: the collection's base seed, when there is one.
        created: ISO 8601 time of writing; the writer fills it in when empty.
        sim2real_version: version of the code that wrote the file.
        extra: anything else worth keeping (JSON-able: collector settings, expert name, …).
    """

    task: str
    backend: str
    contract: Contract
    domain: str = "source"
    domain_values: dict[str, float | int] = field(default_factory=dict)
    robot: str = ""
    seed: int | None = None
    created: str = ""
    sim2real_version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.robot:
            self.robot = self.contract.arm
        elif self.robot != self.contract.arm:
            raise DatasetError(f"dataset metadata: robot {self.robot!r} disagrees with the contract's arm "
                               f"{self.contract.arm!r} (configs/arm/<arm>.yaml)")

    @property
    def control_mode(self) -> str:
        return self.contract.control_mode

    @property
    def control_freq(self) -> float:
        return self.contract.control_freq

    def to_attrs(self) -> dict[str, str | int | float]:
        """HDF5 file attributes (num_episodes excepted: the writer sets it when it finishes)."""
        attrs: dict[str, str | int | float] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "task": self.task,
            "backend": self.backend,
            "domain": self.domain,
            "domain_values": _to_json(self.domain_values, "metadata.domain_values"),
            # Duplicated from the contract so that h5dump shows them at a glance.
            "control_mode": self.contract.control_mode,
            "control_freq": float(self.contract.control_freq),
            "robot": self.robot,
            "contract": _to_json(self.contract.to_dict(), "contract"),
            "created": self.created,
            "sim2real_version": self.sim2real_version,
        }
        if self.seed is not None:
            attrs["seed"] = int(self.seed)
        if self.extra:
            attrs["extra"] = _to_json(self.extra, "metadata.extra")
        return attrs

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], source: str) -> DatasetMetadata:
        """Parse and check file attributes; `source` (the file path) prefixes every error."""
        _check_format(attrs, source)
        missing = [k for k in _REQUIRED_ATTRS if k not in attrs]
        if missing:
            raise DatasetError(f"{source}: missing attribute {missing[0]!r} (a {FORMAT} file has attributes "
                               f"{', '.join(_REQUIRED_ATTRS)})")
        try:
            contract = Contract.from_dict(_from_json(attrs, "contract", source, dict),
                                          source=f"{source}: attribute 'contract'")
        except ValueError as err:
            raise DatasetError(str(err)) from err
        control_mode = _attr(attrs, "control_mode", str, source)
        if control_mode != contract.control_mode:
            raise DatasetError(f"{source}: attribute control_mode={control_mode!r} disagrees with the contract's "
                               f"{contract.control_mode!r}")
        control_freq = _attr(attrs, "control_freq", float, source)
        if not math.isclose(control_freq, contract.control_freq, rel_tol=1e-6):
            raise DatasetError(f"{source}: attribute control_freq={control_freq:g} disagrees with the contract's "
                               f"{contract.control_freq:g}")
        robot = _attr(attrs, "robot", str, source)
        if robot != contract.arm:
            raise DatasetError(f"{source}: attribute robot={robot!r} disagrees with the contract's arm "
                               f"{contract.arm!r}")
        return cls(task=_attr(attrs, "task", str, source), backend=_attr(attrs, "backend", str, source),
                   contract=contract, domain=_attr(attrs, "domain", str, source),
                   domain_values=_from_json(attrs, "domain_values", source, dict),
                   robot=robot,
                   seed=_attr(attrs, "seed", int, source) if "seed" in attrs else None,
                   created=_attr(attrs, "created", str, source),
                   sim2real_version=_attr(attrs, "sim2real_version", str, source),
                   extra=_from_json(attrs, "extra", source, dict) if "extra" in attrs else {})


def _check_format(attrs: Mapping[str, Any], source: str) -> None:
    if "format" not in attrs:
        raise DatasetError(f"{source}: not a {FORMAT} file: attribute 'format' is missing")
    fmt = _attr(attrs, "format", str, source)
    if fmt != FORMAT:
        raise DatasetError(f"{source}: attribute format={fmt!r}, expected {FORMAT!r}")
    if "format_version" not in attrs:
        raise DatasetError(f"{source}: missing attribute 'format_version'")
    version = _attr(attrs, "format_version", int, source)
    if version > FORMAT_VERSION:
        raise DatasetError(f"{source}: format_version {version} is newer than this sim2real reads "
                           f"({FORMAT_VERSION}); upgrade sim2real")
    if version < 1:
        raise DatasetError(f"{source}: format_version {version} is invalid (versions start at 1)")


def _attr(attrs: Mapping[str, Any], key: str, kind: type, source: str) -> Any:
    """attrs[key] as a str, int or float, with an error naming the attribute otherwise."""
    value = attrs[key]
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    # h5py hands back numpy scalars: accept those of the right family, never a string for a number.
    if kind is str:
        ok = isinstance(value, str)
    else:
        numbers = (int, np.integer) if kind is int else (int, float, np.integer, np.floating)
        ok = isinstance(value, numbers) and not isinstance(value, (bool, np.bool_))
    if not ok:
        raise DatasetError(f"{source}: attribute {key!r} is {value!r}, expected {kind.__name__}")
    return kind(value)


def _to_json(value: Any, name: str) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as err:
        raise DatasetError(f"{name} must hold plain JSON values (str, numbers, bools, lists, dicts): {err}") from err


def _from_json(attrs: Mapping[str, Any], key: str, source: str, kind: type = object) -> Any:
    try:
        value = json.loads(_attr(attrs, key, str, source))
    except json.JSONDecodeError as err:
        raise DatasetError(f"{source}: attribute {key!r} is not valid JSON ({err})") from err
    if not isinstance(value, kind):
        raise DatasetError(f"{source}: attribute {key!r} holds a JSON {type(value).__name__}, expected {kind.__name__}")
    return value


def _open(path: str | os.PathLike) -> h5py.File:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: dataset file not found")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise DatasetError(f"{path}: not a readable HDF5 file ({path.stat().st_size} bytes; truncated or "
                           f"corrupt?): {err}") from err


def read_metadata(path: str | os.PathLike, expect_contract: Contract | None = None,
                  expect_name: str = "task") -> DatasetMetadata:
    """The file's metadata alone, checked as `read_dataset` checks it."""
    with _open(path) as f:
        return _metadata(f, Path(path), expect_contract, expect_name)


def iter_episodes(path: str | os.PathLike, expect_contract: Contract | None = None,
                  expect_name: str = "task") -> Iterator[Episode]:
    """Yield the episodes of `path` one at a time (the file stays open until exhausted).

    Args:
        path: dataset file.
        expect_contract: if given, the stored contract must match it; the error names the
            file and every differing field.
        expect_name: what `expect_contract` describes, used in that message.
    """
    path = Path(path)
    with _open(path) as f:
        metadata = _metadata(f, path, expect_contract, expect_name)
        yield from _episodes(f, path, metadata.contract)


def read_dataset(path: str | os.PathLike, expect_contract: Contract | None = None,
                 expect_name: str = "task") -> tuple[DatasetMetadata, list[Episode]]:
    """Read and validate a whole dataset: its metadata and every episode (see iter_episodes)."""
    path = Path(path)
    with _open(path) as f:
        metadata = _metadata(f, path, expect_contract, expect_name)
        return metadata, list(_episodes(f, path, metadata.contract))


def _metadata(f: h5py.File, path: Path, expect_contract: Contract | None, expect_name: str) -> DatasetMetadata:
    metadata = DatasetMetadata.from_attrs(f.attrs, source=str(path))
    if expect_contract is not None:
        problems = metadata.contract.mismatches(expect_contract, mine="dataset", theirs=expect_name)
        if problems:
            raise DatasetError(f"{path}: contract mismatch: " + "; ".join(problems))
    if not isinstance(f.get("episodes"), h5py.Group):
        raise DatasetError(f"{path}: group 'episodes' is missing")
    found, expected = len(f["episodes"]), _attr(f.attrs, "num_episodes", int, str(path))
    if found != expected:
        raise DatasetError(f"{path}: episodes holds {found} episodes, attribute num_episodes says {expected}")
    return metadata


def _episodes(f: h5py.File, path: Path, contract: Contract) -> Iterator[Episode]:
    # Zero-padded names sort as numbers while they have the same width; wider ones come later.
    for name in sorted(f["episodes"], key=lambda n: (len(n), n)):
        group = f["episodes"][name]
        where = f"{path}: episodes/{name}"
        if not isinstance(group, h5py.Group):
            raise DatasetError(f"{where} is not a group")
        yield _read_episode(group, contract, where)


def _read_episode(group: h5py.Group, contract: Contract, where: str) -> Episode:
    try:
        for key in ("actions", "success"):
            if key not in group:
                raise DatasetError(f"{where}/{key} is missing")
        obs = {}
        for name, ds in (group["obs"].items() if "obs" in group else ()):
            if not isinstance(ds, h5py.Dataset):
                raise DatasetError(f"{where}/obs/{name} is not a dataset")
            obs[name] = torch.from_numpy(ds[()])
        # HDF5 lists members alphabetically; hand features back in the contract's order.
        order = [n for n in contract.features if n in obs] + [n for n in obs if n not in contract.features]
        obs = {n: obs[n] for n in order}
        episode = Episode(
            obs=obs, actions=torch.from_numpy(group["actions"][()]), success=torch.from_numpy(group["success"][()]),
            rewards=torch.from_numpy(group["rewards"][()]) if "rewards" in group else None,
            seed=_attr(group.attrs, "seed", int, where) if "seed" in group.attrs else None,
            meta=_from_json(group.attrs, "meta", where, dict) if "meta" in group.attrs else {})
    except OSError as err:  # a damaged chunk or filter surfaces only when the data is read
        raise DatasetError(f"{where}: unreadable data (corrupt file?): {err}") from err
    except TypeError as err:  # torch has no tensor type for e.g. string datasets
        raise DatasetError(f"{where}: a dataset has a type torch cannot hold: {err}") from err
    episode.validate(contract, where)
    if "length" not in group.attrs:
        raise DatasetError(f"{where}: missing attribute 'length'")
    length = _attr(group.attrs, "length", int, where)
    if length != episode.length:
        raise DatasetError(f"{where}: attribute length={length} but actions has {episode.length} steps")
    return episode


@dataclass
class DatasetSummary:
    """What `scripts/inspect_data.py` prints: file, metadata and statistics over every episode."""

    path: Path
    size_bytes: int
    metadata: DatasetMetadata
    stats: EpisodeStats


def inspect_dataset(path: str | os.PathLike) -> DatasetSummary:
    """Validate every episode of `path` and summarise them, streaming (one episode in memory)."""
    path = Path(path)
    with _open(path) as f:
        metadata = _metadata(f, path, None, "")
        stats = EpisodeStats(metadata.contract)
        for episode in _episodes(f, path, metadata.contract):
            stats.add(episode)
    return DatasetSummary(path=path, size_bytes=path.stat().st_size, metadata=metadata, stats=stats)
