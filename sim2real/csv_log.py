"""The training loops' CSV logs (metrics.csv, eval.csv, select.csv): append-only, columns fixed by
the first row, and safe to resume after a kill (a torn last line is dropped, rows past the
resumed step are rewritten).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from sim2real.atomic import atomic_path


class CsvLog:
    """Append-only CSV whose columns are fixed by the first row ever written (kept across resumes).

    A last line without its newline (the writer was killed mid-row) is dropped on opening.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fields: list[str] | None = None
        if path.exists():
            _drop_partial_line(path)
        if path.exists() and path.stat().st_size:
            with open(path, newline="") as f:
                self.fields = next(csv.reader(f))

    def drop_rows_after(self, key: str, value: float) -> None:
        """Remove the rows whose `key` column exceeds `value` (a resumed run rewrites them),
        replacing the file atomically."""
        if self.fields is None or key not in self.fields:
            return
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        col = self.fields.index(key)
        kept = [rows[0]] + [r for r in rows[1:] if len(r) <= col or not r[col] or float(r[col]) <= value]
        if len(kept) == len(rows):
            return
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(kept)

    def write(self, row: dict[str, Any]) -> None:
        new = self.fields is None
        if new:
            self.fields = list(row)
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore", restval="")
            if new:
                writer.writeheader()
            writer.writerow(row)


def _drop_partial_line(path: Path) -> None:
    """Truncate `path` after its last newline."""
    with open(path, "r+b") as f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            start = max(0, pos - 65536)
            f.seek(start)
            chunk = f.read(pos - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                pos = start + newline + 1
                break
            pos = start
        if pos < end:
            f.truncate(pos)
