"""Read STL files (ASCII or binary) as vertex clouds.

MuJoCo collides with the convex hull of a mesh, so a collision mesh is fully described by
its vertices. ManiSkill ships its precomputed hulls (`*.convex.stl`) as ASCII STL, which
MuJoCo's decoder rejects; passing the vertices sidesteps the file format.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


def stl_vertices(path: str | Path) -> np.ndarray:
    """The distinct vertices of an STL file, float64 [V, 3]."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) >= 84:
        (count,) = struct.unpack_from("<I", data, 80)
        if 84 + 50 * count == len(data):  # binary: exact size check, since ASCII files may start with "solid"
            records = np.frombuffer(data, dtype=np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")]),
                                    count=count, offset=84)
            return np.unique(records["v"].reshape(-1, 3).astype(np.float64), axis=0)
    text = data.decode("ascii", errors="strict")
    vertices = [tuple(float(x) for x in line.split()[1:4])
                for line in text.splitlines() if line.strip().startswith("vertex")]
    if not vertices:
        raise ValueError(f"{path}: no vertices found (neither a binary nor an ASCII STL file)")
    return np.unique(np.asarray(vertices, dtype=np.float64), axis=0)
