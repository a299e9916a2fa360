"""Transfer runs merged into one table: the jobs of a sweep (benchmarks/transfer.py -m,
scripts/ray_sweep.py), runs of benchmarks/transfer.py, or both.

Every folder under the given ones that holds config.json and results.csv is a run. Runs
with the same settings (config.json: task, worlds, demos, evaluation episodes and every
budget; their seeds, methods, device and paths aside) form a group, whose (method, seed)
results are merged: a pair found twice with the same numbers counts once, with different
numbers it is an error (`duplicates="first"` keeps the run found first and says so). Per
group `aggregate` prints the benchmark's lines, with seeds = the merged count, and writes
out/<group>/{results.csv, summary.csv, transfer.png, runs.txt}; then out/table.csv and
out/table.md over every group, and per experiment swept over `demos` (groups equal but for
it) out/demos_<task>_<digest>.png: success against the number of target demos per method.
scripts/aggregate_transfer.py is its command line.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sim2real.atomic import atomic_write
from sim2real.transfer_config import TransferConfig
from sim2real.transfer_report import RESULT_FIELDS, load_run, report, run_record, summarise

OVERRIDE_LISTS = ("pretrain", "finetune", "scratch")
DUPLICATES = ("error", "first")


@dataclass
class Group:
    """Runs with the same settings and their merged results.

    Args:
        name: the folder name under out (task, worlds, demos and a digest of the settings).
        cfg: the first run's settings; `seeds` is the merged count.
        runs: the runs' out_dirs.
        rows: one results.csv row per (method, seed).
    """

    name: str
    cfg: TransferConfig
    runs: list[Path] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)


def find_runs(roots: list[Path], say: Callable[[str], None] = print) -> list[Path]:
    """Every folder with config.json and results.csv at or under `roots`, each once, sorted."""
    runs, waiting = set(), set()
    for root in roots:
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: not a folder")
        for config in root.rglob("config.json"):
            (runs if (config.parent / "results.csv").is_file() else waiting).add(config.parent.resolve())
    if not runs:
        listed = " ".join(str(r) for r in roots)
        hint = f"; {len(waiting)} have config.json but no results yet, e.g. {min(waiting)}" if waiting else ""
        raise FileNotFoundError(f"no transfer runs (a folder with config.json and results.csv) under {listed}{hint}")
    if waiting:
        say(f"left out {len(waiting)} runs with no results yet: {' '.join(map(str, sorted(waiting)))}")
    return sorted(runs)


def settings_key(cfg: TransferConfig) -> str:
    """What makes runs one experiment: run_record, with each override list read as the
    settings it leaves (the last value per key), so that the order they were given in is not."""
    record = run_record(cfg)
    for name in OVERRIDE_LISTS:
        last = dict(item.split("=", 1) for item in record[name])
        record[name] = sorted(f"{k}={v}" for k, v in last.items())
    return json.dumps(record, sort_keys=True)


def group_name(cfg: TransferConfig, key: str) -> str:
    def safe(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.=+-]+", "-", text).strip("-")

    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    return (f"{cfg.task}_{cfg.source_backend}-{safe(cfg.source_domain.name)}_to_{cfg.target_backend}-"
            f"{safe(cfg.target_domain.name)}_demos{cfg.demos}_{digest}")


def group_runs(runs: list[Path], duplicates: str = "error", say: Callable[[str], None] = print) -> list[Group]:
    """Runs with equal settings_key together, their results merged per (method, seed).

    Args:
        runs: transfer out_dirs (find_runs).
        duplicates: a (method, seed) pair with different numbers in two runs: "error" raises,
            "first" keeps the run listed first and says which it dropped.
    """
    if duplicates not in DUPLICATES:
        raise ValueError(f"duplicates={duplicates}: expected one of {list(DUPLICATES)}")
    groups: dict[str, Group] = {}
    found: dict[tuple[str, str, int], tuple[dict[str, Any], Path]] = {}
    repeated: dict[tuple[Path, Path], list[str]] = {}
    for run in runs:
        try:
            cfg, rows = load_run(run)
        except (TypeError, ValueError, KeyError) as e:
            raise ValueError(f"{run / 'config.json'}: not readable as a transfer run's settings ({e})") from e
        if not rows:
            say(f"{run}: no results yet, left out")
            continue
        key = settings_key(cfg)
        group = groups.setdefault(key, Group(group_name(cfg, key), cfg))
        group.runs.append(run)
        for row in rows:
            pair = (key, row["method"], int(row["seed"]))
            if pair not in found:
                found[pair] = (row, run)
                group.rows.append(row)
                continue
            kept, where = found[pair]
            same = (int(kept["successes"]), int(kept["episodes"])) == (int(row["successes"]), int(row["episodes"]))
            what = f"method={row['method']} seed={row['seed']}"
            if same:
                repeated.setdefault((where, run), []).append(what)
            elif duplicates == "first":
                say(f"duplicate {what}: {kept['successes']}/{kept['episodes']} in {where} kept, "
                    f"{row['successes']}/{row['episodes']} in {run} dropped")
            else:
                raise ValueError(f"duplicate {what} with different results: {kept['successes']}/{kept['episodes']} "
                                 f"in {where / 'results.csv'}, {row['successes']}/{row['episodes']} in "
                                 f"{run / 'results.csv'}; leave one run out, or pass duplicates=first")
    for (where, run), pairs in repeated.items():
        say(f"{run} repeats {len(pairs)} results of {where} with the same numbers ({', '.join(pairs)}): "
            "counted once")
    for group in groups.values():
        group.cfg.seeds = len({int(r["seed"]) for r in group.rows})
    return sorted(groups.values(), key=lambda g: g.name)


def write_results(path: Path, rows: list[dict[str, Any]]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=RESULT_FIELDS)
    writer.writeheader()
    for row in sorted(rows, key=lambda r: (r["method"], int(r["seed"]))):
        writer.writerow({k: row[k] for k in RESULT_FIELDS})
    atomic_write(path, text.getvalue())


def write_table(out: Path, groups: list[Group]) -> tuple[Path, Path]:
    """table.csv (every group's summary.csv rows, with the group) and table.md."""
    rows = []
    for group in groups:
        with open(out / group.name / "summary.csv", newline="") as f:
            rows += [{"group": group.name, **r} for r in csv.DictReader(f)]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out / "table.csv", text.getvalue())
    lines = ["| task | source | target | demos | method | seeds | episodes | success | 95% CI | group |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['source']} | {r['target']} | {r['demos']} | {r['method']} | {r['seeds']} | "
                     f"{r['episodes']} | {float(r['success_mean']):.3f} | "
                     f"[{float(r['ci95_low']):.3f}, {float(r['ci95_high']):.3f}] | {r['group']} |")
    atomic_write(out / "table.md", "\n".join(lines) + "\n")
    return out / "table.csv", out / "table.md"


def demos_curves(out: Path, groups: list[Group]) -> list[Path]:
    """One plot per experiment run at several `demos`: success (mean over seeds, 95% interval)
    against the number of target demos, a line per method."""
    from sim2real.report import pyplot, save_figure

    sweeps: dict[str, list[Group]] = {}
    for group in groups:
        record = json.loads(settings_key(group.cfg))
        record.pop("demos")
        sweeps.setdefault(json.dumps(record, sort_keys=True), []).append(group)
    paths = []
    for key, members in sweeps.items():
        if len({g.cfg.demos for g in members}) < 2:
            continue
        members.sort(key=lambda g: g.cfg.demos)
        cfg = members[0].cfg
        fig, ax = pyplot().subplots(figsize=(5.5, 3.8), dpi=120)
        methods = [m for m in dict.fromkeys(r["method"] for g in members for r in g.rows)]
        for method in methods:
            points = [(g.cfg.demos, summarise(g.rows, method)) for g in members if any(r["method"] == method
                                                                                        for r in g.rows)]
            xs = [x for x, _ in points]
            means = [s.success_mean for _, s in points]
            err = [[m - s.ci95_low for m, (_, s) in zip(means, points)],
                   [s.ci95_high - m for m, (_, s) in zip(means, points)]]
            ax.errorbar(xs, means, yerr=err, marker="o", capsize=3, label=method,
                        linewidth=2.2 if method == "ours" else 1.2)
        ax.set_xscale("log")
        ax.minorticks_off()  # only the swept demo counts are labelled
        ax.set_xticks(sorted({g.cfg.demos for g in members}), [str(d) for d in sorted({g.cfg.demos for g in members})])
        ax.set_ylim(-0.02, 1.05)
        ax.set_xlabel("target demos")
        ax.set_ylabel("target success rate")
        ax.set_title(f"{cfg.task}: {cfg.source_backend}:{cfg.source_domain.name} -> "
                     f"{cfg.target_backend}:{cfg.target_domain.name}", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        digest = hashlib.sha256(key.encode()).hexdigest()[:8]
        paths.append(save_figure(fig, out / f"demos_{cfg.task}_{digest}.png"))
    return paths


def aggregate(roots: list[Path], out: Path, duplicates: str = "error",
              say: Callable[[str], None] = print) -> list[Group]:
    """Find, group and merge the runs under `roots`; print and write each group's table and the
    table over all of them into `out`."""
    groups = group_runs(find_runs(roots, say), duplicates, say)
    if not groups:
        raise FileNotFoundError(f"no results in the transfer runs under {' '.join(str(r) for r in roots)}")
    for group in groups:
        where = out / group.name
        where.mkdir(parents=True, exist_ok=True)
        seeds = sorted({int(r["seed"]) for r in group.rows})
        say(f"group {group.name}: {len(group.runs)} runs, seeds {seeds}")
        write_results(where / "results.csv", group.rows)
        atomic_write(where / "runs.txt", "".join(f"{run}\n" for run in group.runs))
        group.cfg.out_dir = str(where)
        report(group.cfg, group.rows, where, say)
    csv_path, md_path = write_table(out, groups)
    say(f"wrote {csv_path} and {md_path} ({len(groups)} groups)")
    for path in demos_curves(out, groups):
        say(f"wrote {path} (success against target demos)")
    return groups
