"""Demonstration data: the canonical `Episode` and one reader/writer per file format.

    from sim2real.data import DatasetMetadata, read_dataset, write_dataset
    metadata, episodes = read_dataset("data/pick_cube.h5", expect_contract=env.contract)
"""

from sim2real.data.episode import DatasetError, Episode, EpisodeStats, Moments
from sim2real.data.recorder import EpisodeRecorder
from sim2real.data.hdf5 import (DatasetMetadata, DatasetSummary, DatasetWriter, inspect_dataset, iter_episodes,
                                read_dataset, read_metadata, write_dataset)

__all__ = ["DatasetError", "DatasetMetadata", "DatasetSummary", "DatasetWriter", "Episode", "EpisodeRecorder", "EpisodeStats",
           "Moments", "inspect_dataset", "iter_episodes", "read_dataset", "read_metadata", "write_dataset"]
