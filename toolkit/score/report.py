"""Tables and the plot from per-recording results (the same for every runner).

- events: one row per episode the daemon would report (recording, subject, visit, class, onset, offset, duration,
  detect, peak, and the day of the onset);
- summary: one row per subject, visit and day: hours recorded, hours not worn, FOG minutes, episodes, longest
  episode, and where the subject's name came from (`subject_from`, deploy.subjects: a metadata table, the dataset's
  file names or folders, or "file" when nothing named a person). "FOG" there is any class: episodes of different
  classes that overlap are one episode (their union);
- recordings: one row per recording (hours, not-worn hours, episodes, compute time);
- a plot of FOG minutes per day, one line per subject.

Days: when the metadata gives the time of day a recording began, day 1 is its first calendar day (midnight to
midnight); otherwise day 1 is its first 24 hours. An episode belongs to the day of its onset; its minutes are split
at midnight.
"""
from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

from deploy.errors import MissingDependency
from deploy.subjects import FROM_FILE

DAY_S = 86400.0
EVENT_COLUMNS = ("recording", "subject", "visit", "class", "onset_s", "offset_s", "duration_s", "detect_s", "peak",
                 "day")
SUMMARY_COLUMNS = ("subject", "visit", "day", "recordings", "hours_recorded", "hours_not_worn", "fog_minutes",
                   "episodes", "longest_s", "subject_from")
RECORDING_COLUMNS = ("recording", "subject", "visit", "path", "hours", "hours_not_worn", "events", "compute_s",
                     "sha256", "subject_from")


def _day(result: dict, t: float) -> int:
    offset = result.get("start_of_day_s") or 0.0
    return int(math.floor((offset + t) / DAY_S)) + 1


def _split_by_day(result: dict, a: float, b: float) -> dict[int, float]:
    """Seconds of [a, b) (recording time) on each day."""
    offset = result.get("start_of_day_s") or 0.0
    out = {}
    t = a
    while t < b:
        day = _day(result, t)
        end = min(b, day * DAY_S - offset)
        out[day] = out.get(day, 0.0) + (end - t)
        t = end
    return out


def _union(intervals):
    merged = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return merged


def event_rows(results) -> list[dict]:
    rows = []
    for r in results:
        for e in r["events"]:
            rows.append({"recording": r["name"], "subject": r["subject"], "visit": r["visit"], "class": e["class"],
                         "onset_s": e["onset_s"], "offset_s": e["offset_s"],
                         "duration_s": e["offset_s"] - e["onset_s"], "detect_s": e["detect_s"], "peak": e["peak"],
                         "day": _day(r, e["onset_s"])})
    return rows


def summary_rows(results) -> list[dict]:
    acc = defaultdict(lambda: {"recordings": set(), "recorded": 0.0, "not_worn": 0.0, "fog": 0.0, "episodes": 0,
                               "longest": 0.0})
    named = defaultdict(set)       # subject -> where its name came from
    for r in results:
        key = (r["subject"], r["visit"])
        named[r["subject"]].add(_subject_from(r))
        for day, s in _split_by_day(r, 0.0, r["duration_s"]).items():
            acc[key + (day,)]["recorded"] += s
            acc[key + (day,)]["recordings"].add(r["name"])
        for a, b in r["not_worn"]:
            for day, s in _split_by_day(r, a, b).items():
                acc[key + (day,)]["not_worn"] += s
        for a, b in _union((e["onset_s"], e["offset_s"]) for e in r["events"]):
            cell = acc[key + (_day(r, a),)]
            cell["episodes"] += 1
            cell["longest"] = max(cell["longest"], b - a)
            for day, s in _split_by_day(r, a, b).items():
                acc[key + (day,)]["fog"] += s
    return [{"subject": k[0], "visit": k[1], "day": k[2], "recordings": len(v["recordings"]),
             "hours_recorded": v["recorded"] / 3600, "hours_not_worn": v["not_worn"] / 3600,
             "fog_minutes": v["fog"] / 60, "episodes": v["episodes"], "longest_s": v["longest"],
             "subject_from": "; ".join(sorted(named[k[0]]))}
            for k, v in sorted(acc.items())]


def _subject_from(result: dict) -> str:
    return result.get("subject_from") or FROM_FILE    # a part stored before subjects were looked up


def recording_rows(results, hashes=None) -> list[dict]:
    hashes = hashes or {}
    return [{"recording": r["name"], "subject": r["subject"], "visit": r["visit"], "path": r["path"],
             "hours": r["duration_s"] / 3600, "hours_not_worn": sum(b - a for a, b in r["not_worn"]) / 3600,
             "events": len(r["events"]), "compute_s": r["compute_s"], "sha256": hashes.get(r["path"], ""),
             "subject_from": _subject_from(r)}
            for r in results]


def _write_csv(path: Path, rows, columns) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns))
        w.writeheader()
        for row in rows:
            w.writerow({k: _csv_value(row[k]) for k in columns})
    return path


def _csv_value(v):
    return repr(v) if isinstance(v, float) else v   # repr: the shortest text that reads back to the same float


def _write_parquet(path: Path, rows, columns) -> Path | None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    types = {"recording": pa.string(), "subject": pa.string(), "visit": pa.string(), "class": pa.string(),
             "subject_from": pa.string(),
             "path": pa.string(), "sha256": pa.string(), "day": pa.int64(), "recordings": pa.int64(),
             "episodes": pa.int64(), "events": pa.int64()}
    schema = pa.schema([(c, types.get(c, pa.float64())) for c in columns])
    table = pa.table({c: [row[c] for row in rows] for c in columns}, schema=schema)
    pq.write_table(table, path)
    return path


def plot_minutes_per_day(summary, path: Path) -> Path | None:
    """FOG minutes per day, one line per subject (and visit). None when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    lines = defaultdict(list)
    for row in summary:
        lines[(row["subject"], row["visit"])].append((row["day"], row["fog_minutes"]))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for (subject, visit), points in sorted(lines.items()):
        days, minutes = zip(*sorted(points))
        ax.plot(days, minutes, marker="o", label=subject + (f" v{visit}" if visit else ""))
    ax.set_xlabel("day")
    ax.set_ylabel("FOG minutes (any class)")
    ax.set_title(f"Freezing of gait per day, {len({s for s, _ in lines})} subjects")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    days = sorted({row["day"] for row in summary})
    if days and len(days) <= 31:
        ax.set_xticks(days)
    if len(lines) <= 20:
        ax.legend(fontsize="small", ncol=2 if len(lines) > 10 else 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(out: Path, results, hashes=None, errors=(), warnings: list | None = None) -> dict[str, Path]:
    """Write every table (CSV, and Parquet when pyarrow is installed) and the plot (when matplotlib is) into `out`;
    `errors.csv` lists the recordings that could not be scored (removed when there are none). What could not be
    written for want of a package is said in `warnings` (a list to append to), with the extra that brings it."""
    warnings = [] if warnings is None else warnings
    out.mkdir(parents=True, exist_ok=True)
    if errors:
        _write_csv(out / "errors.csv", errors, ("name", "path", "error"))
    elif (out / "errors.csv").exists():
        (out / "errors.csv").unlink()
    tables = {"events": (event_rows(results), EVENT_COLUMNS), "summary": (summary_rows(results), SUMMARY_COLUMNS),
              "recordings": (recording_rows(results, hashes), RECORDING_COLUMNS)}
    files = {}
    for name, (rows, columns) in tables.items():
        files[f"{name}.csv"] = _write_csv(out / f"{name}.csv", rows, columns)
        parquet = _write_parquet(out / f"{name}.parquet", rows, columns)
        if parquet:
            files[f"{name}.parquet"] = parquet
    if not any(name.endswith(".parquet") for name in files):
        warnings.append(f"no Parquet tables written (the CSV tables hold the same rows): "
                        f"{MissingDependency('pyarrow', 'score', 'writing Parquet')}")
    plot = plot_minutes_per_day(tables["summary"][0], out / "fog_minutes_per_day.png")
    if plot:
        files["fog_minutes_per_day.png"] = plot
    else:
        warnings.append(f"no fog_minutes_per_day.png written: "
                        f"{MissingDependency('matplotlib', 'score', 'drawing the plot')}")
    return files


def format_summary(summary, limit: int = 40) -> str:
    head = f"{'subject':12s} {'visit':>5s} {'day':>3s} {'hours':>6s} {'notworn':>7s} {'FOGmin':>7s} {'eps':>4s} " \
           f"{'longest':>8s}"
    lines = [head]
    for row in summary[:limit]:
        lines.append(f"{row['subject'][:12]:12s} {row['visit'][:5]:>5s} {row['day']:3d} {row['hours_recorded']:6.2f} "
                     f"{row['hours_not_worn']:7.2f} {row['fog_minutes']:7.2f} {row['episodes']:4d} "
                     f"{row['longest_s']:7.1f}s")
    if len(summary) > limit:
        lines.append(f"... {len(summary) - limit} more rows in summary.csv")
    return "\n".join(lines)
