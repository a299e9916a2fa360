"""A run's report folder: the figures people would rather look at than read.

`scripts/demo.py` writes, under `<run>/report/`:

- `learning_curve.png`: pretraining success vs env steps, with the BC reference as a line;
- `success_table.md` / `success_table.csv`: each method's success on the target domain with its
  Wilson 95% interval;
- `latency_hist.png`: the bridge's decision latency (joint state in -> command out) against
  the control period;
- `summary.json`: every figure of the run and its config.

Each file is written atomically (sim2real.atomic), so a report is never half a file.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from sim2real.atomic import atomic_path, atomic_write
from sim2real.evaluate import binomial_ci95


@dataclass
class SuccessRow:
    """One line of the success table."""

    method: str
    successes: int
    episodes: int
    where: str  # e.g. "mujoco:target (sim evaluation)" or "ROS 2 bridge"

    @property
    def rate(self) -> float:
        return self.successes / self.episodes if self.episodes else math.nan

    @property
    def ci95(self) -> tuple[float, float]:
        return binomial_ci95(self.successes, self.episodes)


def save_figure(fig: Any, path: Path) -> Path:
    """Write `fig` as a PNG atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curve(path: Path, env_steps: Sequence[int], success: Sequence[float], bc_success: float | None,
                   title: str) -> Path:
    """Success vs env steps; the BC policy (same demos, same episodes) as a dashed line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.6), dpi=120)
    ax.plot(env_steps, success, marker="o", color="#2b6cb0", label="pretraining (online imitation)")
    if bc_success is not None:
        ax.axhline(bc_success, color="#c05621", linestyle="--", label=f"BC on the same demos ({bc_success:.2f})")
    ax.set_xlabel("env steps")
    ax.set_ylabel("success rate (source domain)")
    ax.set_ylim(-0.02, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def success_table(out: Path, rows: Sequence[SuccessRow], stem: str = "success_table") -> tuple[Path, Path]:
    """`<stem>.md` and `<stem>.csv`: method, where, successes/episodes, rate, Wilson 95% interval."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["method", "where", "successes", "episodes", "success", "ci95_low", "ci95_high"])
    lines = ["| method | evaluated on | successes | success | 95% CI |", "|---|---|---|---|---|"]
    for r in rows:
        low, high = r.ci95
        writer.writerow([r.method, r.where, r.successes, r.episodes, f"{r.rate:.3f}", f"{low:.3f}", f"{high:.3f}"])
        lines.append(f"| {r.method} | {r.where} | {r.successes}/{r.episodes} | {r.rate:.2f} | "
                     f"[{low:.2f}, {high:.2f}] |")
    md = atomic_write(out / f"{stem}.md", "\n".join(lines) + "\n")
    return md, atomic_write(out / f"{stem}.csv", text.getvalue())


def latency_histogram(path: Path, latency_ms: Sequence[float], period_ms: float, title: str) -> Path:
    """Histogram of decision latency with the control period and the p50/p99 marked."""
    from sim2real.stats import percentile

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.6), dpi=120)
    values = list(latency_ms)
    if values:
        ax.hist(values, bins=min(60, max(10, len(values) // 10)), color="#4a5568")
        for q, style in ((50, "-"), (99, "--")):
            x = percentile(values, q)
            ax.axvline(x, color="#2b6cb0", linestyle=style, label=f"p{q} {x:.1f} ms")
    else:
        ax.text(0.5, 0.5, "no latency samples", ha="center", transform=ax.transAxes)
    ax.axvline(period_ms, color="#c53030", linestyle=":", label=f"control period {period_ms:.0f} ms")
    ax.set_xlabel("joint state in -> command out (ms)")
    ax.set_ylabel("control ticks")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """JSON with plain types (dataclasses and paths turned into dicts and strings)."""
    return atomic_write(path, json.dumps(data, indent=1, default=str) + "\n")
