"""Time alignment: irregular message or frame streams sampled on the control-period grid.

Times are integer nanoseconds (int64), so grid points and message stamps compare exactly.
A stream is sampled by zero-order hold: at time t it shows its latest sample at or before t,
which is what a controller running at that instant would have seen.
"""

from __future__ import annotations

import math

import numpy as np

NS = 1_000_000_000


def period_ns(freq: float) -> int:
    """One control period in nanoseconds (20 Hz: 50,000,000)."""
    if not (freq > 0 and math.isfinite(freq)):
        raise ValueError(f"control frequency must be positive and finite, got {freq!r}")
    return round(NS / freq)


def to_ns(seconds: np.ndarray | float) -> np.ndarray:
    """Seconds (float) -> int64 nanoseconds, rounded."""
    return np.round(np.asarray(seconds, dtype=np.float64) * NS).astype(np.int64)


def grid(start: int, steps: int, period: int) -> np.ndarray:
    """`steps` + 1 grid times start, start + period, ... (int64 ns)."""
    return start + np.arange(steps + 1, dtype=np.int64) * period


def hold_indices(times: np.ndarray, at: np.ndarray, tolerance: int = 0) -> np.ndarray:
    """For each time in `at`, the index of the latest sample at or before it (-1 where none).

    Args:
        times: sample times, sorted ascending.
        at: query times.
        tolerance: a sample up to this much after a query time still counts (for streams
            stored with rounding, e.g. LeRobot's float32 timestamps).
    """
    return np.searchsorted(np.asarray(times), np.asarray(at) + tolerance, side="right") - 1


def first_gap(times: np.ndarray, start: int, end: int, max_gap: int) -> tuple[int, int] | None:
    """The first stretch longer than `max_gap` in which the zero-order hold of `times` over
    [start, end] shows no new sample, as (from, to); None when there is none.

    The stretch runs from a sample (or the sample held at `start`) to the next one, or to
    `end` after the last. `times` must have a sample at or before `start`.
    """
    times = np.asarray(times)
    first = int(hold_indices(times, np.array([start]))[0])
    if first < 0:
        raise ValueError("first_gap: no sample at or before the start")
    last = int(np.searchsorted(times, end, side="right"))
    points = np.append(times[first:last], end)
    long = np.nonzero(np.diff(points) > max_gap)[0]
    if long.size == 0:
        return None
    return int(points[long[0]]), int(points[long[0] + 1])


def steps_until(start: int, end: int, period: int) -> int:
    """How many whole periods fit between start and end (0 when end < start)."""
    return max(0, (end - start) // period)
