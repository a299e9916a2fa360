"""Any supported demo source -> (DatasetMetadata, [Episode]): format detection and dispatch.

    from sim2real.data.formats import dataset_config, read_episodes
    metadata, episodes = read_episodes("data/bags", task="pick_cube")            # rosbag2, auto-detected
    metadata, episodes = read_episodes("data/lerobot_ds", dataset_config("lerobot_panda"),
                                       contract=checkpoint.contract)             # refuses a mismatch

Formats (FORMATS): `sim2real` (our HDF5, sim2real/data/hdf5.py), `rosbag2` (MCAP or sqlite3 bags,
rosbag.py), `lerobot` (LeRobotDataset v3, lerobot.py), `maniskill` (trajectory .h5 + .json,
maniskill_h5.py), `robomimic` (robomimic .hdf5, robomimic.py). Readers of formats other than
ours are imported when used, so their dependencies (rosbags, pyarrow, PyAV) are needed only then.

The episodes' contract is the task's (`task_contract(task, obs_mode, control_mode,
image_size, arm)` from the config), or where the config names no task, the one the source records
(our HDF5; bags written by bag_recorder). A `contract` argument (a checkpoint's) must agree with
it: a mismatch raises DatasetError listing every difference.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

import h5py
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sim2real.robot.arm_model import RobotModel
from sim2real.config import CONFIG_DIR
from sim2real.contract import Contract
from sim2real.data.config import FORMATS, DatasetConfig
from sim2real.data.episode import DatasetError, Episode, EpisodeStats
from sim2real.data.hdf5 import FORMAT as SIM2REAL_FORMAT
from sim2real.data.hdf5 import DatasetMetadata, DatasetSummary, inspect_dataset, read_dataset

# The DatasetConfig section holding each format's options.
SECTIONS = {"rosbag2": "rosbag", "lerobot": "lerobot", "maniskill": "maniskill", "robomimic": "robomimic"}
HDF5_SUFFIXES = (".h5", ".hdf5", ".he5")
DEFAULT_BACKENDS = {"rosbag2": "real", "lerobot": "real", "maniskill": "maniskill", "robomimic": "robomimic"}


def detect_format(path: str | os.PathLike) -> str:
    """Which of FORMATS `path` is, from its layout (and for HDF5 files, their contents)."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: not found")
    if path.is_dir():
        if (path / "meta" / "info.json").is_file():
            return "lerobot"
        if (path / "metadata.yaml").is_file() or any((p / "metadata.yaml").is_file() for p in path.iterdir()
                                                     if p.is_dir()):
            return "rosbag2"
        raise DatasetError(f"{path}: a directory that is neither a LeRobot dataset (meta/info.json) nor a rosbag2 bag "
                           f"or directory of bags (metadata.yaml)")
    if path.suffix in (".mcap", ".db3"):
        return "rosbag2"
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") in (SIM2REAL_FORMAT, SIM2REAL_FORMAT.encode()):
                return "sim2real"
            if isinstance(f.get("data"), h5py.Group):
                return "robomimic"
            if any(name.startswith("traj_") for name in f):
                return "maniskill"
    except OSError as err:
        if path.suffix in HDF5_SUFFIXES:
            raise DatasetError(f"{path}: not a readable HDF5 file ({path.stat().st_size} bytes; truncated or "
                               f"corrupt?): {err}") from err
        raise DatasetError(f"{path}: not a known demo format (not HDF5, MCAP, sqlite3 or a dataset directory)") from err
    raise DatasetError(f"{path}: an HDF5 file of no known layout (expected a sim2real-demos file, robomimic's data/ "
                       f"group or ManiSkill's traj_<i> groups)")


def dataset_config(preset: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> DatasetConfig:
    """A DatasetConfig from a preset of configs/dataset/ (a name) or a YAML file, plus dotlist
    overrides such as "task=pick_cube" or "rosbag.camera_topic=/camera/image_raw/compressed"."""
    layers: list[Any] = [OmegaConf.structured(DatasetConfig)]
    if preset:
        path = Path(preset)
        if not path.is_file():
            path = CONFIG_DIR / "dataset" / f"{preset}.yaml"
            if not path.is_file():
                names = sorted(p.stem for p in (CONFIG_DIR / "dataset").glob("*.yaml"))
                raise ValueError(f"dataset config {preset!r}: neither a file nor a preset of configs/dataset/ "
                                 f"({', '.join(names)})")
        loaded = OmegaConf.load(path)
        loaded.pop("defaults", None)  # the presets list the schema for Hydra; here it is the base layer
        layers.append(loaded)
    try:
        layers.append(OmegaConf.from_dotlist(list(overrides)))
        return OmegaConf.to_object(OmegaConf.merge(*layers))  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise ValueError(f"dataset config {preset or ''} {list(overrides)}: {err}") from err


def _with_options(config: DatasetConfig, fmt: str, options: dict[str, Any]) -> DatasetConfig:
    """config with keyword options applied: DatasetConfig fields by name, anything else to the format's section."""
    top = {f.name for f in dataclasses.fields(DatasetConfig)}
    update: dict[str, Any] = {k: v for k, v in options.items() if k in top}
    rest = {k: v for k, v in options.items() if k not in top}
    if rest:
        if fmt not in SECTIONS:
            raise ValueError(f"options {sorted(rest)} are not DatasetConfig fields, and format {fmt!r} has no options")
        update.setdefault(SECTIONS[fmt], {}).update(rest)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(config), update)
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise ValueError(f"options {options}: {err}") from err


def _task_contract(config: DatasetConfig) -> Contract:
    from tasks.spec import task_contract

    try:
        return task_contract(config.task, config.obs_mode, config.control_mode, config.image_size, arm=config.arm)
    except ValueError as err:
        raise DatasetError(f"dataset config: {err}") from err


def _source_task(path: Path, fmt: str, config: DatasetConfig) -> tuple[str | None, Contract | None]:
    """The task (and contract) the source itself records, where it records one."""
    if fmt == "rosbag2":
        from sim2real.data.rosbag import recorded_task

        return recorded_task(path, config.rosbag)
    if fmt == "maniskill":
        from sim2real.data.maniskill_h5 import maniskill_task

        return maniskill_task(path, config.maniskill), None
    return None, None


def resolve_contract(path: Path, fmt: str, config: DatasetConfig,
                     contract: Contract | None) -> tuple[str, Contract]:
    """The task name ("" when unknown) and the contract the episodes of a non-sim2real source get."""
    task, recorded = config.task, None
    if not task:
        found, recorded = _source_task(path, fmt, config)
        task = found or ""
        if found and recorded is None:
            config = dataclasses.replace(config, task=found)
    built = _task_contract(config) if config.task else recorded
    if contract is not None:
        if built is not None:
            problems = built.mismatches(contract, mine="dataset", theirs="checkpoint")
            if problems:
                raise DatasetError(f"{path}: contract mismatch: " + "; ".join(problems))
        return task, contract
    if built is None:
        raise DatasetError(f"{path}: no task: set task (e.g. task=pick_cube) so the episodes get its contract")
    return task, built


def read_episodes(path: str | os.PathLike, format: str = "auto", config: DatasetConfig | None = None, *,
                  contract: Contract | None = None, model: RobotModel | None = None,
                  **options: Any) -> tuple[DatasetMetadata, list[Episode]]:
    """Read every episode of a demo source, in any supported format.

    Args:
        path: a file or directory (see FORMATS).
        format: one of FORMATS, or "auto": the config's format, else detected from `path`.
        config: the dataset config (default: DatasetConfig(); see `dataset_config` for presets).
        contract: the contract the episodes must have (e.g. a checkpoint's); checked against the
            task's and, for our HDF5, the file's.
        model: the arm's kinematics for action conversion (sim2real.robot.arm_model.RobotModel;
            default: the Panda's URDF for rosbag2, the contract arm's description for LeRobot).
        options: DatasetConfig fields (task="pick_cube", obs_mode="rgb", ...), or options of the
            format's section (camera_topic="/camera/image_raw", episodes="marker", ...).

    Raises:
        DatasetError: the source is unreadable, malformed, or does not fit the contract; the
            message names the file, the field (topic, column, dataset) and where possible the time.
    """
    path = Path(path)
    config = config or DatasetConfig()
    fmt = format if format != "auto" else (config.format if config.format != "auto" else detect_format(path))
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r}: expected one of {', '.join(FORMATS)} or auto")
    config = _with_options(config, fmt, options)
    if fmt == "sim2real":
        expected = contract if contract is not None else (_task_contract(config) if config.task else None)
        metadata, episodes = read_dataset(path, expect_contract=expected,
                                          expect_name="checkpoint" if contract is not None else "task")
        if config.task and metadata.task != config.task:
            raise DatasetError(f"{path}: attribute task={metadata.task!r}, expected {config.task!r}")
        return metadata, episodes

    task, contract = resolve_contract(path, fmt, config, contract)
    if fmt == "rosbag2":
        from sim2real.data.rosbag import read_rosbag

        episodes, summary = read_rosbag(path, contract, config.rosbag, task, model)
    elif fmt == "lerobot":
        from sim2real.data.lerobot import read_lerobot

        episodes, summary = read_lerobot(path, contract, config.lerobot, model)
    elif fmt == "maniskill":
        from sim2real.data.maniskill_h5 import read_maniskill

        episodes, summary = read_maniskill(path, contract, config.maniskill)
    else:
        from sim2real.data.robomimic import read_robomimic

        episodes, summary = read_robomimic(path, contract, config.robomimic)
    if not episodes:
        raise DatasetError(f"{path}: no episodes")
    domain = config.domain or next((e.meta["domain"] for e in episodes if isinstance(e.meta.get("domain"), str)),
                                   DEFAULT_BACKENDS[fmt])
    metadata = DatasetMetadata(task=task or "unknown", backend=config.backend or DEFAULT_BACKENDS[fmt],
                               contract=contract, domain=domain, robot=config.robot,
                               extra={"format": fmt, "source": str(path), **summary})
    return metadata, episodes


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def inspect_source(path: str | os.PathLike, format: str = "auto", config: DatasetConfig | None = None,
                   **options: Any) -> DatasetSummary:
    """What scripts/inspect_data.py prints, for any format (our HDF5 is summarised streaming)."""
    path = Path(path)
    config = config or DatasetConfig()
    fmt = format if format != "auto" else (config.format if config.format != "auto" else detect_format(path))
    if fmt == "sim2real" and not options and not config.task:
        return inspect_dataset(path)
    metadata, episodes = read_episodes(path, fmt, config, **options)
    stats = EpisodeStats(metadata.contract)
    for episode in episodes:
        stats.add(episode)
    return DatasetSummary(path=path, size_bytes=_size(path), metadata=metadata, stats=stats)


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line options saying how to read a source (scripts/convert_data.py, inspect_data.py)."""
    parser.add_argument("--format", default="auto", choices=("auto", *FORMATS), help="source format (default: detect)")
    parser.add_argument("--dataset", default=None, help="preset of configs/dataset/ or a YAML file")
    parser.add_argument("--task", default=None, help="task whose contract the episodes get, e.g. pick_cube")
    parser.add_argument("--arm", default=None, help="arm description the data belongs to (configs/arm/), e.g. so100")
    parser.add_argument("--obs-mode", default=None, choices=("state", "rgb"))
    parser.add_argument("--control-mode", default=None, choices=("pd_ee_delta_pos", "pd_joint_delta_pos"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a DatasetConfig field, e.g. rosbag.camera_topic=/camera/image_raw")


def config_from_args(args: argparse.Namespace) -> DatasetConfig:
    """The DatasetConfig that `add_source_arguments`' options describe."""
    overrides = list(args.overrides)
    for value, key in ((args.task, "task"), (args.arm, "arm"), (args.obs_mode, "obs_mode"),
                       (args.control_mode, "control_mode")):
        if value is not None:
            overrides.append(f"{key}={value}")
    return dataset_config(args.dataset, overrides)
