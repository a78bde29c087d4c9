"""Benchmark a bundle or preset on every available backend, and check or record its latency baseline.

Examples:
  toolkit bench --model fog-small                      table for the preset (exported on the fly)
  toolkit bench --bundle bundles/fog-small --json-out out.json --plot plots/   # plots/sweep.png, real-time budget
  toolkit bench --model fog-small --check              regression check against benchmarks/baselines/<machine>.json
  toolkit bench --model fog-small --update-baseline    re-measure and rewrite this model's baseline entries
  toolkit bench --model fog-small --override num_encoder_layers=3 --check    (a deliberately slower model fails)
  toolkit bench --model fog-small --ratio --backends pytorch-eager,onnxruntime-fp32 --threads 2
                                                       speed ratios only: each backend's default threads, then equal
(`toolkit bench fog-small` and `toolkit bench bundles/fog-small`, the older spelling, still work.)

Latency figures are medians after warm-up; `norm.` is latency / a fixed reference workload timed in the same run
(what the regression baseline compares); `of bound` is MACs / measured MatMul throughput, divided by the latency.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from calibration.checkpoint import DEFAULT_PRESET
from deploy.errors import MissingDependency
from toolkit.bench import baseline as bench_baseline
from toolkit.bench import report
from toolkit.bench import run as bench
from toolkit.bench.backends import BACKENDS, BackendUnavailable
from toolkit.api import bench as api_bench
from toolkit.cli import UserError
from toolkit.commands._options import (add_bundle, add_json, add_model_arguments, add_plot, add_quiet, bundle_of,
                                       output_file)

HELP = "latency, throughput and memory per backend; latency regression baselines"


def prepare_argv(argv: list[str]) -> list[str]:
    """`--json PATH` (a .json file or '-') was bench's JSON file before --json became a switch everywhere: still
    read so, as --json-out PATH (or --json for '-')."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--json" and i + 1 < len(argv) and (argv[i + 1] == "-" or argv[i + 1].endswith(".json")):
            out += ["--json"] if argv[i + 1] == "-" else ["--json-out", argv[i + 1]]
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def add_arguments(p) -> None:
    add_bundle(p, positional=True)   # the hidden positional also takes a preset name, as before
    add_model_arguments(p, weights=False)
    p.add_argument("--backends", default="all",
                   help="comma list of pytorch-eager, onnxruntime-fp32, onnxruntime-int8, tensorrt (default: all "
                        "that can run here)")
    p.add_argument("--batches", default="1,4,16,64", help="batch sizes of the sweep (default 1,4,16,64)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for every backend and the reference (default 1: steady on a shared machine)")
    add_json(p, out=True)
    add_plot(p)
    add_quiet(p)
    p.add_argument("--name", help="name of the model in reports and baselines (default: preset or bundle name)")
    p.add_argument("--ratio", action="store_true",
                   help="only the interleaved batch-1 head-to-head: every backend at its own default threads, then "
                        "all at --threads")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="preset constructor override, e.g. num_encoder_layers=3 (repeatable)")
    group = p.add_argument_group("regression baseline")
    group.add_argument("--check", action="store_true",
                       help="compare with the baseline (exit 1 on a regression) instead of the full bench")
    group.add_argument("--update-baseline", action="store_true",
                       help="re-measure and rewrite this model's entries in the baseline; prints what changed")
    group.add_argument("--repeat", type=int, default=3,
                       help="measurements per entry for --update-baseline; the median is recorded (default 3)")
    group.add_argument("--baseline", metavar="JSON", help="baseline file (default benchmarks/baselines/<class>.json)")
    group.add_argument("--machine-class", help="machine class of the baseline (default: detected)")
    group.add_argument("--untimed", default="",
                       help="backends whose baseline pins structure only (comma list), e.g. onnxruntime-int8 "
                            "for a graph too slow to time in CI")


def benched_spec(args) -> str:
    """What to bench: --bundle DIR, --model PRESET, or the older positional (either); default the default preset."""
    given, flag = getattr(args, "bundle_given", None), getattr(args, "bundle", None)
    if args.model and (flag or given):
        raise UserError(f"bench one thing: --model {args.model} or the bundle {flag or given}")
    return bundle_of(args) or args.model or DEFAULT_PRESET


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def run(args) -> int:
    args.json_out = output_file(args.json_out, "--json-out", "bench.json")
    backends = list(BACKENDS) if args.backends == "all" else [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise UserError(f"unknown backend(s) {unknown}; choose from {list(BACKENDS)}")
    try:
        batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        raise UserError(f"--batches {args.batches!r}: give comma-separated integers, e.g. 1,4,16") from None
    if args.threads < 1 or any(b < 1 for b in batches):
        raise UserError("--threads and --batches must be positive")
    overrides = {}
    for item in args.override:
        if "=" not in item:
            raise UserError(f"--override {item!r}: write KEY=VALUE, e.g. num_encoder_layers=3")
        key, value = item.split("=", 1)
        overrides[key.strip()] = _parse_value(value.strip())

    spec = benched_spec(args)
    if args.check or args.update_baseline:
        return _regression(args, bench.load_benched(spec, overrides, name=args.name), backends)
    if args.ratio:
        benched = bench.load_benched(spec, overrides, name=args.name)
        print(report.format_ratios(bench.ratios(benched, backends, args.threads)))
        return 0
    result = api_bench(spec, backends=backends, batches=batches, threads=args.threads, overrides=overrides,
                       name=args.name, progress=not args.quiet)
    print(result.to_json() if args.json else result.table())
    if args.json_out:
        Path(args.json_out).write_text(result.to_json() + "\n")
    if args.plot:
        path = Path(args.plot) if args.plot.endswith(".png") else Path(args.plot) / "sweep.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        result.plot(path)
        print(f"batch sweep plot (with the real-time budget): {path}", file=sys.stderr)
    return 0


def _regression(args, benched, backends) -> int:
    path = Path(args.baseline) if args.baseline else bench_baseline.baseline_path(args.machine_class)
    untimed = {b.strip() for b in args.untimed.split(",") if b.strip()}
    baseline = bench_baseline.load(path)
    if args.check:  # time only what the baseline has a timing for
        entries_on_file = baseline.get("entries", {})
        untimed |= {b for b in backends
                    if entries_on_file.get(bench_baseline.entry_key(benched.name, b), {}).get("normalized_latency") is None}
    runs = []
    for _ in range(max(1, args.repeat) if args.update_baseline else 1):
        entries = {}
        for backend in backends:
            try:
                entries.update(bench.regression_entries(benched, [backend], threads=1,
                                                        timed=() if backend in untimed else None))
            except (BackendUnavailable, MissingDependency, ImportError) as exc:
                bench.progress(f"{backend}: skipped ({exc})")
        runs.append(entries)
    entries = bench_baseline.median_entries(runs) if runs[0] else {}
    if args.update_baseline:
        old, new = bench_baseline.update(path, entries, threads=1, machine=args.machine_class)
        print(f"baseline {path} updated; changes:")
        print("\n".join(bench_baseline.diff_lines(old, new)))
        return 0
    if not baseline:
        raise UserError(f"no baseline at {path}; record one: the same command with --update-baseline instead of "
                        "--check")
    failed = 0
    for verdict in bench.checked_verdicts(benched, entries, baseline):
        key = verdict.key
        timing = "-" if verdict.timing_ok is None else f"{verdict.normalized:.3f} (limit {verdict.allowed:.3f})"
        if verdict.first is not None:
            timing += f", timed twice: first {verdict.first:.3f}"
        print(f"{'ok  ' if verdict.ok else 'FAIL'} {key}: structure {'ok' if verdict.structure_ok else 'changed'}, "
              f"normalized latency {timing}")
        for line in verdict.problems + [f"note: {n}" for n in verdict.notices]:
            print(f"     {line}")
        failed += not verdict.ok
    return 1 if failed else 0
