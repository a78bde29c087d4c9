"""Are two exports of the same model the same bundle? Every model and kit file byte for byte, the manifests as data
and as text, apart from what is measured anew on every run.

  python benchmarks/bundle_identity.py BEFORE AFTER          # two bundle folders, or two folders of bundles
  python benchmarks/bundle_identity.py BEFORE AFTER --root /tmp/base=/work/wt   # exported from two checkouts

What a run measures and so may differ (and nothing else): `created`, `digest` (it covers `created`), the step
timings (`export.timings`), the thread cap's timings and the choice they make (`onnxruntime.thread_cap`), the
inference time quoted by a skipped streaming-fidelity step, and (--precision fastest) the cpu plans' race: its
latencies, the reason quoting them, the dynamic plan's seconds and staging race, onnxruntime's load times. The
winner of a race is compared: a different winner is a different bundle. `--root OLD=NEW` reads the checkout folder OLD in the
before-manifest as NEW (a preset's shipped weights are named by their path). Exit 0 when everything else is
identical.
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

MANIFEST = "manifest.json"
THREAD_CAP_MEASURED = ("threads", "latency_ms", "reason", "others_cores")
SECONDS = re.compile(r"~?[\d,]+(\.\d+)? s\b")


def comparable(manifest: dict) -> dict:
    """The manifest without what a run measures anew (see the module docstring)."""
    m = copy.deepcopy(manifest)
    for key in ("created", "digest"):
        m.pop(key, None)
    export = m.get("export") or {}
    for key in ("timings", "cpu_latency_ms"):
        export.pop(key, None)
    for key in ("latency_ms", "reason"):
        (export.get("cpu_precision") or {}).pop(key, None)
    for key in ("seconds", "staging"):
        (export.get("cpu_dynamic_plan") or {}).pop(key, None)
    (m.get("onnxruntime") or {}).pop("load_s", None)
    for cap in ((m.get("onnxruntime") or {}).get("thread_cap") or {}).values():
        for key in THREAD_CAP_MEASURED:
            cap.pop(key, None)
    streaming = m.get("streaming") or {}
    if "skipped" in streaming:
        streaming["skipped"] = SECONDS.sub("<s>", streaming["skipped"])
    return m


def differences(a, b, where: str = "") -> list[str]:
    """Paths where two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}.{k}: only in {'before' if k in a else 'after'}" for k in sorted(set(a) ^ set(b))]
        return out + [d for k in a if k in b for d in differences(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {json.dumps(a)[:120]} != {json.dumps(b)[:120]}"]


def key_order(value) -> list:
    """Every object's keys in order, depth first (the manifest's text order)."""
    if isinstance(value, dict):
        return [list(value)] + [o for v in value.values() for o in key_order(v)]
    if isinstance(value, list):
        return [o for v in value for o in key_order(v)]
    return []


def compare(before: Path, after: Path, root: tuple[str, str] | None = None) -> list[str]:
    """Problems found comparing two bundle folders (empty: the same bundle)."""
    problems = []
    files = lambda folder: {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}  # noqa: E731
    names_a, names_b = files(before), files(after)
    problems += [f"{name}: only in {'before' if name in names_a else 'after'}" for name in sorted(names_a ^ names_b)]
    for name in sorted((names_a & names_b) - {MANIFEST}):
        if (before / name).read_bytes() != (after / name).read_bytes():
            problems.append(f"{name}: bytes differ")
    text_a, text_b = ((folder / MANIFEST).read_text() for folder in (before, after))
    if root:
        text_a = text_a.replace(json.dumps(root[0])[1:-1], json.dumps(root[1])[1:-1])
    ma, mb = json.loads(text_a), json.loads(text_b)
    problems += [f"manifest{d}" for d in differences(comparable(ma), comparable(mb))]
    if key_order(comparable(ma)) != key_order(comparable(mb)):
        problems.append("manifest: the same data, keys in another order")
    return problems


def pairs(before: Path, after: Path) -> list[tuple[Path, Path]]:
    if (before / MANIFEST).is_file():
        return [(before, after)]
    return [(b, after / b.name) for b in sorted(before.iterdir()) if (b / MANIFEST).is_file()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--root", help="OLD=NEW: the checkout folder of the before-export and of the after-export")
    args = p.parse_args(argv)
    root = tuple(args.root.split("=", 1)) if args.root else None
    failed = 0
    for before, after in pairs(args.before, args.after):
        problems = compare(before, after, root) if (after / MANIFEST).is_file() else [f"{after}: no bundle"]
        count = sum(1 for path in before.rglob("*") if path.is_file())
        print(f"{before.name}: {'identical' if not problems else 'DIFFERENT'} ({count} files compared)")
        for problem in problems:
            print(f"  {problem}")
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
