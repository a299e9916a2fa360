"""Writing our HDF5 demonstration format (layout: sim2real/data/hdf5.py): `DatasetWriter`
streams episodes into a temp file beside the target and replaces it only on a clean exit;
`write_dataset` writes a list at once."""

from __future__ import annotations

import os
import secrets
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Iterable

import h5py
import numpy as np
import torch

from sim2real.data.episode import DatasetError, Episode
from sim2real.data.hdf5 import COMPRESSIONS, DatasetMetadata, _CHUNK_BYTES, _to_json


class DatasetWriter:
    """Stream episodes into a new dataset file, atomically.

        with DatasetWriter("data/pick_cube.h5", metadata) as writer:
            for episode in episodes:
                writer.append(episode)

    Args:
        path: the dataset file to create or replace.
        metadata: file metadata; every appended episode must match its contract.
        compression: HDF5 filter for rgb features ("gzip", "lzf" or None); state
            features are stored uncompressed.
    """

    def __init__(self, path: str | os.PathLike, metadata: DatasetMetadata, compression: str | None = "gzip") -> None:
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression={compression!r}; expected one of {COMPRESSIONS}")
        self.path = Path(path)
        self.metadata = metadata
        self.compression = compression
        self.num_episodes = 0
        self._file: h5py.File | None = None
        self._tmp: Path | None = None

    def __enter__(self) -> DatasetWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.metadata.created:
            self.metadata.created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        try:
            attrs = self.metadata.to_attrs()  # bad extras fail here, before any file exists
        except DatasetError as err:
            raise DatasetError(f"{self.path}: {err}") from err
        self._tmp = _create_temp_beside(self.path)
        try:
            self._file = h5py.File(self._tmp, "w")
            self._file.attrs.update(attrs)
            self._file.create_group("episodes")
        except BaseException:
            self._discard()
            raise
        return self

    def append(self, episode: Episode) -> int:
        """Validate `episode` against the contract and write it; returns its index."""
        if self._file is None:
            raise RuntimeError("DatasetWriter.append outside its `with` block")
        name = f"{self.num_episodes:06d}"
        episode.validate(self.metadata.contract, where=f"{self.path}: episodes/{name}")
        meta = _to_json(episode.meta, f"{self.path}: episodes/{name}: meta") if episode.meta else None
        group = self._file.create_group(f"episodes/{name}")
        obs = group.create_group("obs")
        for feature_name, feature in self.metadata.contract.features.items():
            x = _numpy(episode.obs[feature_name])
            if feature.kind == "rgb" and self.compression is not None:
                frames = max(1, min(x.shape[0], _CHUNK_BYTES // max(1, x[0].nbytes)))
                obs.create_dataset(feature_name, data=x, compression=self.compression, chunks=(frames, *x.shape[1:]))
            else:
                obs.create_dataset(feature_name, data=x)
        group.create_dataset("actions", data=_numpy(episode.actions))
        group.create_dataset("success", data=_numpy(episode.success))
        if episode.rewards is not None:
            group.create_dataset("rewards", data=_numpy(episode.rewards))
        group.attrs.update({"length": episode.length, "success_once": episode.success_once,
                            "success_at_end": episode.success_at_end})
        if episode.seed is not None:
            group.attrs["seed"] = int(episode.seed)
        if meta is not None:
            group.attrs["meta"] = meta
        self.num_episodes += 1
        return self.num_episodes - 1

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self._discard()
            return
        try:
            assert self._file is not None and self._tmp is not None
            self._file.attrs["num_episodes"] = self.num_episodes
            self._file.close()
            self._file = None
            # h5py's flush stops at the OS; fsync makes the bytes durable before the rename.
            fd = os.open(self._tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self._tmp, self.path)
            self._tmp = None
        except BaseException:
            self._discard()
            raise

    def _discard(self) -> None:
        """Drop the temp file; the target path is never touched."""
        if self._file is not None:
            try:
                self._file.close()
            except Exception:  # closing a half-written file may fail too; the file is deleted either way
                pass
            self._file = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


def _create_temp_beside(path: Path) -> Path:
    """A new empty file in path's directory (same filesystem, so os.replace is atomic).

    Not tempfile.mkstemp: its files are owner-only (0600), which the rename would carry over
    to the dataset; creating with 0666 applies the umask like any other new file.
    """
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


def write_dataset(path: str | os.PathLike, episodes: Iterable[Episode], metadata: DatasetMetadata,
                  compression: str | None = "gzip") -> Path:
    """Write every episode to `path` atomically; returns the path."""
    with DatasetWriter(path, metadata, compression) as writer:
        for episode in episodes:
            writer.append(episode)
    return Path(path)
