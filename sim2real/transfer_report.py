"""The transfer benchmark's results: per-method summaries with 95% intervals, the printed
`transfer ...` / `transfer_gap ...` lines, results.csv (appended per (method, seed)),
summary.csv and the bar chart.

The table gives, per method, the mean of the per-seed success rates and a 95% interval that is
the wider of two: Student's t over the per-seed rates (the spread between seeds) and Wilson's
over all episodes pooled (the count of episodes; it keeps an interval when every seed scored
the same).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from sim2real.atomic import atomic_write
from sim2real.transfer_config import TransferConfig, world

RESULT_FIELDS = ("method", "seed", "successes", "episodes", "success", "train_s", "eval_s")

# Student's t 0.975 quantiles by degrees of freedom; a df between rows takes the row below
# (a slightly wider interval), beyond the last row the normal quantile.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000, 120: 1.980}


def t975(df: int) -> float:
    best = 1.959963984540054
    for k in sorted(_T975, reverse=True):
        if df >= k:
            return _T975[k] if df <= 120 or k < 120 else best
    return _T975[1]


@dataclass
class MethodSummary:
    method: str
    seeds: int
    successes: int
    episodes: int
    success_mean: float
    ci95_low: float
    ci95_high: float
    per_seed: list[float]


def summarise(rows: list[dict[str, Any]], method: str) -> MethodSummary:
    """Mean of the per-seed success rates with the wider of the t and pooled-Wilson 95% intervals."""
    from sim2real.evaluate import binomial_ci95

    mine = sorted((r for r in rows if r["method"] == method), key=lambda r: int(r["seed"]))
    if not mine:
        raise ValueError(f"no results for method {method!r}")
    rates = [int(r["successes"]) / int(r["episodes"]) for r in mine]
    k = sum(int(r["successes"]) for r in mine)
    n = sum(int(r["episodes"]) for r in mine)
    mean = sum(rates) / len(rates)
    low, high = binomial_ci95(k, n)
    if len(rates) > 1:
        sd = math.sqrt(sum((x - mean) ** 2 for x in rates) / (len(rates) - 1))
        half = t975(len(rates) - 1) * sd / math.sqrt(len(rates))
        low, high = min(low, mean - half), max(high, mean + half)
    # Wilson's bound at 0 or 1 successes can sit a rounding error inside the mean
    return MethodSummary(method, len(rates), k, n, mean, max(0.0, min(low, mean)), min(1.0, max(high, mean)), rates)


def transfer_line(cfg: TransferConfig, s: MethodSummary) -> str:
    """The line printed per method (the table's row)."""
    return (f"transfer task={cfg.task} source={world(cfg.source_backend, cfg.source_domain)} "
            f"target={world(cfg.target_backend, cfg.target_domain)} method={s.method} demos={cfg.demos} "
            f"seeds={s.seeds} success_mean={s.success_mean:.3f} ci95_low={s.ci95_low:.3f} ci95_high={s.ci95_high:.3f}")


def gap_line(cfg: TransferConfig, summaries: dict[str, MethodSummary]) -> str | None:
    """`ours` against the best of every baseline (zero_shot included): the benchmark's question."""
    baselines = [s for m, s in summaries.items() if m != "ours"]
    if "ours" not in summaries or not baselines:
        return None
    ours, best = summaries["ours"], max(baselines, key=lambda s: s.success_mean)
    gap = 100 * (ours.success_mean - best.success_mean)
    separate = ours.ci95_low > best.ci95_high or ours.ci95_high < best.ci95_low
    return (f"transfer_gap task={cfg.task} ours={ours.success_mean:.3f} best_baseline={best.method} "
            f"baseline={best.success_mean:.3f} gap_points={gap:+.1f} cis_overlap={str(not separate).lower()}")


# --- files ----------------------------------------------------------------------------------

def read_results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def append_result(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RESULT_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({k: row[k] for k in RESULT_FIELDS})
        f.flush()
        os.fsync(f.fileno())


def write_summary(path: Path, cfg: TransferConfig, summaries: list[MethodSummary]) -> None:
    """summary.csv: one row per method (written atomically)."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["task", "source", "target", "method", "demos", "seeds", "episodes", "success_mean",
                     "ci95_low", "ci95_high", "per_seed"])
    for s in summaries:
        writer.writerow([cfg.task, world(cfg.source_backend, cfg.source_domain),
                         world(cfg.target_backend, cfg.target_domain), s.method, cfg.demos, s.seeds,
                         s.episodes, f"{s.success_mean:.4f}", f"{s.ci95_low:.4f}", f"{s.ci95_high:.4f}",
                         " ".join(f"{x:.3f}" for x in s.per_seed)])
    atomic_write(path, text.getvalue())


def plot_summary(path: Path, title: str, summaries: list[MethodSummary]) -> Path:
    """Bar chart of success per method with its 95% interval and the per-seed rates as dots."""
    from sim2real.report import pyplot, save_figure

    fig, ax = pyplot().subplots(figsize=(1.6 + 1.3 * len(summaries), 3.8), dpi=120)
    xs = range(len(summaries))
    means = [s.success_mean for s in summaries]
    err = [[m - s.ci95_low for m, s in zip(means, summaries)], [s.ci95_high - m for m, s in zip(means, summaries)]]
    colors = ["#2b6cb0" if s.method == "ours" else "#a0aec0" for s in summaries]
    ax.bar(xs, means, yerr=err, capsize=6, color=colors, edgecolor="black", linewidth=0.6)
    for x, s in zip(xs, summaries):
        ax.scatter([x] * len(s.per_seed), s.per_seed, color="black", s=10, zorder=3)
        ax.text(x, min(s.ci95_high + 0.03, 1.08), f"{s.success_mean:.2f}", ha="center", fontsize=8)
    ax.set_xticks(list(xs), [s.method for s in summaries])
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("target success rate")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def report(cfg: TransferConfig, rows: list[dict[str, Any]], out: Path,
           say: Callable[[str], None] = print) -> dict[str, MethodSummary]:
    """Print the table lines, write summary.csv and transfer.png."""
    summaries = {m: summarise(rows, m) for m in cfg.methods if any(r["method"] == m for r in rows)}
    for s in summaries.values():
        say(transfer_line(cfg, s))
    gap = gap_line(cfg, summaries)
    if gap:
        say(gap)
    ordered = list(summaries.values())
    write_summary(out / "summary.csv", cfg, ordered)
    title = (f"{cfg.task}: {world(cfg.source_backend, cfg.source_domain)} -> "
             f"{world(cfg.target_backend, cfg.target_domain)}, {cfg.demos} target demos, "
             f"{cfg.seeds} seeds x {cfg.eval_episodes} episodes")
    png = plot_summary(out / "transfer.png", title, ordered)
    say(f"wrote {out / 'summary.csv'}, {out / 'results.csv'} and {png}")
    return summaries


# --- a run's settings -----------------------------------------------------------------------

# Settings that do not change what a (method, seed) result means: runs that differ only in
# them can be continued in one out_dir or aggregated into one table.
_NOT_RECORDED = ("out_dir", "cache_dir", "device", "seeds", "first_seed", "methods")


def run_record(cfg: TransferConfig) -> dict[str, Any]:
    """What config.json holds: the settings that define the experiment (plain JSON types; the
    pass-on nodes as their override text, as the pretraining cache keys them)."""
    from sim2real.transfer_config import PASSED_ON, overrides

    record = {k: (overrides(v) if k in PASSED_ON else v) for k, v in asdict(cfg).items() if k not in _NOT_RECORDED}
    return json.loads(json.dumps(record, default=str))


def recorded(record: dict[str, Any]) -> dict[str, Any]:
    """A config.json's settings, without those that do not define the experiment."""
    return {k: v for k, v in record.items() if k not in _NOT_RECORDED}


def load_run(out_dir: str | Path) -> tuple[TransferConfig, list[dict[str, Any]]]:
    """A run's settings (config.json) and its per-(method, seed) results (results.csv)."""
    from sim2real.config import to_dataclass
    from sim2real.transfer_config import PASSED_ON, nested
    from tasks.domain import DomainParams

    out = Path(out_dir)
    config_path = out / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: not found; is {out} a transfer benchmark out_dir?")
    record = recorded(json.loads(config_path.read_text()))
    domains = {k: to_dataclass(record.pop(k), DomainParams) for k in ("source_domain", "target_domain")}
    passed_on = {k: nested(record.pop(k, [])) for k in PASSED_ON}
    cfg = TransferConfig(**record, **domains, **passed_on)
    rows = read_results(out / "results.csv")
    cfg.seeds = len({int(r["seed"]) for r in rows})
    cfg.out_dir = str(out)
    return cfg, rows
