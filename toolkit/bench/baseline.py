"""Latency regression baselines: one JSON file per machine class, compared exactly (structure) or within a
tolerance (normalized latency), rewritten only on purpose (`toolkit bench --update-baseline`).

File `benchmarks/baselines/<machine class>.json`:
```
{"machine_class": "cpu-x86", "reference": "fog-block-v3", "threads": 1, "tolerance": 0.13,
 "measured_on": {"cpu": ..., "onnxruntime": ..., "torch": ...},
 "entries": {"fog-small/onnxruntime-fp32": {
     "structure": {"nodes": 123, "qdq_nodes": 0, "macs": 4567, "parameters": 89, "onnx_bytes": 1011},
     "normalized_latency": 1.23,           # model latency / reference latency, same run, interleaved
     "median_ms": 0.9,                     # informative only: raw ms depend on the machine's load
     "reference": "fog-block-v3/small",    # the reference workload it was normalized by (bench.reference)
     "toolchain": {"torch": "2.13.0+cpu", "onnx": "1.23.2", "onnxruntime": "1.32.0"},   # what made the graph
     "tolerance": 0.2},                    # optional, per entry: where the measured spread is wider
   "fog-small/onnxruntime-staged": {        # a staged plan: sums over its stage files, plus per stage
     "structure": {"nodes": 104, ..., "stage_nodes": [69, 1, 1, 33], "steps": 3, "stages": 4}}}}
```
Keys are sorted and floats rounded so `git diff` of an update shows exactly what changed.

A graph's node counts and bytes are what torch's exporter, onnx and onnxruntime's optimizer make of the model, so they
are compared only against an entry recorded with the same versions (`toolchain`; an entry without one was recorded
with the file's `measured_on`). With other versions only the model's own facts (parameters) are compared, and the
verdict says why in `notices`; timing is compared as always. The alternative, pinning the versions in the test extra,
would force one onnxruntime on every machine that runs the tests (a Jetson's comes from JetPack), so the baseline
says what it was recorded with instead.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.bench.reference import REFERENCE_VERSION

BASELINES = Path(__file__).resolve().parents[2] / "benchmarks" / "baselines"
STRUCTURE_FIELDS = ("nodes", "qdq_nodes", "macs", "parameters", "onnx_bytes",
                    "stage_nodes", "steps", "stages")  # the last three: staged plans only (bench.run.staged_structure)
# Measured on the shared 2-core machine (docs/bench.md): run-to-run spread (max/min - 1) of the normalized latency
# up to 9 % for PyTorch eager and 1-2 % for onnxruntime FP32. 13 % sits above the spread (baselines are the median
# of 3 measurements, so a run sits at most about half the spread above them). Since fog-small blends the freeze
# index, one extra encoder layer adds only +1..21 % in eager (+16..24 % onnxruntime): it is caught by structure;
# timing is proven on the encoder tripled (+52..101 %, tests/test_latency.py).
DEFAULT_TOLERANCE = 0.13
# The libraries a graph's structure depends on, and the structure facts that do not depend on them.
TOOLCHAIN = ("torch", "onnx", "onnxruntime")
TOOLCHAIN_FREE = ("parameters",)


def toolchain() -> dict[str, str]:
    """{library: version} of TOOLCHAIN as installed here (a missing one is left out)."""
    found = {}
    for name in TOOLCHAIN:
        try:
            found[name] = __import__(name).__version__
        except Exception:  # not installed, or broken: nothing to compare against
            pass
    return found


def toolchain_changes(recorded: dict | None, current: dict | None) -> list[str]:
    """'onnxruntime 1.31.1 -> 1.32.0' for each library whose version differs (none when either side is unknown)."""
    if not recorded or not current:
        return []
    return [f"{name} {recorded[name]} -> {current.get(name)}" for name in TOOLCHAIN
            if name in recorded and recorded[name] != current.get(name)]


def entry_of(baseline: dict, key: str) -> dict:
    """The baseline file's entry `key` ({} when absent), with the toolchain it was recorded with (the file's
    `measured_on` for an entry from before per-entry toolchains)."""
    entry = dict(baseline.get("entries", {}).get(key, {}))
    if entry and "toolchain" not in entry:
        measured_on = baseline.get("measured_on", {})
        entry["toolchain"] = {name: measured_on[name] for name in TOOLCHAIN if name in measured_on}
    return entry


def machine_class() -> str:
    """'jetson-<model>' on a Jetson, else 'cpu-<arch>'; FOG_MACHINE_CLASS overrides (e.g. in CI)."""
    if os.environ.get("FOG_MACHINE_CLASS"):
        return os.environ["FOG_MACHINE_CLASS"]
    model = Path("/proc/device-tree/model")
    if model.is_file():
        text = model.read_text(errors="ignore").strip("\x00 \n").lower()
        if "jetson" in text or "orin" in text or "xavier" in text:
            words = [w for w in text.replace("nvidia", "").replace("developer kit", "").split() if w != "jetson"]
            return "jetson-" + "-".join(words[:3])
    arch = platform.machine().lower()
    return "cpu-" + {"x86_64": "x86", "amd64": "x86", "aarch64": "arm64", "arm64": "arm64"}.get(arch, arch)


def baseline_path(machine: str | None = None) -> Path:
    return BASELINES / f"{machine or machine_class()}.json"


def entry_key(benched: str, backend: str) -> str:
    return f"{benched}/{backend}"


def load(path: Path) -> dict:
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def _rounded(entry: dict) -> dict:
    out = {"structure": {k: _exact(entry["structure"][k]) for k in STRUCTURE_FIELDS if k in entry["structure"]}}
    if entry.get("normalized_latency") is not None:
        out["normalized_latency"] = round(float(entry["normalized_latency"]), 3)
    if entry.get("median_ms") is not None:
        out["median_ms"] = round(float(entry["median_ms"]), 3)
    if entry.get("reference"):
        out["reference"] = entry["reference"]
    if entry.get("toolchain"):
        out["toolchain"] = dict(entry["toolchain"])
    return out


def _exact(value):
    """A structure field as the file stores it: an int, or a list of ints (nodes per stage)."""
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else int(value)


def median_entries(runs: list[dict[str, dict]]) -> dict[str, dict]:
    """One entry per key from repeated measurements: the median normalized latency (structure is identical)."""
    merged = {}
    for key in runs[0]:
        entry = dict(runs[-1][key])
        values = [r[key]["normalized_latency"] for r in runs if r.get(key, {}).get("normalized_latency") is not None]
        if values:
            entry["normalized_latency"] = statistics.median(values)
            entry["median_ms"] = statistics.median(r[key]["median_ms"] for r in runs if key in r)
        merged[key] = entry
    return merged


def update(path: Path, entries: dict[str, dict], *, threads: int, tolerance: float | None = None,
           machine: str | None = None) -> tuple[dict, dict]:
    """Write `entries` into the baseline at `path` (other entries kept). Returns (old, new) for a diff."""
    old = load(path)
    new = {
        "machine_class": machine or old.get("machine_class") or machine_class(),
        "reference": REFERENCE_VERSION,
        "threads": threads,
        "tolerance": tolerance if tolerance is not None else old.get("tolerance", DEFAULT_TOLERANCE),
        "measured_on": measured_on(),
        "entries": dict(old.get("entries", {})),
    }
    for key, entry in entries.items():
        kept = old.get("entries", {}).get(key, {}).get("tolerance")  # a per-entry tolerance is a decision: keep it
        new["entries"][key] = _rounded(entry) | ({"tolerance": kept} if kept is not None else {})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(new, indent=2, sort_keys=True) + "\n")
    return old, new


def measured_on() -> dict:
    info = {"cpu": _cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()}
    for name in ("onnxruntime", "torch", "onnx", "tensorrt"):
        try:
            info[name] = __import__(name).__version__
        except Exception:  # not installed, or broken: the baseline simply does not name it
            pass
    power = _nvpmodel()
    if power:  # a Jetson's speed depends on its power mode: a baseline must say which one it was recorded in
        info["nvpmodel"] = power
    return info


def _nvpmodel() -> str | None:
    if not shutil.which("nvpmodel"):
        return None
    try:
        out = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return " ".join(line.strip() for line in out.splitlines() if line.strip()) or None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass
class Verdict:
    key: str
    problems: list[str]
    structure_ok: bool
    timing_ok: bool | None      # None: not timed (structure-only entry)
    normalized: float | None
    allowed: float | None
    first: float | None = None  # the first measurement's normalized latency, when the entry was timed twice
    notices: list[str] = field(default_factory=list)   # what was not compared, and why (another toolchain)

    @property
    def ok(self) -> bool:
        return not self.problems


def compare(key: str, measured: dict, baseline: dict, tolerance: float) -> Verdict:
    """Structure must match exactly; normalized latency may exceed the baseline by at most `tolerance` (the file's;
    an entry's own `tolerance`, set where its measured spread is wider, takes precedence)."""
    if not baseline:
        return Verdict(key, [f"{key}: no baseline entry; record one with `toolkit bench --update-baseline`"],
                       False, None, measured.get("normalized_latency"), None)
    problems = []
    want, got = baseline.get("structure", {}), measured.get("structure", {})
    changed = toolchain_changes(baseline.get("toolchain"), measured.get("toolchain"))
    compared = [n for n in STRUCTURE_FIELDS if n in want and (not changed or n in TOOLCHAIN_FREE)]
    notices = [f"{key}: graph structure recorded with another toolchain ({', '.join(changed)}): only "
               f"{', '.join(compared) or 'nothing'} compared; re-record on purpose: toolkit bench --model MODEL "
               "--update-baseline"] if changed else []
    for name in compared:
        if want[name] != got.get(name):
            problems.append(f"{key}: {name} is {got.get(name)}, baseline {want[name]}")
    structure_ok = not problems
    timing_ok, allowed, norm = None, None, measured.get("normalized_latency")
    tolerance = baseline.get("tolerance", tolerance)
    if baseline.get("normalized_latency") is not None and norm is not None \
            and measured.get("reference") != baseline.get("reference"):
        # a ratio to a different workload is a different number: comparing it would pass or fail by accident
        problems.append(f"{key}: normalized by reference {measured.get('reference')}, baseline by "
                        f"{baseline.get('reference') or 'an older one'}; re-record: toolkit bench --model MODEL "
                        "--update-baseline")
        return Verdict(key, problems, structure_ok, False, norm, None, notices=notices)
    if baseline.get("normalized_latency") is not None and norm is not None:
        allowed = baseline["normalized_latency"] * (1 + tolerance)
        timing_ok = norm <= allowed
        if not timing_ok:
            problems.append(f"{key}: normalized latency {norm:.3f} exceeds baseline "
                            f"{baseline['normalized_latency']:.3f} by more than {tolerance:.0%} (limit {allowed:.3f})")
    return Verdict(key, problems, structure_ok, timing_ok, norm, allowed, notices=notices)


def diff_lines(old: dict, new: dict) -> list[str]:
    """Human-readable changes between two baseline files (what `--update-baseline` prints)."""
    lines = []
    old_entries, new_entries = old.get("entries", {}), new.get("entries", {})
    for key in sorted(new_entries):
        before, after = old_entries.get(key), new_entries[key]
        if before is None:
            lines.append(f"+ {key}: {json.dumps(after, sort_keys=True)}")
            continue
        for name in STRUCTURE_FIELDS:
            a, b = before.get("structure", {}).get(name), after["structure"].get(name)
            if a != b:
                lines.append(f"~ {key}: {name} {a} -> {b}")
        for change in toolchain_changes(before.get("toolchain"), after.get("toolchain")):
            lines.append(f"~ {key}: recorded with {change}")
        if before.get("reference") != after.get("reference"):
            lines.append(f"~ {key}: reference {before.get('reference')} -> {after.get('reference')}")
        a, b = before.get("normalized_latency"), after.get("normalized_latency")
        if a != b and a is not None and b is not None:
            same_reference = before.get("reference") == after.get("reference")
            change = f"{(b / a - 1):+.1%}" if same_reference else "another reference: not comparable"
            lines.append(f"~ {key}: normalized_latency {a} -> {b} ({change})")
    return lines or ["(no change)"]
