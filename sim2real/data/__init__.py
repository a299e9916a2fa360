"""Demonstration data: the canonical `Episode` and one reader/writer per file format.

    from sim2real.data import DatasetMetadata, read_dataset, write_dataset
    metadata, episodes = read_dataset("data/pick_cube.h5", expect_contract=env.contract)

    from sim2real.data import read_episodes   # any format: our HDF5, rosbag2, LeRobot v3, ManiSkill, robomimic
    metadata, episodes = read_episodes("data/bags", task="pick_cube")
"""

from sim2real.data.episode import DatasetError, Episode, EpisodeStats, Moments
from sim2real.data.recorder import EpisodeRecorder
from sim2real.data.hdf5 import (DatasetMetadata, DatasetSummary, inspect_dataset, iter_episodes, read_dataset,
                                read_metadata)
from sim2real.data.hdf5_writer import DatasetWriter, write_dataset
from sim2real.data.config import DatasetConfig, Part
from sim2real.data.formats import FORMATS, dataset_config, detect_format, inspect_source, read_episodes

__all__ = ["FORMATS", "DatasetConfig", "DatasetError", "DatasetMetadata", "DatasetSummary", "DatasetWriter", "Episode",
           "EpisodeRecorder", "EpisodeStats", "Moments", "Part", "dataset_config", "detect_format", "inspect_dataset",
           "inspect_source", "iter_episodes", "read_dataset", "read_episodes", "read_metadata", "write_dataset"]
