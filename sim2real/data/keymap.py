"""Stored arrays -> contract features, through the `Part` lists of a dataset config.

Readers of array formats (LeRobot, ManiSkill, robomimic) hand over a getter from key to a
[N, ...] array; `assemble` slices, scales and concatenates the parts of one feature and checks
the result has the contract's size. Images go through `image_frames` (HWC or CHW uint8 ->
the contract's CHW size, resized with OpenCV as the policy node resizes camera frames).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from sim2real.data.config import Part
from sim2real.data.episode import DatasetError


def feature_parts(key_map: dict[str, list[Part]], name: str, section: str, where: str) -> list[Part]:
    """The parts a reader's key map gives contract feature `name`, or an error naming the file."""
    if name not in key_map:
        raise DatasetError(f"{where}: the key map has no entry for contract feature {name!r} ({section}.features "
                           f"has {sorted(key_map)})")
    return key_map[name]


def check_finite(values: np.ndarray, what: str) -> None:
    """Refuse NaN/inf, naming the first bad step (row)."""
    bad = ~np.isfinite(values).all(axis=-1)
    if bad.any():
        raise DatasetError(f"{what} is NaN/inf at step {int(np.argmax(bad))}")


def part_label(part: Part) -> str:
    if part.value:
        return f"constant {list(part.value)}"
    if part.index:
        return f"{part.key}{list(part.index)}"
    if part.start or part.stop is not None:
        return f"{part.key}[{part.start}:{'' if part.stop is None else part.stop}]"
    return part.key


def assemble(name: str, parts: Sequence[Part], get: Callable[[str], np.ndarray], rows: int, size: int | None,
             where: str) -> np.ndarray:
    """Feature `name` as float64 [rows, size] from its parts.

    Args:
        get: key -> stored array [rows, ...]; raises DatasetError naming the key when absent.
        rows: how many steps every part must have.
        size: the contract's size of the feature (None: any).
        where: prefix of every error (file and episode).
    """
    if not parts:
        raise DatasetError(f"{where}: feature {name!r} has no parts in the key map")
    columns = []
    for part in parts:
        if part.value:
            if part.key:
                raise DatasetError(f"{where}: a part of {name!r} has both key {part.key!r} and value {part.value}")
            columns.append(np.broadcast_to(np.asarray(part.value, dtype=np.float64), (rows, len(part.value))))
            continue
        raw = np.asarray(get(part.key))
        if raw.shape[0] != rows:
            raise DatasetError(f"{where}/{part.key} has {raw.shape[0]} steps, expected {rows} (feature {name!r})")
        array = raw.reshape(rows, -1).astype(np.float64)
        width = array.shape[1]
        if part.index:
            bad = [i for i in part.index if not -width <= i < width]
            if bad:
                raise DatasetError(f"{where}/{part.key} has {width} values per step; index {bad} is out of range "
                                   f"(feature {name!r})")
            array = array[:, list(part.index)]
        else:
            stop = width if part.stop is None else part.stop
            if not 0 <= part.start < stop <= width:
                raise DatasetError(f"{where}/{part.key} has {width} values per step; slice "
                                   f"[{part.start}:{stop}] does not fit (feature {name!r})")
            array = array[:, part.start:stop]
        array = array * part.scale
        if part.offset:
            if len(part.offset) not in (1, array.shape[1]):
                raise DatasetError(f"{where}: part {part_label(part)} of {name!r} has {array.shape[1]} values but "
                                   f"{len(part.offset)} offsets")
            array = array + np.asarray(part.offset, dtype=np.float64)
        columns.append(array)
    out = np.concatenate(columns, axis=1)
    if size is not None and out.shape[1] != size:
        labels = " + ".join(part_label(p) for p in parts)
        raise DatasetError(f"{where}: feature {name!r} gets {out.shape[1]} values per step from {labels}; the "
                           f"contract expects {size}")
    return out


def image_frames(frames: np.ndarray, shape: tuple[int, int, int], crop: Sequence[int], where: str) -> np.ndarray:
    """uint8 frames [N, H, W, 3] or [N, 3, H, W] -> [N, *shape] (CHW), cropped and resized when needed."""
    from sim2real.ros.images import crop_resize

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.dtype != np.uint8:
        raise DatasetError(f"{where}: expected uint8 frames [N, H, W, 3] or [N, 3, H, W], got {frames.dtype} "
                           f"{list(frames.shape)}")
    if frames.shape[1] == 3 and frames.shape[3] != 3:
        frames = frames.transpose(0, 2, 3, 1)
    if frames.shape[3] != 3:
        raise DatasetError(f"{where}: expected 3 colour channels, got frames of shape {list(frames.shape)}")
    if not crop and frames.shape[1:3] == shape[1:]:
        return np.ascontiguousarray(frames.transpose(0, 3, 1, 2))
    try:
        return np.stack([crop_resize(f, (shape[1], shape[2]), tuple(crop) if crop else None) for f in frames])
    except ValueError as exc:
        raise DatasetError(f"{where}: {exc}") from exc
